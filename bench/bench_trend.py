"""Does the trend cry wolf? Real steady workers with GC sawtooths, and a real slow leak.

Steady workers hold a constant working set and churn garbage on a period of 1, 10 or 60 s:
in Node.js (objects kept for one period, then dropped for V8's collector to reclaim) and in
Python (a block allocated and freed on the period). Each is sampled like the engine samples
(``/proc/PID/statm`` every second, RSS and anonymous RSS) into a :class:`Trend`; every
"growing" verdict (rate at or above ``GROWING_MIN_BYTES_PER_S``) is counted — target: none.
A Python worker and a Node.js worker leaking 1 MiB a minute (17.5 KiB every second) run beside
them: the time until each one's trend reads growing — target: under 3 minutes — and the rate the
trend reads at the end (1 MiB/min is right). Node's RSS floors rise for a minute or two after
start on their own (V8 grows its heap spaces and compiles), so a node control runs too: the
leaker's timer and Buffers, none kept; a verdict on the leaker that the control does not share
is the leak's. Also the CPU cost of ``add`` and of a refit.

Usage: ``python bench/bench_trend.py [--seconds 600] [--quick]`` (``--quick``: 3 s, shape only).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from typing import Any

import benchargs

from oomscope.core import procfs
from oomscope.core.forecast import GROWING_MIN_BYTES_PER_S, Trend

PAGE = os.sysconf("SC_PAGE_SIZE")

# Working set of 40 MiB; each period, about 60 MiB of small objects are made over the period
# and dropped at its end, for V8 to collect when it sees fit.
NODE_STEADY = """
const period = Number(process.argv[1]) * 1000;
const keep = []; for (let i = 0; i < 40; i++) keep.push(Buffer.alloc(1 << 20, 1));
let churn = [];
const perTick = Math.max(1, Math.round(60 * 1024 / (period / 50)));
setInterval(() => { for (let i = 0; i < perTick; i++) churn.push({a: 'x'.repeat(900) + i}); }, 50);
setInterval(() => { churn = []; }, period);
console.log('ready');
"""

PY_STEADY = """
import sys, time
period = float(sys.argv[1])
keep = [bytearray(1 << 20) for _ in range(40)]
for b in keep:
    b[::4096] = b"\\x01" * len(b[::4096])
print("ready", flush=True)
while True:
    block = bytearray(60 << 20)
    block[::4096] = b"\\x01" * len(block[::4096])
    time.sleep(period / 2)
    del block
    time.sleep(period / 2)
"""

# 1 MiB a minute in Buffers of 17.5 KiB kept for good. A Buffer above 4 KiB gets its own
# ArrayBuffer, allocated outside V8's heap and filled here, so the leak is resident anonymous
# memory that RSS and anon both see (a leak of JS objects would grow the V8 heap, which
# RSS shows only when V8 grows its spaces, in steps of megabytes).
# A busy worker's own allocations run V8's collector every few seconds; this quiet one would
# not, and a dropped Buffer (the control's) would stay resident until some collection came (a
# first run without this read the control growing 10 MiB in 10 minutes, as the leaker did). So
# both collect every 10 s (node --expose-gc).
NODE_LEAK = """
const held = [];
setInterval(() => { held.push(Buffer.alloc(17 * 1024 + 512, 1)); }, 1000);
setInterval(() => gc(), 10000);
console.log('ready');
"""

# The control: the node leaker's timer and Buffers, none kept. What its trend reads is node's
# own drift (heap spaces growing, code compiled), not a leak.
NODE_CONTROL = NODE_LEAK.replace("held.push(", "held[0] = (")

PY_LEAK = """
import time
held = []
print("ready", flush=True)
while True:
    b = bytearray(17 * 1024 + 512)  # 1 MiB a minute
    b[::4096] = b"\\x01" * len(b[::4096])
    held.append(b)
    time.sleep(1.0)
