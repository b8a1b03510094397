"""GUI benchmark: redraw time of the memory plot with 200 workers x 1 hour at 10 Hz (7.2 M
points), and the RSS of the whole app holding that history.

Run with ``make bench`` (or ``QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_gui.py``).
A redraw is what the 20 Hz redraw timer does once a tick brought new samples: every worker's
newest sample appended, the curves rebuilt (peak-decimated per pixel, cached), and the plot
widget painted into an image the size it has in the 1400x900 window. Prints::

    gui: plot redraw, 200 workers x 3600 s at 10 Hz (7.2 M points), window 1 h: median 9.1 ms, p95 10.4 ms
    gui: app RSS with that history: 252 MB
"""

from __future__ import annotations

import atexit
import os
import shutil
import statistics
import tempfile
import time
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import psutil  # noqa: E402

from oomscope.core.engine import Engine, EngineConfig  # noqa: E402
from oomscope.core.events import WorkerRef, WorkerStarted  # noqa: E402
from oomscope.core.sizes import parse_level  # noqa: E402
from oomscope.core.thresholds import ThresholdConfig  # noqa: E402
from oomscope.gui.history import history_columns  # noqa: E402

WORKERS = 200
SECONDS = 3600
RATE_HZ = 10


def _history(rng: np.random.Generator, n: int, base: float) -> np.ndarray:
    """A plausible memory curve: a random walk with occasional GC drops, in bytes."""
    steps = rng.normal(0.0, 0.2, n) * (1 << 20)
    steps[rng.random(n) < 0.001] -= 30 << 20
    values = np.maximum(base + np.cumsum(steps), 16 << 20)
    return history_columns({"rss": values, "anon": values * 0.7}, n)


def build(workers: int = WORKERS, seconds: int = SECONDS, rate_hz: int = RATE_HZ) -> tuple[Any, Any, float]:
    from oomscope.gui.qt import QSettings, QtWidgets
    from oomscope.gui.window import MainWindow

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(["oomscope-bench"])
    engine = Engine(EngineConfig(interval_s=1.0 / rate_hz, kernel_log=False))  # never started
    # A throwaway file, never os.devnull: QSettings saves by writing a new file and renaming it
    # over the old one, which replaced the machine's /dev/null with a regular file.
    settings_dir = tempfile.mkdtemp(prefix="oomscope-bench-gui-")
    atexit.register(shutil.rmtree, settings_dir, True)
    settings = QSettings(os.path.join(settings_dir, "settings.ini"), QSettings.Format.IniFormat)
    thresholds = ThresholdConfig(warn=parse_level("600MiB"), crit=parse_level("800MiB"))
    window = MainWindow(engine, settings, thresholds=thresholds, persist_thresholds=False)
    window.bridge.stop()
    window.resize(1400, 900)
    window.show()
    app.processEvents()
    rng = np.random.default_rng(7)
    n = seconds * rate_hz
    now = time.time()
    t = now - seconds + np.arange(n, dtype=np.float64) / rate_hz
    for i in range(workers):
        ref = WorkerRef(f"w{i + 1}", 10_000 + i, t[0], f"worker-{i + 1}", ("node", "w.js"), True)
        window.handle_event(WorkerStarted(t[0], ref))
        window.roster.by_id[ref.id].series.extend(t, _history(rng, n, float(rng.integers(100, 700)) * (1 << 20)))
    window.plot.set_window(3600.0)
    return app, window, float(t[-1])


def redraws(window: Any, last_t: float, frames: int = 120, rate_hz: int = RATE_HZ) -> list[float]:
    from oomscope.gui.qt import QtGui

    plot = window.plot
    size = plot.plot_widget.size()
    image = QtGui.QImage(size, QtGui.QImage.Format.Format_ARGB32_Premultiplied)
    rng = np.random.default_rng(1)
    times: list[float] = []
    for frame in range(frames):
        t = last_t + (frame + 1) / rate_hz
        for w in window.roster.workers:
            s = w.series
            value = float(s.values("rss")[-1]) + float(rng.normal(0, 1 << 18))
            s.append(t, value, value * 0.7, None)
        start = time.perf_counter()
        plot.redraw()
        image.fill(0)
        painter = QtGui.QPainter(image)
        plot.plot_widget.render(painter)
        painter.end()
        times.append(time.perf_counter() - start)
    return times[10:]  # the first frames fill the peak caches


def main(argv: list[str] | None = None) -> None:
    import benchargs  # beside this script (the tests load it as a module, without it)

    quick = benchargs.quick(argv, __doc__)
    workers, seconds, frames = (5, 60, 15) if quick else (WORKERS, SECONDS, 120)
    app, window, last_t = build(workers, seconds)
    times = sorted(redraws(window, last_t, frames))
    median = statistics.median(times) * 1000
    p95 = times[int(0.95 * (len(times) - 1))] * 1000
    points = workers * seconds * RATE_HZ
    print(f"gui: plot redraw, {workers} workers x {seconds} s at {RATE_HZ} Hz ({points / 1e6:.1f} M points), "
          f"window 1 h: median {median:.1f} ms, p95 {p95:.1f} ms (target p95 <= 16 ms)")
    rss_mb = psutil.Process().memory_info().rss / 1e6
    print(f"gui: app RSS with that history: {rss_mb:.0f} MB (target <= 400 MB)")
    window.close()
    app.processEvents()


if __name__ == "__main__":
    main()
