#!/usr/bin/env python3
"""Runs one command and measures it: wall time to the command's exit, its own CPU, and the
CPU of everything it started, including daemonized ssh masters (this process is a child
subreaper, so orphans come back to it and their CPU is counted when reaped).

    measure.py [--linger-ok] [--fds] LOG -- COMMAND...

Prints one JSON object: wall, own (CPU seconds of the command's process, all threads),
children (CPU of every descendant), code, lingered (descendants still alive 3 s after the
command exited; they are then killed), exited_at (the wall clock when it exited, seconds since
the epoch: to compare with a log's timestamps), machine_busy and machine_idle (CPU seconds
the whole machine spent busy and idle meanwhile, every process counted, from /proc/stat: the
benchmark's sshd hosts share the machine, so a run that keeps every core busy is CPU-bound
whatever the tool does). --linger-ok kills them at once without counting them
(Ansible's masters with ControlPersist are expected to linger). --fds adds peak_fds: the
most file descriptors the command's process held at once (sampled every 20 ms).
"""
import ctypes
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time

PR_SET_CHILD_SUBREAPER = 36
TICK = os.sysconf("SC_CLK_TCK")


def our_children():
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == me and fields[0] != "Z":
            found.append(int(entry))
    return found


def reap_all():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def machine_cpu():
    """(busy, idle) CPU seconds of the whole machine since boot, from /proc/stat's cpu line."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]  # idle, iowait
    return (sum(v[:8]) - idle) / TICK, idle / TICK


def sample_fds(pid, peak):
    while True:
        try:
            peak[0] = max(peak[0], len(os.listdir(f"/proc/{pid}/fd")))
        except OSError:
            return
        time.sleep(0.02)


def main():
    args = sys.argv[1:]
    linger_ok = "--linger-ok" in args[: args.index("--")]
    fds = "--fds" in args[: args.index("--")]
    args = [a for a in args[: args.index("--")] if a not in ("--linger-ok", "--fds")] + args[args.index("--") :]
    log, command = args[0], args[2:]
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    with open(log, "ab") as out:
        busy0, idle0 = machine_cpu()
        start = time.monotonic()
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        pid = proc.pid
        peak = [0]
        if fds:
            threading.Thread(target=sample_fds, args=(pid, peak), daemon=True).start()
        # Wait for the exit without reaping, so /proc still has its final CPU times.
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        wall = time.monotonic() - start
        busy1, idle1 = machine_cpu()
        exited_at = time.time()
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        fields = stat[stat.rindex(")") + 2 :].split()
        own = (int(fields[11]) + int(fields[12])) / TICK
        code = proc.wait()
    deadline = time.monotonic() + (0 if linger_ok else 3)
    lingered = 0
    while True:
        reap_all()
        left = our_children()
        if not left:
            break
        if time.monotonic() >= deadline:
            lingered = 0 if linger_ok else len(left)
            for p in left:
                try:
                    os.kill(p, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            deadline = float("inf")
        time.sleep(0.01)
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = used.ru_utime + used.ru_stime
    print(
        json.dumps(
            {
                "wall": wall,
                "own": own,
                "children": max(total - own, 0.0),
                "code": code,
                "lingered": lingered,
                "exited_at": exited_at,
                "machine_busy": busy1 - busy0,
                "machine_idle": idle1 - idle0,
                **({"peak_fds": peak[0]} if fds else {}),
            }
        )
    )


if __name__ == "__main__":
    main()
