//! The `Host` value a step closure receives (`|h| ...`), and its methods.

use crate::quote::quote_into;
use crate::transport::{HostInfo, Output, Transport, TransportError};
use crate::{duration::parse_duration, runtime_error};
use rhai::{Array, Dynamic, Engine, EvalAltResult, FnPtr, Map, NativeCallContext};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// Told (host, name, value) of every fact as it is set, before `set_fact` returns: a run's
/// journal keeps facts that a controller killed mid-step would otherwise lose.
pub type FactSink = Arc<dyn Fn(&str, &str, &str) + Send + Sync>;

/// A host as seen by a runbook closure. Cheap to clone; clones share the fact cache.
#[derive(Clone)]
pub struct Host {
    pub info: Arc<HostInfo>,
    /// What every clone of this host shares. One counter per host: a clone (each closure
    /// call takes one) touches no counter that the threads running other hosts touch too,
    /// as the transport's and the runbook directory's own would be.
    shared: Arc<Common>,
    /// When the step being run must end; every command gets the time that is left, so the
    /// transport can enforce it on the host too.
    pub deadline: Option<Instant>,
    /// The step's timeout, for messages: a command gets only what is left of it.
    pub timeout: Option<Duration>,
}

struct Common {
    /// `h.name` as Rhai holds it, made once: a step that reads the name (to build a
    /// command) then gets a shared string, not two allocations per read.
    name: rhai::ImmutableString,
    transport: Arc<dyn Transport>,
    /// Facts learned during the run (the detected package manager, the version a package
    /// had before `pkg::` changed it, `h.set_fact`).
    facts: Mutex<Facts>,
    /// The runbook's directory, against which `file::copy` reads relative paths; shared by
    /// every host of a run and set once when the run binds its hosts.
    runbook_dir: Arc<OnceLock<PathBuf>>,
}

impl Host {
    pub fn new(info: Arc<HostInfo>, transport: Arc<dyn Transport>) -> Self {
        Host::sharing_dir(info, transport, Arc::default())
    }

    /// A host that shares `dir` (the runbook's directory, once known) with other hosts.
    pub fn sharing_dir(
        info: Arc<HostInfo>,
        transport: Arc<dyn Transport>,
        dir: Arc<OnceLock<PathBuf>>,
    ) -> Self {
        Host {
            shared: Arc::new(Common {
                name: info.name.as_str().into(),
                transport,
                facts: Mutex::default(),
                runbook_dir: dir,
            }),
            info,
            deadline: None,
            timeout: None,
        }
    }

    /// Sets the runbook's directory for this host and every host sharing it (first call wins).
    pub fn set_runbook_dir(&self, dir: PathBuf) {
        let _ = self.shared.runbook_dir.set(dir);
    }

