"""Recording cost: bytes per sample and per heap report on disk, and the writer thread's CPU.

A synthetic feed stands in for the engine (so the figure is the recorder's alone): 200 workers
at 10 Hz, paced in real time so the writer batches exactly as it does live (one commit a
second), for 30 s by default. The workers behave like a real fleet: a quarter idle, a quarter
leaking a few pages per tick, a quarter in memory cgroups (usage moving every tick), a quarter
Node.js whose main thread and 3 worker threads (``--threads``) each report their heap once a
second at a phase of their own (V8's figures moving by any number of bytes); ``--all-node``
makes every worker such a Node.js process. Every worker has a growth trend after 15 s, the
leakers also their ETAs. The hour figure is the measured bytes per sample (and per heap report)
times an hour of the same fleet.

    $ .venv/bin/python bench/bench_record.py
    record: 200 workers at 10 Hz for 30 s, 50 of them Node.js with 4 threads reporting their heap once a second ...
      on disk: 11.4 bytes per sample (samples, their index and tick times), 25.9 bytes per heap report; ...
      an hour of this fleet: 101 MB (target: under 200 MB)
      writer thread CPU: 4.22 µs per sample (0.8 % of a core); the caller's put: 1.22 µs per event
      reading it back: 2.79 µs per sample replayed as events, 1.74 µs per sample loaded as arrays ...
"""

from __future__ import annotations

import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import benchargs
from oomscope.core.engine import EngineConfig
from oomscope.core.events import Heap, Sample, Samples, WorkerRef, WorkerStarted
from oomscope.core.recording import SessionFile, open_recorder

PAGE = 4096
MiB = 1 << 20
SAMPLE_TABLES = ("samples", "samples_by_worker", "ticks")
HEAP_TABLES = ("heap", "sqlite_autoindex_heap_1")  # the packed rows and their key


class _Fleet:
    """Worker memory that moves like the real thing (see the module docstring)."""

    def __init__(self, n: int, seed: int = 7, threads: int = 4, all_node: bool = False) -> None:
        self.rng = random.Random(seed)
        now = time.time()
        self.node = [all_node or i % 4 == 3 for i in range(n)]
        self.refs = [WorkerRef(f"w{i + 1}", 10_000 + i, now, "node" if self.node[i] else "python3",
                               ("node" if self.node[i] else "python3", "worker.js", str(i)), True, i + 1, 1)
                     for i in range(n)]
        self.rss = [self.rng.randrange(40, 400) * MiB for _ in range(n)]
        self.trend: list[float | None] = [None] * n
        # Per Node.js worker, per thread (0: the main thread): V8's figures, which move by any
        # number of bytes (used), by V8 pages (total), or now and then (external, array buffers).
        self.threads = [[_Thread(self.rng, j) for j in range(threads)] if self.node[i] else []
                        for i in range(n)]

    def heap_of(self, i: int) -> tuple[int, int, int]:
        ts = self.threads[i]
        return sum(t.used for t in ts), sum(t.total for t in ts), sum(t.limit for t in ts)

    def tick(self, k: int, interval_s: float) -> tuple[Sample, ...]:
        rng, out = self.rng, []
        second = k % round(1 / interval_s) == 0
        for i, ref in enumerate(self.refs):
            kind = 3 if self.node[i] else i % 4
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
                out.append(Sample(ref, rss, anon, 0, None, None, *self.heap_of(i), trend, eta, None))
            else:
                out.append(Sample(ref, rss, anon, 0, None, None, None, None, None, trend, eta, None))
        return tuple(out)

    def heaps(self, t: float, k: int, per_second: int) -> list[Heap]:
        """The reports of tick ``k``: every thread reports once a second at a phase of its own
        (its own timer), a few milliseconds after the tick."""
        out = []
        for i, ref in enumerate(self.refs):
            for th in self.threads[i]:
                if k % per_second == th.phase % per_second:
                    th.move()
                    out.append(Heap(t + th.rng.uniform(0.0, 0.009), ref, ref.pid, th.thread_id, th.used, th.total,
                                    th.limit, th.old_used, th.old_limit, th.external, th.buffers,
                                    th.thread_id == 0, False, "node"))
        return out


