"""Memory under churn: oomscope's own RSS and open descriptors while thousands of short-lived
workers come and go, in ``watch`` and in the window (issue #14, "Bounded memory").

Two runs, each fed ``--workers`` churned workers (default 10,000):

* ``watch --children-of P --json`` in a subprocess, P a parent that keeps ``--concurrency``
  children alive, each living ``--life`` seconds. The children live long enough for the 0.5 s
  rescan to find each of them (a child of 20-50 ms is mostly gone before a rescan looks);
  only the workers watch saw are counted, from its ``worker_exited`` lines.
* the window (offscreen, in this process) on a real engine: half the workers the same
  children of a parent, half launched by the engine itself (``sh -c 'echo hi; exit 3'`` —
  these live a few ms, output and pipes included).

At 0, 1,000, 2,000 … workers gone the RSS (psutil) and the open descriptors of the oomscope
process are read. The slope is a least-squares fit after the warm-up (the first 1,000).
Prints (figures of the machine this was written on)::

    churn, watch --children-of, 10,000 workers (children of 0.6 s, 100 at a time): RSS start 30.2 MiB, peak 31.0 MiB, end 30.7 MiB, after warm-up 30.4-31.0 MiB, slope +0.03 MiB per 1,000 workers; fds start 4, end 4
    churn, watch: RSS MiB at every 1,000 workers: 30.2 30.4 ...
    churn, window, 10,000 workers (...): RSS start ..., ...; fds start 31, end 31; roster 100 live + 500 exited rows, 9,400 older exits not shown, timeline 2,000 deaths
    churn, window: RSS MiB at every 1,000 workers: ...
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import psutil  # noqa: E402

WORKERS = 10_000
STEP = 1_000
LIFE_S = 0.6
CONCURRENCY = 100
LAUNCHED_AT_ONCE = 8

# The parent of the churned children: a sentinel child first (once oomscope has attached it,
# oomscope is watching), then, on "go" from stdin, N children CONCURRENCY at a time.
PARENT = r"""
import subprocess, sys, time
n, at_once, life = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
sentinel = subprocess.Popen(["sleep", "3600"])
print(sentinel.pid, flush=True)
sys.stdin.readline()
running, started = [], 0
while started < n or running:
    while started < n and len(running) < at_once:
        running.append(subprocess.Popen(["sleep", life]))
        started += 1
    time.sleep(0.005)
    running = [p for p in running if p.poll() is None]
sentinel.kill()
sentinel.wait()
"""


def mib(rss: int) -> float:
    return rss / (1 << 20)


class Readings:
    """RSS and descriptors of one process at every STEP workers gone."""

    def __init__(self, pid: int, step: int) -> None:
        self.proc = psutil.Process(pid)
        self.step = step
        self.rss: list[float] = []
        self.fds: list[int] = []

    def take(self) -> None:
        self.rss.append(mib(self.proc.memory_info().rss))
        self.fds.append(self.proc.num_fds())

    def due(self, gone: int) -> bool:
        return gone >= len(self.rss) * self.step

    def summary(self) -> str:
        after = self.rss[1:] or self.rss
        xs = list(range(len(after)))
        slope = _slope(xs, after)
        return (f"RSS start {self.rss[0]:.1f} MiB, peak {max(self.rss):.1f} MiB, end {self.rss[-1]:.1f} MiB, "
                f"after warm-up {min(after):.1f}-{max(after):.1f} MiB, slope {slope:+.2f} MiB per "
                f"{self.step:,} workers; fds start {self.fds[0]}, end {self.fds[-1]}")

    def series(self) -> str:
        return " ".join(f"{r:.1f}" for r in self.rss)


def _slope(xs: list[int], ys: list[float]) -> float:
    if len(xs) < 2:
        return 0.0
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den


def start_parent(children: int, at_once: int, life_s: float) -> tuple[subprocess.Popen[str], int]:
    """The churning parent, waiting for "go"; and its sentinel child's PID."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(children), str(at_once), f"{life_s:g}"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    sentinel = int(parent.stdout.readline())
    return parent, sentinel


