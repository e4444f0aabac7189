//! `fleetbook lib vendor DIR`: the locked libraries as a plain-directory mirror.

use super::tree::Resolved;

/// Every library's locked files copied into `DIR/NAME/VERSION/`
/// (a version already there replaced), the plain-directory mirror `FLEETBOOK_LIB_MIRROR`
/// reads; `copied` is told each library's label and where it went.
pub fn vendor(
    resolved: &Resolved,
    dir: &std::path::Path,
    copied: &mut dyn FnMut(&str, &std::path::Path),
) -> crate::Result<()> {
    use crate::Error;
    for l in &resolved.libraries.all {
        let (Some(src), Some(version), Some(e)) =
            (&l.dir, &l.version, resolved.lock.entry(&l.name))
        else {
            continue;
        };
        let to = dir.join(&l.name).join(version);
        if to.exists() {
            std::fs::remove_dir_all(&to)
                .map_err(|err| Error::input(format!("cannot replace {}: {err}", to.display())))?;
        }
        for rel in e.files.keys() {
            let target = to.join(rel);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|err| {
                    Error::input(format!("cannot create {}: {err}", parent.display()))
                })?;
            }
            std::fs::copy(src.join(rel), &target).map_err(|err| {
                Error::input(format!("cannot copy to {}: {err}", target.display()))
            })?;
        }
        copied(&l.label(), &to);
    }
    Ok(())
}
