"""Can the policy beat the kernel? Fast leaks under `watch --on-crit terminate`, as a user runs them.

Two figures (issue #13's targets):

1. Race: ``oomscope watch --mem-limit 256MiB --crit 60% --on-crit terminate --run CMD`` (defaults
   otherwise: 1 s interval, 2 s sustain) over a Python leaker growing 8 MiB every 50 ms
   (160 MB/s) and a Node.js ``Buffer`` leaker at 300 MB/s or more. Each run ends with the
   worker's ``worker_exited``: ``terminated`` (by policy) is a win, ``oom-kill`` a loss.
   Target: 20 wins out of 20 for each.
2. Latency: a worker in its own cgroup climbs 1 MiB every 10 ms past a critical level and
   writes the wall time at which the step that took its own anonymous memory past the level
   began (it reads its statm after every step); the figure is the ``threshold`` event's time
   minus that, at the default interval: an upper bound, since the crossing lies inside the step.
   Target: p99 at most 20 ms.

Usage: ``python bench/bench_policy_race.py [--runs N] [--quick]``. Needs a memory cgroup
(root with cgroup v1 or a writable v2); otherwise it says so and measures nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchargs

PY_LEAKER = """
import time
held = []
while True:
    held.append(bytearray(8 << 20))  # calloc'd and zero: touch it so it is resident
    b = held[-1]
    for i in range(0, len(b), 4096):
        b[i] = 1
    time.sleep(0.05)
"""

# 8 MiB filled Buffers every 20 ms: about 400 MB/s.
NODE_LEAKER = "const a = []; setInterval(() => { a.push(Buffer.alloc(8 << 20, 1)); }, 20);"

# Climbs 1 MiB per 10 ms; once its anonymous RSS has reached the level (argv[2] bytes), writes to
# argv[1] the wall time at which the step that crossed it began, then holds still for 3 s and
# exits 0. The crossing happened somewhere inside that step (touching 1 MiB takes about 0.3 ms),
# so the figure is an upper bound on the latency; timing the step's end instead gave -0.3 ms when
# the engine saw the page that crossed before the stepper finished its step.
STEPPER = """
import os, sys, time
out, level = sys.argv[1], int(sys.argv[2])
page = os.sysconf("SC_PAGE_SIZE")
fd = os.open("/proc/self/statm", os.O_RDONLY)
held = []
while True:
    began = time.time()
    b = bytearray(1 << 20)
    for i in range(0, len(b), 4096):
        b[i] = 1
    held.append(b)
    del b
    f = os.pread(fd, 96, 0).split()
    if (int(f[1]) - int(f[2])) * page >= level:
        crossed = began
        break
    time.sleep(0.01)
with open(out, "w") as fh:
    fh.write(repr(crossed))
time.sleep(3)
"""


def _watch(args: list[str], timeout_s: float = 60.0) -> list[dict[str, Any]]:
    cmd = [sys.executable, "-m", "oomscope", "watch", "--json", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode not in (0, 1) and not events:
        raise RuntimeError(f"watch failed ({done.returncode}): {done.stderr.strip()}")
    return events


def race(argv: list[str], runs: int) -> dict[str, int]:
    """Outcomes of ``runs`` launches of ``argv`` under the issue's command line."""
    outcomes: dict[str, int] = {}
    for _ in range(runs):
        events = _watch(["--mem-limit", "256MiB", "--crit", "60%", "--on-crit", "terminate",
                         "--", *argv])
        exits = [e for e in events if e["event"] == "worker_exited"]
        cause = exits[-1]["cause"] if exits else "no exit"
        if cause == "terminated" and exits[-1].get("by") != "policy":
            cause = "terminated (not by policy)"
        outcomes[cause] = outcomes.get(cause, 0) + 1
    return outcomes


def latency(runs: int) -> dict[str, float]:
    level = 96 << 20
    lat_ms: list[float] = []
    with tempfile.TemporaryDirectory(prefix="oomscope-bench-") as tmp:
        for k in range(runs):
            out = Path(tmp) / f"crossed-{k}"
            events = _watch(["--mem-limit", "256MiB", "--crit", str(level), "--warn", "off",
                             "--metric", "anon", "--sustain", "0", "--",
                             sys.executable, "-c", STEPPER, str(out), str(level)])
            if not out.exists():
                exits = [e for e in events if e["event"] in ("worker_exited", "notice")]
                raise RuntimeError(f"run {k}: the stepper never reached the level: {exits}")
            crossed = float(out.read_text())
            hits = [e for e in events if e["event"] == "threshold" and e["level"] == "critical"]
            if not hits:
                raise RuntimeError("no critical threshold event")
            lat_ms.append((hits[0]["t"] - crossed) * 1e3)
    q = statistics.quantiles(lat_ms, n=100, method="inclusive") if len(lat_ms) > 1 else lat_ms * 99
    return {"runs": len(lat_ms), "median_ms": statistics.median(lat_ms), "p99_ms": q[98], "max_ms": max(lat_ms)}


def cgroup_possible() -> bool:
    return os.geteuid() == 0 and (os.access("/sys/fs/cgroup/memory", os.W_OK)
                                  or os.access("/sys/fs/cgroup/cgroup.subtree_control", os.W_OK))


def leakers() -> dict[str, list[str]]:
    """The racing leakers' command lines by figure name (node's where it is installed)."""
    found = {"python_160MBps": [sys.executable, "-c", PY_LEAKER]}
    node = shutil.which("node")
    if node:
        found["node_400MBps"] = [node, "-e", NODE_LEAKER]
    return found


def runs_asked(argv: list[str] | None, doc: str | None, what: str) -> int | None:
    """How many runs of each race a script is asked for (1 with ``--quick``); None, and says so,
    where no memory cgroup can be made."""
    p = benchargs.parser(doc, "1 run of each")
    p.add_argument("--runs", type=int, default=20)
    a = p.parse_args(argv)
    if not cgroup_possible():
        print(f"{what}: no writable memory cgroup here (needs root): not measured")
        return None
    return 1 if a.quick else int(a.runs)


def run(runs: int = 20) -> dict[str, Any]:
    result: dict[str, Any] = {name: race(argv, runs) for name, argv in leakers().items()}
    result["latency"] = latency(runs)
    return result


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    runs = runs_asked(argv, __doc__, "policy race")
    if runs is None:
        return None
    t0 = time.monotonic()
    r = run(runs)
    for name in ("python_160MBps", "node_400MBps"):
        if name in r:
            wins = r[name].get("terminated", 0)
            total = sum(r[name].values())
            print(f"policy race, {name} under --mem-limit 256MiB --crit 60% --on-crit terminate: "
                  f"{wins}/{total} terminated by policy; outcomes {r[name]}")
    lt = r["latency"]
    print(f"crossing -> threshold event, worker in its own cgroup, interval 1 s: median "
          f"{lt['median_ms']:.1f} ms, p99 {lt['p99_ms']:.1f} ms, max {lt['max_ms']:.1f} ms "
          f"({lt['runs']} runs, {time.monotonic() - t0:.0f} s)")
    return r


if __name__ == "__main__":
    main()