class _Thread:
    def __init__(self, rng: random.Random, thread_id: int) -> None:
        self.rng, self.thread_id = rng, thread_id
        self.phase = rng.randrange(0, 1000)
        self.used = rng.randrange(4 * MiB, 200 * MiB)
        self.total = (self.used // (256 << 10) + 8) * (256 << 10)
        self.limit = (4144 if thread_id == 0 else 2096) * MiB
        self.old_limit = self.limit - 48 * MiB
        self.old_used = self.used - rng.randrange(0, 2 * MiB)
        self.external = rng.randrange(1 * MiB, 4 * MiB)
        self.buffers = rng.randrange(0, 1 * MiB)

    def move(self) -> None:
        rng = self.rng
        self.used = max(2 * MiB, self.used + rng.randrange(-2 * MiB, 3 * MiB))
        self.old_used = max(1 * MiB, self.used - rng.randrange(0, 2 * MiB))
        if self.used > self.total or rng.random() < 0.1:
            self.total = (self.used // (256 << 10) + rng.randrange(1, 16)) * (256 << 10)
        if rng.random() < 0.3:
            self.external += rng.randrange(-64 << 10, 65 << 10)
            self.buffers = max(0, self.buffers + rng.randrange(-32 << 10, 33 << 10))


def record(n_workers: int = 200, interval_s: float = 0.1, duration_s: float = 30.0,
           directory: str | None = None, threads: int = 4, all_node: bool = False) -> dict[str, Any]:
    fleet = _Fleet(n_workers, threads=threads, all_node=all_node)
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
            reports = fleet.heaps(t, k, per_second)
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
        replay_s, bulk_s = _read_back(path, samples, heaps)
    sample_bytes = sum(pages.get(name, 0) for name in SAMPLE_TABLES)
    heap_bytes = sum(pages.get(name, 0) for name in HEAP_TABLES)
    per_sample = sample_bytes / samples
    per_heap = heap_bytes / heaps if heaps else 0.0
    hour_samples = n_workers * 3600 / interval_s
    hour_heaps = heaps / duration_s * 3600
    return {
        "workers": n_workers, "node_workers": sum(fleet.node), "threads": threads,
        "interval_s": interval_s, "duration_s": duration_s,
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


def _read_back(path: Path, samples: int, heaps: int) -> tuple[float, float]:
    """Seconds to replay the file as events, and to load every worker's samples as arrays."""
    with SessionFile.open(path) as f:
        t0 = time.perf_counter()
        replayed = reports = 0
        for ev in f.events():
            if isinstance(ev, Samples):
                replayed += len(ev.samples)
            elif isinstance(ev, Heap):
                reports += 1
        t1 = time.perf_counter()
        loaded = sum(len(f.worker_samples(None, w.worker_id)["t"]) for w in f.workers())
        t2 = time.perf_counter()
    assert replayed == loaded == samples, (replayed, loaded, samples)
    assert reports == heaps, (reports, heaps)
    return t1 - t0, t2 - t1


def main(argv: list[str] | None = None) -> None:
    p = benchargs.parser(__doc__, "5 workers for 2 s")
    p.add_argument("--workers", type=int, default=200)
    p.add_argument("--interval", type=float, default=0.1)
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--threads", type=int, default=4, help="threads reporting their heap per Node.js worker")
    p.add_argument("--all-node", action="store_true", help="every worker Node.js (default: a quarter)")
    p.add_argument("--dir", help="where to write the file (default: the temporary directory)")
    args = p.parse_args(argv)
    if args.quick:
        args.workers, args.duration = 5, 2.0
    r = record(args.workers, args.interval, args.duration, args.dir, args.threads, args.all_node)
    print(f"record: {r['workers']} workers at {1 / r['interval_s']:g} Hz for {r['duration_s']:g} s, "
          f"{r['node_workers']} of them Node.js with {r['threads']} threads reporting their heap once a second "
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
