"""Kernel-notified crossings (core/cgroup/notify.py): real v1 thresholds, a real PSI trigger, and v2's
``memory.events`` against a faithful directory tree, up to the engine's sampler telling the user
that a worker reached its ``memory.high`` (``--mem-high``).

cgroup v2 is not writable for memory on this machine, so ``V2Events`` is tested on a tree of
regular files laid out like a v2 cgroup: inotify reports writes to a regular file as kernfs
reports counter changes in ``memory.events`` (both are IN_MODIFY). Untested on a real v2
hierarchy: that the kernel's notification arrives for every counter change, that a real
``memory.high`` throttles (and counts ``high``) as documented, and the PSI trigger
on a cgroup's own ``memory.pressure`` (the same code is tested on the system-wide
``/proc/pressure/memory``, which this kernel has).
"""

from __future__ import annotations

import os
import selectors
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import ready_child, v1_memory_writable
from oomscope.core.cgroup.limited import LimitedCgroup, create_limited_cgroup
from oomscope.core.cgroup.notify import (
    DEFAULT_PSI_TRIGGER,
    CgroupWatch,
    PressureTrigger,
    V1Thresholds,
    V2Events,
    WatchUnavailable,
    watch_cgroup,
)
from oomscope.core.cgroup.high import parse_mem_high
from oomscope.core.crossings import BURST_S, FAST_HOLD_S
from oomscope.core.events import Notice, Samples, WorkerRef
from oomscope.core.pidfd import ProcessHandle
from oomscope.core.sampler import Sampler, drop_watch
from oomscope.core.sizes import format_size
from oomscope.core.thresholds import ThresholdConfig
from oomscope.core.worker import Worker, WorkerTable

MiB = 1 << 20
needs_v1 = pytest.mark.skipif(not v1_memory_writable(), reason="needs a writable cgroup v1 memory controller (root)")

# A worker that grows or frees on command: "grow N" holds N MiB more (pages touched), "free"
# drops it all; it answers "ok" once done, so the test knows the memory is charged.
GROWER = """
import sys
held = []
print("ready", flush=True)
for line in sys.stdin:
    cmd = line.split()
    if cmd[0] == "grow":
        b = bytearray(int(cmd[1]) << 20)
        for i in range(0, len(b), 4096):
            b[i] = 1
        held.append(b)
        del b  # "free" must leave nothing held
    elif cmd[0] == "free":
        held.clear()
    print("ok", flush=True)
"""


class Grower:
    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc

    def do(self, command: str) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == b"ok"


@pytest.fixture
def v1_group() -> Iterator[LimitedCgroup]:
    limited = create_limited_cgroup(128 * MiB, "memwatch", allow_systemd_run=False)
    assert limited.backend == "cgroup1", limited
    try:
        yield limited
    finally:
        limited.remove()


def _grower_in(group: LimitedCgroup, children: Callable[..., subprocess.Popen[bytes]]) -> Grower:
    start = lambda argv, **kw: children(group.wrap_command(argv), stdin=subprocess.PIPE, **kw)  # noqa: E731
    return Grower(ready_child(start, GROWER))


def _wait(watch: CgroupWatch, timeout_s: float = 10.0) -> bool:
    with selectors.DefaultSelector() as sel:
        sel.register(watch.fileno(), selectors.EVENT_READ)
        return bool(sel.select(timeout_s))


def _usage(group: LimitedCgroup) -> int:
    assert group.directory is not None
    return int(Path(group.directory, "memory.usage_in_bytes").read_text())


