"""A late kernel record upgrades an exit to oom-kill (``cause_updated``), as the window shows it.

A record that arrives after the exit was decided cannot be produced on this machine: the engine
reads /dev/kmsg right before deciding, so the record is always there in time. The events are
therefore built here (core/events.py) and fed through the real path: the engine's event queue,
drained by the window's bridge on its timer, next to a running engine's own events.
"""

from __future__ import annotations

import time
from typing import Any

from gui_helpers import GUI_MARKS, confirmer, make_window  # noqa: F401 (fixtures)
from oomscope.core.oomlog.records import KillRecord
from oomscope.core.events import CauseUpdated, Sample, Samples, ThreadExited, WorkerExited, WorkerRef, \
    WorkerStarted

pytestmark = GUI_MARKS

PID = 4_194_304  # PID_MAX_LIMIT (2**22): pids stay below it, so no real process has this one
_TASK_ROW = f"[ {PID}]     0 {PID}   271575    24349   372736        0             0 node"
RECORD = KillRecord(
    killer="kernel-memcg", pid=PID, comm="node", uid=0, total_vm_kb=1086300,
    anon_rss_kb=97396, file_rss_kb=35492, shmem_rss_kb=0, constraint="CONSTRAINT_MEMCG",
    oom_memcg="/late", task_memcg="/late", kernel_time_s=10773.06, wall_time=None,
    lines=(
        "node invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
        _TASK_ROW,
        f"oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/late,"
        f"task_memcg=/late,task=node,pid={PID},uid=0",
        f"Memory cgroup out of memory: Killed process {PID} (node) total-vm:1086300kB, anon-rss:97396kB, "
        "file-rss:35492kB, shmem-rss:0kB, UID:0 pgtables:648kB oom_score_adj:0",
    ),
    task_rows=(_TASK_ROW,),
)


def test_late_record_moves_the_marker_to_the_oom_lane_and_fills_the_detail_pane(qtbot, make_window) -> None:
    from oomscope.core.causes import HEAP_OOM, OOM_KILL, SIGNAL
    from oomscope.gui.models import COL_STATE

    window = make_window()
    ref = WorkerRef("late1", PID, time.time() - 5, "node", ("node", "app.js"), True)
    now = time.time()
    queue = window.engine.events
    queue.put(WorkerStarted(now - 4, ref, cgroup="/late", cgroup_limit=128 << 20))
    queue.put(Samples(now - 3, (Sample(ref, 90 << 20, 80 << 20, 0, 90 << 20, 128 << 20),)))
    # A thread death of the same worker first: the upgrade must leave that marker alone.
    queue.put(ThreadExited(now - 2, ref, PID, 1, HEAP_OOM, "ERR_WORKER_OUT_OF_MEMORY"))
    queue.put(WorkerExited(now - 1, ref, cause=SIGNAL, exit_code=None, signal="SIGKILL",
                           evidence=("SIGKILL from outside oomscope",)))

    def worker_markers() -> dict[str, str]:
        return {("thread" if d.thread_id is not None else "worker"): lane
                for _t, lane, d in window.timeline.marker_deaths() if d.worker_id == ref.id}

    qtbot.waitUntil(lambda: worker_markers() == {"thread": HEAP_OOM, "worker": SIGNAL}, timeout=5_000)
    window.open_death(next(d for d in window.roster.deaths if d.worker_id == ref.id and d.thread_id is None))
    assert window.detail.kernel_text() == ""

    with qtbot.waitSignal(window.bridge.cause_updated, timeout=5_000):
        queue.put(CauseUpdated(now, ref, cause=OOM_KILL, previous=SIGNAL, oom=RECORD,
                               evidence=(f"kernel: {RECORD.lines[3]}",)))
    # The timeline redraws through a throttle (a burst of deaths is drawn once).
    qtbot.waitUntil(lambda: worker_markers() == {"thread": HEAP_OOM, "worker": OOM_KILL}, timeout=2_000)
    w = window.roster.by_id[ref.id]
    assert window.model.data(window.model.row_of(ref.id).siblingAtColumn(COL_STATE)) == "exited: oom-kill (SIGKILL)"
    # The pane showing the worker took the record: its key lines, verbatim.
    assert window.detail.worker is w
    text = window.detail.kernel_text()
    assert f"Killed process {PID} (node)" in text and "oom-kill:constraint=CONSTRAINT_MEMCG" in text
    assert f"[ {PID}]" in text  # the victim's task-table row
    assert "oom-kill" in window.detail.header.text()
    death = next(d for _t, _lane, d in window.timeline.marker_deaths() if d.worker_id == ref.id and d.thread_id is None)
    assert death.record is RECORD and death.anon_rss_bytes == 97396 * 1024
