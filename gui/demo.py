"""``oomscope demo``: the window with bundled demo workers, every part busy within a minute.

The fast leaker runs with a restart policy of one restart, so the timeline shows two OOM kills
of one slot, and the plot its two lives in one colour.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

from oomscope.core.errors import CgroupUnavailable
from oomscope.core.events import WorkerExited
from oomscope.core.launch import LaunchSpec
from oomscope.core.restart import RestartPolicy
from oomscope.core.sizes import parse_level
from oomscope.core.thresholds import ThresholdConfig

from .qt import QObject
from .window import MainWindow

FAST_LEAK_LIMIT_BYTES = 96 << 20
# The steady worker runs under a roomy limit of its own: the plot then shows two workers' limit
# lines, and "cgroup usage" a curve that lives on after the fast leaker's last death.
STEADY_LIMIT_BYTES = 256 << 20
DEMO_THRESHOLDS = ThresholdConfig(warn=parse_level("150MiB"), crit=parse_level("220MiB"), metric="rss",
                                  on_crit="notify")
DEMO_INTERVAL_S = 0.25


def demo_dir() -> Path:
    return Path(str(resources.files("oomscope.resources") / "demo"))


@dataclass(frozen=True, slots=True)
class DemoPlan:
    runtime: str  # "node" or "python"
    steady: LaunchSpec
    slow_leak: LaunchSpec
    fast_leak: LaunchSpec
    fast_leak_fallback: LaunchSpec  # where no memory cgroup can be made
    threads: LaunchSpec


def plan(node: str | None = None) -> DemoPlan:
    d = demo_dir()
    node = node if node is not None else shutil.which("node")
    if node is not None:
        return DemoPlan(
            "node",
            LaunchSpec((node, str(d / "steady.js")), mem_limit_bytes=STEADY_LIMIT_BYTES, name="steady"),
            LaunchSpec((node, "--expose-gc", str(d / "slow_leak.js")), name="slow-leak"),
            LaunchSpec((node, str(d / "fast_leak.js")), mem_limit_bytes=FAST_LEAK_LIMIT_BYTES, name="fast-leak"),
            LaunchSpec((node, "--max-old-space-size=48", str(d / "fast_leak.js"), "--heap"), name="fast-leak"),
            LaunchSpec((node, str(d / "threads.js")), name="threads"),
        )
    py = sys.executable
    return DemoPlan(
        "python",
        LaunchSpec((py, str(d / "steady.py")), mem_limit_bytes=STEADY_LIMIT_BYTES, name="steady"),
        LaunchSpec((py, str(d / "slow_leak.py")), name="slow-leak"),
        LaunchSpec((py, str(d / "fast_leak.py")), mem_limit_bytes=FAST_LEAK_LIMIT_BYTES, name="fast-leak"),
        LaunchSpec((py, str(d / "fast_leak.py"), "--rlimit"), name="fast-leak"),
        LaunchSpec((py, str(d / "threads.py")), name="threads"),
    )


def offer_demo(window: MainWindow) -> None:
    """The empty plot's "Try the demo" button starts the demo workers in ``window``, once."""

    def start() -> None:
        window.plot.empty_label.set_buttons({"launch", "attach"})
        DemoDirector(window).start()

    window.plot.empty_label.set_buttons({"demo", "launch", "attach"})
    window.demo_requested.connect(start)


class DemoDirector(QObject):
    def __init__(self, window: MainWindow, demo: DemoPlan | None = None, restarts: int = 1) -> None:
        super().__init__(window)
        self.window = window
        self.plan = demo or plan()
        self.restart = RestartPolicy(max=restarts, backoff_initial_s=1.0)
        self.fast_spec = self.plan.fast_leak
        window.worker_exited.connect(self._on_worker_exited)

    def start(self) -> None:
        w = self.window
        w.statusBar().showMessage(f"demo: {self.plan.runtime} workers — a steady one under a 256 MiB limit, a slow "
                                  "leaker, a fast leaker under a 96 MiB limit, and a process with three threads",
                                  15000)
        self._launch_steady()
        for spec in (self.plan.slow_leak, self.plan.threads):
            w.launch(spec)
        self._launch_fast()

    def _launch_steady(self) -> None:
        engine = self.window.engine
        spec = self.plan.steady

        def failed(error: BaseException) -> None:
            if isinstance(error, CgroupUnavailable):
                # Without cgroups it runs unlimited; the fast leaker's message says why.
                self.window.launch(replace(spec, mem_limit_bytes=None))
            else:
                self.window.message_bar.show_message(f"demo: cannot launch the steady worker: {error}")

        self.window.bridge.call(engine.launch(spec), on_error=failed)

    def _launch_fast(self) -> None:
        def failed(error: BaseException) -> None:
            if isinstance(error, CgroupUnavailable) and self.fast_spec is not self.plan.fast_leak_fallback:
                self.window.message_bar.show_message(
                    "demo: no memory cgroup can be made here, so the fast leaker runs without one and "
                    f"hits a heap/address-space limit instead of the kernel OOM killer: {error}", "warning")
                self.fast_spec = self.plan.fast_leak_fallback
                self._launch_fast()
            else:
                self.window.message_bar.show_message(f"demo: cannot launch the fast leaker: {error}")

        engine = self.window.engine
        self.window.bridge.call(engine.launch(self.fast_spec, self.restart), on_error=failed)

    def _on_worker_exited(self, ev: WorkerExited) -> None:
        if ev.worker.name != "fast-leak":
            return
        deaths = [d for d in self.window.roster.deaths if d.worker_id == ev.worker.id and d.thread_id is None]
        if deaths and self.window.detail.worker is None:
            self.window.open_death(deaths[-1])  # show a newcomer what a kill looks like
