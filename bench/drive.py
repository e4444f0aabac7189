#!/usr/bin/env python3
"""The side-by-side SSH benchmark's driver (bench/run.sh starts the hosts and calls this).

For each N: the same workload (3 steps per host, each runs `true`) with fleetbook,
ansible-playbook, pyinfra, the warm raw floor and the cold raw floor, each key exchange,
all hosts at once and rolling with a limit of 5; tools alternate run by run; every run is
measured by measure.py (wall time, the tool's own CPU, its descendants' CPU). Prints one
Markdown table of medians.
"""
import argparse
import ctypes
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
KEX = {"default": "ssh_config", "curve25519": "ssh_config_curve"}
STEPS = 3
ROLL = 5
# The tools' names in --only.
SHORT = {
    "fleetbook": "fleetbook",
    "fleetbook, kept": "kept",
    "ansible": "ansible",
    "pyinfra": "pyinfra",
    "warm floor": "warm",
    "cold floor": "cold",
}


def parse_args():
    a = argparse.ArgumentParser()
    a.add_argument("--dir", required=True, help="where bench/lib.sh put the hosts")
    a.add_argument("--bin", required=True, help="the fleetbook binary")
    a.add_argument("--venv", required=True, help="the venv with ansible-core and pyinfra")
    a.add_argument("--reps", type=int, default=3)
    a.add_argument("--out", help="also write the table here")
    a.add_argument(
        "--budget",
        type=float,
        default=120,
        help="seconds per N: no repetition after the first starts when it would end past this (0: none)",
    )
    a.add_argument(
        "--only",
        default="",
        help="comma-separated: keep only these tools (fleetbook, kept, ansible, pyinfra, warm, "
        "cold), modes (all, roll) and key exchanges (default, curve25519); e.g. roll,curve25519,fleetbook,warm",
    )
    a.add_argument("ns", type=int, nargs="+")
    a = a.parse_args()
    a.only = [t.strip() for t in a.only.split(",") if t.strip()]
    unknown = set(a.only) - set(SHORT.values()) - set(KEX) - {"all", "roll"}
    if unknown:
        sys.exit(f"bench: --only: unknown {', '.join(sorted(unknown))}")
    return a


def selected(cfg, only):
    """Whether --only keeps the config: it matches, in each kind the filter names, one term."""
    tool, kex, mode = cfg
    for kind, value in ((set(SHORT.values()), SHORT[tool]), (set(KEX), kex), ({"all", "roll"}, mode)):
        named = kind & set(only)
        if named and value not in named:
            return False
    return True