@needs_v1
@pytest.mark.cgroup
def test_v1_thresholds_wake_on_each_crossing_up_and_down(
    v1_group: LimitedCgroup, children: Callable[..., subprocess.Popen[bytes]]
) -> None:
    assert v1_group.directory is not None
    grower = _grower_in(v1_group, children)
    base = _usage(v1_group)
    low, high = base + 24 * MiB, base + 48 * MiB
    watch = watch_cgroup(1, v1_group.directory, [high, low])
    try:
        assert isinstance(watch, V1Thresholds) and watch.levels == (low, high)
        grower.do("grow 32")
        assert _wait(watch)
        first = watch.read()
        assert first is not None and first.count == 1
        assert low <= (first.usage_bytes or 0) < high
        grower.do("grow 32")
        assert _wait(watch)
        second = watch.read()
        assert second is not None and second.count == 1 and (second.usage_bytes or 0) >= high
        grower.do("free")
        # Freeing crosses both levels on the way down, in one wake-up or two (the kernel
        # uncharges in batches).
        crossings = 0
        usage = high
        while usage >= low:
            assert _wait(watch)
            down = watch.read()
            assert down is not None and down.usage_bytes is not None
            crossings += down.count
            usage = down.usage_bytes
        assert crossings == 2
    finally:
        watch.close()


@needs_v1
@pytest.mark.cgroup
def test_v1_new_levels_replace_the_old_ones(
    v1_group: LimitedCgroup, children: Callable[..., subprocess.Popen[bytes]]
) -> None:
    assert v1_group.directory is not None
    grower = _grower_in(v1_group, children)
    base = _usage(v1_group)
    watch = V1Thresholds(v1_group.directory, [base + 16 * MiB])
    try:
        watch.set_levels([base + 48 * MiB])
        grower.do("grow 24")  # past the old level only
        grower.do("grow 32")  # past the new one
        assert _wait(watch)
        crossing = watch.read()
        # One crossing counted: the old level, unregistered with its eventfd, did not fire.
        assert crossing is not None and crossing.count == 1
        assert (crossing.usage_bytes or 0) >= base + 48 * MiB
    finally:
        watch.close()


@needs_v1
@pytest.mark.cgroup
def test_v1_watch_of_a_removed_cgroup_reads_none(children: Callable[..., subprocess.Popen[bytes]]) -> None:
    group = create_limited_cgroup(64 * MiB, "memwatch-gone", allow_systemd_run=False)
    assert group.directory is not None
    watch = V1Thresholds(group.directory, [32 * MiB])
    try:
        group.remove()
        # Removing the cgroup signals every eventfd registered on it.
        assert _wait(watch)
        assert watch.read() is None
    finally:
        watch.close()
        group.remove()


def test_v1_watch_of_a_missing_cgroup_says_so(tmp_path: Path) -> None:
    with pytest.raises(WatchUnavailable, match="cannot watch"):
        V1Thresholds(str(tmp_path / "nope"), [MiB])


def _v2_tree(root: Path, events: dict[str, int], current: int) -> Path:
    group = root / "oomscope" / "w1"
    group.mkdir(parents=True)
    _write_events(group, events)
    (group / "memory.current").write_text(f"{current}\n")
    (group / "memory.max").write_text(f"{64 * MiB}\n")
    (group / "memory.high").write_text("max\n")
    return group


def _write_events(group: Path, events: dict[str, int]) -> None:
    (group / "memory.events").write_text("".join(f"{k} {v}\n" for k, v in events.items()))


V2_EVENTS = {"low": 0, "high": 0, "max": 0, "oom": 0, "oom_kill": 0, "oom_group_kill": 0}


def test_v2_memory_events_report_the_counters_that_rose(tmp_path: Path) -> None:
    group = _v2_tree(tmp_path, {**V2_EVENTS, "high": 4}, 40 * MiB)
    watch = watch_cgroup(2, str(group), [48 * MiB, 32 * MiB])
    try:
        assert isinstance(watch, V2Events) and watch.levels == (32 * MiB, 48 * MiB)
        assert not _wait(watch, 0)  # nothing changed yet
        (group / "memory.current").write_text(f"{60 * MiB}\n")
        _write_events(group, {**V2_EVENTS, "high": 9, "max": 1})
        assert _wait(watch)
        crossing = watch.read()
        assert crossing is not None
        assert dict(crossing.events) == {"high": 5, "max": 1}
        assert crossing.usage_bytes == 60 * MiB and crossing.pressure is False
        _write_events(group, {**V2_EVENTS, "high": 9, "max": 2, "oom": 1, "oom_kill": 1})
        assert _wait(watch)
        again = watch.read()
        assert again is not None and dict(again.events) == {"max": 1, "oom": 1, "oom_kill": 1}
    finally:
        watch.close()


