"""Without pidfd: a start-time check before each signal, and exits seen at the next tick.

This machine has pidfd, so these tests force the fallback. Most set ``OOMSCOPE_NO_PIDFD=1``
(core/pidfd.py reads it in one place) — the one stand-in allowed here: everything else is real
(processes, signals, PID reuse through ns_last_pid). Two tests go further and take the
syscalls away for real: a seccomp filter makes the kernel answer ``pidfd_open`` with ENOSYS,
exactly as a kernel before 5.3 does (or with EPERM, as a container's seccomp profile does).
"""

from __future__ import annotations

import errno
import json
import os
import platform
import signal
import subprocess
import textwrap
import time
from collections.abc import Callable
from typing import Any

import pytest

from conftest import PY, REPO, EventLog, ready_child, run_until, sleeper_code
from gui_helpers import GUI_MARKS, confirmer, make_window  # noqa: F401 (fixtures)
from oomscope.core import procfs
from oomscope.core.engine import Engine, EngineConfig
from oomscope.core.errors import WorkerGone
from oomscope.core.events import Notice
from oomscope.core.launch import LaunchSpec
from oomscope.core.pidfd import NO_PIDFD_ENV, ProcessHandle, unavailable_reason
from pid_reuse import BLOCKING_CHILD, can_force_pid, has_pending, spawn_with_pid

needs_pid_control = pytest.mark.skipif(
    not can_force_pid(), reason="needs root to write /proc/sys/kernel/ns_last_pid"
)
needs_pidfd = pytest.mark.skipif(
    unavailable_reason() is not None and NO_PIDFD_ENV not in os.environ,
    reason="the control half needs a machine with pidfd",
)
SLEEPER = "import time; print('ready', flush=True); time.sleep(60)"
IGNORES_TERM = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "print('ready', flush=True); time.sleep(60)")


def gui_test(fn: Callable[..., None]) -> Callable[..., None]:
    """The GUI tests' marks, for one test of this otherwise Qt-free module."""
    for mark in GUI_MARKS:
        fn = mark(fn)
    return fn


@pytest.fixture
def no_pidfd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NO_PIDFD_ENV, "1")