class Bench:
    def __init__(self, args):
        self.a = args
        self.dir = args.dir
        self.addrs = open(os.path.join(self.dir, "addrs")).read().split()
        self.runs = 0
        self.state = os.path.join(self.dir, "state")

    def path(self, *p):
        return os.path.join(self.dir, *p)

    def cfg(self, kex):
        return self.path(KEX[kex])

    # --- the workload, written once per N ------------------------------------------------
    def write_files(self, n):
        d = self.path(f"n{n}")
        os.makedirs(d, exist_ok=True)
        lines = open(self.path("hosts")).read().splitlines()
        with open(os.path.join(d, "hosts"), "w") as f:
            f.write("\n".join(lines[: n + 1]) + "\n")
            f.write("[all:vars]\nansible_python_interpreter=/usr/bin/python3\n")
        steps = "".join(f'rb.step("s{i}", |h| h.run("true"));\n' for i in range(1, STEPS + 1))
        for mode, limit in (("all", ""), ("roll", f'rb.limit("*", {ROLL});\n')):
            with open(os.path.join(d, f"rb_{mode}.rhai"), "w") as f:
                f.write(f'let rb = runbook("bench");\n{limit}{steps}rb\n')
            serial = f"  serial: {ROLL}\n" if mode == "roll" else ""
            tasks = "".join(
                f"    - name: s{i}\n      ansible.builtin.command: \"true\"\n"
                for i in range(1, STEPS + 1)
            )
            with open(os.path.join(d, f"play_{mode}.yml"), "w") as f:
                f.write(f"- hosts: web\n  gather_facts: false\n{serial}  tasks:\n{tasks}")
        data = {
            "ssh_port": int(os.environ.get("BENCH_PORT", "22122")),
            "ssh_user": "root",
            "ssh_key": self.path("client_key"),
            "ssh_known_hosts_file": self.path("known_hosts"),
            "ssh_strict_host_key_checking": "yes",
            "ssh_allow_agent": False,
            "ssh_look_for_keys": False,
        }
        with open(os.path.join(d, "inventory.py"), "w") as f:
            f.write(f"_data = {data!r}\n")
            f.write(f"web = [(a, dict(_data)) for a in {self.addrs[:n]!r}]\n")
        with open(os.path.join(d, "deploy.py"), "w") as f:
            f.write("from pyinfra.operations import server\n")
            for i in range(1, STEPS + 1):
                f.write(f'server.shell(name="s{i}", commands=["true"])\n')
        return d

    # --- one measured run -----------------------------------------------------------------
    def measure(self, cmd, env=None, linger_ok=False):
        self.runs += 1
        log = self.path("logs", f"{self.runs:04d}.log")
        os.makedirs(os.path.dirname(log), exist_ok=True)
        argv = [sys.executable, os.path.join(HERE, "measure.py")]
        argv += ["--linger-ok"] if linger_ok else []
        argv += [log, "--"] + cmd
        out = subprocess.run(argv, env=env, capture_output=True, text=True)
        reap()
        if out.returncode != 0 or not out.stdout.strip():
            sys.exit(f"bench: measuring {cmd} failed: {out.stderr}")
        m = json.loads(out.stdout)
        if m["code"] != 0:
            tail = open(log, errors="replace").read()[-3000:]
            sys.exit(f"bench: {' '.join(cmd)} exited {m['code']}; its log ({log}) ends:\n{tail}")
        return m

    def fleetbook_cmd(self, d, kex, mode, persist):
        cmd = [self.a.bin, "run", os.path.join(d, f"rb_{mode}.rhai"), "-i"]
        cmd += [os.path.join(d, "hosts"), "--yes", "--state", self.state]
        # The user's config as it is; the curve25519 rows choose it with --ssh-kex.
        cmd += ["--ssh-config", self.cfg("default"), "--persist", str(persist)]
        if kex == "curve25519":
            cmd += ["--ssh-kex", "curve25519-sha256"]
        return cmd

    def fleetbook(self, d, n, kex, mode):
        return self.measure(self.fleetbook_cmd(d, kex, mode, 0))

    def fleetbook_kept(self, d, n, kex, mode):
        """A second command within the persist window: the first (untimed) leaves the
        connections up; they are ended after the second."""
        quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        subprocess.run(self.fleetbook_cmd(d, kex, mode, 60), **quiet)
        try:
            return self.measure(self.fleetbook_cmd(d, kex, mode, 60), linger_ok=True)
        finally:
            end_kept_masters()

    def ansible(self, d, n, kex, mode):
        cp = tempfile.mkdtemp(prefix="cp", dir=self.dir)
        env = dict(os.environ)
        env.update(
            ANSIBLE_PIPELINING="True",
            ANSIBLE_SSH_ARGS=f"-F {self.cfg(kex)} -o ControlMaster=auto -o ControlPersist=60s",
            ANSIBLE_SSH_CONTROL_PATH_DIR=cp,
            ANSIBLE_HOST_KEY_CHECKING="True",
            ANSIBLE_LOCAL_TEMP=cp,
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_RETRY_FILES_ENABLED="False",
        )
        cmd = [os.path.join(self.a.venv, "bin", "ansible-playbook"), "-i"]
        cmd += [os.path.join(d, "hosts"), os.path.join(d, f"play_{mode}.yml"), "-f", str(n)]
        return self.measure(cmd, env=env, linger_ok=True)

    def pyinfra(self, d, n, kex, mode):
        par = n if mode == "all" else ROLL
        cmd = [os.path.join(self.a.venv, "bin", "pyinfra"), "-y", "--parallel", str(par)]
        cmd += [os.path.join(d, "inventory.py"), os.path.join(d, "deploy.py")]
        return self.measure(cmd)

    def floor(self, n, kex, mode, warm):
        par = str(n if mode == "all" else ROLL)
        script = os.path.join(HERE, "floor.sh")
        addrs = self.addrs[:n]
        opened = None
        if warm:
            # Untimed, but its machine CPU is what N handshakes cost: the CPU bound below.
            busy0 = machine_busy()
            subprocess.run(["bash", script, "open", self.cfg(kex), self.dir, par] + addrs, check=True)
            opened = machine_busy() - busy0
        try:
            what = "warm" if warm else "cold"
            m = self.measure(["bash", script, what, self.cfg(kex), self.dir, par] + addrs)
            if opened is not None:
                m["open_busy"] = opened
            return m
        finally:
            if warm:
                subprocess.run(["bash", script, "close", self.cfg(kex), self.dir, par] + addrs)
                reap()

    def configs(self):
        c = []
        for mode in ("all", "roll"):
            for kex in KEX:
                c.append(("fleetbook", kex, mode))
                c.append(("fleetbook, kept", kex, mode))
                c.append(("ansible", kex, mode))
                c.append(("warm floor", kex, mode))
                c.append(("cold floor", kex, mode))
            # paramiko has no sntrup761x25519: pyinfra always negotiates curve25519.
            c.append(("pyinfra", "curve25519", mode))
        return [x for x in c if selected(x, self.a.only)]

    def run_one(self, d, n, cfg):
        tool, kex, mode = cfg
        if tool == "fleetbook":
            return self.fleetbook(d, n, kex, mode)
        if tool == "fleetbook, kept":
            return self.fleetbook_kept(d, n, kex, mode)
        if tool == "ansible":
            return self.ansible(d, n, kex, mode)
        if tool == "pyinfra":
            return self.pyinfra(d, n, kex, mode)
        return self.floor(n, kex, mode, warm=tool == "warm floor")


