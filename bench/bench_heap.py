"""Heap reporter cost: CPU the Node.js reporter adds to a node process at 1 Hz and 10 Hz.

A node main thread with 4 idle worker threads runs twice side by side over the same wall time,
once with the reporter (connected to a live HeapServer that this script serves) and once
without; the difference of their utime+stime (/proc/PID/stat) is the reporter's cost, as a
percentage of one core. Targets: <= 0.5 % at 1 Hz, <= 2 % at 10 Hz.

    $ .venv/bin/python bench/bench_heap.py      # BENCH_HEAP_SECONDS=60 for steadier figures
    heap reporter, node v20.20.2, main + 4 idle worker threads, 20 s per rate (...)
       1 Hz: reporter 0.150 % of a core (target <= 0.5 %, ok); with 0.350 %, without 0.200 %; ...
      10 Hz: reporter 1.200 % of a core (target <= 2.0 %, ok); with 1.450 %, without 0.250 %; ...

About half of the 10 Hz figure is Node waking five event loops ten times a second at all (an
empty unref'd 10 Hz timer in the same five threads costs ~0.4 % on the development machine).
"""

from __future__ import annotations

import os
import selectors
import shutil
import subprocess
import sys
import time

import benchargs
from oomscope.core.heap.inject import inject_node
from oomscope.core.heap.messages import HeapReport
from oomscope.core.heap.server import Connection, HeapServer

IDLE_WORKERS = r"""
const { Worker } = require('worker_threads');
for (let i = 0; i < 4; i++) new Worker('setInterval(() => {}, 1 << 30)', { eval: true });
setInterval(() => {}, 1 << 30);
"""
THREADS = 5
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _run_ns(pid: int) -> int:
    """Nanosecond CPU time of all the process's threads (schedstat): a finer cross-check."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # a thread that ended between listdir and open
    return total


class _Pump:
    def __init__(self, server: HeapServer) -> None:
        self.server = server
        self.sel = selectors.DefaultSelector()
        self.sel.register(server.fileno(), selectors.EVENT_READ, None)
        self.reports = 0
        self.threads: set[int] = set()

    def run_until(self, deadline: float, stop_when_threads: int = 0) -> None:
        while (left := deadline - time.monotonic()) > 0:
            if stop_when_threads and len(self.threads) >= stop_when_threads:
                return
            for key, _ in self.sel.select(left):
                conn: Connection | None = key.data
                if conn is None:
                    for c in self.server.accept():
                        self.sel.register(c.fileno(), selectors.EVENT_READ, c)
                    continue
                msgs, eof = conn.read()
                for m in msgs:
                    if isinstance(m, HeapReport):
                        self.reports += 1
                        self.threads.add(m.thread_id)
                if eof:
                    self.sel.unregister(conn.fileno())
                    conn.close()


def overhead(node: str, interval_s: float, duration_s: float, settle_s: float = 5.0) -> dict[str, float]:
    server = HeapServer(is_allowed=lambda pid, uid: uid == os.geteuid())
    pump = _Pump(server)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NODE_", "OOMSCOPE_"))}
    argv, with_env = inject_node([node, "-e", IDLE_WORKERS], env, server.socket_path, interval_s)
    plain = subprocess.Popen([node, "-e", IDLE_WORKERS], env=env)
    reporting = subprocess.Popen(argv, env=with_env)
    try:
        # Start-up (module loading, thread creation, V8's first GCs after it) is not the steady
        # cost we are after.
        pump.run_until(time.monotonic() + 15, stop_when_threads=THREADS)
        pump.run_until(time.monotonic() + settle_s)
        cpu0 = _cpu_s(reporting.pid), _cpu_s(plain.pid)
        ns0 = _run_ns(reporting.pid), _run_ns(plain.pid)
        n0, t0 = pump.reports, time.monotonic()
        pump.run_until(t0 + duration_s)
        wall = time.monotonic() - t0
        cpu1 = _cpu_s(reporting.pid), _cpu_s(plain.pid)
        ns1 = _run_ns(reporting.pid), _run_ns(plain.pid)
    finally:
        for p in (plain, reporting):
            p.kill()
            p.wait()
        server.close()
    with_pct = 100 * (cpu1[0] - cpu0[0]) / wall
    without_pct = 100 * (cpu1[1] - cpu0[1]) / wall
    reports = pump.reports - n0
    extra_s = (cpu1[0] - cpu0[0]) - (cpu1[1] - cpu0[1])
    fine_pct = 100 * ((ns1[0] - ns0[0]) - (ns1[1] - ns0[1])) / 1e9 / wall
    return {"with_pct": with_pct, "without_pct": without_pct, "overhead_pct": with_pct - without_pct,
            "fine_pct": fine_pct, "reports": reports,
            "us_per_report": 1e6 * extra_s / reports if reports else float("nan")}


def main(argv: list[str] | None = None) -> None:
    quick = benchargs.quick(argv, __doc__)
    node = shutil.which("node")
    if node is None:
        print("heap reporter: node is not installed, skipped")
        return
    duration_s = 1.0 if quick else float(os.environ.get("BENCH_HEAP_SECONDS", "20"))
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"heap reporter, node {version}, main + 4 idle worker threads, {duration_s:.0f} s per rate "
          f"(CPU of one process with the reporter minus one without, same wall time; "
          f"clock tick {1000 / CLK_TCK:.0f} ms)")
    for hz, target in ((1, 0.5), (10, 2.0)):
        r = overhead(node, 1.0 / hz, duration_s, settle_s=0.5 if quick else 5.0)
        verdict = "ok" if r["overhead_pct"] <= target else "OVER TARGET"
        print(f"  {hz:>2} Hz: reporter {r['overhead_pct']:.3f} % of a core (target <= {target} %, {verdict}); "
              f"with {r['with_pct']:.3f} %, without {r['without_pct']:.3f} %; "
              f"{r['reports']:.0f} reports, {r['us_per_report']:.0f} us per report; "
              f"schedstat (ns) says {r['fine_pct']:.3f} %")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
