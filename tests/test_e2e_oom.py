"""End to end: real kernel OOM kills in small cgroups of our own, each exit with its cause.

Every OOM here happens inside a cgroup made for the test with a small limit, holding only the
test's own processes; the cgroups are removed afterwards, also when a test fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator

import pytest

from conftest import PY, small_cgroup, v1_memory_writable
from oomscope.core.cgroup.limited import LimitedCgroup
from oomscope.core.launch import LaunchSpec

pytestmark = [
    pytest.mark.cgroup,
    pytest.mark.skipif(not v1_memory_writable(), reason="needs root and a writable cgroup v1 memory controller"),
    pytest.mark.skipif(not os.access("/dev/kmsg", os.R_OK), reason="needs a readable /dev/kmsg"),
]
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed")

PY_LEAKER = "import time\nchunks = []\nwhile True:\n    chunks.append(bytearray(1 << 20)); time.sleep(0.004)\n"
# Node's own code is some 35 MiB of file pages, charged to the worker's cgroup whenever nothing
# else on the machine has node loaded. Leak in small steps near the limit and, with no swap, the
# kernel reclaims and re-reads that code page by page (the worker sits in state D) instead of
# OOM-killing it, for minutes. So: a limit well above node's baseline, passed in a few big filled
# chunks in a tight loop, whose code is too small to thrash.
NODE_LIMIT = 160 << 20
NODE_LEAKER = "const a = []; for (;;) a.push(Buffer.alloc(32 << 20, 1));"
NODE_HEAP_LEAKER = "const a = []; for (;;) a.push({x: Math.random(), y: 's' + Math.random()});"


@pytest.fixture
def own_cgroup() -> Iterator[LimitedCgroup]:
    with small_cgroup(96 << 20, "test-pool") as cg:
        yield cg


def _assert_oom_kill(exited, ref, comm: str) -> None:
    assert (exited.cause, exited.signal) == ("oom-kill", "SIGKILL"), exited
    assert exited.oom is not None, exited.evidence
    assert exited.oom.pid == ref.pid and exited.oom.comm == comm
    assert exited.oom.killer == "kernel-memcg"
    assert exited.oom.task_memcg and exited.oom.anon_rss_kb > 0
    assert any("Killed process %d" % ref.pid in line for line in exited.oom.lines)
    assert any(e.startswith("kernel: ") for e in exited.evidence)


@needs_node
def test_node_leaker_is_oom_killed(make_engine) -> None:
    eng, log = make_engine()
    ref = eng.launch(LaunchSpec((NODE, "-e", NODE_LEAKER), mem_limit_bytes=NODE_LIMIT)).result(10)
    exited = log.wait_exit(ref.id, timeout=60)
    _assert_oom_kill(exited, ref, "node")


def test_python_leaker_is_oom_killed(make_engine) -> None:
    eng, log = make_engine()
    ref = eng.launch(LaunchSpec((PY, "-c", PY_LEAKER), mem_limit_bytes=64 << 20)).result(10)
    exited = log.wait_exit(ref.id, timeout=60)
    _assert_oom_kill(exited, ref, os.path.basename(PY)[:15])  # comm: the name exec'd


@needs_node
def test_node_heap_exhaustion_is_heap_oom(make_engine) -> None:
    eng, log = make_engine()
    ref = eng.launch(LaunchSpec((NODE, "--max-old-space-size=32", "-e", NODE_HEAP_LEAKER))).result(10)
    exited = log.wait_exit(ref.id, timeout=60)
    assert (exited.cause, exited.signal) == ("heap-oom", "SIGABRT"), exited
    assert "JavaScript heap out of memory" in exited.evidence[0]


def test_external_kill_9_is_signal(make_engine) -> None:
    eng, log = make_engine()
    ref = eng.launch(LaunchSpec((PY, "-c", "import time; time.sleep(60)"), mem_limit_bytes=64 << 20)).result(10)
    log.wait_samples(ref.id)
    os.kill(ref.pid, signal.SIGKILL)  # our own launched worker
    exited = log.wait_exit(ref.id)
    assert (exited.cause, exited.signal, exited.oom) == ("signal", "SIGKILL", None)


def test_clean_exit_is_exit_0(make_engine) -> None:
    eng, log = make_engine()
    ref = eng.launch(LaunchSpec((PY, "-c", "print('done')"), mem_limit_bytes=64 << 20)).result(10)
    exited = log.wait_exit(ref.id)
    assert (exited.cause, exited.exit_code, exited.signal) == ("exit", 0, None)


def test_kill_9_while_the_kernel_kills_another_pid_stays_signal(make_engine) -> None:
    """A forks B into A's own cgroup; B is OOM-killed; at that moment we kill -9 A.

    A's cgroup counter rose and a kernel record arrived within the window, but the record
    names B: A's cause is `signal`, never `oom-kill`.
    """
    eng, log = make_engine()
    code = (
        "import os, time\n"
        f"LEAK = {PY_LEAKER!r}\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    exec(LEAK)\n"
        "print(pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    ref = eng.launch(LaunchSpec((PY, "-u", "-c", code), mem_limit_bytes=48 << 20)).result(10)
    child = int(log.wait_for(lambda e: e.kind == "output" and e.worker.id == ref.id).line)
    kill = log.wait_for(lambda e: e.kind == "kernel_oom" and e.record.pid == child, timeout=60)
    assert kill.record.task_memcg.startswith("/oomscope/")
    # No worker itself, but in A's own cgroup: the event says whose it was.
    assert (kill.concerns, kill.relation) == (ref, "cgroup")
    assert kill.to_json()["concerns"] == {"worker": ref.to_json(), "relation": "cgroup"}
    os.kill(ref.pid, signal.SIGKILL)  # "at the same moment": right after the kernel's kill
    exited = log.wait_exit(ref.id)
    assert (exited.cause, exited.signal, exited.oom) == ("signal", "SIGKILL", None), exited
    assert any("oom_kill counter rose" in e for e in exited.evidence)
    eng.workers().result(5)  # a round trip: every record read so far has been handled
    assert not log.of("cause_updated")


def test_pool_child_leaking_in_a_cgroup_only_it_is_oom_kill(make_engine, own_cgroup, children) -> None:
    eng, log = make_engine(rescan_s=0.1)
    code = (
        "import multiprocessing as mp, sys, time\n"
        f"LEAK = {PY_LEAKER!r}\n"
        "def work(leak):\n"
        "    if leak:\n"
        "        exec(LEAK)\n"
        "    time.sleep(60)\n"
        "if __name__ == '__main__':\n"
        "    mp.set_start_method('fork')\n"
        "    procs = [mp.Process(target=work, args=(False,)) for _ in range(3)]\n"
        "    for p in procs: p.start()\n"
        "    print('ready', flush=True)\n"
        "    sys.stdin.readline()\n"
        "    leaker = mp.Process(target=work, args=(True,)); leaker.start(); print(leaker.pid, flush=True)\n"
        "    sys.stdin.readline()\n"
    )
    parent = children(own_cgroup.wrap_command([PY, "-u", "-c", code]), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert parent.stdout is not None and parent.stdin is not None
    assert parent.stdout.readline().strip() == b"ready"
    quiet = eng.watch_children(parent.pid).result(10)
    assert len(quiet) == 3
    parent.stdin.write(b"go\n")
    parent.stdin.flush()
    leaker_pid = int(parent.stdout.readline())
    attached = log.wait_for(lambda e: e.kind == "worker_attached" and e.worker.pid == leaker_pid)
    exited = log.wait_exit(attached.worker.id, timeout=60)
    _assert_oom_kill(exited, attached.worker, os.path.basename(PY)[:15])
    assert exited.oom.task_memcg == own_cgroup.path
    eng.workers().result(5)
    assert [e.worker.id for e in log.of("worker_exited")] == [attached.worker.id]
    # The pool's replacement child, when there is one, takes the OOM-killed child's slot.
    assert attached.worker.slot is not None and attached.worker.life == 1
    parent.stdin.close()


def test_an_attached_workers_child_killed_in_a_shared_cgroup_is_told_as_its_child(
        make_engine, own_cgroup, children) -> None:
    """An attached worker has no cgroup of its own; its child, OOM-killed and not yet reaped
    (the parent waits for the test), is named as that worker's child, not as a stranger."""
    eng, log = make_engine()
    code = (
        "import os, sys\n"
        f"LEAK = {PY_LEAKER!r}\n"
        "sys.stdin.readline()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    exec(LEAK)\n"
        "print(pid, flush=True)\n"
        "sys.stdin.readline()\n"  # the child stays a zombie until then
        "os.waitpid(pid, 0)\n"
    )
    parent = children(own_cgroup.wrap_command([PY, "-u", "-c", code]), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert parent.stdout is not None and parent.stdin is not None
    ref = eng.attach(parent.pid).result(10)
    parent.stdin.write(b"go\n")
    parent.stdin.flush()
    child = int(parent.stdout.readline())
    kill = log.wait_for(lambda e: e.kind == "kernel_oom" and e.record.pid == child, timeout=60)
    assert kill.record.task_memcg == own_cgroup.path
    assert (kill.concerns, kill.relation) == (ref, "child")
    parent.stdin.close()
    assert parent.wait(10) == 0


def test_without_a_kernel_log_the_cgroup_counter_still_tells(children) -> None:
    """No readable kernel log (dmesg_restrict, no journal): the cgroup's oom_kill counter is
    the evidence, and the record stays null."""
    from conftest import EventLog
    from oomscope.core.engine import Engine, EngineConfig
    from oomscope.core.oomlog import SourceState

    unavailable = [SourceState("kmsg", False, "kernel.dmesg_restrict=1: run as root or grant CAP_SYSLOG")]
    eng = Engine(EngineConfig(interval_s=0.1), kernel_feed=lambda: (None, unavailable)).start()
    try:
        log = EventLog(eng)
        state = log.wait_for(lambda e: e.kind == "source")
        assert state.state == unavailable[0]  # the source's own verdict, as the feed gave it
        ref = eng.launch(LaunchSpec((PY, "-c", PY_LEAKER), mem_limit_bytes=48 << 20)).result(10)
        exited = log.wait_exit(ref.id, timeout=60)
        assert (exited.cause, exited.signal, exited.oom) == ("oom-kill", "SIGKILL", None)
        assert "cgroup oom_kill counter rose" in exited.evidence
    finally:
        eng.stop()


def test_named_worker_killed_within_its_first_second(make_engine) -> None:
    """The record's comm ("python") is checked against the process's comm right then, not
    against the display name nor the cgroup wrapper's "sh" read at launch."""
    eng, log = make_engine()
    ref = eng.launch(LaunchSpec((PY, "-c", PY_LEAKER.replace("0.004", "0")), mem_limit_bytes=32 << 20,
                                name="fast-leak")).result(10)
    exited = log.wait_exit(ref.id, timeout=60)
    assert ref.name == "fast-leak"
    _assert_oom_kill(exited, ref, os.path.basename(PY)[:15])


def test_pool_worker_oom_killed_and_respawned_keeps_its_slot(make_engine, own_cgroup, children) -> None:
    """multiprocessing.Pool replaces a dead worker by itself: the new one takes its slot."""
    eng, log = make_engine(rescan_s=0.1)
    code = (
        "import multiprocessing as mp, sys, time\n"
        f"LEAK = {PY_LEAKER!r}\n"
        "def leak(_):\n"
        "    exec(LEAK)\n"
        "if __name__ == '__main__':\n"
        "    mp.set_start_method('fork')\n"
        "    pool = mp.Pool(2)\n"
        "    pool.map(abs, range(4))\n"  # both workers are up
        "    print('ready', flush=True)\n"
        "    sys.stdin.readline()\n"
        "    pool.apply_async(leak, (0,))\n"
        "    sys.stdin.readline()\n"
    )
    parent = children(own_cgroup.wrap_command([PY, "-u", "-c", code]), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert parent.stdout is not None and parent.stdin is not None
    assert parent.stdout.readline().strip() == b"ready"
    first = eng.watch_children(parent.pid).result(10)
    assert len(first) == 2
    parent.stdin.write(b"leak\n")
    parent.stdin.flush()
    dead = log.wait_for(lambda e: e.kind == "worker_exited", timeout=60)
    assert dead.cause == "oom-kill" and dead.oom.pid == dead.worker.pid
    fresh = log.wait_for(lambda e: e.kind == "worker_attached" and e.worker.pid not in {r.pid for r in first},
                         timeout=30)
    assert (fresh.worker.slot, fresh.worker.life) == (dead.worker.slot, 2)
    parent.stdin.close()