def machine_busy():
    """CPU seconds the whole machine has spent busy since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def end_kept_masters():
    """The masters a `--persist` run left up came back to this subreaper: end them, so the
    next cold run starts cold."""
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == me and "(ssh)" in stat and fields[0] != "Z":
            try:
                os.kill(int(entry), signal.SIGTERM)
            except ProcessLookupError:
                pass
    time.sleep(0.1)
    reap()


def calibrate(rounds=7):
    """A fixed CPU loop: its spread says how noisy the machine was."""
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        sum(i * i for i in range(300_000))
        times.append((time.perf_counter() - t) * 1000)
    return times


def fmt_cal(times):
    return f"median {statistics.median(times):.1f} ms, min–max {min(times):.1f}–{max(times):.1f} ms"


def versions(a):
    def out(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except (OSError, IndexError):
            return "?"

    py = os.path.join(a.venv, "bin", "python")
    pkgs = out([py, "-c", "import importlib.metadata as m; print(', '.join(f'{p} {m.version(p)}' for p in ('ansible-core', 'pyinfra', 'paramiko')))"])
    cpu = "?"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return [
        f"fleetbook: {out([a.bin, '--version'])}",
        f"ssh: {out(['ssh', '-V'])}",
        f"Python packages: {pkgs}",
        f"machine: {os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}",
    ]


def reps(results):
    counts = sorted({len(ms) for by_cfg in results.values() for ms in by_cfg.values()})
    return "–".join(map(str, counts)) + (" repetition" if counts == [1] else " repetitions")


def table(results, configs):
    head = (
        "| N | mode | tool | key exchange | median s | min–max s | fleetbook ÷ this "
        "| CPU ms per host-step: own / children | machine: CPU s, busy |\n"
        "|---:|---|---|---|---:|---:|---:|---:|---:|\n"
    )
    rows = []
    for n, by_cfg in results.items():
        for cfg in configs:
            tool, kex, mode = cfg
            ms = by_cfg[cfg]
            walls = [m["wall"] for m in ms]
            med = statistics.median(walls)
            fb_kex = kex if tool != "pyinfra" else "curve25519"
            fb = by_cfg.get(("fleetbook", fb_kex, mode))
            fb = statistics.median(m["wall"] for m in fb) if fb else None
            ratio = "—" if tool == "fleetbook" or fb is None else f"{fb / med:.2f}×"
            warm = by_cfg.get(("warm floor", kex, mode))
            if tool == "fleetbook, kept" and warm:
                warm = statistics.median(m["wall"] for m in warm)
                ratio = f"(this ÷ warm floor: {med / warm:.2f}×)"
            own = statistics.median(m["own"] for m in ms) * 1000 / (n * STEPS)
            kids = statistics.median(m["children"] for m in ms) * 1000 / (n * STEPS)
            busy = statistics.median(m["machine_busy"] for m in ms)
            share = statistics.median(
                m["machine_busy"] / max(m["machine_busy"] + m["machine_idle"], 1e-9) for m in ms
            )
            mode_name = "all at once" if mode == "all" else f"rolling {ROLL}"
            linger = sum(m["lingered"] for m in ms)
            note = f" ({linger} left running)" if linger else ""
            rows.append(
                f"| {n} | {mode_name} | {tool}{note} | {kex} | {med:.2f} | "
                f"{min(walls):.2f}–{max(walls):.2f} | {ratio} | {own:.1f} / {kids:.1f} | "
                f"{busy:.2f}, {share:.0%} |\n"
            )
    return head + "".join(rows)


def cpu_bounds(results):
    """What any cold run could take at best when the machine is CPU-bound: the warm floor's
    machine CPU plus that of opening one connection per host (the warm floor's untimed
    `open`), spread over every core, and never less than the warm floor's wall time."""
    lines = []
    for n, by_cfg in results.items():
        for kex in KEX:
            for mode in ("all", "roll"):
                fb, warm = by_cfg.get(("fleetbook", kex, mode)), by_cfg.get(("warm floor", kex, mode))
                if not fb or not warm:
                    continue
                opened = statistics.median(m["open_busy"] for m in warm)
                warm_busy = statistics.median(m["machine_busy"] for m in warm)
                warm_wall = statistics.median(m["wall"] for m in warm)
                bound = max(warm_wall, (warm_busy + opened) / os.cpu_count())
                cold = statistics.median(m["wall"] for m in fb)
                mode_name = "all at once" if mode == "all" else f"rolling {ROLL}"
                lines.append(
                    f"| {n} | {mode_name} | {kex} | {warm_busy:.2f} | {opened:.2f} | {bound:.2f} "
                    f"| {bound / warm_wall:.2f}× | {cold:.2f} | {cold / bound:.2f}× |\n"
                )
    if not lines:
        return ""
    return (
        "| N | mode | key exchange | warm floor: machine CPU s | N handshakes: machine CPU s "
        "| CPU-bound best cold s | best ÷ warm floor | fleetbook cold s | fleetbook ÷ best |\n"
        "|---:|---|---|---:|---:|---:|---:|---:|---:|\n" + "".join(lines)
    )


