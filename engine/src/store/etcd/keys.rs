//! The key layout under the store's prefix — stable, documented in docs/etcd.md, so other
//! tools can read it. Every value is a JSON object.
//!
//! | key                                   | value                                       |
//! |---------------------------------------|---------------------------------------------|
//! | `P/runs/RUN`                          | the run: runbook, inventory, params, state   |
//! | `P/hosts/RUN/HOST`                    | roles, state, last task, running version     |
//! | `P/tasks/RUN/TASK`                    | one task: state, attempt, times, message     |
//! | `P/facts/RUN/HOST/NAME`               | `{"value": ...}` (redacted)                  |
//! | `P/approvals/RUN/GATE`                | who approved, when                           |
//! | `P/aborts/RUN`                        | `{"stop": bool, "now": bool}`                |
//! | `P/locks/FLEET`                       | the fleet lock (under the holder's lease)    |
//! | `P/controllers/RUN/LEASE`             | a controller working on the run (leased)     |
//! | `P/claims/RUN/HOST`                   | the controller working on a host (leased)   |
//! | `P/done/RUN/HOST`                     | `{"ok": bool}`: a host finished              |
//! | `P/slots/RUN/LIMIT/N`                 | a held slot of a limit or `step:STEP` (leased) |
//! | `P/plans/RUN`                         | the run's plan, as `plan --format json` (redacted) |
//! | `P/commands/RUN/ULID`                 | one command a task ran: exit, duration, output tail |
//!
//! Run ids hold no `/`; the task, host, gate and fleet come last, so they may.

pub struct Keys {
    /// `/PREFIX`, without a trailing slash.
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: format!("/{}", prefix.trim_matches('/')),
        }
    }

    /// `P/KIND/` — every key of a kind.
    pub fn all(&self, kind: &str) -> String {
        format!("{}/{kind}/", self.prefix)
    }

    /// `P/KIND/RUN/` — every key of a kind for one run.
    pub fn of_run(&self, kind: &str, run: &str) -> String {
        format!("{}/{kind}/{run}/", self.prefix)
    }

    pub fn run(&self, run: &str) -> String {
        format!("{}/runs/{run}", self.prefix)
    }

    pub fn host(&self, run: &str, host: &str) -> String {
        format!("{}{host}", self.of_run("hosts", run))
    }

    pub fn task(&self, run: &str, task: &str) -> String {
        format!("{}{task}", self.of_run("tasks", run))
    }

    pub fn fact(&self, run: &str, host: &str, name: &str) -> String {
        format!("{}{host}/{name}", self.of_run("facts", run))
    }

    pub fn approval(&self, run: &str, gate: &str) -> String {
        format!("{}{gate}", self.of_run("approvals", run))
    }

    pub fn abort(&self, run: &str) -> String {
        format!("{}/aborts/{run}", self.prefix)
    }

    pub fn lock(&self, fleet: &str) -> String {
        format!("{}{fleet}", self.all("locks"))
    }

    pub fn controller(&self, run: &str, lease: i64) -> String {
        format!("{}{lease:016x}", self.of_run("controllers", run))
    }

    pub fn claim(&self, run: &str, host: &str) -> String {
        format!("{}{host}", self.of_run("claims", run))
    }

    pub fn plan(&self, run: &str) -> String {
        format!("{}/plans/{run}", self.prefix)
    }

    /// A command's key: a ULID, so keys sort in the order commands were kept.
    pub fn command(&self, run: &str) -> String {
        format!("{}{}", self.of_run("commands", run), ulid::Ulid::new())
    }

    pub fn done(&self, run: &str, host: &str) -> String {
        format!("{}{host}", self.of_run("done", run))
    }

    pub fn slot(&self, run: &str, limit: &str, n: usize) -> String {
        format!("{}{limit}/{n}", self.of_run("slots", run))
    }

    /// What follows `start` in `key` (a key read back from a prefix range).
    pub fn tail<'a>(key: &'a [u8], start: &str) -> &'a str {
        std::str::from_utf8(key)
            .ok()
            .and_then(|k| k.strip_prefix(start))
            .unwrap_or("")
    }
}

/// `etcd://HOST:PORT[,HOST:PORT...]/PREFIX` as endpoints and prefix.
pub fn parse_url(url: &str) -> crate::Result<(Vec<String>, String)> {
    let bad = |why: &str| {
        crate::Error::input_with_help(
            format!("--state {url}: {why}"),
            "an etcd store is etcd://HOST:PORT[,HOST:PORT...]/PREFIX, e.g. etcd://10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379/fleetbook",
        )
    };
    let rest = url
        .strip_prefix(crate::store::ETCD_SCHEME)
        .ok_or_else(|| bad("not an etcd:// address"))?;
    let (hosts, prefix) = rest.split_once('/').ok_or_else(|| bad("no /PREFIX"))?;
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        return Err(bad("the /PREFIX is empty"));
    }
    if prefix.contains(char::is_whitespace) {
        return Err(bad("the /PREFIX has white space"));
    }
    let endpoints: Vec<String> = hosts.split(',').map(str::to_string).collect();
    for e in &endpoints {
        let port = e.rsplit_once(':').map(|(h, p)| (h, p.parse::<u16>()));
        if !matches!(port, Some((h, Ok(_))) if !h.is_empty()) {
            return Err(bad(&format!("{e:?} is not HOST:PORT")));
        }
    }
    Ok((endpoints, prefix.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_endpoints_and_a_prefix() {
        let (e, p) = parse_url("etcd://10.0.0.1:2379,[::1]:2380/team/fleet/").unwrap();
        assert_eq!(e, ["10.0.0.1:2379", "[::1]:2380"]);
        assert_eq!(p, "team/fleet");
        for bad in [
            "etcd://h:2379",
            "etcd://h:2379/",
            "etcd://h/x",
            "etcd://:1/x",
            "etcd://h:99999/x",
            "etcd://h:1,/x",
        ] {
            let e = parse_url(bad).err().unwrap().to_string();
            assert!(e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn keys_follow_the_documented_layout() {
        let k = Keys::new("/fb/");
        assert_eq!(k.run("r1"), "/fb/runs/r1");
        assert_eq!(k.task("r1", "host:w1:s"), "/fb/tasks/r1/host:w1:s");
        assert_eq!(k.fact("r1", "w1", "v"), "/fb/facts/r1/w1/v");
        assert_eq!(k.lock("inventory:/a/b"), "/fb/locks/inventory:/a/b");
        assert_eq!(
            k.controller("r1", 255),
            "/fb/controllers/r1/00000000000000ff"
        );
        assert_eq!(k.slot("r1", "role:web", 2), "/fb/slots/r1/role:web/2");
        assert_eq!(Keys::tail(b"/fb/locks/x/y", &k.all("locks")), "x/y");
    }
}