    pub fn runbook_dir(&self) -> Option<&Path> {
        self.shared.runbook_dir.get().map(PathBuf::as_path)
    }

    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.shared.transport
    }

    /// What is left of the step's time, or the timeout error when nothing is.
    pub fn time_left(&self, command: &str) -> RhaiResult<Option<Duration>> {
        match self.deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    let e = TransportError::TimedOut {
                        after: Duration::ZERO,
                        killed: false,
                    };
                    return Err(transport_error(&self.label(), command, e));
                }
                Ok(Some(left))
            }
            None => Ok(None),
        }
    }

    /// A host value whose commands run on `other` (its connection, its become settings and
    /// its facts), within this host's step time, recorded under this host's task.
    pub fn delegate_to(&self, other: &Host) -> Host {
        let mut info = (*other.info).clone();
        info.delegate_for = Some(
            self.info
                .delegate_for
                .clone()
                .unwrap_or_else(|| self.info.name.clone()),
        );
        Host {
            info: Arc::new(info),
            deadline: self.deadline,
            timeout: self.timeout,
            ..other.clone()
        }
    }

    /// The same host for a step that must end within `timeout` from now.
    pub fn with_timeout(&self, timeout: Option<Duration>) -> Self {
        Host {
            deadline: timeout.map(|t| Instant::now() + t),
            timeout,
            ..self.clone()
        }
    }

    pub fn is_dry_run(&self) -> bool {
        self.shared.transport.is_dry_run()
    }

    /// A variable as text (what commands and options use).
    pub fn var(&self, name: &str) -> Option<&str> {
        self.info.vars.get(name).map(String::as_str)
    }

    /// A variable as a Rhai value of its inventory type: INT, FLOAT, bool, string, Array for
    /// a list, Map for a map, `()` for null. A variable known only as text is a string.
    pub fn value(&self, name: &str) -> Option<Dynamic> {
        let text = || self.var(name).map(|v| Dynamic::from(v.to_string()));
        match self.info.values.get(name) {
            // A JSON value always converts; the text form is the fallback all the same.
            Some(v) => rhai::serde::to_dynamic(v).ok().or_else(text),
            None => text(),
        }
    }

    fn facts(&self) -> std::sync::MutexGuard<'_, Facts> {
        self.shared.facts.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn fact(&self, key: &str) -> Option<String> {
        self.facts().values.get(key).cloned()
    }

    /// Whether the fact is known, without a copy of its value.
    pub fn has_fact(&self, key: &str) -> bool {
        self.facts().values.contains_key(key)
    }

    pub fn fact_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.facts().values.keys().cloned().collect();
        names.sort();
        names
    }

    /// Learns a fact, and hands it to the fact sink (if any) before returning.
    pub fn set_fact(&self, key: &str, value: String) {
        let mut facts = self.facts();
        let Some(sink) = facts.sink.clone() else {
            // Nothing to tell (a dry run): the value is moved in, not copied.
            facts.values.insert(key.to_string(), value);
            return;
        };
        facts.values.insert(key.to_string(), value.clone());
        drop(facts);
        sink(&self.info.name, key, &value);
    }

    /// Where this host's facts (and its clones') go as they are learned.
    pub fn set_fact_sink(&self, sink: FactSink) {
        self.facts().sink = Some(sink);
    }

    /// Facts already known (from the journal, on resume): not new.
    pub fn seed_fact(&self, key: &str, value: String) {
        self.facts().values.insert(key.to_string(), value);
    }

    /// Runs a command and returns its output, whatever the exit code. Transport failures
    /// (unreachable, timeout) become script errors that fail the step.
    pub fn exec(&self, command: &str) -> RhaiResult<Output> {
        let left = self.time_left(command)?;
        self.shared
            .transport
            .exec(&self.info, command, left)
            .map_err(|e| self.failed_to_run(command, e))
    }

    /// A transport error as the script error that fails the step.
    pub fn failed_to_run(&self, command: &str, e: TransportError) -> Box<EvalAltResult> {
        let e = match (e, self.timeout) {
            // The command got what was left of the step; the step's timeout is what the
            // runbook said.
            (TransportError::TimedOut { killed, .. }, Some(step)) => TransportError::TimedOut {
                after: step,
                killed,
            },
            (e, _) => e,
        };
        transport_error(&self.label(), command, e)
    }

    /// Runs a command; a non-zero exit fails the step.
    pub fn run(&self, command: &str) -> RhaiResult<Output> {
        let out = self.exec(command)?;
        if out.code != 0 {
            return Err(command_failed(&self.label(), command, &out));
        }
        Ok(out)
    }

    /// Runs a command and says whether it exited 0. Only transport failures are errors.
    pub fn run_ok(&self, command: &str) -> RhaiResult<bool> {
        Ok(self.exec(command)?.code == 0)
    }

    /// The host's name in messages: `ctl1 (for web1)` for a delegated host.
    pub fn label(&self) -> String {
        match &self.info.delegate_for {
            Some(owner) => format!("{} (for {owner})", self.info.name),
            None => self.info.name.clone(),
        }
    }

    /// Whether commands that need root should be wrapped in sudo (Ansible's `become`).
    pub fn becomes(&self) -> bool {
        self.info.becomes()
    }

    /// The user `become` switches to when the inventory names one other than root
    /// (`ansible_become_user`): fleetbook does not run as root what was asked as another.
    pub fn become_user(&self) -> Option<&str> {
        self.var("ansible_become_user")
            .map(str::trim)
            .filter(|u| !u.is_empty() && *u != "root")
    }

    /// `command` under `become`: sudo to root, or to `ansible_become_user`.
    pub fn become_command(&self, command: &str) -> String {
        match self.become_user() {
            Some(user) => {
                let mut out = String::with_capacity(command.len() + user.len() + 32);
                out.push_str("sudo -n -u ");
                quote_into(&mut out, user);
                out.push_str(" -- sh -c ");
                quote_into(&mut out, command);
                out
            }
            None => sudo_command(command),
        }
    }

    /// Tells a plan that `op`'s answer on this host is `assumption`, not something known.
    pub fn assumed(&self, op: &str, assumption: &str) {
        self.shared.transport.assumed(&self.info, op, assumption);
    }

    /// `command` of the root operation `op` (`service::restart`), wrapped in non-interactive
    /// sudo when the host becomes root; otherwise the transport is told (plans warn), unless
    /// the host logs in as root.
    pub fn privileged(&self, op: &str, command: &str) -> String {
        if self.becomes() {
            return self.become_command(command);
        }
        if !self.info.logs_in_as_root() {
            self.shared.transport.without_root(&self.info, op, command);
        }
        command.to_string()
    }
}

