"""Engine benchmarks: sampling cost per worker-sample, and exit-detection latency.

Run with ``make bench`` (or ``.venv/bin/python bench/bench_engine.py``). Prints figures; the
docs/performance.md quotes them with this command.
"""

from __future__ import annotations

import os
import queue
import signal
import statistics
import subprocess
import sys
import time
from typing import Any

import psutil

import benchargs

from oomscope.core.engine import Engine, EngineConfig
from oomscope.core.events import Samples, WorkerExited, WorkerStarted
from oomscope.core.launch import LaunchSpec


def _idle_processes(n: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen(["sleep", "600"]) for _ in range(n)]


def _thread_cpu_s(ident: int) -> float:
    return time.clock_gettime(time.pthread_getcpuclockid(ident))


def _back_to_back(eng: Engine, ticks: int) -> tuple[float, int]:
    cpu0, n0 = eng.sampling_cpu_s, eng.worker_samples
    for _ in range(ticks):
        eng._sample()
    return eng.sampling_cpu_s - cpu0, eng.worker_samples - n0


def sampling(n_workers: int = 200, interval_s: float = 0.1, duration_s: float = 10.0,
             bare_ticks: int = 30) -> dict[str, Any]:
    procs = _idle_processes(n_workers)
    eng = Engine(EngineConfig(interval_s=interval_s, rescan_s=3600.0)).start()
    try:
        for p in procs:
            eng.attach(p.pid).result(10)
        assert eng._thread is not None and eng._thread.ident is not None
        ident = eng._thread.ident
        # Drain continuously, as the GUI or the CLI would, in this (other) thread.
        cpu0 = _thread_cpu_s(ident)
        samples0 = eng.worker_samples
        in_sample0 = eng.sampling_cpu_s
        end = time.monotonic() + duration_s
        ticks = 0
        while time.monotonic() < end:
            try:
                ev = eng.events.get(timeout=0.2)
            except queue.Empty:
                continue
            if isinstance(ev, Samples):
                ticks += 1
        cpu = _thread_cpu_s(ident) - cpu0
        worker_samples = eng.worker_samples - samples0
        in_sample = eng.sampling_cpu_s - in_sample0
        # The same sampling pass run back to back (caches warm): what the code costs when the
        # machine has not evicted it between ticks. Run on the engine thread as a command.
        warm_cpu, warm_n = eng._submit(lambda: _back_to_back(eng, 50)).result(60)
    finally:
        eng.stop()
        for p in procs:
            p.kill()
            p.wait()
    # Baselines in the same run, over the same kind of processes: the kernel's own cost of a
    # statm pread at this cadence (caches as cold as the engine sees them), and plain psutil.
    procs = _idle_processes(n_workers)
    try:
        fds = [os.open(f"/proc/{p.pid}/statm", os.O_RDONLY) for p in procs]
        bare = 0.0
        for _ in range(bare_ticks):
            time.sleep(interval_s)  # the cadence is the point here, not a synchronisation
            t0 = time.thread_time()
            for fd in fds:
                os.pread(fd, 96, 0)
            bare += time.thread_time() - t0
        for fd in fds:
            os.close(fd)
        bare_us = bare / (bare_ticks * n_workers) * 1e6
        handles = [psutil.Process(p.pid) for p in procs]
        ps = 0.0
        for _ in range(bare_ticks):
            time.sleep(interval_s)
            t0 = time.thread_time()
            for h in handles:
                h.memory_info()
            ps += time.thread_time() - t0
        psutil_us = ps / (bare_ticks * n_workers) * 1e6
    finally:
        for p in procs:
            p.kill()
            p.wait()
    return {
        "workers": n_workers,
        "interval_s": interval_s,
        "duration_s": duration_s,
        "ticks": ticks,
        "worker_samples": worker_samples,
        "engine_thread_us_per_worker_sample": cpu / worker_samples * 1e6,
        "sampling_pass_us_per_worker_sample": in_sample / worker_samples * 1e6,
        "sampling_pass_back_to_back_us": warm_cpu / warm_n * 1e6,
        "psutil_memory_info_us_per_call": psutil_us,
        "bare_statm_pread_us_at_cadence": bare_us,
    }


def exit_latency(trials: int = 200) -> dict[str, Any]:
    eng = Engine(EngineConfig(interval_s=1.0, rescan_s=3600.0, emit_output=False)).start()
    latencies_ms: list[float] = []
    delivered_ms: list[float] = []
    try:
        refs = [eng.launch(LaunchSpec(("sleep", "600"))).result(10) for _ in range(trials)]
        pending = {r.id for r in refs}
        while pending:  # make sure every worker is registered before the clock starts
            ev = eng.events.get(timeout=10)
            if isinstance(ev, WorkerStarted):
                pending.discard(ev.worker.id)
        for ref in refs:
            t_kill = time.time()
            mono_kill = time.monotonic()
            os.kill(ref.pid, signal.SIGKILL)  # our own launched worker, by PID
            while True:
                ev = eng.events.get(timeout=10)
                if isinstance(ev, WorkerExited) and ev.worker.id == ref.id:
                    break
            delivered_ms.append((time.monotonic() - mono_kill) * 1e3)
            latencies_ms.append((ev.t - t_kill) * 1e3)
    finally:
        eng.stop()
    q = statistics.quantiles(latencies_ms, n=100, method="inclusive")
    qd = statistics.quantiles(delivered_ms, n=100, method="inclusive")
    return {
        "trials": trials,
        "exit_event_median_ms": statistics.median(latencies_ms),
        "exit_event_p99_ms": q[98],
        "exit_event_received_median_ms": statistics.median(delivered_ms),
        "exit_event_received_p99_ms": qd[98],
    }


def main(argv: list[str] | None = None) -> None:
    quick = benchargs.quick(argv, __doc__)
    s = sampling(5, 0.1, 1.0, bare_ticks=5) if quick else sampling()
    print(f"sampling: {s['workers']} idle processes at {s['interval_s']} s for {s['duration_s']} s "
          f"({s['worker_samples']} worker-samples)")
    print(f"  engine thread CPU per worker-sample: {s['engine_thread_us_per_worker_sample']:.2f} µs "
          f"(sampling pass alone {s['sampling_pass_us_per_worker_sample']:.2f} µs; "
          f"back to back, caches warm: {s['sampling_pass_back_to_back_us']:.2f} µs)")
    print(f"  psutil.Process.memory_info() per call at the same cadence, same run: {s['psutil_memory_info_us_per_call']:.2f} µs")
    print(f"  bare os.pread of statm alone at the same cadence (the kernel's floor): "
          f"{s['bare_statm_pread_us_at_cadence']:.2f} µs")
    e = exit_latency(5) if quick else exit_latency()
    print(f"exit latency (SIGKILL -> worker_exited), {e['trials']} trials: median "
          f"{e['exit_event_median_ms']:.3f} ms, p99 {e['exit_event_p99_ms']:.3f} ms "
          f"(received by the consumer: median {e['exit_event_received_median_ms']:.3f} ms, "
          f"p99 {e['exit_event_received_p99_ms']:.3f} ms)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
