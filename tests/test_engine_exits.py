"""How workers end, against real processes: a worker's last output and its exit seen in the
same loop round, a command that does not exist, and the exit status of attached processes."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable

import pytest

from conftest import PY
from oomscope.core.launch import LaunchSpec
from oomscope.core.restart import RestartPolicy


def test_last_output_and_exit_in_one_round_are_ordinary(make_engine) -> None:
    """Short shell workers: the pipe's end and the pidfd are often ready in the same select()
    round. No internal error, every line delivered, each before its worker's exit."""
    eng, log = make_engine(interval_s=0.5)
    n = 200
    refs = [eng.launch(LaunchSpec(f"echo hi {i}; echo err {i} >&2; exit 3")).result(10)
            for i in range(n)]
    ids = {r.id for r in refs}
    log.wait_for(lambda e: len({x.worker.id for x in log.of("worker_exited")} & ids) == n, 60)
    errors = [e.message for e in log.of("notice") if "internal error" in e.message]
    assert errors == [], errors[:2]
    for i, ref in enumerate(refs):
        mine = [e for e in log.events if getattr(e, "worker", None) is not None and e.worker.id == ref.id]
        lines = [(e.stream, e.line) for e in mine if e.kind == "output"]
        assert sorted(lines) == [("stderr", f"err {i}"), ("stdout", f"hi {i}")], (ref, lines)
        kinds = [e.kind for e in mine]
        assert kinds.index("worker_exited") > max(j for j, k in enumerate(kinds) if k == "output")
        exited = next(e for e in mine if e.kind == "worker_exited")
        assert (exited.cause, exited.exit_code) == ("exit", 3)


# ------------------------------------------------------------- a missing command

def test_missing_command_says_so_and_is_not_restarted(make_engine) -> None:
    eng, log = make_engine()
    policy = RestartPolicy(max=3, backoff_initial_s=0.05)
    ref = eng.launch(LaunchSpec("no_such_command_xyz --flag"), policy).result(5)
    exited = log.wait_exit(ref.id)
    assert (exited.cause, exited.exit_code) == ("exit", 127)
    assert exited.evidence[0].startswith("command not found: ")
    assert "no_such_command_xyz" in exited.evidence[0]
    assert exited.restart_in_s is None
    note = log.wait_for(lambda e: e.kind == "notice" and e.worker is not None and e.worker.id == ref.id)
    assert "not found" in note.message and "not restarted" in note.message


def test_a_program_exiting_127_by_itself_is_an_ordinary_exit(make_engine) -> None:
    """127 alone is not "not found": the shell's message on stderr is what says so."""
    eng, log = make_engine()
    policy = RestartPolicy(max=1, backoff_initial_s=0.05)
    ref = eng.launch(LaunchSpec("echo nothing missing >&2; exit 127"), policy).result(5)
    exited = log.wait_exit(ref.id)
    assert (exited.cause, exited.exit_code, exited.evidence) == ("exit", 127, ())
    assert exited.restart_in_s == 0.05
    again = log.wait_for(lambda e: e.kind == "worker_started" and e.worker.slot == ref.slot
                         and e.worker.life == 2)
    log.wait_exit(again.worker.id)


# ------------------------------------------------- exit status of attached processes

def _grandchild(children: Callable[..., subprocess.Popen[bytes]], code: str, *,
                reap: bool = True) -> tuple[subprocess.Popen[bytes], int]:
    """A python process whose parent is neither the test nor the engine: a shell that collects
    it at once (``reap``), or a python parent that collects it only when its stdin says so.
    The grandchild prints 'ready' once set up; returns (its parent, its PID)."""
    if reap:
        parent = children(["/bin/sh", "-c", f"{PY} -u -c '{code}' & echo $!; wait"],
                          stdout=subprocess.PIPE)
    else:
        keeper = ("import os, sys, subprocess\n"
                  f"p = subprocess.Popen([{PY!r}, '-u', '-c', {code!r}])\n"
                  "print(p.pid, flush=True)\n"
                  "sys.stdin.readline()\n"
                  "p.wait()\n")
        parent = children([PY, "-u", "-c", keeper], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert parent.stdout is not None
    lines = {parent.stdout.readline().strip() for _ in range(2)}  # its PID and its 'ready'
    assert b"ready" in lines, lines
    pid = int(next(x for x in lines if x != b"ready"))
    assert pid != parent.pid
    return parent, pid


@pytest.mark.parametrize("ending, expected", [
    ("kill -9", ("signal", "SIGKILL", None)),
    ("exit 5", ("exit", None, 5)),
])
def test_attached_exit_status_is_told(make_engine, children, gate, ending: str,
                                      expected: tuple[str, str | None, int | None]) -> None:
    eng, log = make_engine()
    held = gate()
    _, pid = _grandchild(children, f"print(\"ready\"); {held.wait_code}; raise SystemExit(5)")
    ref = eng.attach(pid).result(5)
    log.wait_samples(ref.id)
    if ending == "kill -9":
        os.kill(pid, signal.SIGKILL)  # the test's own grandchild, held by its gate: still this PID
    else:
        held.open()
    exited = log.wait_exit(ref.id)
    assert (exited.cause, exited.signal, exited.exit_code) == expected, exited.evidence


def test_attached_zombie_nobody_collects_is_unknown_with_the_reason(make_engine, children, gate) -> None:
    eng, log = make_engine()
    held = gate()
    parent, pid = _grandchild(children, f"print(\"ready\"); {held.wait_code}", reap=False)
    ref = eng.attach(pid).result(5)
    log.wait_samples(ref.id)
    os.kill(pid, signal.SIGKILL)
    exited = log.wait_exit(ref.id)
    assert (exited.cause, exited.exit_code) == ("unknown", None)
    assert f"its parent (PID {parent.pid}) has not collected its exit status" in exited.evidence[0]
    assert parent.stdin is not None
    parent.stdin.write(b"reap\n")
    parent.stdin.flush()
    assert parent.wait(10) == 0


@pytest.mark.parametrize("attached", [True, False])
def test_a_sigkill_from_elsewhere_after_an_ignored_sigterm_is_signal(make_engine, children, gate,
                                                                      attached: bool) -> None:
    """oomscope's SIGTERM (by policy) was ignored; the SIGKILL came from somebody else before
    the grace period ended: the signal that ended it is told, not oomscope's."""
    eng, log = make_engine()
    held = gate()
    code = f"import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(\"ready\"); {held.wait_code}"
    if attached:
        _, pid = _grandchild(children, code)
        ref = eng.attach(pid).result(5)
    else:
        ref = eng.launch(LaunchSpec((PY, "-u", "-c", code))).result(5)
        pid = ref.pid
        log.wait_for(lambda e: e.kind == "output" and e.worker.id == ref.id and e.line == "ready")
    eng.terminate(ref.id, by="policy", grace_s=60).result(5)
    assert log.wait_for(lambda e: e.kind == "terminate" and e.worker.id == ref.id).signal == "SIGTERM"
    os.kill(pid, signal.SIGKILL)
    exited = log.wait_exit(ref.id)
    assert (exited.cause, exited.signal, exited.by) == ("signal", "SIGKILL", None), exited
    assert any("oomscope had sent SIGTERM (policy)" in e for e in exited.evidence)
    assert [t.signal for t in log.of("terminate", ref.id)] == ["SIGTERM"]