def main():
    a = parse_args()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: daemonized masters come back here
    b = Bench(a)
    configs = b.configs()
    before = calibrate()
    results = {}
    started = time.monotonic()
    for n in a.ns:
        d = b.write_files(n)
        by_cfg = {c: [] for c in configs}
        n_started = time.monotonic()
        for rep in range(a.reps):
            spent = time.monotonic() - n_started
            if rep > 0 and a.budget > 0 and spent + spent / rep > a.budget:
                print(f"bench: N={n}: {rep} repetitions fit in {a.budget:.0f} s", file=sys.stderr)
                break
            # Rotate the order each repetition: no tool always runs first or after another.
            order = configs[rep % len(configs):] + configs[: rep % len(configs)]
            for cfg in order:
                by_cfg[cfg].append(b.run_one(d, n, cfg))
            print(f"bench: N={n} repetition {rep + 1}/{a.reps} done", file=sys.stderr)
        results[n] = by_cfg
    after = calibrate()
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = [
        f"SSH benchmark, {when}: {STEPS} steps per host (`true`), one sshd per host on loopback, "
        f"{reps(results)} per row, tools alternating run by run ({time.monotonic() - started:.0f} s in all).",
        "",
    ]
    text += [f"- {v}" for v in versions(a)]
    text += [
        f"- calibration loop before: {fmt_cal(before)}; after: {fmt_cal(after)}",
        "",
        table(results, configs),
        "fleetbook ÷ this: fleetbook's median with the same key exchange and mode over this row's "
        "(below 1 = fleetbook faster). Rolling 5: fleetbook `rb.limit(\"*\", 5)` (a window), Ansible "
        "`serial: 5` (batches), pyinfra `--parallel 5` (pyinfra has no rolling limit), the floors "
        "5 hosts at a time (xargs -P 5). CPU: the tool's own process, and every process it started "
        "(ssh clients and masters), per host-step. fleetbook runs with `--persist 0` (cold); "
        "\"fleetbook, kept\" is a second command within the persist window (`--persist 60`: the "
        "connections the first one left up), compared with the warm floor. Machine: the CPU "
        "seconds the whole machine was busy during the run (every process: the sshd hosts share "
        "it) and the share of all cores that was; near 100% means CPU-bound.",
    ]
    bounds = cpu_bounds(results)
    if bounds:
        text += [
            "",
            bounds,
            "CPU-bound best cold: the warm floor's machine CPU plus what opening a master per host "
            "cost the machine (the warm floor's untimed `open`: client and sshd together), over the "
            f"{os.cpu_count()} cores, and never under the warm floor's wall time: what any cold run "
            "of this workload could take at best here, whatever its schedule, when the hosts' "
            "sshd share the controller's cores.",
        ]
    out = "\n".join(text)
    print(out)
    if a.out:
        with open(a.out, "w") as f:
            f.write(out + "\n")


if __name__ == "__main__":
    main()
