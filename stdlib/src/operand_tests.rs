//! Issue 10 #6: every host operation, called from Rhai with generated values, builds commands
//! in which each value arrives as exactly one literal operand (after `--` where the program
//! has it), or refuses the value with an error naming the operation and the value. The
//! commands are recorded by a transport and split back into argv as a POSIX shell would.

use crate::pkg::Manager;
use crate::{Host, HostInfo, Output, Transport, TransportError};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use rhai::{Engine, Scope, AST};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Records every command; answers like the plan-time recorder (success, no output).
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Transport for Recorder {
    fn exec(&self, _: &HostInfo, cmd: &str, _: Option<Duration>) -> Result<Output, TransportError> {
        self.0.lock().unwrap().push(cmd.to_string());
        Ok(Output::default())
    }
    fn is_dry_run(&self) -> bool {
        true
    }
}

/// One shell word: its text after quote removal, and whether any part of it was unquoted
/// `$`, backquote, a glob character or a leading `~` (the shell would expand it).
#[derive(Debug, Clone, PartialEq)]
struct Word {
    text: String,
    expands: bool,
}

/// Splits `script` into simple commands (argv each) as a POSIX shell would: single quotes,
/// double quotes, backslashes, comments, `;` `&&` `||` `|` and newlines between commands,
/// and redirections (`2>/dev/null`, `>&1`), which are dropped.
fn split(script: &str) -> Vec<Vec<Word>> {
    let mut cmds = Vec::new();
    let mut argv: Vec<Word> = Vec::new();
    let mut word: Option<Word> = None;
    let mut redirect = false;
    let mut chars = script.chars().peekable();
    fn finish(word: &mut Option<Word>, argv: &mut Vec<Word>, redirect: &mut bool) {
        if let Some(w) = word.take() {
            if *redirect {
                *redirect = false;
            } else {
                argv.push(w);
            }
        }
    }
    fn end(cmds: &mut Vec<Vec<Word>>, argv: &mut Vec<Word>) {
        if !argv.is_empty() {
            cmds.push(std::mem::take(argv));
        }
    }
    fn w(word: &mut Option<Word>) -> &mut Word {
        word.get_or_insert(Word {
            text: String::new(),
            expands: false,
        })
    }
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => finish(&mut word, &mut argv, &mut redirect),
            '\n' | ';' => {
                finish(&mut word, &mut argv, &mut redirect);
                end(&mut cmds, &mut argv);
            }
            '&' | '|' => {
                finish(&mut word, &mut argv, &mut redirect);
                if c == '&' {
                    assert_eq!(chars.next(), Some('&'), "a background & in {script:?}");
                } else if chars.peek() == Some(&'|') {
                    chars.next();
                }
                end(&mut cmds, &mut argv);
            }
            '>' | '<' => {
                // `2>`: the digits before the operator are a file descriptor, not a word.
                if word.as_ref().is_some_and(|w| {
                    !w.text.is_empty() && w.text.bytes().all(|b| b.is_ascii_digit())
                }) {
                    word = None;
                } else {
                    finish(&mut word, &mut argv, &mut redirect);
                }
                if matches!(chars.peek(), Some('>' | '&')) {
                    chars.next();
                }
                while chars.peek() == Some(&' ') {
                    chars.next();
                }
                redirect = true;
            }
            '#' if word.is_none() => {
                while chars.peek().is_some_and(|&c| c != '\n') {
                    chars.next();
                }
            }
            '\'' => {
                let w = w(&mut word);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.text.push(c),
                        None => panic!("unterminated ' in {script:?}"),
                    }
                }
            }
            '"' => {
                let w = w(&mut word);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('$' | '`' | '"' | '\\')) => w.text.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                w.text.push('\\');
                                w.text.push(c);
                            }
                            None => panic!("unterminated \" in {script:?}"),
                        },
                        Some(c) => {
                            w.expands |= c == '$' || c == '`';
                            w.text.push(c);
                        }
                        None => panic!("unterminated \" in {script:?}"),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(c) => w(&mut word).text.push(c),
                None => panic!("trailing backslash in {script:?}"),
            },
            c => {
                let starts = word.is_none();
                let w = w(&mut word);
                w.expands |= "$`*?[(){}".contains(c) || (starts && c == '~');
                w.text.push(c);
            }
        }
    }
    finish(&mut word, &mut argv, &mut redirect);
    end(&mut cmds, &mut argv);
    cmds
}

