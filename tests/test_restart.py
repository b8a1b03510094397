"""Restart policy: backoff, healthy reset, crash-loop guard, slots across lives."""

from __future__ import annotations

import pytest

from conftest import PY, v1_memory_writable
from oomscope.core.errors import BadInput
from oomscope.core.launch import LaunchSpec
from oomscope.core.restart import RestartPolicy, Slot

LEAKER = "import time\nc = []\nwhile True:\n    c.append(bytearray(1 << 20)); time.sleep(0.004)\n"


def slot(**kw) -> Slot:
    return Slot(1, LaunchSpec(("true",)), RestartPolicy(**kw))


def test_backoff_doubles_up_to_the_cap_and_stops_at_max() -> None:
    s = slot(max=5, backoff_initial_s=1, backoff_cap_s=5)
    delays = [s.died("signal", None, None, ran_s=0.5, now_mono=t)[0] for t in range(6)]
    assert delays == [1, 2, 4, 5, 5, None]


def test_a_healthy_run_resets_the_backoff() -> None:
    s = slot(max=5, backoff_initial_s=1, backoff_cap_s=60, healthy_s=10)
    assert [s.died("exit", None, 1, 1, t)[0] for t in (0, 1, 2)] == [1, 2, 4]
    assert s.died("exit", None, 1, ran_s=30, now_mono=40)[0] == 1


def test_crash_loop_guard_and_what_is_never_restarted() -> None:
    s = slot(max=9, crash_loop_kills=2, crash_loop_window_s=60)
    assert s.died("oom-kill", None, None, 1, 0)[0] is not None
    delay, why = s.died("heap-oom", None, None, 1, 30)
    assert delay is None and "crash loop" in why and s.stopped_reason
    spaced = slot(max=9, crash_loop_kills=2, crash_loop_window_s=60)
    assert spaced.died("oom-kill", None, None, 1, 0)[0] is not None
    assert spaced.died("oom-kill", None, None, 1, 61)[0] is not None  # outside the window
    assert slot(max=3).died("exit", None, 0, 1, 0) == (None, "it exited cleanly")
    assert slot(max=3).died("terminated", "user", None, 1, 0)[0] is None
    assert slot(max=3).died("terminated", "policy", None, 1, 0)[0] is not None


def test_a_late_oom_record_counts_toward_the_crash_loop_guard() -> None:
    s = slot(max=9, crash_loop_kills=2, crash_loop_window_s=60)
    assert s.died("oom-kill", None, None, 1, 0)[0] is not None
    assert s.died("signal", None, None, 1, 20)[0] is not None  # a SIGKILL, no record yet
    assert s.cause_changed("signal", "oom-kill", 20) is not None  # the record came: a loop
    assert s.stopped_reason and "2 memory deaths" in s.stopped_reason
    assert s.deaths == {"oom-kill": 2}
    apart = slot(max=9, crash_loop_kills=2, crash_loop_window_s=60)
    apart.died("oom-kill", None, None, 1, 0)
    apart.died("signal", None, None, 1, 90)
    assert apart.cause_changed("signal", "oom-kill", 90) is None  # 90 s apart: no loop
    assert apart.stopped_reason is None and apart.deaths == {"oom-kill": 2}


def test_bad_policies() -> None:
    with pytest.raises(BadInput):
        RestartPolicy(max=-1)
    with pytest.raises(BadInput):
        RestartPolicy(backoff_initial_s=10, backoff_cap_s=1)


def test_a_crashing_worker_is_restarted_with_backoff_in_its_slot(make_engine) -> None:
    eng, log = make_engine()
    policy = RestartPolicy(max=3, backoff_initial_s=0.1, backoff_cap_s=0.25)
    first = eng.launch(LaunchSpec((PY, "-c", "import sys; sys.exit(3)")), restart=policy).result(10)
    log.wait_for(lambda e: e.kind == "notice" and "no restarts left" in e.message, timeout=30)
    starts = log.of("worker_started")
    exits = log.of("worker_exited")
    assert [s.worker.life for s in starts] == [1, 2, 3, 4]
    assert {s.worker.slot for s in starts} == {first.slot} and first.slot is not None
    assert len({s.worker.id for s in starts}) == 4
    gaps = [starts[i + 1].t - exits[i].t for i in range(3)]
    for gap, delay in zip(gaps, (0.1, 0.2, 0.25)):
        assert gap >= delay - 0.01, gaps
    assert all(e.cause == "exit" and e.exit_code == 3 for e in exits)
    assert starts[0].to_json()["worker"]["slot"] == first.slot


@pytest.mark.cgroup
@pytest.mark.skipif(not v1_memory_writable(), reason="needs root and a writable cgroup v1 memory controller")
def test_crash_loop_guard_stops_an_oom_killed_worker(make_engine) -> None:
    eng, log = make_engine()
    policy = RestartPolicy(max=5, backoff_initial_s=0.1, backoff_cap_s=0.2, crash_loop_kills=2)
    eng.launch(LaunchSpec((PY, "-c", LEAKER), mem_limit_bytes=48 << 20), restart=policy).result(10)
    loop = log.wait_for(lambda e: e.kind == "crash_loop", timeout=60)
    # The life whose OOM kill tripped the guard: the second, two memory deaths within the window.
    assert loop.worker.life == 2 and loop.deaths == 2 and loop.window_s == policy.crash_loop_window_s
    assert "crash loop: 2 memory deaths" in loop.message and "2 oom-kill" in loop.message
    exits = log.of("worker_exited")
    assert [e.cause for e in exits] == ["oom-kill", "oom-kill"] and exits[-1].restart_in_s is None
    assert log.events.index(exits[-1]) < log.events.index(loop)  # the exit first, then why no restart
    assert loop.to_json() == {"t": round(loop.t, 6), "event": "crash_loop", "worker": loop.worker.to_json(),
                              "deaths": 2, "window_s": 60.0, "message": loop.message}
    # The guard's word is the crash_loop event, not a second notice saying the same.
    assert not [e for e in log.events if e.kind == "notice" and "crash loop" in e.message]
    eng.workers().result(5)
    assert [e.cause for e in log.of("worker_exited")] == ["oom-kill", "oom-kill"]
    assert len(log.of("worker_started")) == 2
