"""The one process scan (core/processes.py): the Attach dialog's list and the engine's --match
discovery, with one kernel-thread rule, on real processes."""

from __future__ import annotations

import os
import pwd
import re
import subprocess
from pathlib import Path

import pytest

from conftest import PY
from oomscope.core import procfs
from oomscope.core.processes import children_of, is_kernel_thread, list_processes, matching


def _kernel_threads() -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = procfs.stat_fields(int(entry))
            if fields is not None and is_kernel_thread(fields):
                found.add(int(entry))
    return found


def test_list_shows_a_child_as_ps_would(children, tmp_path: Path) -> None:
    # A program name longer than comm's 15 characters: listed whole, as ps and psutil do.
    long_name = tmp_path / "oomscope-long-program-name"
    long_name.symlink_to(PY)
    tag = f"oomscope-list-{os.getpid()}"
    p = children([str(long_name), "-u", "-c", "print('ready'); import time; time.sleep(60)", tag],
                 stdout=subprocess.PIPE)
    assert p.stdout is not None and p.stdout.readline() == b"ready\n"  # exec'd, set up
    assert procfs.comm(p.pid) == "oomscope-long-p"  # the kernel's cut
    row = next(r for r in list_processes() if r.pid == p.pid)
    assert row.ppid == os.getpid()
    assert row.name == "oomscope-long-program-name"
    assert row.user == pwd.getpwuid(os.geteuid()).pw_name
    assert row.rss_bytes is not None and row.rss_bytes > 0
    assert row.cmdline.endswith(tag) and row.matches(tag.upper())
    me = next(r for r in list_processes(include_self=True) if r.pid == os.getpid())
    assert me.children >= 1
    assert os.getpid() not in {r.pid for r in list_processes()}


def test_kernel_threads_are_left_out_of_list_and_match() -> None:
    kthreads = _kernel_threads()
    if not kthreads:
        pytest.skip("no kernel thread is visible in this PID namespace")
    listed = {r.pid for r in list_processes(include_self=True)}
    assert listed and not (listed & kthreads)
    # kthreadd's name matches its own pattern: the rule, not the pattern, leaves it out.
    assert not set(matching([re.compile(r"^kthreadd$|^kworker")])) & kthreads


def test_match_finds_running_processes_only(children) -> None:
    tag = f"oomscope-scan-{os.getpid()}"
    live = children([PY, "-c", "import time; time.sleep(60)", tag])
    dead = children([PY, "-c", "pass", tag])
    # Exited and not reaped: a zombie, still in /proc with its pattern-free command line.
    os.waitid(os.P_PID, dead.pid, os.WEXITED | os.WNOWAIT)
    assert procfs.state_of(dead.pid) == "Z"
    pattern = [re.compile(tag), re.compile(r"^python")]
    found = matching(pattern)
    assert live.pid in found and dead.pid not in found
    assert os.getpid() not in found and 1 not in found
    assert live.pid not in matching(pattern, known={live.pid})
    assert matching([]) == []


def test_children_of_leaves_out_the_known(children) -> None:
    a = children([PY, "-c", "import time; time.sleep(60)"])
    b = children([PY, "-c", "import time; time.sleep(60)"])
    kids = children_of(os.getpid())
    assert {a.pid, b.pid} <= set(kids) and kids == sorted(kids)
    assert a.pid not in children_of(os.getpid(), known={a.pid})
