//! `--color` and `NO_COLOR`: read from the raw arguments before they are parsed, since
//! clap's own help and errors are coloured by the choice too.

/// `--color`: `Some(true)` always, `Some(false)` never, `None` auto. Set once, before the
/// arguments are parsed (clap's own help and errors are coloured by it too).
static COLOR: std::sync::OnceLock<Option<bool>> = std::sync::OnceLock::new();

/// Reads `--color WHEN` (or `--color=WHEN`) from the raw arguments; `NO_COLOR` (set and not
/// empty) means never unless `--color` says otherwise.
pub fn set_color(args: &[std::ffi::OsString]) {
    let mut choice = None;
    let mut it = args.iter().map(|a| a.to_string_lossy());
    while let Some(a) = it.next() {
        if a == "--" {
            break;
        }
        let value = match a.strip_prefix("--color") {
            Some("") => it.next().map(|v| v.into_owned()),
            Some(v) => v.strip_prefix('=').map(str::to_string),
            None => None,
        };
        match value.as_deref() {
            Some("always") => choice = Some(true),
            Some("never") => choice = Some(false),
            Some(_) => choice = None,
            None => {}
        }
    }
    let no_color = matches!(std::env::var_os("NO_COLOR"), Some(v) if !v.is_empty());
    let _ = COLOR.set(choice.or(no_color.then_some(false)));
}

/// Whether to colour output to a stream that is (or is not) a terminal.
pub fn color(is_terminal: bool) -> bool {
    COLOR.get().copied().flatten().unwrap_or(is_terminal)
}

pub fn clap_color() -> clap::ColorChoice {
    match COLOR.get().copied().flatten() {
        Some(true) => clap::ColorChoice::Always,
        Some(false) => clap::ColorChoice::Never,
        None => clap::ColorChoice::Auto,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn color_choice() {
        let args = |a: &[&str]| -> Vec<std::ffi::OsString> { a.iter().map(|s| s.into()).collect() };
        set_color(&args(&["fleetbook", "plan", "--color=never", "x"]));
        assert!(!color(true));
        assert_eq!(clap_color(), clap::ColorChoice::Never);
    }
}
