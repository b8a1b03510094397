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
