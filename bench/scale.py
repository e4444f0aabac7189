#!/usr/bin/env python3
"""The scale check's driver (bench/scale.sh starts the hosts and calls this): for each N,
one `fleetbook run` of 3 steps per host, all hosts at once, against N loopback sshd hosts.

It fails (exit 1) unless the run exits 0, every host-step ran and ended ok, and nothing in
fleetbook's output or log says an ssh connection was refused, reset or cut in the banner
exchange. It prints, per N: wall time, fleetbook's own CPU and its children's (ssh), and
the exit tail: from the last task's end (the `task ok` line of `--log-file`) to the
process's exit; and the most file descriptors fleetbook held at once. Not a timed test: nothing here checks a time.
"""
import argparse
import json
import os
import subprocess
import sys
from datetime import datetime

HERE = os.path.dirname(os.path.abspath(__file__))
STEPS = 3
# What OpenSSH says when sshd (or the machine) turns a connection away.
REFUSALS = (
    "Connection refused",
    "banner exchange",
    "kex_exchange_identification",
    "Connection reset",
    "Connection closed by",
    "Too many open files",
    "Resource temporarily unavailable",
)


def parse_args():
    a = argparse.ArgumentParser()
    a.add_argument("--dir", required=True, help="where bench/lib.sh put the hosts")
    a.add_argument("--bin", required=True, help="the fleetbook binary")
    a.add_argument("--kex", default="", help="--ssh-kex for fleetbook (empty: the ssh config's)")
    a.add_argument("ns", type=int, nargs="+")
    return a.parse_args()


def write_files(dir, n):
    d = os.path.join(dir, f"scale{n}")
    os.makedirs(d, exist_ok=True)
    lines = open(os.path.join(dir, "hosts")).read().splitlines()
    with open(os.path.join(d, "hosts"), "w") as f:
        f.write("\n".join(lines[: n + 1]) + "\n")
    steps = "".join(f'rb.step("s{i}", |h| h.run("true"));\n' for i in range(1, STEPS + 1))
    with open(os.path.join(d, "rb.rhai"), "w") as f:
        f.write(f'let rb = runbook("scale");\n{steps}rb\n')
    return d


def stamp(line):
    """Seconds since the epoch of a JSON log line's timestamp (RFC 3339, UTC)."""
    t = json.loads(line)["timestamp"].replace("Z", "+00:00")
    return datetime.fromisoformat(t).timestamp()


def check(n, d, m, out_text, log_lines):
    problems = []
    if m["code"] != 0:
        problems.append(f"exit status {m['code']}")
    events = [json.loads(x) for x in out_text.splitlines() if x.startswith("{")]
    ok = {e["task"] for e in events if e.get("state") == "ok" and e.get("step")}
    if len(ok) != n * STEPS:
        problems.append(f"{len(ok)} of {n * STEPS} host-steps ended ok")
    failed = {}
    for e in events:
        if e.get("state") in ("failed", "unreachable", "not_run"):
            why = (e.get("message") or "").strip().splitlines()
            key = why[-1][:200] if why else e["state"]
            failed[key] = failed.get(key, 0) + 1
    for why, count in sorted(failed.items(), key=lambda x: -x[1])[:5]:
        problems.append(f"{count} × {why}")
    text = out_text + "\n".join(log_lines)
    for r in REFUSALS:
        hits = text.count(r)
        if hits:
            problems.append(f'{hits} × "{r}"')
    return problems


def one(a, n):
    d = write_files(a.dir, n)
    log = os.path.join(d, "log.jsonl")
    out = os.path.join(d, "out.txt")
    for p in (log, out):
        if os.path.exists(p):
            os.remove(p)
    cmd = [a.bin, "run", os.path.join(d, "rb.rhai"), "-i", os.path.join(d, "hosts"), "--yes"]
    cmd += ["--state", os.path.join(d, "state"), "--ssh-config", os.path.join(a.dir, "ssh_config")]
    cmd += ["--persist", "0", "--events", "jsonl", "--log-file", log]
    if a.kex:
        cmd += ["--ssh-kex", a.kex]
    r = subprocess.run(
        [sys.executable, os.path.join(HERE, "measure.py"), "--fds", out, "--"] + cmd,
        capture_output=True,
        text=True,
    )
    if r.returncode != 0 or not r.stdout.strip():
        sys.exit(f"scale: measuring N={n} failed: {r.stderr}")
    m = json.loads(r.stdout)
    out_text = open(out, errors="replace").read()
    log_lines = open(log, errors="replace").read().splitlines() if os.path.exists(log) else []
    ends = [stamp(x) for x in log_lines if '"task ok"' in x or '"message":"task ok"' in x]
    tail = (m["exited_at"] - max(ends)) * 1000 if ends else float("nan")
    problems = check(n, d, m, out_text, log_lines)
    if problems:
        keep = f"/tmp/scale-failed-{n}-{os.getpid()}"
        os.makedirs(keep, exist_ok=True)
        for p in (log, out):
            if os.path.exists(p):
                os.replace(p, os.path.join(keep, os.path.basename(p)))
        problems.append(f"output and log kept in {keep}")
    steps = n * STEPS
    print(
        f"| {n} | {m['wall']:.2f} | {m['own'] * 1000 / steps:.1f} / {m['children'] * 1000 / steps:.1f} "
        f"| {tail:.0f} | {m['peak_fds']} | {'ok' if not problems else '; '.join(problems)} |",
        flush=True,
    )
    return not problems


def main():
    a = parse_args()
    print(f"key exchange: {a.kex or 'the ssh config (OpenSSH default)'}; {STEPS} steps per host, all at once")
    print("| N | wall s | CPU ms per host-step: own / children | exit tail ms | most descriptors open | check |")
    print("|---:|---:|---:|---:|---:|---|")
    good = all([one(a, n) for n in a.ns])
    sys.exit(0 if good else 1)


if __name__ == "__main__":
    main()
