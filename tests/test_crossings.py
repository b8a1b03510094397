"""Crossings seen before the kernel acts: kernel notifications for a launched worker's own
cgroup, fast sampling of a worker climbing toward a line, and sustain skipped when the limit
comes first. Real workers, real cgroups (v1 here), real kernel OOM kills where one would win."""

from __future__ import annotations

import json
import os
from dataclasses import replace
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from conftest import PY, REPO, ready_child, v1_memory_writable
from gui_helpers import confirmer, make_window  # noqa: F401 (fixtures)
from oomscope.core.crossings import BURST_S, Velocity, climb_outlook, imminent, kernel_levels
from oomscope.core.events import LevelPending, Samples, Threshold, WorkerExited, WorkerStarted
from oomscope.core.launch import LaunchSpec
from oomscope.core.sizes import parse_level
from oomscope.core.thresholds import ThresholdConfig

MiB = 1 << 20
needs_v1 = pytest.mark.skipif(not v1_memory_writable(), reason="needs a writable cgroup v1 memory controller (root)")

# 8 MiB touched every 50 ms: 160 MB/s, the leak.py.
FAST_LEAK = """
import time
held = []
while True:
    b = bytearray(8 << 20)
    b[::4096] = b"\\x01" * len(b[::4096])
    held.append(b)
    del b
    time.sleep(0.05)
"""


def test_velocity_is_the_slope_over_half_a_second() -> None:
    v = Velocity()
    assert v.bytes_per_s() is None
    v.add(10.0, 100 * MiB)
    v.add(10.02, 108 * MiB)
    assert v.bytes_per_s() is None  # one burst 20 ms apart is no rate
    for k in range(2, 40):  # 20 ms samples of a steady 100 MiB/s climb
        v.add(10.0 + 0.02 * k, 100 * MiB + int(2 * MiB * k))
    assert v.bytes_per_s() == pytest.approx(100 * MiB, rel=0.02)
    rate = v.bytes_per_s()
    assert climb_outlook(rate, 150 * MiB, 200 * MiB, 0, None, 1.0)[0] == pytest.approx(0.5, rel=0.02)
    assert climb_outlook(rate, 250 * MiB, 200 * MiB, 0, None, 1.0)[0] == 0.0
    assert climb_outlook(rate, 0, None, 0, None, 1.0)[0] is None
    # A step of 8 MiB every 300 ms is 27 MiB/s, not the 400 MiB/s of its 20 ms edges.
    step = Velocity()
    for k in range(0, 60):
        t = 0.02 * k
        step.add(t, (100 + 8 * int(t / 0.3)) * MiB)
    rate = step.bytes_per_s()
    assert rate is not None and rate < 40 * MiB
    falling = Velocity()
    falling.add(0.0, 10 * MiB)
    falling.add(1.0, 5 * MiB)
    assert climb_outlook(falling.bytes_per_s(), 5 * MiB, 20 * MiB, 0, None, 1.0)[0] is None


def test_kernel_levels_ladder_stays_under_the_limit() -> None:
    assert kernel_levels([None, None], 64 * MiB) == []
    assert kernel_levels([40 * MiB, 60 * MiB], 64 * MiB) == [
        40 * MiB, 41 * MiB, 42 * MiB, 44 * MiB, 48 * MiB, 60 * MiB, 61 * MiB, 62 * MiB]
    assert kernel_levels([10 * MiB], None)[-1] == 18 * MiB


def test_imminent_and_fast_decisions() -> None:
    assert imminent(0.5, 2.0) and not imminent(3.0, 2.0) and not imminent(None, 2.0)
    rate = 100.0 * MiB  # bytes/s
    # The limit in 2 s, within a 3 s horizon: fast, and 2 s to the limit.
    assert climb_outlook(rate, 100 * MiB, 300 * MiB, 0, None, 3.0) == (2.0, True)
    # 8 s away: not fast yet, but the time is known.
    assert climb_outlook(rate, 100 * MiB, 900 * MiB, 0, None, 3.0) == (8.0, False)
    # No limit: the critical level on the metric decides.
    assert climb_outlook(rate, 0, None, 100 * MiB, 200 * MiB, 3.0) == (None, True)
    # Not climbing: nothing, unless already at the limit.
    assert climb_outlook(-rate, 100 * MiB, 300 * MiB, 0, 200 * MiB, 3.0) == (None, False)
    assert climb_outlook(None, 300 * MiB, 300 * MiB, 0, None, 3.0) == (0.0, False)

def _watch_json(args: list[str], timeout_s: float = 60.0, status: int = 0) -> list[dict[str, Any]]:
    done = subprocess.run([sys.executable, "-m", "oomscope", "watch", "--json", *args],
                          capture_output=True, text=True, timeout=timeout_s, cwd=REPO, check=False)
    assert done.returncode == status, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


