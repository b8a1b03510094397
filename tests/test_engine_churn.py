"""Churn: thousands of short-lived workers must not grow the engine (issue #14, "Bounded memory").

Memory is checked as counts of what stays reachable (workers, their output lines, open
descriptors), not as RSS: the benchmark (bench/bench_churn.py) measures RSS.
"""

from __future__ import annotations

import gc
import os
import subprocess
from collections.abc import Callable, Iterator

import pytest

from conftest import PY, EventLog
from oomscope.core.engine import Engine
from oomscope.core.errors import BadInput, WorkerGone
from oomscope.core.launch import LaunchSpec
from oomscope.core.worker import EXITED_KEPT, Worker

# Keeps AT_ONCE children of LIFE seconds alive until it has started N, then exits; prints
# "ready" and waits for a line on stdin first, so the engine watches it before any child comes.
PARENT = (
    "import subprocess, sys, time\n"
    "n, at_once, life = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]\n"
    "print('ready', flush=True)\n"
    "sys.stdin.readline()\n"
    "running, started = [], 0\n"
    "while started < n or running:\n"
    "    while started < n and len(running) < at_once:\n"
    "        running.append(subprocess.Popen(['sleep', life]))\n"
    "        started += 1\n"
    "    time.sleep(0.005)\n"
    "    running = [p for p in running if p.poll() is None]\n"
)


def open_fds() -> int:
    # Other tests' garbage (a Popen's pipes, a closed engine's files) is closed when collected:
    # collected first. Descriptors of others can still close during the test (it read 20 == 22
    # under load), so the checks are "no more than before": a leak adds one per worker or more.
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


def workers_reachable(log: EventLog) -> list[Worker]:
    """This engine's workers still held anywhere: those whose process this test's log saw start
    (a worker of another test, kept by a traceback it left, is not this engine's doing)."""
    ours = {(e.worker.pid, e.worker.start_time) for e in log.of("worker_started") + log.of("worker_attached")}
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, Worker) and (o.ref.pid, o.ref.start_time) in ours]


def drain_exits(log: EventLog, count: int, timeout: float = 120.0, eng: Engine | None = None) -> None:
    log.wait_for(lambda e: len(log.of("worker_exited")) >= count, timeout)
    if eng is not None:
        # A round trip through the engine's loop: the exit is told before its descriptors are
        # closed (the same handler, just after), so the count waits for that handler to end.
        eng.workers().result(10)


@pytest.fixture
def churn_parent() -> Iterator[Callable[[int, int, float], subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []

    def start(n: int, at_once: int, life_s: float) -> subprocess.Popen[str]:
        p = subprocess.Popen([PY, "-c", PARENT, str(n), str(at_once), f"{life_s:g}"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(p)
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        p.stdout.close()  # said all it has to: a descriptor of ours less to count
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()  # our own child, by its Popen
        p.wait(timeout=10)
        if p.stdin is not None:
            p.stdin.close()


def test_churned_launched_workers_leave_the_latest_exits_and_no_descriptor(make_engine) -> None:
    eng, log = make_engine()
    eng.workers().result(5)  # a round trip: the engine has opened what it keeps open
    fds_before = open_fds()
    extra = 300
    total = EXITED_KEPT + extra
    spec = LaunchSpec(("/bin/sh", "-c", "echo hi; echo oops >&2; exit 3"))
    launched = 0
    while launched < total:
        # A few at a time, as a pool would: each one's output pipes and pidfd come and go.
        batch = min(16, total - launched)
        for _ in range(batch):
            eng.launch(spec).result(10)
        launched += batch
        drain_exits(log, launched, eng=eng)
    exits = log.of("worker_exited")
    assert len(exits) == total and {e.cause for e in exits} == {"exit"}
    assert all(e.stderr_tail == ("oops",) for e in exits)  # the tail still goes out with the exit

    stats = eng.stats()
    assert (stats["workers_live"], stats["exited_held"], stats["exited_forgotten"]) == (0, EXITED_KEPT, extra)
    assert stats["workers_held"] == EXITED_KEPT
    reachable = workers_reachable(log)
    assert len(reachable) == EXITED_KEPT
    # The kept ones are summaries: their output went out in the events.
    assert sum(len(w.stdout_lines) + len(w.stderr_lines) for w in reachable) == 0
    assert all(w.popen is None for w in reachable)
    assert open_fds() <= fds_before  # none left behind (others' may have closed meanwhile)

    # The oldest exit is let go of, yet it is told apart from an id that never was.
    oldest, newest = exits[0].worker.id, exits[-1].worker.id
    with pytest.raises(WorkerGone, match=rf"worker {oldest} has exited; nothing was signalled"):
        eng.terminate(oldest).result(5)
    with pytest.raises(WorkerGone, match="has already exited"):
        eng.terminate(newest).result(5)
    with pytest.raises(BadInput, match="no worker with id 'w99999'"):
        eng.terminate("w99999").result(5)


def test_churned_children_of_a_parent_are_let_go_of_past_the_cap(make_engine, churn_parent) -> None:
    kept = 20
    eng, log = make_engine(exited_kept=kept)
    eng.workers().result(5)
    fds_before = open_fds()
    # Children live long enough for the 0.5 s rescan to find every one of them.
    parent = churn_parent(80, 20, 0.8)
    eng.watch_children(parent.pid).result(5)
    assert parent.stdin is not None
    parent.stdin.write("go\n")
    parent.stdin.close()
    parent.wait(timeout=60)
    log.wait_for(lambda e: e.kind == "notice" and f"parent PID {parent.pid} has exited" in e.message)
    attached = len(log.of("worker_attached"))
    assert attached > 2 * kept  # enough of them seen for the cap to matter
    drain_exits(log, attached, eng=eng)
    stats = eng.stats()
    assert (stats["workers_held"], stats["exited_held"]) == (kept, kept)
    assert stats["exited_forgotten"] == attached - kept
    assert len(workers_reachable(log)) == kept
    assert eng.watched_parents().result(5) == []
    assert open_fds() <= fds_before  # none left behind (others' may have closed meanwhile)


def test_exited_kept_must_not_be_negative() -> None:
    from oomscope.core.engine import EngineConfig

    with pytest.raises(BadInput, match="must not be negative"):
        EngineConfig(exited_kept=-1)