def go(parent: subprocess.Popen[str]) -> None:
    assert parent.stdin is not None
    parent.stdin.write("go\n")
    parent.stdin.close()


def end(proc: subprocess.Popen[Any], sentinel: int | None = None) -> None:
    """Our own process, by its Popen; and the parent's sentinel child, by its PID (a killed
    parent would leave it sleeping under PID 1)."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    if sentinel is not None:
        try:
            os.kill(sentinel, signal.SIGKILL)
        except ProcessLookupError:
            pass


# ------------------------------------------------------------------------- watch

def bench_watch(workers: int, life_s: float, at_once: int, step: int) -> Readings:
    # A few more children than counted: the odd one a rescan misses must not leave us short.
    parent, sentinel = start_parent(workers + workers // 10 + at_once, at_once, life_s)
    watch = subprocess.Popen([sys.executable, "-m", "oomscope", "watch", "--children-of", str(parent.pid),
                              "--json"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert watch.stdout is not None
        readings = Readings(watch.pid, step)
        gone = 0
        # The sentinel by its worker id, not its PID: pid_max may be 32,768, and 10,000 churned
        # workers then wrap the PIDs round, so a later child can have the sentinel's.
        sentinel_id = None
        for line in watch.stdout:
            event = json.loads(line)
            kind = event.get("event")
            if kind == "worker_attached" and event["worker"]["pid"] == sentinel and not readings.rss:
                sentinel_id = event["worker"]["id"]
                readings.take()
                go(parent)
            elif kind == "worker_exited" and event["worker"]["id"] != sentinel_id and readings.rss:
                gone += 1
                if readings.due(gone):
                    readings.take()
                if gone >= workers:
                    break
        return readings
    finally:
        end(parent, sentinel)
        end(watch)


# ------------------------------------------------------------------------ window

def bench_window(workers: int, life_s: float, at_once: int, step: int) -> tuple[Readings, str]:
    from oomscope.core.engine import Engine, EngineConfig
    from oomscope.core.launch import LaunchSpec
    from oomscope.gui.qt import QSettings, QtWidgets
    from oomscope.gui.window import MainWindow

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(["oomscope-bench"])
    settings_dir = tempfile.mkdtemp(prefix="oomscope-bench-churn-")
    atexit.register(shutil.rmtree, settings_dir, True)
    settings = QSettings(os.path.join(settings_dir, "settings.ini"), QSettings.Format.IniFormat)
    engine = Engine(EngineConfig(interval_s=0.5)).start()
    window = MainWindow(engine, settings, persist_thresholds=False)
    window.resize(1400, 900)
    window.show()
    launched_n = workers // 2
    children_n = workers - launched_n
    parent, sentinel = start_parent(children_n + children_n // 10 + at_once, at_once, life_s)
    gone = [0]
    children_gone = [0]
    launched_gone = [0]
    launched = [0]
    in_flight = [0]
    spec = LaunchSpec("echo hi; exit 3", name="churn")
    readings = Readings(os.getpid(), step)

    pending: list[Any] = []  # launches not yet known to have started
    failures: dict[str, int] = {}  # a launch the engine refused, by its message: never exits

    def launch_more() -> None:
        while in_flight[0] < LAUNCHED_AT_ONCE and launched[0] < launched_n:
            launched[0] += 1
            in_flight[0] += 1
            pending.append(engine.launch(spec))

    def settle_launches() -> bool:
        """Count failed launches (they bring no exit) and launch others in their place."""
        still = []
        for future in pending:
            if not future.done():
                still.append(future)
            elif future.exception() is not None:
                text = str(future.exception())
                failures[text] = failures.get(text, 0) + 1
                in_flight[0] -= 1
                launched[0] -= 1
        pending[:] = still
        if readings.rss:
            launch_more()
        return gone[0] >= workers

    sentinel_id: list[str] = []  # by id, not PID: a churn can wrap the PIDs round (pid_max 32,768)

    def on_exit(ev: Any) -> None:
        if ev.worker.id in sentinel_id:
            return
        if ev.worker.launched:
            in_flight[0] -= 1
            launched_gone[0] += 1
            if readings.rss:
                launch_more()
        else:
            children_gone[0] += 1
        gone[0] = min(children_gone[0], children_n) + launched_gone[0]
        if readings.rss and readings.due(gone[0]):
            readings.take()

    window.worker_exited.connect(on_exit)
    try:
        engine.watch_children(parent.pid).result(10)
        _spin(app, lambda: any(w.ref.pid == sentinel for w in window.roster.workers))
        sentinel_id.extend(w.id for w in window.roster.workers if w.ref.pid == sentinel)
        readings.take()
        go(parent)
        launch_more()
        _spin(app, settle_launches, progress=lambda: gone[0])
        rows = window.roster.workers
        exited = sum(1 for w in rows if not w.alive)
        forgotten = getattr(window.roster, "forgotten", 0)
        tally = (f"roster {len(rows) - exited} live + {exited} exited rows, {forgotten:,} older exits not shown, "
                 f"timeline {len(window.roster.deaths):,} deaths")
        if failures:
            tally += "; launches refused (tried again): " + "; ".join(f"{n} × {text}" for text, n in failures.items())
        return readings, tally
    finally:
        end(parent, sentinel)
        engine.stop()
        window.close()
        app.processEvents()


def _spin(app: Any, done: Callable[[], bool], timeout_s: float = 1800.0,
          progress: Callable[[], int] | None = None, stall_s: float = 120.0) -> None:
    """Qt's events until ``done``; a run whose ``progress`` stands still for ``stall_s`` is stuck,
    and says so rather than waiting out the whole timeout."""
    deadline = time.monotonic() + timeout_s
    last, moved = (progress() if progress else 0), time.monotonic()
    while not done():
        now = time.monotonic()
        if now > deadline:
            raise TimeoutError("the churn did not finish in time")
        if progress is not None:
            if progress() != last:
                last, moved = progress(), now
            elif now - moved > stall_s:
                raise TimeoutError(f"the churn stopped at {last:,} workers gone: nothing for {stall_s:g} s")
        app.processEvents()
        time.sleep(0.002)


def main(argv: list[str] | None = None) -> None:
    import benchargs  # beside this script (the tests load it as a module, without it)

    p = benchargs.parser(__doc__, "200 workers, a reading every 100")
    p.add_argument("--workers", type=int, default=WORKERS)
    p.add_argument("--life", type=float, default=LIFE_S, help="seconds each child of the parent lives")
    p.add_argument("--concurrency", type=int, default=CONCURRENCY, help="children alive at once")
    p.add_argument("--only", choices=("watch", "window"), help="one of the two runs")
    args = p.parse_args(argv)
    workers, step = (200, 100) if args.quick else (args.workers, STEP)
    what = f"children of {args.life:g} s, {args.concurrency} at a time"
    if args.only != "window":
        r = bench_watch(workers, args.life, args.concurrency, step)
        print(f"churn, watch --children-of, {workers:,} workers ({what}): {r.summary()}")
        print(f"churn, watch: RSS MiB at every {step:,} workers: {r.series()}")
        sys.stdout.flush()
    if args.only != "watch":
        r, tally = bench_window(workers, args.life, args.concurrency, step)
        print(f"churn, window, {workers:,} workers (half {what}, half launched 'echo hi; exit 3', "
              f"{LAUNCHED_AT_ONCE} at a time): {r.summary()}; {tally}")
        print(f"churn, window: RSS MiB at every {step:,} workers: {r.series()}")


if __name__ == "__main__":
    main()
