//! Real etcd processes for tests (the engine's and the integration tests'): a single node or
//! a cluster of several, on free loopback ports, in a temporary data directory, killed when
//! dropped. Needs the `etcd` binary (Debian `etcd-server`).
//!
//! Ports are picked at run time, so another etcd (another test, another helper) could take
//! one between the pick and the start; a client pointed at it would talk to that etcd with
//! no error. So every member is named uniquely and the harness checks, on each endpoint, that
//! the cluster there is made of exactly its members, and that they agree on the cluster id.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Member {
    pub name: String,
    pub endpoint: String,
    child: Child,
}

pub struct Etcd {
    pub members: Vec<Member>,
    pub cluster_id: u64,
    /// The data directories and logs (`NAME.log`).
    pub dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on the pid of a child this harness started and has not reaped.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

impl Etcd {
    /// One member.
    pub fn single() -> Etcd {
        Etcd::cluster(1)
    }

    /// `n` members, each its own process. Tries again on other ports if one was taken.
    pub fn cluster(n: usize) -> Etcd {
        let mut last = String::new();
        for _ in 0..3 {
            match Etcd::try_start(n) {
                Ok(e) => return e,
                Err(e) => last = e,
            }
        }
        panic!("cannot start an etcd cluster of {n}: {last}");
    }

    fn try_start(n: usize) -> Result<Etcd, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let tag = format!(
            "fb{}x{}",
            std::process::id(),
            dir.path().file_name().unwrap_or_default().to_string_lossy()
        )
        .replace(['.', '_'], "");
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let names: Vec<String> = (0..n).map(|i| format!("{tag}m{i}")).collect();
        let initial: Vec<String> = names
            .iter()
            .zip(&ports)
            .map(|(name, (_, peer))| format!("{name}=http://127.0.0.1:{peer}"))
            .collect();
        let mut members = Vec::new();
        for (name, (client, peer)) in names.iter().zip(&ports) {
            let log = std::fs::File::create(dir.path().join(format!("{name}.log")))
                .map_err(|e| e.to_string())?;
            let child = Command::new("etcd")
                .args(["--name", name])
                .arg("--data-dir")
                .arg(dir.path().join(name))
                .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
                .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
                .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
                .arg(format!(
                    "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
                ))
                .arg(format!("--initial-cluster={}", initial.join(",")))
                .arg(format!("--initial-cluster-token={tag}"))
                .args(["--initial-cluster-state", "new"])
                .stdin(Stdio::null())
                .stdout(log.try_clone().map_err(|e| e.to_string())?)
                .stderr(log)
                .spawn()
                .map_err(|e| format!("cannot start etcd (Debian package etcd-server): {e}"))?;
            members.push(Member {
                name: name.clone(),
                endpoint: format!("127.0.0.1:{client}"),
                child,
            });
        }
        let mut etcd = Etcd {
            members,
            cluster_id: 0,
            dir,
        };
        etcd.cluster_id = etcd.check(&names)?;
        Ok(etcd)
    }

    /// Waits until every endpoint answers with exactly these members; the cluster id.
    fn check(&mut self, names: &[String]) -> Result<u64, String> {
        let mut want = names.to_vec();
        want.sort();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut ids = Vec::new();
        for m in &mut self.members {
            loop {
                if let Ok(Some(status)) = m.child.try_wait() {
                    return Err(format!("etcd {} exited: {status}", m.name));
                }
                match super::members(&m.endpoint) {
                    Ok((id, mut got)) => {
                        got.sort();
                        if got != want {
                            return Err(format!(
                                "{} answers for another cluster ({got:?})",
                                m.endpoint
                            ));
                        }
                        ids.push(id);
                        break;
                    }
                    Err(e) if Instant::now() > deadline => {
                        return Err(format!("{} never answered: {e}", m.endpoint))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        }
        ids.dedup();
        match ids.as_slice() {
            [id] => Ok(*id),
            _ => Err(format!("the members disagree on the cluster id: {ids:?}")),
        }
    }

    /// `etcd://EP1,EP2.../PREFIX` for `--state`.
    pub fn url(&self, prefix: &str) -> String {
        let eps: Vec<&str> = self.members.iter().map(|m| m.endpoint.as_str()).collect();
        format!("etcd://{}/{prefix}", eps.join(","))
    }

    /// Pauses member `i` (SIGSTOP): it holds its connections and answers nothing.
    pub fn pause(&self, i: usize) {
        signal(&self.members[i].child, libc::SIGSTOP);
    }

    pub fn resume(&self, i: usize) {
        signal(&self.members[i].child, libc::SIGCONT);
    }

    /// Stops member `i` for good (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        let _ = self.members[i].child.kill();
        let _ = self.members[i].child.wait();
    }

    pub fn pid(&self, i: usize) -> u32 {
        self.members[i].child.id()
    }

    /// What member `i` logged, for a failing test's message.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(
            self.dir
                .path()
                .join(format!("{}.log", self.members[i].name)),
        )
        .unwrap_or_default()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for m in &mut self.members {
            signal(&m.child, libc::SIGCONT);
            let _ = m.child.kill();
            let _ = m.child.wait();
        }
    }
}