/// `split`, looking inside `sudo -n -- sh -c 'COMMAND'` (how `become` wraps a command).
fn simple_commands(script: &str) -> Vec<Vec<Word>> {
    split(script)
        .into_iter()
        .flat_map(|argv| {
            let texts: Vec<&str> = argv.iter().map(|w| w.text.as_str()).collect();
            match texts.as_slice() {
                ["sudo", "-n", "--", "sh", "-c", inner] => simple_commands(inner),
                _ => vec![argv],
            }
        })
        .collect()
}

/// One word of an expected command: fixed text, an operand built from a value the runbook
/// gave, or one word that holds such a value but is no bare operand (an option with the value
/// glued to it, `--disable=VALUE`, or `sh::quote`'s word, placed by the runbook itself).
#[derive(Debug, Clone, PartialEq)]
enum Slot {
    Fixed(String),
    User(String),
    Embedded(String),
}

impl Slot {
    fn text(&self) -> &str {
        match self {
            Slot::Fixed(t) | Slot::User(t) | Slot::Embedded(t) => t,
        }
    }
}

fn f(words: &str) -> Vec<Slot> {
    words
        .split(' ')
        .map(|w| Slot::Fixed(w.to_string()))
        .collect()
}

fn u(v: &str) -> Slot {
    Slot::User(v.to_string())
}

fn cmd(fixed: &str, users: &[&str]) -> Vec<Slot> {
    let mut c = f(fixed);
    c.extend(users.iter().map(|v| u(v)));
    c
}

/// A command whose fixed words contain spaces.
fn words(fixed: &[&str], users: &[&str]) -> Vec<Slot> {
    let mut c: Vec<Slot> = fixed.iter().map(|w| Slot::Fixed(w.to_string())).collect();
    c.extend(users.iter().map(|v| u(v)));
    c
}

const APT: &str = "DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=120 \
    -o APT::Cmd::Pattern-Only=true -o Dpkg::Options::=--force-confdef \
    -o Dpkg::Options::=--force-confold";

/// The query `pkg::` runs before it changes packages, to learn their previous versions.
fn versions(m: Manager, names: &[&str]) -> Vec<Vec<Slot>> {
    match m {
        Manager::Apt => vec![
            words(
                &["dpkg-query", "-W", "-f=${Package} ${Version}\\n", "--"],
                names,
            ),
            f("true"),
        ],
        Manager::Dnf => vec![
            words(
                &[
                    "rpm",
                    "-q",
                    "--qf",
                    "%{NAME} %{VERSION}-%{RELEASE}\\n",
                    "--",
                ],
                names,
            ),
            words(&["grep", "-v", " is not installed$"], &[]),
            f("true"),
        ],
    }
}

fn install(m: Manager, name: &str, version: &str) -> Vec<Vec<Slot>> {
    match (m, version) {
        (Manager::Apt, "") => vec![cmd(&format!("{APT} install --"), &[name])],
        (Manager::Apt, v) => vec![cmd(
            &format!("{APT} install --allow-downgrades --"),
            &[&format!("{name}={v}")],
        )],
        (Manager::Dnf, "") => vec![cmd("dnf -y install", &[name])],
        (Manager::Dnf, v) => {
            let spec = format!("{name}-{v}");
            vec![
                cmd("dnf -y install", &[&spec]),
                cmd("dnf -y downgrade", &[&spec]),
            ]
        }
    }
}

type Expect = fn(Manager, &str) -> Vec<Vec<Slot>>;

