//! Manual pages: `fleetbook.1` and one `fleetbook-COMMAND.1` per subcommand, made from the
//! same command tree as `--help` (clap_mangen for the name, synopsis and options) plus the
//! sections clap does not know: examples, exit status, environment, files.

use crate as cli;
use clap_mangen::roff::{bold, roman, Roff};
use clap_mangen::Man;
use fleetbook_engine::{Error, Result};
use std::path::{Path, PathBuf};

/// Every page: (file name, roff text). The top-level page comes first.
pub fn pages() -> Result<Vec<(String, String)>> {
    let mut top = cli::command().disable_help_subcommand(true);
    top.build();
    let mut out = vec![page(&top, None)?];
    for sub in top.get_subcommands().filter(|s| !s.is_hide_set()) {
        out.push(page(sub, Some(sub.get_name()))?);
    }
    Ok(out)
}

/// Writes every page into `dir` (created if missing); gives the paths written.
pub fn write_to(dir: &Path) -> Result<Vec<PathBuf>> {
    let fail = |e: std::io::Error| Error::input(format!("cannot write to {}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(fail)?;
    let mut written = Vec::new();
    for (name, text) in pages()? {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(fail)?;
        written.push(path);
    }
    Ok(written)
}

fn page(cmd: &clap::Command, sub: Option<&str>) -> Result<(String, String)> {
    let man = Man::new(cmd.clone());
    let mut buf = Vec::new();
    let io = |e: std::io::Error| Error::Internal(format!("rendering a man page: {e}"));
    man.render_title(&mut buf).map_err(io)?;
    man.render_name_section(&mut buf).map_err(io)?;
    man.render_synopsis_section(&mut buf).map_err(io)?;
    man.render_description_section(&mut buf).map_err(io)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut buf).map_err(io)?;
    }
    if sub.is_none() {
        man.render_subcommands_section(&mut buf).map_err(io)?;
    }
    let mut roff = Roff::new();
    let after = cmd
        .get_after_help()
        .map(|h| h.to_string())
        .unwrap_or_default();
    // The exit statuses `cli::command` appended are rendered as their own section below.
    let notes = after.split("Exit status:").next().unwrap_or("").trim();
    if !notes.is_empty() {
        roff.control("SH", ["EXAMPLES AND NOTES"]);
        roff.control("nf", []);
        for line in notes.lines() {
            roff.text([roman(line)]);
        }
        roff.control("fi", []);
    }
    roff.control("SH", ["EXIT STATUS"]);
    let codes: Vec<i32> = match sub {
        Some(s) => crate::status::statuses_of(s).to_vec(),
        None => crate::status::STATUSES.iter().map(|(c, _)| *c).collect(),
    };
    for code in codes {
        roff.control("TP", []);
        roff.text([bold(code.to_string())]);
        roff.text([roman(crate::status::meaning(code))]);
    }
    roff.control("SH", ["ENVIRONMENT"]);
    for (name, what) in cli::ENVIRONMENT {
        roff.control("TP", []);
        roff.text([bold(*name)]);
        roff.text([roman(*what)]);
    }
    roff.control("SH", ["FILES"]);
    for (name, what) in cli::FILES {
        roff.control("TP", []);
        roff.text([bold(*name)]);
        roff.text([roman(*what)]);
    }
    roff.control("SH", ["SEE ALSO"]);
    let see: Vec<String> = match sub {
        Some(_) => vec!["fleetbook(1)".into()],
        None => cmd
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(|s| format!("fleetbook-{}(1)", s.get_name()))
            .collect(),
    };
    roff.text([roman(see.join(", "))]);
    roff.to_writer(&mut buf).map_err(io)?;
    if cmd.get_version().is_some() {
        man.render_version_section(&mut buf).map_err(io)?;
    }
    let name = match sub {
        Some(s) => format!("fleetbook-{s}.1"),
        None => "fleetbook.1".into(),
    };
    Ok((name, String::from_utf8_lossy(&buf).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // `fleetbook man` named pages (fleetbook-run(1), ...) that did not exist.
    #[test]
    fn a_page_per_subcommand_with_options_statuses_environment_and_files() {
        let pages = pages().unwrap();
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        let cmd = cli::command();
        assert_eq!(names[0], "fleetbook.1");
        for sub in cmd.get_subcommands() {
            let file = format!("fleetbook-{}.1", sub.get_name());
            let (_, text) = pages
                .iter()
                .find(|(n, _)| *n == file)
                .unwrap_or_else(|| panic!("no page {file} among {names:?}"));
            for section in ["EXIT STATUS", "ENVIRONMENT", "FILES", "SYNOPSIS"] {
                assert!(
                    text.contains(&format!(".SH \"{section}\""))
                        || text.contains(&format!(".SH {section}")),
                    "{file} lacks {section}:\n{text}"
                );
            }
            for arg in sub.get_arguments().filter(|a| !a.is_hide_set()) {
                if let Some(long) = arg.get_long() {
                    // roff escapes '-' as '\-'.
                    let shown = format!("\\-\\-{}", long.replace('-', "\\-"));
                    assert!(text.contains(&shown), "{file} lacks --{long}:\n{text}");
                }
            }
            for code in crate::status::statuses_of(sub.get_name()) {
                assert!(
                    text.contains(&format!("\\fB{code}\\fR")),
                    "{file} lacks status {code}"
                );
            }
            assert!(
                text.contains("FLEETBOOK_STATE") && text.contains("fleetbook.toml"),
                "{file}"
            );
        }
        // The top page names only pages that exist.
        let top = &pages[0].1;
        for sub in cmd.get_subcommands() {
            assert!(
                top.contains(&format!("fleetbook\\-{}(1)", sub.get_name())),
                "{top}"
            );
        }
        assert_eq!(pages.len(), cmd.get_subcommands().count() + 1);
    }

    #[test]
    fn man_o_creates_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("share/man/man1");
        let written = write_to(&target).unwrap();
        assert!(target.join("fleetbook-run.1").is_file());
        assert_eq!(written.len(), cli::command().get_subcommands().count() + 1);
    }
}