def test_v2_without_psi_still_watches_memory_events(tmp_path: Path) -> None:
    """A faithful tree's memory.pressure is a plain file the kernel's epoll refuses: the watch
    keeps memory.events and says why pressure is not watched."""
    group = _v2_tree(tmp_path, V2_EVENTS, MiB)
    (group / "memory.pressure").write_text("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
    watch = V2Events(str(group), psi_trigger=DEFAULT_PSI_TRIGGER)
    try:
        assert watch.pressure is None and watch.pressure_refused is not None
        _write_events(group, {**V2_EVENTS, "high": 2})
        assert _wait(watch)
        crossing = watch.read()
        assert crossing is not None and dict(crossing.events) == {"high": 2}
    finally:
        watch.close()


def test_v2_watch_reads_none_once_closed(tmp_path: Path) -> None:
    group = _v2_tree(tmp_path, V2_EVENTS, MiB)
    watch = V2Events(str(group))
    _write_events(group, {**V2_EVENTS, "max": 1})
    assert _wait(watch)
    watch.close()
    assert watch.read() is None
    watch.close()  # idempotent


SLEEPER = """
import sys
print("ready", flush=True)
sys.stdin.readline()
"""


def test_a_high_event_is_sampled_at_once_and_told_once(
        tmp_path: Path, children: Callable[..., subprocess.Popen[bytes]]) -> None:
    """The engine's side of ``--mem-high`` on a faithful v2 tree: a real worker launched through
    the cgroup's wrapper, a real Worker and Sampler with a real selector; the "kernel" is the
    test writing ``memory.events`` as the kernel counts ``high`` (untested on a real v2: that
    the kernel throttles and counts)."""
    root = tmp_path / "cgroup2"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "cgroup.subtree_control").write_text("memory pids\n")
    limited = create_limited_cgroup(64 * MiB, "w1", v2_root=str(root), v1_root=str(tmp_path / "none"),
                                    allow_systemd_run=False, high=parse_mem_high("auto"))
    assert limited.backend == "cgroup2" and limited.directory is not None
    assert limited.high_bytes == int(64 * MiB * 0.9) // 4096 * 4096
    group = Path(limited.directory)
    assert (group / "memory.high").read_text() == str(limited.high_bytes)
    (group / "memory.current").write_text(f"{8 * MiB}\n")
    _write_events(group, V2_EVENTS)

    start = lambda argv, **kw: children(limited.wrap_command(argv), stdin=subprocess.PIPE, **kw)  # noqa: E731
    proc = ready_child(start, SLEEPER)
    assert (group / "cgroup.procs").read_text().strip() == str(proc.pid)
    ref = WorkerRef(id="w1", pid=proc.pid, start_time=0.0, name="sleeper", cmd=("python3",), launched=True)
    w = Worker(ref, ProcessHandle.for_child(proc.pid), limited=limited)
    w.open_readers(lambda _pid: limited.reader())
    table = WorkerTable()
    table.add(w)
    events: list[object] = []
    with selectors.DefaultSelector() as selector:
        sampler = Sampler(emit=events.append, selector=selector, interval_s=1.0, table=table,
                          thresholds=ThresholdConfig(), terminate=lambda *a: None, slow_tick=lambda _m: None)
        w.refresh_levels(sampler.thresholds)
        sampler.watch_own_cgroup(w)
        try:
            assert isinstance(w.watch, V2Events)
            assert not selector.select(0)  # nothing counted yet, nothing to wake for

            def kernel_counts_high(high: int, usage: int) -> None:
                (group / "memory.current").write_text(f"{usage}\n")
                _write_events(group, {**V2_EVENTS, "high": high})
                ready = selector.select(10)
                assert ready, "memory.events changed and the selector did not wake"
                for key, _mask in ready:
                    key.data()

            before = time.monotonic()
            kernel_counts_high(3, 58 * MiB)
            notices = [e for e in events if isinstance(e, Notice)]
            assert len(notices) == 1, events
            message = notices[0].message
            assert "memory.high" in message and "throttling" in message
            assert format_size(limited.high_bytes) in message and format_size(58 * MiB) in message
            samples = [s for e in events if isinstance(e, Samples) for s in e.samples]
            assert [s.cgroup_usage for s in samples] == [58 * MiB]  # sampled at once
            # ...then in a burst and fast, as after any wake-up (the engine's loop reads these).
            assert w.burst_until >= before + BURST_S and w.fast_until >= before + FAST_HOLD_S

            kernel_counts_high(9, 59 * MiB)  # more throttling: sampled again, not told again
            assert len([e for e in events if isinstance(e, Notice)]) == 1
            assert [s.cgroup_usage for e in events if isinstance(e, Samples) for s in e.samples] == [58 * MiB, 59 * MiB]
            assert sampler.kernel_wakeups == 2
        finally:
            drop_watch(selector, w)
            if w.cgroup is not None:
                w.cgroup.close()
            w.close()