def pidfds_open_here() -> int:
    """pidfds this test process holds (an engine's handles among them)."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[pidfd]":
                n += 1
        except FileNotFoundError:
            pass  # the listing's own descriptor, closed by now
    return n


def fallback_notices(log: EventLog) -> list[Notice]:
    return [e for e in log.events if isinstance(e, Notice) and e.message.startswith("pidfd is not")]


def engine(make_engine: Callable[..., tuple[Engine, EventLog]], **kw: Any) -> tuple[Engine, EventLog]:
    kw.setdefault("kernel_log", False)  # not needed here, and keeps each engine quick to start
    kw.setdefault("heap_reports", False)
    return make_engine(**kw)


# ----------------------------------------------------------------------------- the handle

def test_reason_names_the_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(NO_PIDFD_ENV, raising=False)
    assert unavailable_reason() is None  # this machine has pidfd
    monkeypatch.setenv(NO_PIDFD_ENV, "1")
    assert unavailable_reason() == f"{NO_PIDFD_ENV}=1 is set; kernel {os.uname().release}"
    monkeypatch.setenv(NO_PIDFD_ENV, "0")
    assert unavailable_reason() is None


def test_fallback_handle_signals_the_process_it_was_opened_for(children) -> None:
    p = ready_child(children, BLOCKING_CHILD)
    h = ProcessHandle.open(p.pid, use_pidfd=False)
    assert not h.has_pidfd and h.start_ticks == procfs.start_ticks(p.pid)
    assert not has_pending(p.pid, signal.SIGTERM)
    h.send_signal(signal.SIGTERM)
    assert has_pending(p.pid, signal.SIGTERM)
    assert h.is_alive() and not h.exited()
    h.close()


@needs_pid_control
def test_fallback_never_signals_a_reused_pid(children) -> None:
    old = ready_child(children, BLOCKING_CHILD)
    handle = ProcessHandle.open(old.pid, use_pidfd=False)
    old.kill()
    old.wait()  # reaped: the PID is free for the kernel to hand out again
    new = spawn_with_pid(old.pid, children)
    assert new.pid == handle.pid
    with pytest.raises(WorkerGone, match=r"now belongs to another process\); nothing was signalled"):
        handle.send_signal(signal.SIGTERM)
    assert new.poll() is None
    assert not has_pending(new.pid, signal.SIGTERM)
    # The descriptor kept since the open still refers to the old process, not to the number.
    assert procfs.stat_fields_at(handle.stat_fd) is None
    assert not handle.is_alive() and handle.exited()
    handle.close()


def test_fallback_handle_refuses_a_zombie(children) -> None:
    p = children([PY, "-c", "pass"])
    handle = ProcessHandle.open(p.pid, use_pidfd=False)
    os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
    assert handle.exited()
    with pytest.raises(WorkerGone, match=rf"process {p.pid} has exited; nothing was signalled"):
        handle.send_signal(signal.SIGTERM)
    handle.close()


def test_fallback_wait_exited(children) -> None:
    p = ready_child(children, SLEEPER)
    handle = ProcessHandle.open(p.pid, use_pidfd=False)
    assert not handle.wait_exited(0.1)
    p.kill()
    assert handle.wait_exited(10.0)
    handle.close()


# ----------------------------------------------------------------------------- the engine

def test_notice_once_and_no_pidfd_held(make_engine, no_pidfd, gate) -> None:
    before = pidfds_open_here()  # (whatever this process holds already is not this engine's)
    eng, log = engine(make_engine, interval_s=0.1)
    assert eng.pidfd_fallback is not None and NO_PIDFD_ENV in eng.pidfd_fallback
    held = gate()
    refs = [eng.launch(LaunchSpec((PY, "-c", held.wait_code))).result(5) for _ in range(2)]
    for ref in refs:
        log.wait_samples(ref.id)
    assert pidfds_open_here() == before  # both watched, neither through a pidfd
    held.open()
    for ref in refs:
        assert log.wait_exit(ref.id).cause == "exit"
    eng.stop()
    log.wait_for(lambda e: e.kind == "stopped")
    notices = fallback_notices(log)
    assert len(notices) == 1 and notices[0] is log.events[0]
    assert notices[0].level == "warning"
    assert "checks each process's start time just before signalling it" in notices[0].message
    assert "up to 0.1 s late" in notices[0].message


@needs_pidfd
def test_with_pidfd_no_notice_and_pidfds_held(make_engine, monkeypatch) -> None:
    monkeypatch.delenv(NO_PIDFD_ENV, raising=False)
    before = pidfds_open_here()
    eng, log = engine(make_engine)
    assert eng.pidfd_fallback is None
    ref = eng.launch(LaunchSpec(tuple(sleeper_code()))).result(5)
    log.wait_samples(ref.id)
    assert pidfds_open_here() == before + 1
    eng.terminate(ref.id, kill_now=True).result(5)
    log.wait_exit(ref.id)
    assert fallback_notices(log) == []


def test_launched_worker_killed_by_the_test_is_seen_within_a_tick(make_engine, no_pidfd) -> None:
    eng, log = engine(make_engine, interval_s=0.2)
    ref = eng.launch(LaunchSpec(tuple(sleeper_code()))).result(5)
    log.wait_samples(ref.id)
    killed_at = time.time()
    os.kill(ref.pid, signal.SIGKILL)  # our engine's own child, by PID
    exited = log.wait_exit(ref.id)
    assert (exited.cause, exited.signal, exited.by) == ("signal", "SIGKILL", None)
    # One tick is 0.2 s; the bound is generous for a loaded machine.
    assert 0 <= exited.t - killed_at < 2.0


@pytest.mark.parametrize("reaped", [False, True], ids=["zombie", "reaped"])
def test_attached_process_exit_is_seen(make_engine, children, no_pidfd, reaped) -> None:
    eng, log = engine(make_engine, interval_s=0.1)
    p = ready_child(children, SLEEPER)
    ref = eng.attach(p.pid).result(5)
    log.wait_samples(ref.id)
    p.kill()
    if reaped:
        p.wait()
    else:
        os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)  # a zombie until its parent waits
    exited = log.wait_exit(ref.id)
    assert exited.cause == "unknown" and exited.exit_code is None


def test_terminate_escalates_through_the_fallback(make_engine, no_pidfd) -> None:
    eng, log = engine(make_engine, interval_s=0.1, grace_s=0.3)
    ref = eng.launch(LaunchSpec((PY, "-u", "-c", IGNORES_TERM))).result(5)
    log.wait_for(lambda e: e.kind == "output" and e.line == "ready")
    eng.terminate(ref.id, by="user").result(5)
    exited = log.wait_exit(ref.id)
    assert (exited.cause, exited.signal, exited.by) == ("terminated", "SIGKILL", "user")
    assert [(t.signal, t.by) for t in log.of("terminate", ref.id)] == [("SIGTERM", "user"), ("SIGKILL", "user")]


def test_terminate_attached_through_the_fallback(make_engine, children, no_pidfd) -> None:
    eng, log = engine(make_engine, interval_s=0.1)
    p = ready_child(children, SLEEPER)
    ref = eng.attach(p.pid).result(5)
    eng.terminate(ref.id, by="policy", reason="test").result(5)
    exited = log.wait_exit(ref.id)
    assert (exited.cause, exited.signal, exited.by) == ("terminated", "SIGTERM", "policy")
    assert p.wait(5) == -signal.SIGTERM


@needs_pid_control
def test_terminate_of_a_stale_worker_signals_nothing(children, no_pidfd) -> None:
    # A long tick, so the engine has not noticed the exit yet when terminate comes: the
    # handle's own check is what must refuse. The attach is queued before the engine starts,
    # so the engine's first tick (at once) samples it and the next is 10 minutes away (getting
    # the PID back can take tens of seconds on a busy machine: 20 s once let the tick win).
    eng = Engine(EngineConfig(interval_s=600.0, kernel_log=False, heap_reports=False))
    log = EventLog(eng)
    old = ready_child(children, BLOCKING_CHILD)
    attached = eng.attach(old.pid)
    eng.start()
    try:
        ref = attached.result(5)
        log.wait_samples(ref.id)
        # The tick that emitted the sample looks for exits right after it: a command answers
        # only on the loop's next turn, so once it has, that look is over (killing the worker
        # before it let the look see the exit on a busy machine, 3 runs in 6).
        eng.workers().result(5)
        old.kill()
        old.wait()
        new = spawn_with_pid(ref.pid, children)
        with pytest.raises(WorkerGone, match=r"now belongs to another process\); nothing was signalled"):
            eng.terminate(ref.id).result(5)
        assert new.poll() is None
        assert not has_pending(new.pid, signal.SIGTERM)
        assert log.of("terminate") == [] and log.of("worker_exited") == []
    finally:
        eng.stop()


def test_parent_exit_is_seen(make_engine, children, no_pidfd) -> None:
    eng, log = engine(make_engine, interval_s=0.1, rescan_s=0.1)
    parent = ready_child(children, SLEEPER)
    assert eng.watch_children(parent.pid).result(5) == []
    parent.kill()
    parent.wait()
    log.wait_for(lambda e: isinstance(e, Notice) and f"parent PID {parent.pid} has exited" in e.message)


# ----------------------------------------------------------------- watch and the window

def test_watch_says_so_and_still_sees_exits(gate) -> None:
    # The worker exits (code 3) only once watch has said so and started it.
    first, second = gate(), gate()
    code = "{}; import sys; sys.exit(3)"
    env = dict(os.environ, **{NO_PIDFD_ENV: "1"})
    said: set[str] = set()

    def said_and_started(line: str) -> bool:
        e = json.loads(line)
        if e["event"] == "worker_started" or e.get("message", "").startswith("pidfd is not"):
            said.add(e["event"])
        return said == {"notice", "worker_started"}

    def says_and_starts(line: str) -> bool:
        said.update(w for w in ("pidfd is not available", " started: ") if w in line)
        return said == {"pidfd is not available", " started: "}

    r = run_until([PY, "-m", "oomscope", "watch", "--json", "--interval", "0.1", "--",
                   PY, "-c", code.format(first.wait_code)], said_and_started, first.open, env=env)
    assert r.returncode == 3, r.stderr  # the worker's own exit status
    evs = [json.loads(line) for line in r.stdout.splitlines()]
    notices = [e for e in evs if e["event"] == "notice" and e["message"].startswith("pidfd is not")]
    assert len(notices) == 1 and NO_PIDFD_ENV in notices[0]["message"], evs
    exited = [e for e in evs if e["event"] == "worker_exited"]
    assert [(e["cause"], e["exit_code"]) for e in exited] == [("exit", 3)]

    said.clear()
    r = run_until([PY, "-m", "oomscope", "watch", "--interval", "0.1", "--", PY, "-c", code.format(second.wait_code)],
                  says_and_starts, second.open, env=env)
    assert r.returncode == 3, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if "pidfd is not available" in ln]
    assert len(lines) == 1 and " warning: " in lines[0], r.stdout
    assert "exited: exit (exit code 3)" in r.stdout, r.stdout


@gui_test
def test_window_shows_the_notice_and_keeps_a_status_hint(make_window, qtbot, no_pidfd) -> None:
    window = make_window()
    hint = window.pidfd_status
    assert hint is not None and hint.isVisible()
    assert hint.text() == "no pidfd: start-time checks"
    assert hint.toolTip() == window.engine.pidfd_fallback
    qtbot.waitUntil(lambda: any(m.startswith("pidfd is not available") for m in window.message_bar.history),
                    timeout=10000)
    assert sum(m.startswith("pidfd is not available") for m in window.message_bar.history) == 1


@gui_test
@needs_pidfd
def test_window_with_pidfd_has_no_hint(make_window, monkeypatch) -> None:
    monkeypatch.delenv(NO_PIDFD_ENV, raising=False)
    assert make_window().pidfd_status is None


# ------------------------------------------------- a kernel that says no (seccomp, for real)

# Installs a seccomp filter in this process (and its future threads and children) that makes
# pidfd_open and pidfd_send_signal fail with the given errno, then runs an engine: launch,
# SIGKILL by us, and reports what the engine said.
_NO_PIDFD_KERNEL = textwrap.dedent("""
    import ctypes, errno, json, os, signal, sys, time
    ERR = int(sys.argv[1])
    libc = ctypes.CDLL(None, use_errno=True)
    class Insn(ctypes.Structure):
        _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                    ("k", ctypes.c_uint)]
    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Insn))]
    LD, JEQ, RET = 0x20, 0x15, 0x06
    ALLOW, ERRNO = 0x7FFF0000, 0x00050000
    insns = [
        Insn(LD, 0, 0, 4), Insn(JEQ, 1, 0, 0xC000003E), Insn(RET, 0, 0, ALLOW),  # x86_64 only
        Insn(LD, 0, 0, 0),
        Insn(JEQ, 2, 0, 434), Insn(JEQ, 1, 0, 424),  # pidfd_open, pidfd_send_signal
        Insn(RET, 0, 0, ALLOW),
        Insn(RET, 0, 0, ERRNO | ERR),
    ]
    arr = (Insn * len(insns))(*insns)
    prog = Prog(len(insns), arr)
    assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
    assert libc.prctl(22, 2, ctypes.byref(prog), 0, 0) == 0, ctypes.get_errno()  # SECCOMP_MODE_FILTER
    try:
        os.pidfd_open(os.getpid())
        raise SystemExit("the filter did not take")
    except OSError as e:
        assert e.errno == ERR, e

    from oomscope.core.engine import Engine, EngineConfig
    from oomscope.core.launch import LaunchSpec
    eng = Engine(EngineConfig(interval_s=0.1, kernel_log=False, heap_reports=False)).start()
    seen = []
    def wait(kind):
        while True:
            seen.append(eng.events.get(timeout=20))
            if seen[-1].kind == kind:
                return seen[-1]
    ref = eng.launch(LaunchSpec((sys.executable, "-c", "import time; time.sleep(60)"))).result(5)
    wait("samples")
    os.kill(ref.pid, signal.SIGKILL)  # our engine's own child, by PID
    exited = wait("worker_exited")
    eng.stop()
    print(json.dumps({
        "fallback": eng.pidfd_fallback,
        "notices": [e.message for e in seen if e.kind == "notice"],
        "exit": [exited.cause, exited.signal],
    }))
""")


@pytest.mark.skipif(platform.machine() != "x86_64" or os.geteuid() != 0,
                    reason="the seccomp filter here is written for x86_64 (and set as root)")
@pytest.mark.parametrize(("err", "says"), [
    (errno.ENOSYS, "has no pidfd_open: it needs Linux 5.3 or newer"),
    (errno.EPERM, "pidfd_open is blocked, most likely by the container's seccomp profile"),
], ids=["old-kernel", "seccomp-eperm"])
def test_engine_falls_back_where_the_kernel_refuses_pidfd(err: int, says: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != NO_PIDFD_ENV}
    r = subprocess.run([PY, "-c", _NO_PIDFD_KERNEL, str(err)], capture_output=True, text=True,
                       timeout=60, env=env, cwd=REPO)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.splitlines()[-1])
    assert out["fallback"].startswith("pidfd is not available (")
    assert says in out["fallback"] and os.uname().release in out["fallback"]
    assert out["notices"] == [out["fallback"]]
    assert out["exit"] == ["signal", "SIGKILL"]