@needs_v1
@pytest.mark.cgroup
@pytest.mark.slow
def test_policy_beats_the_kernel_on_a_160_mb_per_s_leak() -> None:
    """The issue's command line, defaults otherwise (1 s interval, 2 s sustain): before, the
    kernel OOM-killed the worker 1.8 s after start, every time."""
    for _ in range(3):
        events = _watch_json(["--mem-limit", "256MiB", "--crit", "60%", "--on-crit", "terminate",
                              "--", PY, "-c", FAST_LEAK], status=101)  # a policy terminated it
        exits = [e for e in events if e["event"] == "worker_exited"]
        assert exits and exits[-1]["cause"] == "terminated" and exits[-1]["by"] == "policy", exits
        crit = [e for e in events if e["event"] == "threshold" and e["level"] == "critical"]
        # Percent of the limit compares the cgroup's usage, what the kernel compares.
        assert crit and crit[0]["value"] >= 0.6 * (256 * MiB)


@needs_v1
@pytest.mark.cgroup
def test_a_crossing_between_ticks_is_reported_before_the_next_tick(make_engine: Callable[..., Any],
                                                                    gate: Callable[[], Any]) -> None:
    """Interval 60 s: the first tick samples the worker small; it then climbs past 50 % of its
    limit. Only the kernel's notification can say so before the next tick, a minute later."""
    config = ThresholdConfig(warn=None, crit=parse_level("50%"), sustain_s=0.0)
    eng, log = make_engine(interval_s=60.0, thresholds=config)
    small = gate()  # it climbs only once the first tick has sampled it small
    climb = (f"import time\n{small.wait_code}\nb = bytearray(48 << 20)\n"
             "b[::4096] = b'\\x01' * len(b[::4096])\ntime.sleep(60)\n")
    ref = eng.launch(LaunchSpec((PY, "-c", climb), mem_limit_bytes=64 << 20)).result(10)
    (first,) = log.wait_samples(ref.id)
    assert first.anon < 32 * MiB
    small.open()
    hit = log.wait_for(lambda e: isinstance(e, Threshold) and e.worker.id == ref.id
                       and e.level == "critical", timeout=20.0)
    assert isinstance(hit, Threshold) and hit.value >= 32 * MiB
    # Seen within the 20 s waited, long before the next tick: the kernel woke the engine.
    assert eng.stats()["kernel_wakeups"] >= 1


@needs_v1
@pytest.mark.cgroup
def test_a_kernel_wake_up_is_followed_by_a_burst_of_dense_samples(make_engine: Callable[..., Any],
                                                                    gate: Callable[[], Any]) -> None:
    """After a wake-up the value a level compares may cross it between two 20 ms samples while
    the cgroup's usage passes no further rung: the engine samples that worker every 5 ms for a
    moment. The climb's own rungs wake the engine several times in its first milliseconds;
    after that, in the rest of the burst's window, 20 ms spacing would give at most 2 samples."""
    config = ThresholdConfig(warn=None, crit=parse_level("50%"), sustain_s=0.0)
    eng, log = make_engine(interval_s=60.0, thresholds=config)
    small = gate()
    climb = (f"import time\n{small.wait_code}\nb = bytearray(48 << 20)\n"
             "b[::4096] = b'\\x01' * len(b[::4096])\ntime.sleep(60)\n")
    ref = eng.launch(LaunchSpec((PY, "-c", climb), mem_limit_bytes=64 << 20)).result(10)
    log.wait_samples(ref.id)
    small.open()
    # The wake-up's own sample reports the crossing: the threshold event has its time.
    woke = log.wait_for(lambda e: isinstance(e, Threshold) and e.worker.id == ref.id, timeout=20.0).t
    log.wait_for(lambda e: isinstance(e, Samples) and e.t > woke + BURST_S + 0.05, timeout=10.0)
    burst = [ev.t for ev in log.events if isinstance(ev, Samples) and woke + 0.02 < ev.t <= woke + BURST_S
             and any(s.worker.id == ref.id for s in ev.samples)]
    assert eng.stats()["kernel_wakeups"] >= 1
    assert len(burst) >= 5, [round((t - woke) * 1e3, 1) for t in burst]


def test_a_fast_climb_is_sampled_fast(make_engine: Callable[..., Any],
                                      children: Callable[..., subprocess.Popen[bytes]]) -> None:
    """An attached worker (no cgroup of its own, so no kernel notification) climbing 40 MiB/s
    toward its critical level: between 1 s ticks the engine samples it every 20 ms."""
    config = ThresholdConfig(warn=None, crit=parse_level("400MiB"), sustain_s=0.0)
    eng, log = make_engine(interval_s=1.0, thresholds=config)
    climber = ready_child(children, "import time\nheld = []\nprint('ready', flush=True)\n"
                                    "while True:\n    b = bytearray(2 << 20)\n"
                                    "    b[::4096] = b'\\x01' * len(b[::4096])\n    held.append(b)\n"
                                    "    del b\n    time.sleep(0.05)\n")
    ref = eng.attach(climber.pid).result(10)
    log.wait_for(lambda e: isinstance(e, Threshold) and e.worker.id == ref.id and e.level == "critical",
                 timeout=30.0)
    times = [e.t for e in log.events if isinstance(e, Samples)
             for s in e.samples if s.worker.id == ref.id]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert min(gaps) < 0.1, gaps  # fast samples, not only the 1 s ticks
    assert sum(1 for g in gaps if g < 0.1) >= 5