"""


class Watched:
    def __init__(self, name: str, argv: list[str]) -> None:
        self.name = name
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"{name} did not start")
        self.fd = os.open(f"/proc/{self.proc.pid}/statm", os.O_RDONLY)
        # As the engine does: the trend leaves out the process's start-up (core/forecast.py).
        start = procfs.start_mono(procfs.start_ticks(self.proc.pid) or 0)
        self.trends = {"rss": Trend(process_start_mono=start), "anon": Trend(process_start_mono=start)}
        self.growing = {"rss": 0, "anon": 0}
        self.first_growing: dict[str, float | None] = {"rss": None, "anon": None}
        self.last_rate: dict[str, float | None] = {"rss": None, "anon": None}
        self.first_value: dict[str, int] = {}
        self.last_value: dict[str, int] = {}

    def sample(self, mono: float, since: float) -> None:
        f = os.pread(self.fd, 96, 0).split()
        values = {"rss": int(f[1]) * PAGE, "anon": (int(f[1]) - int(f[2])) * PAGE}
        for metric, trend in self.trends.items():
            self.first_value.setdefault(metric, values[metric])
            self.last_value[metric] = values[metric]
            trend.add(mono, values[metric])
            rate = trend.rate_bytes_per_s()
            self.last_rate[metric] = rate
            if rate is not None and rate >= GROWING_MIN_BYTES_PER_S:
                self.growing[metric] += 1
                if self.first_growing[metric] is None:
                    self.first_growing[metric] = mono - since

    def stop(self) -> None:
        os.close(self.fd)
        self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def run(seconds: float) -> dict[str, Any]:
    node = shutil.which("node")
    watched: list[Watched] = []
    try:
        for period in (1, 10, 60):
            if node:
                watched.append(Watched(f"node steady {period} s", [node, "-e", NODE_STEADY, str(period)]))
            watched.append(Watched(f"python steady {period} s", [sys.executable, "-c", PY_STEADY, str(period)]))
        leaks = [Watched("python leaking 1 MiB/min", [sys.executable, "-c", PY_LEAK])]
        if node:
            leaks.append(Watched("node leaking 1 MiB/min", [node, "--expose-gc", "-e", NODE_LEAK]))
            leaks.append(Watched("node control (the same Buffers, none kept)", [node, "--expose-gc", "-e", NODE_CONTROL]))
        watched.extend(leaks)
        start = time.monotonic()
        tick = start
        while tick - start < seconds:
            for w in watched:
                w.sample(tick, start)
            tick += 1.0
            time.sleep(max(0.0, tick - time.monotonic()))
    finally:
        for w in watched:
            w.stop()
    steady = {w.name: dict(w.growing) for w in watched if w not in leaks}
    return {"seconds": seconds, "steady_growing_verdicts": steady,
            "leak_seen_after_s": {w.name: dict(w.first_growing) for w in leaks},
            "leak_rate_at_end": {w.name: dict(w.last_rate) for w in leaks},
            "leak_grew_mib": {w.name: {m: (w.last_value[m] - w.first_value[m]) / (1 << 20) for m in w.last_value}
                              for w in leaks},
            "cost": cost()}


def cost() -> dict[str, float]:
    """CPU per add() at 10 Hz on a sawtooth, and per refit (one per closed floor bucket)."""
    tr = Trend()
    n = 60_000
    t0 = time.process_time()
    for k in range(n):
        tr.add(1000.0 + k * 0.1, 100 << 20 | (k % 50) << 16)
    add_us = (time.process_time() - t0) / n * 1e6
    fits = 200
    t0 = time.process_time()
    for k in range(fits):
        tr.add(1000.0 + n * 0.1 + k * 5.0, 100 << 20)
        tr.rate_bytes_per_s()
    return {"add_us": add_us, "refit_us": (time.process_time() - t0) / fits * 1e6}


def _per_min(rate: float | None) -> str:
    """A trend's rate as the table shows it: None while collecting, else MiB a minute."""
    return "None" if rate is None else f"{rate * 60 / (1 << 20):.2f} MiB/min"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = benchargs.parser(__doc__, "3 s")
    p.add_argument("--seconds", type=float, default=600.0)
    a = p.parse_args(argv)
    r = run(3.0 if a.quick else a.seconds)
    for name, counts in r["steady_growing_verdicts"].items():
        print(f"trend, {name}, {r['seconds']:.0f} s sampled at 1 Hz: growing verdicts rss {counts['rss']}, "
              f"anon {counts['anon']}")
    for name, seen in r["leak_seen_after_s"].items():
        rate = r["leak_rate_at_end"][name]
        print(f"trend, {name}: growing after rss {seen['rss']} s, anon {seen['anon']} s; "
              f"rate at the end rss {_per_min(rate['rss'])}, anon {_per_min(rate['anon'])}")
        grew = r["leak_grew_mib"][name]
        print(f"trend, {name}, grown over the run: rss {grew['rss']:+.1f} MiB, anon {grew['anon']:+.1f} MiB")
    c = r["cost"]
    print(f"trend cost: add {c['add_us']:.2f} µs per sample, refit {c['refit_us']:.0f} µs per floor bucket")
    return r


if __name__ == "__main__":
    main()