/// Every host operation: its Rhai call (the value is `v`) and the commands it must build.
/// The key is `namespace::name/arity`, checked against what `register` registers.
fn cases() -> Vec<(&'static str, &'static str, Expect)> {
    vec![
        (
            "pkg::update_index/1",
            "pkg::update_index(h)",
            |m, _| match m {
                Manager::Apt => vec![f("apt-get -q -o DPkg::Lock::Timeout=120 update")],
                Manager::Dnf => vec![f("dnf -q -y makecache")],
            },
        ),
        (
            "pkg::upgrade/2",
            "pkg::upgrade(h, [v, \"zlib1g\"])",
            |m, v| {
                let mut c = versions(m, &[v, "zlib1g"]);
                c.push(match m {
                    Manager::Apt => {
                        cmd(&format!("{APT} install --only-upgrade --"), &[v, "zlib1g"])
                    }
                    Manager::Dnf => cmd("dnf -y upgrade", &[v, "zlib1g"]),
                });
                c
            },
        ),
        (
            "pkg::dist_upgrade/1",
            "pkg::dist_upgrade(h)",
            |m, _| match m {
                Manager::Apt => vec![f(&format!("{APT} dist-upgrade"))],
                Manager::Dnf => vec![f("dnf -y upgrade")],
            },
        ),
        ("pkg::install/2", "pkg::install(h, v)", |m, v| {
            let mut c = versions(m, &[v]);
            c.extend(install(m, v, ""));
            c
        }),
        (
            "pkg::install/3",
            "pkg::install(h, v, \"1:2.0~rc1-1\")",
            |m, v| {
                let mut c = versions(m, &[v]);
                c.extend(install(m, v, "1:2.0~rc1-1"));
                c
            },
        ),
        ("pkg::install/3", "pkg::install(h, \"nginx\", v)", |m, v| {
            let mut c = versions(m, &["nginx"]);
            c.extend(install(m, "nginx", v));
            c
        }),
        // The fact previous_version:NAME is set to "1.0" before the call.
        ("pkg::restore/2", "pkg::restore(h, v)", |m, v| {
            install(m, v, "1.0")
        }),
        ("pkg::remove/2", "pkg::remove(h, v)", |m, v| match m {
            Manager::Apt => vec![cmd(&format!("{APT} remove --"), &[v])],
            Manager::Dnf => vec![cmd("dnf -y remove", &[v])],
        }),
        ("pkg::version/2", "pkg::version(h, v)", |m, v| match m {
            Manager::Apt => vec![cmd("dpkg-query -W -f=${Version} --", &[v])],
            Manager::Dnf => vec![cmd("rpm -q --qf %{VERSION}-%{RELEASE} --", &[v])],
        }),
        ("puppet::disable/2", "puppet::disable(h, v)", |_, v| {
            vec![vec![
                Slot::Fixed("puppet".into()),
                Slot::Fixed("agent".into()),
                Slot::Embedded(format!("--disable={v}")),
            ]]
        }),
        ("puppet::enable/1", "puppet::enable(h)", |_, _| {
            vec![f("puppet agent --enable")]
        }),
        ("puppet::run/1", "puppet::run(h)", |_, _| {
            vec![f("puppet agent --test"), f("[ $? -eq 2 ]")]
        }),
        ("puppet::apply/2", "puppet::apply(h, v)", |_, v| {
            vec![
                cmd("puppet apply --detailed-exitcodes --", &[v]),
                f("[ $? -eq 2 ]"),
            ]
        }),
        ("puppet::is_disabled/1", "puppet::is_disabled(h)", |_, _| {
            vec![vec![
                Slot::Fixed("test".into()),
                Slot::Fixed("-e".into()),
                Slot::Fixed("$(puppet config print agent_disabled_lockfile)".into()),
            ]]
        }),
        ("service::restart/2", "service::restart(h, v)", |_, v| {
            vec![cmd("systemctl restart --", &[v])]
        }),
        ("service::stop/2", "service::stop(h, v)", |_, v| {
            vec![cmd("systemctl stop --", &[v])]
        }),
        ("service::start/2", "service::start(h, v)", |_, v| {
            vec![cmd("systemctl start --", &[v])]
        }),
        ("service::reload/2", "service::reload(h, v)", |_, v| {
            vec![cmd("systemctl reload --", &[v])]
        }),
        (
            "service::is_active/2",
            "service::is_active(h, v)",
            |_, v| vec![cmd("systemctl is-active --quiet --", &[v])],
        ),
        ("service::main_pid/2", "service::main_pid(h, v)", |_, v| {
            vec![cmd("systemctl show -p MainPID --value --", &[v])]
        }),
        ("file::read/2", "file::read(h, v)", |_, v| {
            vec![cmd("cat --", &[v])]
        }),
        // POSIX test with two arguments: the first is the operator, the second its operand,
        // whatever it looks like, so no `--` is needed (or understood).
        ("file::exists/2", "file::exists(h, v)", |_, v| {
            vec![cmd("test -e", &[v])]
        }),
        ("http::ok/2", "http::ok(h, v)", |_, v| {
            vec![cmd(
                "curl -fsS -o /dev/null --max-time 10 --globoff --proto =http,https,file --",
                &[v],
            )]
        }),
        // Not a host operation: its result is one word that the runbook puts in a command.
        ("sh::quote/1", "h.run(`echo ${sh::quote(v)}`)", |_, v| {
            vec![vec![Slot::Fixed("echo".into()), Slot::Embedded(v.into())]]
        }),
    ]
}

