"""Workers never outlive oomscope, and what a killed oomscope leaves is cleared by the next one.

Real `oomscope watch` processes killed with SIGKILL (nothing of theirs runs), real v1 cgroups,
real heap-socket folders. Only processes these tests start are signalled.
"""

from __future__ import annotations

import glob
import json
import os
import select
import signal
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from conftest import PY, v1_memory_writable
from oomscope.core.events import Notice

needs_v1 = pytest.mark.skipif(not v1_memory_writable(), reason="needs a writable cgroup v1 memory controller (root)")


def _watch_until_started(children: Callable[..., subprocess.Popen[bytes]], *argv: str) -> tuple[Any, dict[str, Any]]:
    watch = children([PY, "-m", "oomscope", "watch", "--json", "--mem-limit", "64MiB", "--", *argv],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert watch.stdout is not None
    for line in watch.stdout:
        ev = json.loads(line)
        if ev["event"] == "worker_started":
            return watch, ev
    raise AssertionError("watch ended before its worker started")


def _dies_within(pid: int, timeout_s: float) -> bool:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout_s)[0])
    finally:
        os.close(fd)


def _cgroup_of(pid: int) -> str:
    with open(f"/proc/{pid}/cgroup") as f:
        path = next(line.split(":", 2)[2].strip() for line in f if ":memory:" in line)
    return "/sys/fs/cgroup/memory" + path


@needs_v1
def test_a_worker_dies_with_watch_and_the_next_oomscope_clears_what_was_left(children, make_engine) -> None:
    watch, started = _watch_until_started(children, PY, "-c", "import time; print('up', flush=True); time.sleep(120)")
    worker = started["worker"]["pid"]
    cgroup = _cgroup_of(worker)
    heap_dirs = glob.glob(f"/tmp/oomscope-heap-{watch.pid}-*")
    assert os.path.isdir(cgroup) and len(heap_dirs) == 1
    watch.send_signal(signal.SIGKILL)
    watch.wait(10)
    # Before: the worker ran on under PID 1, its cgroup and heap folder stayed.
    outlived = not _dies_within(worker, 10)
    if outlived:
        os.kill(worker, signal.SIGKILL)  # launched by this test: don't leave it running
    assert not outlived, "the worker outlived the oomscope that launched it"
    assert os.path.isdir(cgroup) and os.path.isdir(heap_dirs[0])
    eng, log = make_engine()
    said = log.wait_for(lambda e: isinstance(e, Notice) and e.message.startswith("removed what oomscope"))
    assert "empty cgroup" in said.message and "heap-socket folder" in said.message
    assert not os.path.exists(cgroup) and not os.path.exists(heap_dirs[0])


@needs_v1
def test_a_left_process_is_reported_and_not_signalled(children, make_engine) -> None:
    """A worker's own child is not the worker: it outlives it in the cgroup. The next oomscope
    names it and leaves it alone (it was not chosen by this user, this time)."""
    script = "import subprocess, sys, time; c = subprocess.Popen(['sleep', '120']); print(c.pid, flush=True); time.sleep(120)"
    watch, started = _watch_until_started(children, PY, "-c", script)
    assert watch.stderr is not None
    # The worker's output goes to watch's stderr ("[w1 python stdout] PID").
    grandchild_pid = int(next(line for line in watch.stderr if b"stdout]" in line).split()[-1])
    cgroup = _cgroup_of(grandchild_pid)
    watch.send_signal(signal.SIGKILL)
    watch.wait(10)
    assert _dies_within(started["worker"]["pid"], 10)
    try:
        eng, log = make_engine()
        note = log.wait_for(lambda e: isinstance(e, Notice) and cgroup in e.message)
        assert note.level == "warning" and f"PID {grandchild_pid}" in note.message
        assert "does not signal" in note.message
        assert os.path.isdir(cgroup) and os.kill(grandchild_pid, 0) is None  # untouched
    finally:
        os.kill(grandchild_pid, signal.SIGKILL)  # ours: started by this test's worker
        assert _dies_within(grandchild_pid, 10)
    eng2, log2 = make_engine()
    log2.wait_for(lambda e: isinstance(e, Notice) and e.message.startswith("removed what oomscope"))
    assert not os.path.exists(cgroup)


