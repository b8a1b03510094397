"""Recording cost: bytes per sample on disk and the writer thread's CPU per sample.

A synthetic feed stands in for the engine (so the figure is the recorder's alone): 200 workers
at 10 Hz, paced in real time so the writer batches exactly as it does live (one commit a
second), for 30 s by default. The workers behave like a real fleet: a quarter idle, a quarter
leaking a few pages per tick, a quarter in memory cgroups (usage moving every tick), a quarter
Node.js with heap totals changing once a second and one heap report per second each; every
worker has a growth trend after 15 s, the leakers also their ETAs. The hour figure is the
measured bytes per sample (and per heap report) times an hour of the same fleet.

    $ .venv/bin/python bench/bench_record.py
    record: 200 workers at 10 Hz for 30 s (60000 samples, 1500 heap reports, 28 commits)
      on disk: 10.3 bytes per sample (samples, their index and tick times), 79.2 bytes per heap report; ...
      an hour of this fleet: 88 MB (target: under 200 MB)
      writer thread CPU: 4.78 µs per sample (1.0 % of a core); the caller's put: 3.77 µs per event
      reading it back: 3.68 µs per sample replayed as events, 2.85 µs per sample loaded as arrays ...
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from oomscope.core.engine import EngineConfig
from oomscope.core.events import Heap, Sample, Samples, WorkerRef, WorkerStarted
from oomscope.core.recording import SessionFile, open_recorder

PAGE = 4096
MiB = 1 << 20
SAMPLE_TABLES = ("samples", "samples_by_worker", "ticks")


class _Fleet:
    """Worker memory that moves like the real thing (see the module docstring)."""

    def __init__(self, n: int, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        now = time.time()
        self.refs = [WorkerRef(f"w{i + 1}", 10_000 + i, now, "node" if i % 4 == 3 else "python3",
                               ("python3", "worker.py", str(i)), True, i + 1, 1) for i in range(n)]
        self.rss = [self.rng.randrange(40, 400) * MiB for _ in range(n)]
        self.heap = [self.rng.randrange(10, 200) * MiB for _ in range(n)]
        self.trend: list[float | None] = [None] * n

    def tick(self, k: int, interval_s: float) -> tuple[Sample, ...]:
        rng, out = self.rng, []
        second = k % round(1 / interval_s) == 0
        for i, ref in enumerate(self.refs):
            kind = i % 4
            if kind == 0:  # idle: now and then a page
                if rng.random() < 0.05:
                    self.rss[i] += rng.choice((-1, 1)) * PAGE
            elif kind == 1:  # leaking
                self.rss[i] += rng.randrange(0, 64) * PAGE
            else:  # busy: allocations come and go
                self.rss[i] = max(20 * MiB, self.rss[i] + rng.randrange(-32, 33) * PAGE)
            rss = self.rss[i]
            anon = rss - 12 * MiB
            if second and k >= 150:
                self.trend[i] = rng.uniform(-2000.0, 80000.0) if kind else rng.uniform(-50.0, 50.0)
            trend = self.trend[i]
            eta = (512 * MiB - rss) / trend if kind == 1 and trend and trend > 0 else None
            if kind == 2:
                out.append(Sample(ref, rss, anon, 0, rss + rng.randrange(0, 256) * PAGE, 512 * MiB,
                                  None, None, None, trend, eta, None))
            elif kind == 3:
                if second:
                    self.heap[i] += rng.randrange(-2 * MiB, 3 * MiB)
                heap = self.heap[i]
                out.append(Sample(ref, rss, anon, 0, None, None, heap, heap + 8 * MiB, 4144 * MiB,
                                  trend, eta, None))
            else:
                out.append(Sample(ref, rss, anon, 0, None, None, None, None, None, trend, eta, None))
        return tuple(out)

    def heaps(self, t: float) -> list[Heap]:
        return [Heap(t, ref, ref.pid, 0, self.heap[i], self.heap[i] + 8 * MiB, 4144 * MiB,
                     self.heap[i] - 2 * MiB, 4096 * MiB, 1_200_000, 300_000, True, False, "node")
                for i, ref in enumerate(self.refs) if i % 4 == 3]


def record(n_workers: int = 200, interval_s: float = 0.1, duration_s: float = 30.0,
           directory: str | None = None) -> dict[str, Any]:
    fleet = _Fleet(n_workers)
    notes: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="oomscope-bench-", dir=directory) as tmp:
        path = Path(tmp) / "bench.db"
        rec = open_recorder(path, EngineConfig(interval_s=interval_s), lambda lv, msg: notes.append((lv, msg)),
                            command_line=["bench_record.py"])
        for ref in fleet.refs:
            rec(WorkerStarted(time.time(), ref, None, None))
        ticks = round(duration_s / interval_s)
        per_second = round(1 / interval_s)
        feed_cpu = 0.0
        samples = heaps = 0
        start = time.monotonic()
        for k in range(ticks):
            # Paced like the engine's timer: the writer must see real seconds between commits.
            delay = start + k * interval_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            t = time.time()
            tick = Samples(t, fleet.tick(k, interval_s))
            reports = fleet.heaps(t) if k % per_second == 0 else []
            c1 = time.thread_time()
            rec(tick)
            for h in reports:
                rec(h)
            feed_cpu += time.thread_time() - c1
            heaps += len(reports)
            samples += len(tick.samples)
        rec.close()
        assert rec.failed is None, rec.failed
        size = path.stat().st_size
        for suffix in ("-wal", "-shm"):
            extra = Path(f"{path}{suffix}")
            size += extra.stat().st_size if extra.exists() else 0
        db = sqlite3.connect(path)
        try:
            pages = dict(db.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall())
        finally:
            db.close()
        replay_s, bulk_s = _read_back(path, samples)
    sample_bytes = sum(pages.get(name, 0) for name in SAMPLE_TABLES)
    heap_bytes = pages.get("heap", 0)
    per_sample = sample_bytes / samples
    per_heap = heap_bytes / heaps if heaps else 0.0
    hour_samples = n_workers * 3600 / interval_s
    hour_heaps = heaps / duration_s * 3600
    return {
        "workers": n_workers, "interval_s": interval_s, "duration_s": duration_s,
        "samples": samples, "heap_reports": heaps, "file_bytes": size,
        "bytes_per_sample": per_sample, "bytes_per_heap_report": per_heap,
        "file_bytes_per_sample": size / samples,
        "hour_mb": (per_sample * hour_samples + per_heap * hour_heaps) / 1e6,
        "writer_cpu_us_per_sample": rec.writer_cpu_s / samples * 1e6,
        "caller_us_per_event": feed_cpu / (ticks + heaps) * 1e6,
        "writer_cpu_share": rec.writer_cpu_s / duration_s,
        "batches": rec.batches, "notices": notes,
        "replay_us_per_sample": replay_s / samples * 1e6, "bulk_us_per_sample": bulk_s / samples * 1e6,
    }


def _read_back(path: Path, samples: int) -> tuple[float, float]:
    """Seconds to replay the file as events, and to load every worker's samples as arrays."""
    with SessionFile.open(path) as f:
        t0 = time.perf_counter()
        replayed = sum(len(ev.samples) for ev in f.events() if isinstance(ev, Samples))
        t1 = time.perf_counter()
        loaded = sum(len(f.worker_samples(None, w.worker_id)["t"]) for w in f.workers())
        t2 = time.perf_counter()
    assert replayed == loaded == samples, (replayed, loaded, samples)
    return t1 - t0, t2 - t1


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--workers", type=int, default=200)
    p.add_argument("--interval", type=float, default=0.1)
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--dir", help="where to write the file (default: the temporary directory)")
    args = p.parse_args(argv)
    r = record(args.workers, args.interval, args.duration, args.dir)
    print(f"record: {r['workers']} workers at {1 / r['interval_s']:g} Hz for {r['duration_s']:g} s "
          f"({r['samples']} samples, {r['heap_reports']} heap reports, {r['batches']} commits)")
    print(f"  on disk: {r['bytes_per_sample']:.1f} bytes per sample (samples, their index and tick "
          f"times), {r['bytes_per_heap_report']:.1f} bytes per heap report; whole file "
          f"{r['file_bytes_per_sample']:.1f} bytes per sample")
    print(f"  an hour of this fleet: {r['hour_mb']:.0f} MB (target: under 200 MB)")
    print(f"  writer thread CPU: {r['writer_cpu_us_per_sample']:.2f} µs per sample "
          f"({r['writer_cpu_share'] * 100:.1f} % of a core); the caller's put: "
          f"{r['caller_us_per_event']:.2f} µs per event")
    print(f"  reading it back: {r['replay_us_per_sample']:.2f} µs per sample replayed as events, "
          f"{r['bulk_us_per_sample']:.2f} µs per sample loaded as arrays (worker_samples)")
    for level, message in r["notices"]:
        print(f"  notice ({level}): {message}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
