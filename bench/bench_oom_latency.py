"""Latency from the kernel's kill line to the engine's `worker_exited` (cause oom-kill).

A Node.js leaker under a 64 MiB cgroup limit, 20 times (python3 if node is missing). The
kill line's printk stamp is on the kernel's clock, which tracks CLOCK_MONOTONIC here; the
event's wall time is put on the same clock with the realtime-monotonic offset measured now.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import time
from typing import Any

import benchargs
from oomscope.core.engine import Engine, EngineConfig
from oomscope.core.events import WorkerExited
from oomscope.core.launch import LaunchSpec

# Big filled chunks in a tight loop: in small steps node thrashes its own code pages near the
# limit (they are charged to its cgroup when nothing else has node loaded) instead of being killed.
NODE_LEAKER = "const a = []; for (;;) a.push(Buffer.alloc(32 << 20, 1));"
PY_LEAKER = "import time\nc = []\nwhile True:\n    c.append(bytearray(1 << 20)); time.sleep(0.002)\n"


def run(kills: int = 20) -> dict[str, Any]:
    node = shutil.which("node")
    cmd = (node, "-e", NODE_LEAKER) if node else (sys.executable, "-c", PY_LEAKER)
    eng = Engine(EngineConfig(interval_s=0.5, emit_output=False)).start()
    latencies_ms: list[float] = []
    try:
        for _ in range(kills):
            ref = eng.launch(LaunchSpec(cmd, mem_limit_bytes=64 << 20)).result(10)
            while True:
                ev = eng.events.get(timeout=60)
                if isinstance(ev, WorkerExited) and ev.worker.id == ref.id:
                    break
            offset = time.time() - time.monotonic()
            if ev.cause != "oom-kill" or ev.oom is None or ev.oom.kernel_time_s is None:
                raise RuntimeError(f"expected an oom-kill with a kernel record, got {ev.cause}: {ev.evidence}")
            latencies_ms.append((ev.t - offset - ev.oom.kernel_time_s) * 1e3)
    finally:
        eng.stop()
    q = statistics.quantiles(latencies_ms, n=100, method="inclusive") if len(latencies_ms) > 1 else latencies_ms * 99
    return {
        "worker": "node" if node else "python3",
        "kills": len(latencies_ms),
        "median_ms": statistics.median(latencies_ms),
        "p99_ms": q[98],
        "max_ms": max(latencies_ms),
    }


def main(argv: list[str] | None = None) -> None:
    r = run(2) if benchargs.quick(argv, __doc__) else run()
    print(f"kernel kill line -> worker_exited(oom-kill), {r['kills']} {r['worker']} kills under 64 MiB: "
          f"median {r['median_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, max {r['max_ms']:.2f} ms")


if __name__ == "__main__":
    main()