/// `sudo -n`: never prompt; a host that needs a password fails with sudo's own message.
pub fn sudo_command(command: &str) -> String {
    let mut out = String::with_capacity(command.len() + 24);
    out.push_str("sudo -n -- sh -c ");
    quote_into(&mut out, command);
    out
}

/// Whether `command` is one that `sudo_command` or `Host::become_command` made: it runs
/// under sudo, as root or as the become user (a transport that kills it must signal through
/// sudo too).
pub fn runs_under_sudo(command: &str) -> bool {
    command.starts_with("sudo -n ")
}

/// `text` without one trailing newline (`\n` or `\r\n`), as Ansible gives `stdout`: a value
/// read from a command's output (`uname -r`) must not carry the newline into a fact or into
/// the next command built from it.
pub fn strip_newline(text: &str) -> &str {
    text.strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text)
}

/// What `h.run(...)` returns: `stdout` and `stderr` without one trailing newline, and the
/// exact text as `stdout_raw` and `stderr_raw`.
fn output_map(out: Output) -> Map {
    let mut m = Map::new();
    m.insert("code".into(), Dynamic::from_int(out.code as rhai::INT));
    let (stdout, stdout_raw) = stripped_and_raw(out.stdout);
    let (stderr, stderr_raw) = stripped_and_raw(out.stderr);
    m.insert("stdout".into(), stdout);
    m.insert("stderr".into(), stderr);
    m.insert("stdout_raw".into(), stdout_raw);
    m.insert("stderr_raw".into(), stderr_raw);
    m
}