def _default_signals() -> None:
    """As from a terminal: a suite run in the background (``nohup make test &``) has SIGINT and
    SIGHUP ignored, which its children inherit, and oomscope rightly leaves ignored."""
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def _child_running(parent: int, marker: str) -> int | None:
    """The child of ``parent`` whose command line holds ``marker`` once it runs the program
    (the launch wrappers exec into it under the same PID), else None."""
    for task in os.listdir(f"/proc/{parent}/task"):
        try:
            with open(f"/proc/{parent}/task/{task}/children") as f:
                pids = [int(p) for p in f.read().split()]
        except FileNotFoundError:
            continue
        for pid in pids:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if marker.encode() in f.read() and "/oomscope/" in _cgroup_of(pid):
                        return pid
            except (FileNotFoundError, ProcessLookupError, StopIteration):
                continue
    return None


@needs_v1
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_the_window_ends_on_a_signal_as_on_quit_and_leaves_nothing(children, tmp_path, sig: int) -> None:
    """``kill PID`` of the window (or Ctrl-C in its terminal, or the terminal closing) quits it as
    its Quit does: the worker is stopped and its cgroup and heap folder go. Before, Python's
    default action ended the process there and then and left both for the next start."""
    marker = f"gui-signal-{os.getpid()}-{sig}"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", OOMSCOPE_SETTINGS=str(tmp_path / "s.ini"))
    gui = children([PY, "-m", "oomscope", "--run", f"{PY} -c 'import time; time.sleep(120)' {marker}",
                    "--mem-limit", "64MiB"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                   preexec_fn=_default_signals)
    worker = None
    fd = os.pidfd_open(gui.pid)
    try:
        # Await the worker's exec: poll /proc for it, waking early should the window die.
        while worker is None:
            assert not select.select([fd], [], [], 0.05)[0], gui.communicate()[1].decode(errors="replace")[-2000:]
            worker = _child_running(gui.pid, marker)
    finally:
        os.close(fd)
    cgroup = _cgroup_of(worker)
    heap_dirs = glob.glob(f"/tmp/oomscope-heap-{gui.pid}-*")
    assert os.path.isdir(cgroup) and len(heap_dirs) == 1
    gui.send_signal(sig)
    _out, err = gui.communicate(timeout=30)
    assert gui.returncode == 0, err.decode(errors="replace")[-2000:]
    assert _dies_within(worker, 5)
    assert not os.path.exists(cgroup) and not os.path.exists(heap_dirs[0])


@needs_v1
def test_a_window_started_with_sighup_ignored_keeps_it_ignored(children, tmp_path) -> None:
    """``nohup oomscope &``: the terminal closing must not end the window."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", OOMSCOPE_SETTINGS=str(tmp_path / "s.ini"))

    def ignore_hup() -> None:
        _default_signals()
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    marker = f"gui-nohup-{os.getpid()}"
    gui = children([PY, "-m", "oomscope", "--run", f"{PY} -c 'import time; time.sleep(120)' {marker}",
                    "--mem-limit", "64MiB"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                   preexec_fn=ignore_hup)
    fd = os.pidfd_open(gui.pid)
    try:
        while _child_running(gui.pid, marker) is None:  # the window is up and running its worker
            assert not select.select([fd], [], [], 0.05)[0], "the window ended before its worker ran"
        gui.send_signal(signal.SIGHUP)
        # Still there: a SIGTERM afterwards is what ends it, cleanly.
        assert not select.select([fd], [], [], 1.0)[0], "SIGHUP ended a window started with it ignored"
    finally:
        os.close(fd)
    gui.send_signal(signal.SIGTERM)
    _out, err = gui.communicate(timeout=30)
    assert gui.returncode == 0, err.decode(errors="replace")[-2000:]
