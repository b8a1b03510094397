"""The kill report's key lines take the cgroup's usage line of their own report, never that of a
report printed a moment earlier for another cgroup."""

from __future__ import annotations

import re
from pathlib import Path

from gui_helpers import GUI_MARKS

pytestmark = GUI_MARKS

CORPUS = Path(__file__).parent / "data" / "oom-corpus" / "local-6.18-memcg-v1-two-memcgs-with-noise.dmesg.log"


def test_each_kill_gets_its_own_reports_usage_line() -> None:
    from oomscope.core.events import KernelLineRead
    from oomscope.core.oomlog.lines import KernelLine
    from oomscope.core.oomlog.reader import parse_lines
    from oomscope.gui.kill_report import context_lines, report_text

    text = CORPUS.read_text().splitlines()
    records = parse_lines(text)
    assert len(records) == 2
    read = []
    for raw in text:
        m = re.match(r"^\[\s*(\d+\.\d+)\] (.*)$", raw)
        if m is not None:
            read.append(KernelLineRead(0.0, KernelLine(m.group(2), raw=raw, kernel_time_s=float(m.group(1)))))
    first, second = (report_text(r, context_lines(r, read)) for r in records)
    key_first, key_second = (t.split("— the whole report")[0] for t in (first, second))
    assert "memory: usage 65536kB, limit 65536kB, failcnt 249" in key_first
    assert "failcnt 66" not in first
    assert "memory: usage 65536kB, limit 65536kB, failcnt 66" in key_second
    assert "failcnt 249" not in second
    # Key lines in the kernel's order: what invoked the killer, the usage, the kill.
    lines = key_second.splitlines()
    assert "invoked oom-killer" in lines[0]
    usage = next(i for i, x in enumerate(lines) if "memory: usage" in x)
    kill = next(i for i, x in enumerate(lines) if "oom-kill:" in x)
    assert 0 < usage < kill


def test_a_kernel_kill_of_a_workers_child_names_the_worker_on_the_timeline(qapp) -> None:
    """The kill of a process oomscope does not watch but that belongs to a worker (its child,
    or a process in its own cgroup) says whose it was, not "a process oomscope does not watch"."""
    from oomscope.core.events import KernelOom, WorkerRef
    from oomscope.core.oomlog.parser import KillRecord
    from oomscope.gui.roster import Roster
    from oomscope.gui.timeline import tip_text

    roster = Roster()
    worker = WorkerRef("w3", 4242, 1.0, "pytest-runner", ("npm", "test"), True, slot=1)
    child = roster.on_kernel_oom(KernelOom(10.0, KillRecord("kernel-memcg", pid=4250, comm="node"),
                                           concerns=worker, relation="cgroup"))
    stranger = roster.on_kernel_oom(KernelOom(11.0, KillRecord("kernel-memcg", pid=999, comm="java")))
    assert child is not None and stranger is not None
    assert "kernel kill of a process in the cgroup of worker w3 (pytest-runner)" in tip_text(child)
    assert "does not watch" in tip_text(stranger) and "w3" not in tip_text(stranger)