fn host(m: Manager, become_: bool, rec: Arc<Recorder>) -> Host {
    let mut vars = litemap::LiteMap::new();
    let mgr = match m {
        Manager::Apt => "apt",
        Manager::Dnf => "dnf",
    };
    vars.insert("pkg_manager".to_string(), mgr.to_string());
    vars.insert("ansible_become".to_string(), become_.to_string());
    let info = HostInfo {
        name: "web1".into(),
        roles: vec!["web".into()],
        vars,
        ..HostInfo::default()
    };
    Host::new(Arc::new(info), rec)
}

fn engine() -> Engine {
    let mut engine = Engine::new();
    crate::register(&mut engine);
    engine
}

/// Runs one case with value `v`: the commands it ran, or the error when it refused `v`.
fn run(
    engine: &Engine,
    (call, ast): (&str, &AST),
    m: Manager,
    become_: bool,
    v: &str,
) -> Result<Vec<String>, String> {
    let restore = call.starts_with("pkg::restore");
    let rec = Arc::new(Recorder::default());
    let h = host(m, become_, rec.clone());
    // What pkg::restore puts back (a real run learns it from pkg::install or pkg::upgrade).
    // Only for restore: install and upgrade skip their version query for a known fact.
    if restore {
        h.seed_fact(&format!("previous_version:{v}"), "1.0".into());
    }
    let mut scope = Scope::new();
    scope.push("h", h);
    scope.push("v", v.to_string());
    let result = engine.eval_ast_with_scope::<rhai::Dynamic>(&mut scope, ast);
    let recorded = rec.0.lock().unwrap().clone();
    match result {
        Ok(_) => Ok(recorded),
        Err(e) if recorded.is_empty() => Err(e.to_string()),
        Err(e) => panic!("{v:?}: failed after running {recorded:?}: {e}"),
    }
}

