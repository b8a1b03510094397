"""Launched workers in their own memory cgroup (real cgroup v1 here), and real OOM kills."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from conftest import PY, sleeper_code, v1_memory_writable
from oomscope.core.launch import LaunchSpec
from oomscope.core.sizes import parse_level
from oomscope.core.thresholds import ThresholdConfig

pytestmark = [
    pytest.mark.cgroup,
    pytest.mark.skipif(not v1_memory_writable(), reason="needs root and a writable cgroup v1 memory controller"),
]

LEAKER = (
    "import time\n"
    "chunks = []\n"
    "while True:\n"
    "    chunks.append(bytearray(1 << 20))\n"
    "    time.sleep(0.004)\n"
)


def test_oom_kill_in_own_cgroup(make_engine) -> None:
    eng, log = make_engine(interval_s=0.05)
    ref = eng.launch(LaunchSpec((PY, "-c", LEAKER), mem_limit_bytes=64 << 20)).result(10)
    started = log.wait_for(lambda e: e.kind == "worker_started")
    assert started.cgroup_limit == 64 << 20 and started.cgroup.startswith("/oomscope/")
    directory = "/sys/fs/cgroup/memory" + started.cgroup
    assert os.path.isdir(directory)
    exited = log.wait_exit(ref.id, timeout=60)
    assert (exited.cause, exited.signal) == ("oom-kill", "SIGKILL")
    assert "cgroup oom_kill counter rose" in exited.evidence
    samples = log.samples_of(ref.id)
    assert samples and all(s.cgroup_limit == 64 << 20 for s in samples)
    assert max(s.cgroup_usage for s in samples) > 16 << 20
    eng.workers().result(5)  # a round trip: the engine has finished handling the exit
    assert not os.path.exists(directory), "cgroup left behind"


def test_shell_worker_whose_child_is_oom_killed(make_engine) -> None:
    """`sh -c "a; b"` waits for b: the kernel kills b, the shell exits with 137."""
    eng, log = make_engine(interval_s=0.05)
    ref = eng.launch(LaunchSpec(f"echo start; {PY} -c '{LEAKER}'", mem_limit_bytes=48 << 20)).result(10)
    exited = log.wait_exit(ref.id, timeout=60)
    assert (exited.cause, exited.exit_code) == ("oom-kill", 137), exited


def test_shell_worker_surviving_a_child_oom_kill_says_so(make_engine) -> None:
    eng, log = make_engine(interval_s=0.05)
    ref = eng.launch(LaunchSpec(f"{PY} -c '{LEAKER}'; echo after", mem_limit_bytes=48 << 20)).result(10)
    exited = log.wait_exit(ref.id, timeout=60)
    assert (exited.cause, exited.exit_code) == ("exit", 0)
    assert any("OOM-killed" in e for e in exited.evidence), exited.evidence


def test_percent_thresholds_follow_the_cgroup_limit(make_engine) -> None:
    config = ThresholdConfig(warn=parse_level("25%"), crit=parse_level("50%"), metric="rss",
                             on_crit="terminate")
    eng, log = make_engine(interval_s=0.05, thresholds=config, grace_s=0.5)
    grow = (
        "import time\n"
        "chunks = []\n"
        "for _ in range(300):\n"
        "    chunks.append(bytearray(1 << 20)); time.sleep(0.01)\n"
        "time.sleep(60)\n"
    )
    ref = eng.launch(LaunchSpec((PY, "-c", grow), mem_limit_bytes=200 << 20)).result(10)
    exited = log.wait_exit(ref.id, timeout=60)
    warn, crit = log.of("threshold", ref.id)[:2]
    assert (warn.level, warn.limit) == ("warning", 50 << 20)
    assert (crit.level, crit.limit) == ("critical", 100 << 20)
    assert (exited.cause, exited.by) == ("terminated", "policy")


V1_ROOT = "/sys/fs/cgroup/memory"


@pytest.fixture
def two_v1_cgroups() -> Iterator[tuple[str, str]]:
    """Two v1 memory cgroups of this test, limits 64 MiB and 128 MiB; removed at teardown (their
    processes, this test's own, moved back to the root first), also after a failure."""
    made: list[str] = []
    try:
        for name, limit in (("a", 64 << 20), ("b", 128 << 20)):
            directory = f"{V1_ROOT}/oomscope-test-move-{os.getpid()}-{name}"
            os.mkdir(directory)
            made.append(directory)
            with open(f"{directory}/memory.limit_in_bytes", "w") as f:
                f.write(str(limit))
        yield made[0], made[1]
    finally:
        for directory in made:
            with open(f"{directory}/cgroup.procs") as f:
                left = f.read().split()
            for pid in left:
                with open(f"{V1_ROOT}/cgroup.procs", "w") as f:
                    f.write(pid)
            os.rmdir(directory)


def _move(pid: int, directory: str) -> None:
    with open(f"{directory}/cgroup.procs", "w") as f:
        f.write(str(pid))


def test_an_attached_worker_moved_to_another_cgroup_follows_it(make_engine, children, two_v1_cgroups) -> None:
    """Issue #14: a worker moved to another cgroup after attach kept the old cgroup's usage and
    no limit. Its cgroup is looked at again every second: the new one's usage and limit are
    its own, told in a notice."""
    a, b = two_v1_cgroups
    p = children(sleeper_code())
    _move(p.pid, a)
    eng, log = make_engine(interval_s=0.1)
    ref = eng.attach(p.pid).result(10)
    attached = log.wait_for(lambda e: e.kind == "worker_attached" and e.worker.id == ref.id)
    assert attached.cgroup == "/" + os.path.basename(a) and attached.cgroup_limit == 64 << 20
    log.wait_for(lambda e: e.kind == "samples" and any(
        s.worker.id == ref.id and s.cgroup_limit == 64 << 20 for s in e.samples))
    _move(p.pid, b)
    note = log.wait_for(lambda e: e.kind == "notice" and e.worker is not None and e.worker.id == ref.id
                        and "moved to cgroup" in e.message, timeout=10)
    assert f"/{os.path.basename(b)}" in note.message and f"(was /{os.path.basename(a)})" in note.message
    assert "128.0 MiB" in note.message
    after = log.wait_for(lambda e: e.kind == "samples" and any(
        s.worker.id == ref.id and s.cgroup_limit == 128 << 20 for s in e.samples))
    # From then on every sample is the new cgroup's: the old limit never comes back.
    later = log.wait_samples(ref.id, len(log.samples_of(ref.id)) + 5)
    assert all(s.cgroup_limit == 128 << 20 for s in later[-5:]), after
    # And back where it was (the root: no limit of its own), followed as well.
    _move(p.pid, V1_ROOT)
    log.wait_for(lambda e: e.kind == "samples" and any(
        s.worker.id == ref.id and s.cgroup_limit != 128 << 20 for s in e.samples))