def test_no_cgroup_no_fast_sampling_for_a_steady_worker(make_engine: Callable[..., Any],
                                                        children: Callable[..., subprocess.Popen[bytes]]) -> None:
    config = ThresholdConfig(warn=None, crit=parse_level("400MiB"), sustain_s=0.0)
    eng, log = make_engine(interval_s=0.2, thresholds=config)
    steady = ready_child(children, "import time\nprint('ready', flush=True)\ntime.sleep(60)\n")
    ref = eng.attach(steady.pid).result(10)
    samples = log.wait_samples(ref.id, 8)
    times = [e.t for e in log.events if isinstance(e, Samples) for s in e.samples if s.worker.id == ref.id]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(samples) >= 8 and min(gaps) > 0.1, gaps  # the interval, nothing faster


@needs_v1
@pytest.mark.cgroup
def test_a_watched_worker_leaves_no_cgroup_behind(make_engine: Callable[..., Any]) -> None:
    config = ThresholdConfig(warn=None, crit=parse_level("50%"))
    eng, log = make_engine(interval_s=0.1, thresholds=config)
    ref = eng.launch(LaunchSpec((PY, "-c", "print('hi')"), mem_limit_bytes=64 << 20)).result(10)
    started = log.wait_for(lambda e: isinstance(e, WorkerStarted) and e.worker.id == ref.id)
    assert isinstance(started, WorkerStarted) and started.cgroup is not None
    ev = log.wait_exit(ref.id)
    assert isinstance(ev, WorkerExited) and ev.cause == "exit"
    eng.stop()
    # The kernel's notification held the cgroup open; closed with its worker, rmdir succeeded.
    assert not os.path.exists("/sys/fs/cgroup/memory" + started.cgroup)


def test_a_pending_level_is_announced_then_entered(make_engine: Callable[..., Any],
                                                    children: Callable[..., subprocess.Popen[bytes]]) -> None:
    """Above critical but not yet for the sustain time: a `pending` event says so (the window
    shows "over critical 0.4 / 1 s"), and another one clears it when the level is entered."""
    config = ThresholdConfig(warn=None, crit=parse_level("60MiB"), sustain_s=1.0)
    eng, log = make_engine(interval_s=0.1, thresholds=config)
    worker = ready_child(children, "import time\nb = bytearray(80 << 20)\n"
                                   "b[::4096] = b'\\x01' * len(b[::4096])\nprint('ready', flush=True)\n"
                                   "time.sleep(60)\n")
    ref = eng.attach(worker.pid).result(10)
    entered = log.wait_for(lambda e: isinstance(e, Threshold) and e.worker.id == ref.id
                           and e.level == "critical", timeout=15.0)
    pend = [e for e in log.events if isinstance(e, LevelPending) and e.worker.id == ref.id]
    assert pend and pend[0].level == "critical" and pend[0].sustain_s == 1.0
    assert pend[0].since is not None and entered.t - pend[0].since >= 1.0
    assert pend[0].value >= 60 * MiB and pend[0].limit == 60 * MiB
    cleared = log.wait_for(lambda e: isinstance(e, LevelPending) and e.worker.id == ref.id and e.level is None)
    assert cleared.to_json()["level"] is None


@needs_v1
@pytest.mark.cgroup
@pytest.mark.gui
@pytest.mark.qt_log_ignore("propagateSizeHints")  # the offscreen platform's, for a shown window
def test_the_window_terminates_a_160_mb_per_s_leak_before_the_kernel(qtbot: Any, make_window: Any) -> None:
    """The same race in the window, "terminate at critical" with the defaults' interval (1 s)
    and sustain (2 s): the row ends terminated by policy, not oom-kill."""
    from oomscope.core.causes import TERMINATED
    from oomscope.core.thresholds import DEFAULT_THRESHOLDS

    config = replace(DEFAULT_THRESHOLDS, warn=parse_level("50%"), crit=parse_level("60%"), on_crit="terminate")
    window = make_window(thresholds=config, interval_s=1.0)
    window.launch(LaunchSpec((PY, "-c", FAST_LEAK), name="leak", mem_limit_bytes=256 << 20))
    qtbot.waitUntil(lambda: any(w.ref.name == "leak" and w.exit is not None for w in window.roster.workers),
                    timeout=30_000)
    w = next(w for w in window.roster.workers if w.ref.name == "leak")
    assert w.exit is not None and (w.exit.cause, w.exit.by) == (TERMINATED, "policy"), w.exit
