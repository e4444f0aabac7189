//! What a run looks like while it goes, as lines that fit the terminal: a heading with the
//! elapsed time and the failure budget, a line per role with its counts against its limits,
//! and every host in flight with its step and how long it has been in it. The live display
//! of `run`/`apply`/`resume` and `fleetbook status RUN --watch` both draw a [`Board`].

use fleetbook_engine::render::count;

#[derive(Debug, Default, Clone)]
pub struct Board {
    /// `run 01KB7Q2N4R8X6Y3Z5A9C0D1E2F running 1m02s`.
    pub title: String,
    pub roles: Vec<RoleRow>,
    pub flying: Vec<Flying>,
    /// Failed hosts in the whole run, and how many the runbook tolerates (`None`: no limit).
    pub failed: usize,
    pub failures_allowed: Option<usize>,
    /// `waiting for approval "go-live"`, and the like.
    pub notes: Vec<String>,
}

#[derive(Debug, Default, Clone)]
pub struct RoleRow {
    pub name: String,
    pub hosts: usize,
    pub done: usize,
    pub failed: usize,
    pub in_flight: usize,
    pub limit: Option<usize>,
    pub max_failures: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct Flying {
    pub host: String,
    /// The role it is listed under (the role it runs with).
    pub role: String,
    pub step: String,
    pub secs: u64,
}

/// `7s`, `1m02s`, `1h05m`.
pub fn short(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

impl Board {
    /// The board as lines of at most `width` columns (words are never cut: a line too long
    /// is broken between its parts) and at most `rows` lines (the rest counted on the last).
    pub fn render(&self, width: usize, rows: usize) -> Vec<String> {
        let width = width.max(20);
        let mut lines = Vec::new();
        let mut head = vec![self.title.clone()];
        head.push(match self.failures_allowed {
            Some(a) => format!("failed {} of {a} allowed", self.failed),
            None => format!("failed {}", self.failed),
        });
        lines.extend(wrap(&head, width, "", "  ", "  "));
        for n in &self.notes {
            lines.extend(wrap(&words(n), width, "", "  ", " "));
        }
        let name_w = self.roles.iter().map(|r| r.name.len()).max().unwrap_or(0);
        for r in &self.roles {
            let parts = vec![
                format!("{:name_w$}", r.name),
                format!("done {}/{}", r.done, r.hosts),
                match r.limit {
                    Some(l) => format!("in flight {}/{l}", r.in_flight),
                    None => format!("in flight {}", r.in_flight),
                },
                match r.max_failures {
                    Some(m) => format!("failed {}/{m}", r.failed),
                    None => format!("failed {}", r.failed),
                },
            ];
            lines.extend(wrap(&parts, width, "", "    ", "  "));
            let here: Vec<String> = self
                .flying
                .iter()
                .filter(|f| f.role == r.name)
                .map(|f| format!("{} {} {}", f.host, f.step, short(f.secs)))
                .collect();
            lines.extend(wrap(&here, width, "  ", "  ", "   "));
        }
        if lines.len() > rows.max(2) {
            let keep = rows.max(2) - 1;
            let more = lines.len() - keep;
            lines.truncate(keep);
            lines.push(format!("… {} not shown", count(more, "line")));
        }
        lines
    }
}

/// `text` for standard error: on a terminal, each line too wide for it broken between words
/// (continuation lines indented under it); elsewhere unchanged.
pub fn fit(text: &str) -> String {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return text.to_string();
    }
    fit_to(text, crate::progress::terminal_size().0.saturating_sub(1))
}

fn fit_to(text: &str, width: usize) -> String {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.chars().count() <= width {
            out.push(line.to_string());
            continue;
        }
        let lead = &line[..line.len() - line.trim_start().len()];
        let next = format!("{lead}  ");
        out.extend(wrap(&words(line.trim_start()), width, lead, &next, " "));
    }
    out.join("\n")
}

fn words(s: &str) -> Vec<String> {
    s.split(' ').map(str::to_string).collect()
}

