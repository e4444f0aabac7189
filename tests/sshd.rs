//! A fleet of real `sshd` processes on loopback for the SSH tests: one per host, each on
//! its own 127.p.x.y address (`p` from the test process, so that fleets of test runs that
//! run at once on one machine do not meet) with its own host key, key-only root login with a generated
//! client key, a known_hosts that pins every host key, and an ssh config that uses them.
//! Every sshd is killed when the fleet is dropped, even when a test fails.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static NEXT_ADDRESS: AtomicU32 = AtomicU32::new(0);
const PORT: u16 = 22022;

pub struct SshHost {
    pub name: String,
    pub addr: String,
    /// A directory for this host's side of the story (logs the test runbooks write).
    pub dir: PathBuf,
    config: PathBuf,
    child: Option<Child>,
}

pub struct Fleet {
    pub dir: tempfile::TempDir,
    pub hosts: Vec<SshHost>,
    pub ssh_config: PathBuf,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("command runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sshd_path() -> &'static str {
    for p in ["/usr/sbin/sshd", "/usr/bin/sshd"] {
        if Path::new(p).exists() {
            return p;
        }
    }
    panic!(
        "the SSH tests need sshd: run ./test.sh as root (it installs it), or \
         `apt-get install openssh-server`"
    );
}

impl Fleet {
    /// Starts one sshd per name.
    pub fn start(names: &[&str]) -> Fleet {
        Fleet::start_logging(names, "ERROR")
    }

    /// Starts one sshd per name, each logging at `level` (VERBOSE: every connection,
    /// DEBUG1: the key exchange too) to `sshd.log` in its host's directory.
    pub fn start_logging(names: &[&str], level: &str) -> Fleet {
        crate::support::keep_no_connections();
        // SAFETY: geteuid has no preconditions.
        assert!(
            unsafe { libc::geteuid() } == 0,
            "the SSH tests start sshd and log in as root over loopback: run them as root \
             (sudo ./test.sh)"
        );
        let dir = tempfile::Builder::new()
            .prefix("fbssh")
            .tempdir_in("/tmp")
            .expect("tempdir");
        if let Err(e) = std::fs::create_dir_all("/run/sshd") {
            panic!(
                "the SSH tests need /run/sshd (sshd's privilege-separation directory): {e}; \
                 run ./test.sh as root, or `mkdir -p /run/sshd` as root"
            );
        }
        let client_key = dir.path().join("client_key");
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", ""])
            .arg("-f")
            .arg(&client_key));
        std::fs::copy(
            dir.path().join("client_key.pub"),
            dir.path().join("authorized_keys"),
        )
        .expect("authorized_keys");
        let mut known_hosts = String::new();
        let mut hosts = Vec::new();
        for name in names {
            let n = NEXT_ADDRESS.fetch_add(1, Ordering::SeqCst);
            let p = 1 + std::process::id() % 200;
            let addr = format!("127.{p}.{}.{}", 1 + n / 200, 10 + n % 200);
            let hdir = dir.path().join(name);
            std::fs::create_dir_all(&hdir).expect("host dir");
            let key = hdir.join("host_key");
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", ""])
                .arg("-f")
                .arg(&key));
            let pubkey = std::fs::read_to_string(hdir.join("host_key.pub")).expect("host pubkey");
            known_hosts.push_str(&format!("[{addr}]:{PORT} {}", pubkey));
            let config = hdir.join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "Port {PORT}\nListenAddress {addr}\nHostKey {}\nAuthorizedKeysFile {}\nPasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nUsePAM no\nStrictModes no\n\
                     PermitRootLogin yes\nPidFile {}\nLogLevel {level}\nMaxSessions 10\nSetEnv SHLVL=1\n",
                    key.display(),
                    dir.path().join("authorized_keys").display(),
                    hdir.join("sshd.pid").display()
                ),
            )
            .expect("sshd_config");
            hosts.push(SshHost {
                name: name.to_string(),
                addr,
                dir: hdir,
                config,
                child: None,
            });
        }
        std::fs::write(dir.path().join("known_hosts"), known_hosts).expect("known_hosts");
        let ssh_config = dir.path().join("ssh_config");
        std::fs::write(
            &ssh_config,
            format!(
                "Host *\n  User root\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  \
                 GlobalKnownHostsFile /dev/null\n  KexAlgorithms curve25519-sha256\n  LogLevel ERROR\n  BatchMode yes\n",
                client_key.display(),
                dir.path().join("known_hosts").display()
            ),
        )
        .expect("ssh_config");
        let mut fleet = Fleet {
            dir,
            hosts,
            ssh_config,
        };
        for i in 0..fleet.hosts.len() {
            fleet.start_host(i);
        }
        fleet
    }

    pub fn start_host(&mut self, i: usize) {
        let h = &mut self.hosts[i];
        let child = Command::new(sshd_path())
            .args(["-D", "-f"])
            .arg(&h.config)
            .arg("-E")
            .arg(h.dir.join("sshd.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sshd starts");
        h.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect((h.addr.as_str(), PORT)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd on {} did not come up",
                h.addr
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop_host(&mut self, i: usize) {
        if let Some(mut c) = self.hosts[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn host(&self, name: &str) -> &SshHost {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .expect("host exists")
    }

    /// An INI inventory: `groups` maps a group to its host names; every host gets its
    /// address, port and `dir` variable, and its lease in `dir` (the loopback hosts share one
    /// filesystem, so one `/run/lock` lease would make them one host).
    pub fn inventory(&self, groups: &[(&str, &[&str])], extra_vars: &str) -> PathBuf {
        let mut s = String::new();
        for (g, names) in groups {
            s.push_str(&format!("[{g}]\n"));
            for n in *names {
                let h = self.host(n);
                s.push_str(&format!(
                    "{n} ansible_host={} ansible_port={PORT} dir={} fleetbook_lease_dir={}\n",
                    h.addr,
                    h.dir.display(),
                    h.dir.display()
                ));
            }
        }
        s.push_str(extra_vars);
        let path = self.dir.path().join("hosts");
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(s.as_bytes()))
            .expect("inventory");
        path
    }

    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).expect("write file");
        p
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for i in 0..self.hosts.len() {
            self.stop_host(i);
        }
    }
}

/// (start, end) of each `start`/`end` pair a host logged, in seconds.
pub fn intervals(log: &Path) -> Vec<(f64, f64)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut out = Vec::new();
    let mut open: Option<f64> = None;
    for line in text.lines() {
        let mut w = line.split_whitespace();
        let (Some(t), Some(kind)) = (w.next().and_then(|t| t.parse::<f64>().ok()), w.next()) else {
            continue;
        };
        match kind {
            "start" => open = Some(t),
            "end" => {
                if let Some(s) = open.take() {
                    out.push((s, t));
                }
            }
            _ => {}
        }
    }
    out
}

/// The most intervals that overlap at one instant.
pub fn max_overlap(spans: &[(f64, f64)]) -> usize {
    let mut ev: Vec<(f64, i32)> = Vec::new();
    for &(s, e) in spans {
        ev.push((s, 1));
        ev.push((e, -1));
    }
    ev.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let (mut cur, mut max) = (0, 0);
    for (_, d) in ev {
        cur += d;
        max = max.max(cur);
    }
    max as usize
}
