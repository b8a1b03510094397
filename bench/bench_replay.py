"""Replay cost: opening a big session file in the replay window, and scrubbing it.

A synthetic session (the real recorder, fed a fleet like bench_record's): N workers at 10 Hz
for M minutes, every worker started at the beginning, a tenth of them exiting along the way,
level changes, kernel lines. Then, offscreen: the time to open it (read the file and show
the end), and the time of a scrub (slider released) to the middle and to near the end.

    $ QT_QPA_PLATFORM=offscreen python bench/bench_replay.py [--workers 200] [--minutes 10]
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import benchargs  # noqa: E402
from oomscope.core.engine import EngineConfig  # noqa: E402
from oomscope.core.oomlog.lines import KernelLine  # noqa: E402
from oomscope.core.events import (  # noqa: E402
    KernelLineRead, Sample, Samples, Threshold, WorkerExited, WorkerRef, WorkerStarted,
)
from oomscope.core.recording import open_recorder  # noqa: E402
from oomscope.core.sizes import format_size  # noqa: E402

import psutil  # noqa: E402

MiB = 1 << 20


def make_session(path: Path, workers: int, minutes: float, interval_s: float = 0.1) -> int:
    rng = random.Random(7)
    t0 = time.time() - minutes * 60
    refs = [WorkerRef(f"w{i + 1}", 20_000 + i, t0, "python3", ("python3", "worker.py", str(i)), True, i + 1, 1)
            for i in range(workers)]
    rss = [rng.randrange(40, 400) * MiB for _ in refs]
    ticks = int(minutes * 60 / interval_s)
    dies = {i: rng.randrange(ticks // 10, ticks) for i in rng.sample(range(workers), workers // 10)}
    rec = open_recorder(path, EngineConfig(interval_s=interval_s), lambda level, msg: print(level, msg))
    for ref in refs:
        rec(WorkerStarted(t0, ref))
    alive = set(range(workers))
    samples = 0
    for k in range(ticks):
        t = t0 + k * interval_s
        out = []
        for i in sorted(alive):
            rss[i] = max(20 * MiB, rss[i] + rng.randrange(-16, 33) * 4096)
            out.append(Sample(refs[i], rss[i], rss[i] - 12 * MiB, 0))
        rec(Samples(t, tuple(out)))
        samples += len(out)
        if k % 50 == 0:
            rec(KernelLineRead(t, KernelLine(f"some kernel line {k}", f"6,{k},{int(k * interval_s * 1e6)},-;some kernel line {k}")))
        for i, when in list(dies.items()):
            if when == k:
                rec(Threshold(t - 1, refs[i], "critical", "rss", rss[i], 500 * MiB))
                rec(WorkerExited(t, refs[i], "oom-kill", None, "SIGKILL", evidence=("synthetic",)))
                alive.discard(i)
                del dies[i]
        while rec.backlog > 100_000:  # never outrun the writer (it drops beyond its backlog)
            time.sleep(0.05)
    rec.close()
    return samples


def main(argv: list[str] | None = None) -> None:
    ap = benchargs.parser(__doc__, "5 workers for half a minute")
    ap.add_argument("--workers", type=int, default=200)
    ap.add_argument("--minutes", type=float, default=10.0)
    args = ap.parse_args(argv)
    if args.quick:
        args.workers, args.minutes = 5, 0.5
    from oomscope.gui.qt import QSettings, QtWidgets
    from oomscope.gui.replay import open_replay

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(["bench"])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.db"
        samples = make_session(path, args.workers, args.minutes)
        size = path.stat().st_size
        settings = QSettings(str(Path(tmp) / "s.ini"), QSettings.Format.IniFormat)
        me = psutil.Process()
        rss0 = me.memory_info().rss
        t = time.perf_counter()
        window = open_replay(path, settings)
        assert window is not None
        window.show()
        app.processEvents()
        opened = time.perf_counter() - t
        data = window.data
        scrubs = []
        for frac in (0.5, 0.95, 0.1):
            t = time.perf_counter()
            window.scrub_to(data.t_start + frac * (data.t_end - data.t_start))
            app.processEvents()
            scrubs.append((frac, time.perf_counter() - t))
        rss1 = me.memory_info().rss
        window.close()
    print(f"replay: {args.workers} workers at 10 Hz for {args.minutes:g} min ({samples} samples, "
          f"{len(data.events)} other events), file {format_size(size)}")
    print(f"  open (read the file, show the end): {opened:.2f} s")
    for frac, s in scrubs:
        print(f"  scrub to {frac:.0%}: {s * 1000:.0f} ms")
    print(f"  the replay window holds {format_size(rss1 - rss0)} (process RSS {format_size(rss0)} -> "
          f"{format_size(rss1)})")


if __name__ == "__main__":
    main()