fn check(
    engine: &Engine,
    asts: &[(&str, &str, Expect, AST)],
    v: &str,
) -> Result<(), TestCaseError> {
    for (key, call, expect, ast) in asts {
        let op = key.split('/').next().unwrap();
        for m in [Manager::Apt, Manager::Dnf] {
            for become_ in [false, true] {
                let recorded = match run(engine, (call, ast), m, become_, v) {
                    Ok(r) => r,
                    Err(e) => {
                        // A refusal names the operation and shows the value, and only
                        // package, version and service names are ever refused.
                        prop_assert!(
                            op.starts_with("pkg::") || op.starts_with("service::"),
                            "{call} refused {v:?}: {e}"
                        );
                        prop_assert!(
                            e.contains(op) && e.contains(&format!("{v:?}")),
                            "{call}: a refusal must name {op} and {v:?}: {e}"
                        );
                        continue;
                    }
                };
                let got: Vec<Vec<Word>> =
                    recorded.iter().flat_map(|c| simple_commands(c)).collect();
                let want: Vec<Vec<Slot>> = expect(m, v);
                let got_text: Vec<Vec<&str>> = got
                    .iter()
                    .map(|c| c.iter().map(|w| w.text.as_str()).collect())
                    .collect();
                let want_text: Vec<Vec<&str>> = want
                    .iter()
                    .map(|c| c.iter().map(Slot::text).collect())
                    .collect();
                prop_assert_eq!(
                    &got_text,
                    &want_text,
                    "{} ({:?}, become {}) with {:?} built {:?}",
                    call,
                    m,
                    become_,
                    v,
                    recorded
                );
                for (gc, wc) in got.iter().zip(&want) {
                    for (i, (g, w)) in gc.iter().zip(wc).enumerate() {
                        if matches!(w, Slot::Fixed(_)) {
                            continue;
                        }
                        let t = w.text();
                        prop_assert!(
                            !g.expands,
                            "{call}: {t:?} is expanded by the shell: {recorded:?}"
                        );
                        // An operand that could be an option comes after `--` (dnf 5 has none:
                        // there no package name may start with `-`), or is the operand of
                        // `test -e`.
                        let after_dashes = gc[..i].iter().any(|w| w.text == "--");
                        let test_operand = gc.len() == 3 && gc[0].text == "test" && i == 2;
                        prop_assert!(
                            !matches!(w, Slot::User(_))
                                || !t.starts_with('-')
                                || after_dashes
                                || test_operand,
                            "{call}: {t:?} could be read as an option: {recorded:?}"
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

fn compiled(engine: &Engine) -> Vec<(&'static str, &'static str, Expect, AST)> {
    cases()
        .into_iter()
        .map(|(k, c, e)| (k, c, e, engine.compile(c).expect("case compiles")))
        .collect()
}

fn config(cases: u32) -> Config {
    Config {
        source_file: Some(file!()),
        ..Config::with_cases(cases)
    }
}

fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        "[-a-zA-Z0-9 '\"$()`*?\\[\\]{};&|<>#~!=.,:/@%+\\\\\n\t\r]{0,16}",
        "-{1,2}[a-zA-Z][-a-zA-Z=/]{0,10}",
        "[a-z0-9][a-z0-9.+:-]{0,12}",
        "\\PC{0,10}",
        Just("-K/file".to_string()),
        Just("--user".to_string()),
        Just("$(touch /tmp/pwned)".to_string()),
        Just("`id`".to_string()),
        Just("*".to_string()),
        Just("a b".to_string()),
        Just("it's".to_string()),
        Just("x\ny".to_string()),
        Just("é漢字".to_string()),
        Just(String::new()),
    ]
}

// Issue 10 #6: `http::ok(h, "-K/file")` made curl read a config file, `service::restart(h,
// "--user")` passed an option to systemctl.
#[test]
fn user_values_reached_programs_as_options() {
    let engine = engine();
    let asts = compiled(&engine);
    let mut runner = TestRunner::new(config(200));
    runner
        .run(&hostile(), |v| check(&engine, &asts, &v))
        .unwrap();
}

// Issue 10 #6: the two values from the issue, checked exactly.
#[test]
fn curl_config_and_systemctl_option_were_read_from_values() {
    let engine = engine();
    let run_one = |call: &str, v: &str| {
        let ast = engine.compile(call).unwrap();
        run(&engine, (call, &ast), Manager::Apt, false, v).unwrap()
    };
    assert_eq!(
        run_one("http::ok(h, v)", "-K/file"),
        ["curl -fsS -o /dev/null --max-time 10 --globoff --proto =http,https,file -- '-K/file'"]
    );
    assert_eq!(
        run_one("service::restart(h, v)", "--user"),
        ["systemctl restart -- '--user'"]
    );
    assert_eq!(
        run_one("puppet::disable(h, v)", "--noop"),
        ["puppet agent --disable='--noop'"]
    );
}

// Issue 10 #6: names that apt-get or systemctl would read as several packages or units.
#[test]
fn patterns_were_taken_as_package_and_unit_names() {
    let engine = engine();
    for (call, v) in [
        ("pkg::remove(h, v)", "~i"),
        ("pkg::remove(h, v)", "nginx+"),
        ("pkg::install(h, v)", "nginx-"),
        ("pkg::install(h, v)", "./evil.deb"),
        ("pkg::upgrade(h, [v])", "-y"),
        ("pkg::install(h, \"nginx\", v)", "1.*"),
        ("service::restart(h, v)", "*"),
        ("service::stop(h, v)", "ssh[d]"),
    ] {
        let ast = engine.compile(call).unwrap();
        let err = run(&engine, (call, &ast), Manager::Apt, false, v).unwrap_err();
        let op = call.split('(').next().unwrap();
        assert!(
            err.contains(&format!("{op}: refused")) && err.contains(&format!("{v:?}")),
            "{call} with {v:?}: {err}"
        );
        // Where in the script: Rhai leaves errors of namespaced calls without a position.
        assert!(err.contains("(line 1, position "), "{call}: {err}");
    }
}

// Package, unit and file names as they really are are never refused.
#[test]
fn ordinary_names_are_accepted() {
    let engine = engine();
    let asts = compiled(&engine);
    let mut runner = TestRunner::new(config(64));
    let names = "[a-z0-9][a-z0-9.+]{0,10}[a-z0-9](:[a-z0-9]{1,6})?";
    runner
        .run(&names, |v| {
            for (key, call, _, ast) in &asts {
                for m in [Manager::Apt, Manager::Dnf] {
                    let r = run(&engine, (call, ast), m, true, &v);
                    prop_assert!(r.is_ok(), "{key}: {call} refused {v:?}: {r:?}");
                }
            }
            Ok(())
        })
        .unwrap();
}

// Every function in the stdlib namespaces has a case above, so a new operation cannot skip
// this test.
#[test]
fn every_operation_has_a_case() {
    let mut keys: BTreeSet<&str> = cases().iter().map(|(k, _, _)| *k).collect();
    // Their remote path is never an argument: it is assigned to a variable (`r=PATH`) and
    // used quoted, after `--`. files.rs sends a hostile path through a real shell.
    keys.extend(["file::copy/3", "file::copy/4", "file::put/3", "file::put/4"]);
    for (ns, module) in [
        ("pkg::", crate::pkg::module()),
        ("puppet::", crate::puppet::module()),
        ("service::", crate::service::module()),
        ("file::", crate::files::file_module()),
        ("http::", crate::files::http_module()),
        ("sh::", crate::sh_module()),
    ] {
        let covered = keys.iter().filter(|k| k.starts_with(ns)).count();
        assert_eq!(
            module.count().1,
            covered,
            "functions in {ns} without a case"
        );
    }
}

#[test]
fn the_splitter_splits_as_sh_does() {
    let script =
        "a 'b c' \"d $x\" e\\ f 2>/dev/null || g>&2; h | i && sudo -n -- sh -c 'j '\\''k'\\'''";
    let texts: Vec<Vec<String>> = simple_commands(script)
        .iter()
        .map(|c| c.iter().map(|w| w.text.clone()).collect())
        .collect();
    assert_eq!(
        texts,
        [
            vec!["a", "b c", "d $x", "e f"],
            vec!["g"],
            vec!["h"],
            vec!["i"],
            vec!["j", "k"],
        ]
    );
    assert!(split("echo $(id)")[0][1].expands);
    assert!(split("echo *")[0][1].expands);
    assert!(!split("echo '*'")[0][1].expands);
    assert_eq!(split("echo a#b #c").len(), 1);
    assert_eq!(split("echo a#b #c")[0].len(), 2);
}
