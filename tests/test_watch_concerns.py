"""Kernel OOM kills as `oomscope watch` tells them: a process in a watched worker's own cgroup is
named as that worker's, in the text lines and in the gate's summary; a host process oomscope
never watched is only counted there.

Every OOM here happens inside a cgroup with a small limit made for the test (by watch's
--mem-limit or by the test itself), holding only the test's processes; all are removed after.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import PY, run_until, small_cgroup, v1_memory_writable
from oomscope.core.cgroup.limited import LimitedCgroup

pytestmark = [
    pytest.mark.cgroup,
    pytest.mark.skipif(not v1_memory_writable(), reason="needs root and a writable cgroup v1 memory controller"),
    pytest.mark.skipif(not os.access("/dev/kmsg", os.R_OK), reason="needs a readable /dev/kmsg"),
]

OOMSCOPE = [PY, "-m", "oomscope"]
PY_LEAKER = "import time\nchunks = []\nwhile True:\n    chunks.append(bytearray(1 << 20)); time.sleep(0.004)\n"


@pytest.fixture
def stranger_cgroup() -> Iterator[LimitedCgroup]:
    """A small cgroup no worker is in: what an unrelated host process's OOM kill stands for."""
    with small_cgroup(48 << 20, "test-stranger") as cg:
        yield cg


def test_a_workers_child_killed_in_its_cgroup_is_named_as_the_workers(gate: Any) -> None:
    """The worker forks a child that leaks; the kernel kills the child inside the worker's own
    cgroup. The text line names the worker, never 'a process oomscope does not watch'."""
    held = gate()
    code = (
        "import os\n"
        f"LEAK = {PY_LEAKER!r}\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    exec(LEAK)\n"
        "print('child', pid, 'of', os.getpid(), flush=True)\n"
        "os.waitpid(pid, 0)\n"
        f"{held.wait_code}\n"  # alive until the test has read the kill's line
    )
    seen: dict[str, str] = {}

    def until(line: str) -> bool:
        m = re.search(r"child (\d+) of (\d+)", line)
        if m is not None:
            seen["child"], seen["parent"] = m.group(1), m.group(2)
        return "kernel OOM kill" in line and "child" in seen and f"PID {seen['child']} " in line

    r = run_until([*OOMSCOPE, "watch", "--interval", "0.05", "--mem-limit", "48MiB", "--", PY, "-u", "-c", code],
                  until, held.open)
    assert r.returncode == 100, r.stderr  # the run's verdict: a process of its worker was OOM-killed
    (kill,) = [x for x in r.stdout.splitlines() if "kernel OOM kill" in x]
    assert "does not watch" not in kill, kill
    assert f"PID {seen['child']} " in kill and "in the cgroup of w1 " in kill and f"[{seen['parent']}]" in kill, kill


def test_the_gate_lists_kills_of_its_workers_and_only_counts_strangers(
        tmp_path: Path, gate: Any, stranger_cgroup: LimitedCgroup) -> None:
    """While a gated watch runs, a process of no worker is OOM-killed in a cgroup of its own:
    the summary leaves its lines out and says only how many such kills there were."""
    held = gate()
    stranger: list[subprocess.Popen[bytes]] = []

    def until(line: str) -> bool:
        e = json.loads(line) if line.startswith("{") else {}
        if e.get("event") == "worker_started" and not stranger:
            # Only now: watch reads the kernel log, and kills from before it are not counted.
            stranger.append(subprocess.Popen(stranger_cgroup.wrap_command([PY, "-c", PY_LEAKER])))
        return bool(stranger) and e.get("event") == "kernel_oom" and e["oom"]["pid"] == stranger[0].pid

    summary = tmp_path / "summary.json"
    try:
        r = run_until([*OOMSCOPE, "watch", "--json", "--interval", "0.05", "--summary", str(summary),
                       "--", PY, "-c", held.wait_code], until, held.open)
    finally:
        for p in stranger:
            p.kill()
            p.wait()
    assert r.returncode == 0, r.stderr
    pid = stranger[0].pid
    (told,) = [e for e in map(json.loads, r.stdout.splitlines())
               if e["event"] == "kernel_oom" and e["oom"]["pid"] == pid]
    assert told["concerns"] is None
    s = json.loads(summary.read_text())
    # Other test runs on this machine may OOM-kill their own processes meanwhile: at least ours.
    assert isinstance(s["unwatched_kills"], int) and s["unwatched_kills"] >= 1
    assert s["workers"][0]["cgroup_kills"] == []
    text = r.stderr[r.stderr.index("== oomscope watch summary"):]
    assert f"Killed process {pid} " not in text and "does not watch" not in text, text
    assert re.search(r"\(\d+ OOM kills? of other processes on this host, none of them a watched worker's", text), text