/// A stream's text without one trailing newline, and as it is: one shared string when the
/// two are the same (no newline, or empty as every dry-run command's output is).
fn stripped_and_raw(raw: String) -> (Dynamic, Dynamic) {
    if strip_newline(&raw).len() == raw.len() {
        let text = rhai::ImmutableString::from(raw);
        (text.clone().into(), text.into())
    } else {
        (strip_newline(&raw).into(), raw.into())
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.trim_end().lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

pub(crate) fn command_failed(host: &str, command: &str, out: &Output) -> Box<EvalAltResult> {
    let mut msg = format!(
        "host {host}: command exited with code {}: {command}",
        out.code
    );
    // Both streams: programs such as dpkg say why they failed on stdout.
    for (name, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let t = tail(text, 5);
        if !t.is_empty() {
            msg.push_str(&format!("\n  {name}: "));
            msg.push_str(&t.replace('\n', "\n          "));
        }
    }
    if out.stderr.contains("sudo: a password is required") {
        msg.push_str(
            "\n  hint: sudo needs a password on this host; fleetbook only uses passwordless sudo (sudo -n)",
        );
    }
    runtime_error(msg)
}

/// Transport errors carry the typed error (under `error`) so the executor can tell
/// "unreachable" or "halt the run" from "failed"; `kind` stays for scripts that look.
fn transport_error(host: &str, command: &str, e: TransportError) -> Box<EvalAltResult> {
    let kind = match e {
        TransportError::Unreachable(_) => "unreachable",
        TransportError::TimedOut { .. } => "timeout",
        TransportError::HostKeyChanged { .. } => "host_key_changed",
        TransportError::Leased { .. } => "leased",
        TransportError::Other(_) => "transport",
    };
    let mut m = Map::new();
    m.insert("kind".into(), kind.into());
    let message = match e {
        // These name the host themselves.
        TransportError::HostKeyChanged { .. } | TransportError::Leased { .. } => {
            format!("{e} (while running: {command})")
        }
        _ => format!("host {host}: {e} (while running: {command})"),
    };
    m.insert("message".into(), message.into());
    m.insert("error".into(), Dynamic::from(e));
    Box::new(EvalAltResult::ErrorRuntime(m.into(), rhai::Position::NONE))
}

/// Calls a condition closure: with the host when it takes one (`|h| ...`), else without.
/// A condition must return a bool: the text "false" or a number is an error, never true.
fn call_condition(ctx: &NativeCallContext, cond: &FnPtr, h: &Host) -> RhaiResult<bool> {
    let value = match cond.call_within_context::<Dynamic>(ctx, (h.clone(),)) {
        Err(e) if matches!(&*e, EvalAltResult::ErrorFunctionNotFound(sig, _) if sig.starts_with(cond.fn_name())) => {
            cond.call_within_context::<Dynamic>(ctx, ())
        }
        other => other,
    }?;
    value.as_bool().map_err(|_| {
        let shown = if value.is_string() {
            format!("{:?}", value.to_string())
        } else {
            value.to_string()
        };
        runtime_error(format!(
            "host {}: the wait_until condition must return true or false, but it returned {} {shown}",
            h.info.name,
            value.type_name()
        ))
    })
}

/// Polls `cond` every 2 s (or less) until it holds or `timeout` passes.
fn wait_until(ctx: NativeCallContext, h: &mut Host, cond: FnPtr, timeout: &str) -> RhaiResult<()> {
    let limit = parse_duration(timeout).map_err(runtime_error)?;
    let start = Instant::now();
    loop {
        let ok = call_condition(&ctx, &cond, h)?;
        // The recorder answers every probe with success, so one evaluation shows the commands.
        if ok || h.is_dry_run() {
            return Ok(());
        }
        let elapsed = start.elapsed();
        if elapsed >= limit {
            return Err(runtime_error(format!(
                "host {}: condition not met within {timeout}",
                h.info.name
            )));
        }
        // Sleep in short slices: a kill (Ctrl-C twice, abort --now) or the step's own
        // timeout must end the wait even when the condition runs no command.
        let until = Instant::now() + (limit - elapsed).min(Duration::from_secs(2));
        while Instant::now() < until {
            if h.transport().is_killed() {
                return Err(runtime_error(format!(
                    "host {}: killed while waiting",
                    h.info.name
                )));
            }
            if h.deadline.is_some_and(|d| Instant::now() >= d) {
                let e = TransportError::TimedOut {
                    after: Duration::ZERO,
                    killed: false,
                };
                return Err(runtime_error(format!("host {}: {e}", h.info.name)));
            }
            std::thread::sleep(Duration::from_millis(100).min(until - Instant::now()));
        }
    }
}

/// `h.delegate_to("ctl1")`: the inventory host of that name, through the runbook's
/// `host(name)` (the engine knows the inventory; its error names unknown hosts).
fn delegate_to_name(ctx: NativeCallContext, h: &mut Host, name: &str) -> RhaiResult<Host> {
    let other: Host = ctx.call_native_fn("host", (name.to_string(),))?;
    Ok(h.delegate_to(&other))
}

#[derive(Default)]
struct Facts {
    values: HashMap<String, String>,
    sink: Option<FactSink>,
}

/// `h.fact(name)`: a fact the run learned on this host. In a dry run, where nothing is
/// learned, an unknown fact shows as `<fact:NAME>` in the commands.
fn fact(h: &mut Host, name: &str) -> RhaiResult<String> {
    if let Some(v) = h.fact(name) {
        return Ok(v);
    }
    if h.is_dry_run() {
        return Ok(format!("<fact:{name}>"));
    }
    let known = h.fact_names();
    Err(runtime_error(format!(
        "host {} has no fact {name:?}{}: facts come from h.set_fact(name, value), and pkg::install/upgrade record previous_version (and previous_version:PACKAGE) before changing a package",
        h.info.name,
        if known.is_empty() {
            String::new()
        } else {
            format!(" (it has {})", known.join(", "))
        }
    )))
}

pub(crate) fn register(engine: &mut Engine) {
    engine
        .register_type_with_name::<Host>("Host")
        .register_get("name", |h: &mut Host| h.shared.name.clone())
        .register_get("roles", |h: &mut Host| -> Array {
            h.info.roles.iter().map(|r| r.clone().into()).collect()
        })
        .register_fn("var", |h: &mut Host, name: &str| -> Dynamic {
            h.value(name).unwrap_or(Dynamic::UNIT)
        })
        .register_fn(
            "var",
            |h: &mut Host, name: &str, default: Dynamic| -> Dynamic {
                h.value(name).unwrap_or(default)
            },
        )
        .register_fn("has_var", |h: &mut Host, name: &str| h.var(name).is_some())
        .register_fn("fact", fact)
        .register_fn(
            "fact",
            |h: &mut Host, name: &str, default: Dynamic| -> Dynamic {
                h.fact(name).map(Dynamic::from).unwrap_or(default)
            },
        )
        .register_fn("has_fact", |h: &mut Host, name: &str| {
            h.fact(name).is_some()
        })
        .register_fn("set_fact", |h: &mut Host, name: &str, value: Dynamic| {
            h.set_fact(name, value.to_string())
        })
        .register_fn("has_role", |h: &mut Host, role: &str| {
            h.info.roles.iter().any(|r| r == role)
        })
        .register_fn("run", |h: &mut Host, cmd: &str| -> RhaiResult<Map> {
            h.run(cmd).map(output_map)
        })
        .register_fn("run_ok", |h: &mut Host, cmd: &str| h.run_ok(cmd))
        .register_fn("sudo", |h: &mut Host, cmd: &str| -> RhaiResult<Map> {
            h.run(&sudo_command(cmd)).map(output_map)
        })
        .register_fn("sudo_ok", |h: &mut Host, cmd: &str| {
            h.run_ok(&sudo_command(cmd))
        })
        .register_fn("wait_until", wait_until)
        .register_fn(
            "reboot",
            |ctx: NativeCallContext, h: &mut Host, timeout: &str| {
                crate::located(&ctx, || crate::reboot::reboot(h, timeout))
            },
        )
        .register_fn(
            "wait_reachable",
            |ctx: NativeCallContext, h: &mut Host, timeout: &str| {
                crate::located(&ctx, || crate::reboot::wait_reachable(h, timeout))
            },
        )
        .register_fn("delegate_to", |h: &mut Host, other: Host| {
            h.delegate_to(&other)
        })
        .register_fn("delegate_to", delegate_to_name)
        .register_fn("is_dry_run", |h: &mut Host| h.is_dry_run())
        .register_fn("to_string", |h: &mut Host| format!("Host({})", h.info.name))
        .register_fn("to_debug", |h: &mut Host| format!("Host({})", h.info.name));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers every command with the same output, and records the commands.
    struct Answer(Output, Mutex<Vec<String>>);

    impl Transport for Answer {
        fn exec(
            &self,
            _: &HostInfo,
            command: &str,
            _: Option<Duration>,
        ) -> Result<Output, TransportError> {
            self.1.lock().unwrap().push(command.to_string());
            Ok(self.0.clone())
        }
    }

    fn eval(stdout: &str, stderr: &str, script: &str) -> (Host, Dynamic, Vec<String>) {
        let out = Output {
            code: 0,
            stdout: stdout.into(),
            stderr: stderr.into(),
        };
        let transport = Arc::new(Answer(out, Mutex::default()));
        let h = Host::new(Arc::new(HostInfo::default()), transport.clone());
        let mut engine = Engine::new();
        crate::register(&mut engine);
        let mut scope = rhai::Scope::new();
        scope.push("h", h.clone());
        let value = engine
            .eval_with_scope::<Dynamic>(&mut scope, script)
            .unwrap();
        let commands = transport.1.lock().unwrap().clone();
        (h, value, commands)
    }

    #[test]
    fn commands_made_to_run_under_sudo_are_recognised() {
        let (_, _, commands) = eval("", "", r#"h.sudo("id -u")"#);
        assert!(runs_under_sudo(&commands[0]), "{commands:?}");
        let mut info = HostInfo::default();
        info.vars.insert("ansible_become_user".into(), "app".into());
        let h = Host::new(
            Arc::new(info),
            Arc::new(Answer(Output::default(), Mutex::default())),
        );
        assert!(runs_under_sudo(&h.become_command("id -u")));
        assert!(!runs_under_sudo("echo sudo -n id -u"));
        assert!(!runs_under_sudo("sudo id -u"));
    }

    // Issue 10 #15: `h.set_fact("kernel", h.run("uname -r").stdout)` stored "6.1.0\n", and a
    // command built from the fact split in two.
    #[test]
    fn stdout_kept_its_trailing_newline_in_facts_and_commands() {
        let (h, _, commands) = eval(
            "6.1.0\n",
            "",
            r#"h.set_fact("kernel", h.run("uname -r").stdout); h.run(`echo ${h.fact("kernel")}`)"#,
        );
        assert_eq!(h.fact("kernel").as_deref(), Some("6.1.0"));
        assert_eq!(commands, ["uname -r", "echo 6.1.0"]);
        let (_, read, _) = eval("12.5\n", "", r#"file::read(h, "/etc/debian_version")"#);
        assert_eq!(read.into_string().unwrap(), "12.5");
    }

    // Only one newline goes (`\n` or `\r\n`); the exact text stays in stdout_raw/stderr_raw.
    #[test]
    fn one_trailing_newline_is_stripped_and_the_raw_text_kept() {
        let (_, out, _) = eval("a\n\n", "warn\r\n", r#"h.run("x")"#);
        let out = out.cast::<Map>();
        let text = |k: &str| out[k].clone().into_string().unwrap();
        assert_eq!(text("stdout"), "a\n");
        assert_eq!(text("stdout_raw"), "a\n\n");
        assert_eq!(text("stderr"), "warn");
        assert_eq!(text("stderr_raw"), "warn\r\n");
        assert_eq!(strip_newline("no newline"), "no newline");
        assert_eq!(strip_newline("\r"), "\r");
    }

    // Issue 17: `h.var("port")` was the string "8080" and `h.var("flag", "false") == "true"`
    // the only way to test a bool; values now keep the inventory's types.
    #[test]
    fn var_returns_the_inventory_type_and_the_default_only_when_unset() {
        let json: serde_json::Value = serde_json::json!({
            "port": 8080, "ratio": 0.5, "flag": true, "name": "web",
            "disks": ["a", "b"], "db": {"host": "db1", "port": 5432}, "empty": null
        });
        let mut info = HostInfo::default();
        for (k, v) in json.as_object().unwrap() {
            info.vars.insert(k.clone(), v.to_string());
            info.values.insert(k.clone(), v.clone());
        }
        info.vars.insert("text_only".into(), "t".into());
        let h = Host::new(
            Arc::new(info),
            Arc::new(Answer(Output::default(), Mutex::default())),
        );
        let mut engine = Engine::new();
        crate::register(&mut engine);
        // As the engine's script setup does: `var` is reserved in Rhai.
        #[allow(deprecated)]
        engine.on_parse_token(|token, _, _| match token {
            rhai::Token::Reserved(s) if &*s == "var" => rhai::Token::Identifier(s),
            other => other,
        });
        let mut scope = rhai::Scope::new();
        scope.push("h", h);
        let types: String = engine
            .eval_with_scope(
                &mut scope,
                r#"["port", "ratio", "flag", "name", "disks", "db", "empty", "text_only", "unset"]
                   .map(|n| type_of(h.var(n))).reduce(|a, b| a + " " + b, "")"#,
            )
            .unwrap();
        assert_eq!(
            types, " i64 f64 bool string array map () string ()",
            "INT FLOAT bool string Array Map, null as (), text as a string"
        );
        let picked: String = engine
            .eval_with_scope(
                &mut scope,
                r#"[h.var("port", 1) + 1, h.var("flag", false), h.var("disks", [])[1],
                    h.var("db").port, h.var("unset", 7)].reduce(|a, b| a + " " + b, "")"#,
            )
            .unwrap();
        assert_eq!(picked, " 8081 true b 5432 7");
    }
}
