"""Where the reporters go in a launched worker's command line and environment."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_heap_support import NODE, Collector, descendant_of, needs_node

from oomscope.core.heap import inject
from oomscope.core.heap.inject import inject_node, inject_python, python_reporter_dir, reporter_path
from oomscope.core.heap.server import HeapServer

SOCK = "/tmp/oomscope-heap-x/heap.sock"


def test_resources_are_real_files() -> None:
    assert os.path.isabs(reporter_path()) and os.path.isfile(reporter_path())
    assert os.path.isfile(os.path.join(python_reporter_dir(), "sitecustomize.py"))


def test_node_directly() -> None:
    env = {"PATH": "/usr/bin", "NODE_OPTIONS": "--max-old-space-size=100"}
    argv, new_env = inject_node(["/usr/bin/node", "app.js", "--x"], env, SOCK, 0.25)
    assert argv == ["/usr/bin/node", "--require", reporter_path(), "app.js", "--x"]
    assert new_env["NODE_OPTIONS"] == f'--max-old-space-size=100 --require "{reporter_path()}"'
    assert new_env["OOMSCOPE_HEAP_SOCKET"] == SOCK and new_env["OOMSCOPE_HEAP_INTERVAL_MS"] == "250"
    assert env == {"PATH": "/usr/bin", "NODE_OPTIONS": "--max-old-space-size=100"}  # not modified
    # Injecting twice changes nothing more.
    assert inject_node(argv, new_env, SOCK, 0.25) == (argv, new_env)


def test_node_after_env_and_a_shell_command() -> None:
    argv, _ = inject_node(["env", "-u", "X", "A=1", "nodejs", "a.js"], {}, SOCK, 1.0)
    assert argv == ["env", "-u", "X", "A=1", "nodejs", "--require", reporter_path(), "a.js"]
    # env -i drops our environment: the socket goes in as env(1) assignments.
    argv, _ = inject_node(["/usr/bin/env", "-i", "node", "a.js"], {}, SOCK, 1.0)
    assert argv == ["/usr/bin/env", "-i", f"OOMSCOPE_HEAP_SOCKET={SOCK}",
                    "OOMSCOPE_HEAP_INTERVAL_MS=1000", "node", "--require", reporter_path(), "a.js"]
    shell = ["/bin/sh", "-c", "cd /srv && node app.js"]
    argv, env = inject_node(shell, {}, SOCK, 1.0)
    assert argv == shell and reporter_path() in env["NODE_OPTIONS"]
    for other in (["python3", "x.py"], ["env", "python3"], ["env", "-S", "node x"], []):
        assert inject_node(other, {}, SOCK, 1.0)[0] == other
    # A script argument that happens to look like ours is the app's, not node's.
    argv, _ = inject_node(["node", "a.js", "--require", reporter_path()], {}, SOCK, 1.0)
    assert argv[:3] == ["node", "--require", reporter_path()]
    with pytest.raises(ValueError):
        inject_node(["node"], {}, SOCK, 0)


def test_python_env() -> None:
    env = inject_python({"PYTHONPATH": "/a:/b"}, SOCK, 0.5)
    assert env["PYTHONPATH"] == f"{python_reporter_dir()}:/a:/b"
    assert env["OOMSCOPE_HEAP_INTERVAL_MS"] == "500"
    assert inject_python(env, SOCK, 0.5) == env
    assert inject_python({}, SOCK, 1)["PYTHONPATH"] == python_reporter_dir()


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector(HeapServer(is_allowed=descendant_of(os.getpid())))
    yield c
    c.close()


@needs_node
def test_node_options_quoting_survives_an_awkward_path(
        tmp_path: Path, collector: Collector, monkeypatch: pytest.MonkeyPatch) -> None:
    odd = tmp_path / 'dir with "quotes" and \\ spaces'
    odd.mkdir()
    shutil.copy(reporter_path(), odd / "reporter.js")
    monkeypatch.setattr(inject, "reporter_path", lambda: str(odd / "reporter.js"))
    assert NODE is not None
    # Through a shell: only NODE_OPTIONS carries the reporter. Node runs until its stdin closes.
    argv, env = inject_node(["/bin/sh", "-c", f"{NODE} -e 'process.stdin.resume()'"],
                            {"PATH": os.environ["PATH"]}, collector.server.socket_path, 0.05)
    p = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        collector.wait_for(lambda c: c.reports())
        _, err = p.communicate(b"", timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert (p.returncode, err) == (0, b"")
