"""Signals go through pidfds: a PID the kernel has reused is never signalled."""

from __future__ import annotations

import signal

import pytest

from conftest import ready_child
from oomscope.core.errors import Refused, WorkerGone
from oomscope.core.pidfd import ProcessHandle
from pid_reuse import BLOCKING_CHILD, can_force_pid, has_pending, spawn_with_pid

needs_pid_control = pytest.mark.skipif(
    not can_force_pid(), reason="needs root to write /proc/sys/kernel/ns_last_pid"
)


def test_signal_reaches_the_process_it_was_opened_for(children) -> None:
    p = ready_child(children, BLOCKING_CHILD)
    h = ProcessHandle.open(p.pid)
    assert not has_pending(p.pid, signal.SIGTERM)
    h.send_signal(signal.SIGTERM)
    assert has_pending(p.pid, signal.SIGTERM)
    h.close()


@needs_pid_control
def test_reused_pid_is_never_signalled(children) -> None:
    old = ready_child(children, BLOCKING_CHILD)
    handle = ProcessHandle.open(old.pid)
    old.kill()
    old.wait()  # reaped: the PID is free for the kernel to hand out again
    new = spawn_with_pid(old.pid, children)
    assert new.pid == handle.pid
    with pytest.raises(WorkerGone, match="has exited"):
        handle.send_signal(signal.SIGTERM)
    assert new.poll() is None
    assert not has_pending(new.pid, signal.SIGTERM)
    assert not handle.is_alive()
    handle.close()


@needs_pid_control
def test_open_with_stale_start_time_refuses(children) -> None:
    old = ready_child(children, BLOCKING_CHILD)
    first = ProcessHandle.open(old.pid)
    stale = first.start_ticks
    first.close()
    old.kill()
    old.wait()
    new = spawn_with_pid(old.pid, children)
    with pytest.raises(WorkerGone, match="different process"):
        ProcessHandle.open(new.pid, expected_start_ticks=stale - 1 if stale > 0 else stale + 1)


def test_open_nonexistent_pid_says_so() -> None:
    with pytest.raises(WorkerGone, match="no process with PID"):
        ProcessHandle.open(2**22 + 12345)


def test_open_invalid_pid() -> None:
    with pytest.raises(Refused):
        ProcessHandle.open(0)