PRESSURE = "/proc/pressure/memory"
needs_psi = pytest.mark.skipif(not os.path.exists(PRESSURE), reason="this kernel has no PSI (/proc/pressure)")

# Fills its cgroup with page cache it wrote itself and reads it back: reclaim stalls, so PSI
# "some" memory pressure rises. Holds 40 MiB of anonymous memory so the cache has little room.
THRASHER = """
import os, sys
held = bytearray(40 << 20)
for i in range(0, len(held), 4096):
    held[i] = 1
path = sys.argv[1]
with open(path, "wb") as f:
    for _ in range(100):
        f.write(os.urandom(1 << 20))
print("ready", flush=True)
while True:
    with open(path, "rb") as f:
        while f.read(1 << 20):
            pass
"""


@needs_psi
@needs_v1
@pytest.mark.cgroup
def test_psi_trigger_fires_when_a_cgroup_thrashes(
    tmp_path: Path, children: Callable[..., subprocess.Popen[bytes]]
) -> None:
    trigger = PressureTrigger(PRESSURE, "some 20000 2000000")
    group = create_limited_cgroup(48 * MiB, "memwatch-psi", allow_systemd_run=False)
    thrasher: subprocess.Popen[bytes] | None = None
    try:
        start = lambda argv, **kw: children(group.wrap_command([*argv, str(tmp_path / "cache.bin")]), **kw)  # noqa: E731
        thrasher = ready_child(start, THRASHER)
        assert _wait_fd(trigger.fileno(), 30.0), "no PSI trigger within 30 s of reclaim"
        trigger.drain()
    finally:
        trigger.close()
        if thrasher is not None:
            thrasher.kill()
            thrasher.wait(timeout=10)
        group.remove()


def _wait_fd(fd: int, timeout_s: float) -> bool:
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        return bool(sel.select(timeout_s))


@needs_psi
def test_a_bad_psi_trigger_says_what_the_kernel_accepts() -> None:
    with pytest.raises(WatchUnavailable, match="PSI trigger"):
        PressureTrigger(PRESSURE, "some 0 100")
    trigger = PressureTrigger(PRESSURE, DEFAULT_PSI_TRIGGER)  # the default is accepted here
    trigger.close()


def test_unknown_cgroup_version_is_a_programming_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="1 or 2"):
        watch_cgroup(3, str(tmp_path), [])


def test_v2_without_inotify_target_says_so(tmp_path: Path) -> None:
    with pytest.raises(WatchUnavailable, match="cannot watch"):
        V2Events(str(tmp_path))
