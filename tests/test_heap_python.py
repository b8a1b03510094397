"""The Python sitecustomize reporter in real Python processes."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PY
from test_heap_support import Collector, descendant_of, run

from oomscope.core.heap.inject import inject_python
from oomscope.core.heap.server import HeapServer


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector(HeapServer(is_allowed=descendant_of(os.getpid())))
    yield c
    c.close()


def base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "OOMSCOPE_"))}


def serve_until_exit(collector: Collector, argv: list[str], env: dict[str, str], pred: object,
                     tmp_path: Path) -> tuple[int, bytes, bytes]:
    """Run a program that waits for its stdin to close; close it once ``pred`` holds."""
    with open(tmp_path / "out", "wb") as out, open(tmp_path / "err", "wb") as err:
        p = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=out, stderr=err)
        try:
            collector.wait_for(pred)  # type: ignore[arg-type]
            p.communicate(timeout=20)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    return p.returncode, (tmp_path / "out").read_bytes(), (tmp_path / "err").read_bytes()


def test_launched_python_reports_and_forks_report_separately(collector: Collector) -> None:
    hold_r, hold_w = os.pipe()  # the forked child lives until the test closes hold_w
    code = ("import os, sys\n"
            "keep = [bytes(1000) for _ in range(50_000)]\n"
            "pid = os.fork()\n"
            f"if pid == 0:\n    os.read({hold_r}, 1); os._exit(0)\n"
            "print(pid, flush=True)\n"
            "sys.stdin.readline()\n")
    env = inject_python(base_env(), collector.server.socket_path, 0.05)
    p = subprocess.Popen([PY, "-c", code], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         pass_fds=(hold_r,))
    os.close(hold_r)
    try:
        assert p.stdout is not None and p.stdin is not None
        child = int(p.stdout.readline())
        collector.wait_for(lambda c: c.reports(p.pid) and c.reports(child))
        p.stdin.write(b"go\n")
        p.stdin.close()
        assert p.wait(timeout=20) == 0
        # The parent's connection ends with the parent although its forked child lives on
        # (the child closed the copy of the parent's socket it inherited).
        collector.wait_for(lambda c: [e for e in c.ended() if e.pid == p.pid])
        assert not [e for e in collector.ended() if e.pid == child]
    finally:
        os.close(hold_w)
        if p.poll() is None:
            p.kill()
            p.wait()
        if p.stdout is not None:
            p.stdout.close()
    collector.wait_for(lambda c: [e for e in c.ended() if e.pid == child])
    hello = collector.hellos(p.pid)[0]
    assert (hello.kind, hello.thread_id, hello.is_main) == ("python", 0, True)
    assert hello.python_version and hello.python_version.count(".") == 2
    r = collector.reports(p.pid)[-1]
    assert r.heap_used > 50_000_000 and r.heap_total >= r.heap_used and r.heap_limit >= 0
    assert r.allocated_blocks is not None and r.allocated_blocks > 50_000
    assert r.gc_counts is not None and r.old_space_used is None and r.thread_id == 0


def test_existing_sitecustomize_is_chained(collector: Collector, tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "sitecustomize.py").write_text(
        "import os\nos.environ['THEIRS_RAN'] = os.environ.get('THEIRS_RAN', '') + 'x'\n"
        "print('their sitecustomize')\n")
    env = inject_python({**base_env(), "PYTHONPATH": str(theirs)}, collector.server.socket_path, 0.05)
    code = ("import os, sitecustomize, sys\n"
            "print(os.environ['THEIRS_RAN'], sitecustomize.__file__)\n"
            "sys.stdin.read()\n")
    rc, out, err = serve_until_exit(collector, [PY, "-c", code], env,
                                    lambda c: c.reports(), tmp_path)
    assert (rc, err) == (0, b"")
    assert out.decode().splitlines() == ["their sitecustomize",
                                         f"x {theirs / 'sitecustomize.py'}"]


def test_chained_sitecustomize_errors_look_as_without_us(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "sitecustomize.py").write_text("raise RuntimeError('theirs is broken')\n")
    env = {**base_env(), "PYTHONPATH": str(theirs)}
    plain = run([PY, "-c", "print('ran')"], env)
    injected = run([PY, "-c", "print('ran')"],
                   inject_python(env, str(tmp_path / "missing.sock"), 0.05))
    assert b"theirs is broken" in plain.stderr
    assert (injected.returncode, injected.stdout, injected.stderr) == \
        (plain.returncode, plain.stdout, plain.stderr)


def test_missing_socket_changes_nothing(tmp_path: Path) -> None:
    code = ("import sys, threading, os\n"
            "print('threads', threading.active_count(), [t.name for t in threading.enumerate()])\n"
            "print('out'); print('err', file=sys.stderr)\n"
            "pid = os.fork()\n"
            "if pid == 0: os._exit(4)\n"
            "print('child', os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n"
            "sys.exit(5)\n")
    plain = run([PY, "-c", code], base_env())
    for bad in (tmp_path / "missing.sock", tmp_path):
        injected = run([PY, "-c", code], inject_python(base_env(), str(bad), 0.05))
        assert (injected.returncode, injected.stdout, injected.stderr) == \
            (plain.returncode, plain.stdout, plain.stderr)
    assert plain.returncode == 5
