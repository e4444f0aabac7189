//! Plans a generated 10,000-host, 8-step runbook and prints wall time and peak memory.
//! Run: `cargo bench --bench plan` (target: under 2 s and 512 MiB on a 2-core machine).

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

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    let hosts = std::env::var("FLEETBOOK_BENCH_HOSTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let inv = inventory(hosts);
    let start = Instant::now();
    let planned = plan_text(RUNBOOK, &inv, Format::Ini, &BTreeMap::new(), None)
        .expect("the benchmark plan compiles");
    let planned_at = start.elapsed();
    let json = serde_json::to_string(&planned.plan).expect("serialises");
    let total = start.elapsed();
    let p = &planned.plan;
    let host_steps = p.tasks.iter().filter(|t| t.host.is_some()).count();
    println!(
        "plan: {} hosts, {} tasks ({host_steps} host steps), {} commands",
        p.hosts.len(),
        p.tasks.len(),
        p.tasks.iter().map(|t| t.commands.len()).sum::<usize>()
    );
    println!(
        "wall time: plan {:.3} s, plan + JSON ({} MiB) {:.3} s",
        planned_at.as_secs_f64(),
        json.len() >> 20,
        total.as_secs_f64()
    );
    let html_start = Instant::now();
    let html = fleetbook_engine::render::html(p);
    println!(
        "html plan: {:.1} KiB in {:.3} s",
        html.len() as f64 / 1024.0,
        html_start.elapsed().as_secs_f64()
    );
    match peak_rss_kib() {
        Some(k) => println!("peak memory (VmHWM): {:.1} MiB", k as f64 / 1024.0),
        None => println!("peak memory: unavailable (no /proc/self/status)"),
    }
    println!("simulated duration: {} s", p.duration);
}
