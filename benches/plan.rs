//! Plans a generated 10,000-host, 8-step runbook (`FLEETBOOK_BENCH_HOSTS` other sizes) and
//! prints the CPU and memory planning takes, per host, then the JSON and HTML of the plan.
//! Run: `bench/plan.sh` (target: at most 20 µs of CPU and 6 KiB per host, linear in hosts).

use fleetbook_engine::inventory::Format;
use fleetbook_engine::plan::plan_text;
use std::collections::BTreeMap;
use std::time::Instant;

fn inventory(hosts: usize) -> String {
    let controllers = 50;
    let storage = 450;
    let compute = hosts - controllers - storage;
    let mut s = String::new();
    s += &format!("[controller]\nctl[0001:{controllers:04}].dc1\n");
    s += "[storage]\n";
    for i in 0..storage {
        s += &format!("st{i:04}.dc1 replication_group=rg{}\n", i % 30);
    }
    s += &format!("[compute]\ncmp[00001:{compute:05}].dc1 ansible_user=ops\n");
    s += "[compute:vars]\npkg_manager=apt\nansible_become=true\n";
    s
}

const RUNBOOK: &str = r#"
let rb = runbook("bench");
let version = param("version", "2.0");
rb.order(["controller", "storage", "compute"]);
rb.limit("*", 1);
rb.limit("compute", "5%");
rb.limit_by("replication_group", 1);
rb.max_failures("compute", "1%");
rb.once("precheck", || hosts("controller")[0].run("fm alarm-list"));
rb.step("puppet-off", |h| puppet::disable(h, `upgrade to ${version}`));
rb.step("drain", |h| h.run(`nova-manage service disable ${sh::quote(h.name)}`)).roles(["compute"]);
rb.step("update-index", |h| pkg::update_index(h)).retries(2);
rb.step("upgrade", |h| pkg::upgrade(h, ["nova-common", "nova-compute"])).timeout("15m")
  .undo(|h| pkg::install(h, "nova-common", "1.0"));
rb.step("restart", |h| service::restart(h, "nova-compute")).throttle(200);
rb.step("verify", |h| h.wait_until(|h| http::ok(h, "http://localhost:8774/"), "2m"));
rb.step("undrain", |h| h.run(`nova-manage service enable ${sh::quote(h.name)}`)).roles(["compute"]);
rb.step("puppet-on", |h| puppet::enable(h));
rb
"#;

/// The allocator of src/main.rs: the benchmark measures what `fleetbook plan` does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A line of /proc/self/status in KiB (`VmHWM`: the peak resident set, `VmRSS`: now).
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU seconds this process used so far, user and system, every thread.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes one rusage struct that we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn main() {
    let hosts = std::env::var("FLEETBOOK_BENCH_HOSTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let inv = inventory(hosts);
    let rss_before = status_kib("VmRSS:").unwrap_or(0);
    let (cpu_before, start) = (cpu_seconds(), Instant::now());
    let planned = plan_text(RUNBOOK, &inv, Format::Ini, &BTreeMap::new(), None)
        .expect("the benchmark plan compiles");
    let (cpu, planned_at) = (cpu_seconds() - cpu_before, start.elapsed());
    let peak = status_kib("VmHWM:").unwrap_or(0);
    let p = &planned.plan;
    let host_steps = p.tasks.iter().filter(|t| t.host.is_some()).count();
    println!(
        "plan: {} hosts, {} tasks ({host_steps} host steps), {} commands",
        p.hosts.len(),
        p.tasks.len(),
        p.tasks.iter().map(|t| t.commands.len()).sum::<usize>()
    );
    // Planning alone: the memory it added to the process at its peak (the inventory text
    // was made before), and the CPU of every thread (the dry run is parallel).
    let added = peak.saturating_sub(rss_before);
    println!(
        "planning: wall {:.3} s, CPU {:.3} s, peak memory added {:.1} MiB",
        planned_at.as_secs_f64(),
        cpu,
        added as f64 / 1024.0
    );
    println!(
        "per host: {:.1} µs CPU, {:.1} KiB",
        cpu * 1e6 / hosts as f64,
        added as f64 / hosts as f64
    );
    let json_start = Instant::now();
    let json = serde_json::to_string(&planned.plan).expect("serialises");
    println!(
        "JSON: {} MiB in {:.3} s",
        json.len() >> 20,
        json_start.elapsed().as_secs_f64()
    );
    // `FLEETBOOK_BENCH_JSON=path`: the plan's JSON saved there, to compare builds byte for byte.
    if let Ok(path) = std::env::var("FLEETBOOK_BENCH_JSON") {
        std::fs::write(&path, &json).expect("writes the plan's JSON");
    }
    drop(json);
    if std::env::var("FLEETBOOK_BENCH_HTML").as_deref() != Ok("0") {
        let html_start = Instant::now();
        let html = fleetbook_engine::render::html(p);
        println!(
            "html plan: {:.1} KiB in {:.3} s",
            html.len() as f64 / 1024.0,
            html_start.elapsed().as_secs_f64()
        );
    }
    match status_kib("VmHWM:") {
        Some(k) => println!(
            "peak memory of the process (VmHWM): {:.1} MiB",
            k as f64 / 1024.0
        ),
        None => println!("peak memory: unavailable (no /proc/self/status)"),
    }
    println!("simulated duration: {} s", p.duration);
    // For bench/plan.sh: hosts, planning CPU seconds, planning peak KiB added.
    println!("result {hosts} {cpu:.6} {added}");
}