/// Lines of `parts` joined by `sep`, each at most `width` columns: the first line starts with
/// `first`, the next ones with `next`. A part longer than a line is broken at its spaces;
/// only a single word longer than a whole line is ever split.
pub fn wrap(parts: &[String], width: usize, first: &str, next: &str, sep: &str) -> Vec<String> {
    let lead_w = first.chars().count().max(next.chars().count());
    let width = width.max(lead_w + 8);
    let room = width - lead_w;
    let mut lines: Vec<String> = Vec::new();
    let mut cur = String::new();
    let lead = |lines: &Vec<String>| if lines.is_empty() { first } else { next };
    let flush = |lines: &mut Vec<String>, cur: &mut String| {
        if !cur.is_empty() {
            let l = format!("{}{}", lead(lines), cur.trim_end());
            lines.push(l);
            cur.clear();
        }
    };
    for p in parts {
        let len = p.chars().count();
        if len > room {
            // A part wider than a line gets lines of its own, broken between its words.
            flush(&mut lines, &mut cur);
            for w in p.split(' ').filter(|w| !w.is_empty()) {
                let chars: Vec<char> = w.chars().collect();
                for chunk in chars.chunks(room) {
                    let chunk: String = chunk.iter().collect();
                    if !cur.is_empty() && cur.chars().count() + 1 + chunk.chars().count() > room {
                        flush(&mut lines, &mut cur);
                    }
                    if !cur.is_empty() {
                        cur.push(' ');
                    }
                    cur.push_str(&chunk);
                }
            }
            flush(&mut lines, &mut cur);
            continue;
        }
        if !cur.is_empty() && cur.chars().count() + sep.chars().count() + len > room {
            flush(&mut lines, &mut cur);
        }
        if !cur.is_empty() {
            cur.push_str(sep);
        }
        cur.push_str(p);
    }
    flush(&mut lines, &mut cur);
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board(hosts: usize) -> Board {
        Board {
            title: "run 01KB7Q2N4R8X6Y3Z5A9C0D1E2F running 1m02s".into(),
            roles: vec![RoleRow {
                name: "compute-with-a-long-name".into(),
                hosts,
                done: 1,
                failed: 0,
                in_flight: hosts - 1,
                limit: Some(hosts - 1),
                max_failures: Some(1),
            }],
            flying: (2..=hosts)
                .map(|i| Flying {
                    host: format!("cmp{i:02}.dc1.example.org"),
                    role: "compute-with-a-long-name".into(),
                    step: "restart-services".into(),
                    secs: 62,
                })
                .collect(),
            failed: 0,
            failures_allowed: Some(2),
            notes: vec![],
        }
    }

    #[test]
    fn every_line_fits_and_every_host_in_flight_is_shown() {
        for width in [40, 60, 160] {
            let lines = board(9).render(width, 100);
            for l in &lines {
                assert!(l.chars().count() <= width, "{width}: {l:?}");
            }
            let all = lines.join("\n");
            for i in 2..=9 {
                let entry = format!("cmp{i:02}.dc1.example.org restart-services 1m02s");
                // Too wide for 40 columns: the entry has lines of its own.
                let shown = if width < entry.len() + 2 {
                    all.replace("\n  ", " ")
                } else {
                    all.clone()
                };
                assert!(shown.contains(&entry), "{width}: {all}");
            }
        }
    }

    #[test]
    fn words_are_never_cut() {
        let parts: Vec<String> = ["alpha beta gamma", "delta", "epsilon zeta"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let lines = wrap(&parts, 20, "", "  ", "  ");
        for l in &lines {
            assert!(l.chars().count() <= 20, "{l:?}");
        }
        let words: Vec<&str> = lines.iter().flat_map(|l| l.split_whitespace()).collect();
        assert_eq!(
            words,
            ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"],
            "{lines:?}"
        );
    }

    #[test]
    fn a_board_taller_than_the_terminal_says_what_it_leaves_out() {
        let lines = board(30).render(60, 5);
        assert_eq!(lines.len(), 5);
        assert!(lines[4].ends_with("not shown"), "{lines:?}");
    }

    #[test]
    fn long_lines_are_broken_between_words_and_short_ones_kept() {
        let text = "  roles      web  4 hosts\nrun 20261130-082519-ad9a (journal /tmp/fbssh7poAPA/state/journal.sqlite)";
        assert_eq!(
            fit_to(text, 40),
            "  roles      web  4 hosts\nrun 20261130-082519-ad9a (journal\n  /tmp/fbssh7poAPA/state/journal.sqlite)"
        );
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(short(7), "7s");
        assert_eq!(short(62), "1m02s");
        assert_eq!(short(3900), "1h05m");
    }
}
