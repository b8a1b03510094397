"""The bridge's promise: a command's events are handled before its callback runs."""

from __future__ import annotations

import queue
from concurrent.futures import Future
from typing import Any

from gui_helpers import GUI_MARKS
from oomscope.core.events import WorkerRef, WorkerStarted

pytestmark = GUI_MARKS


class Source:
    """An event source as the replay uses one: a queue and nothing to command."""

    def __init__(self) -> None:
        self.events: queue.SimpleQueue[Any] = queue.SimpleQueue()


def test_a_callback_runs_only_after_the_events_queued_before_its_answer(qtbot) -> None:
    from oomscope.gui.bridge import EngineBridge

    source = Source()
    bridge = EngineBridge(source)
    seen: list[str] = []
    bridge.worker_added.connect(lambda ev: seen.append(f"event {ev.worker.id}"))
    ref = WorkerRef("w1", 4242, 1.0, "python3", ("python3",), True)
    source.events.put(WorkerStarted(1.0, ref))
    launched: Future[WorkerRef] = Future()
    launched.set_result(ref)
    bridge.call(launched, on_result=lambda r: seen.append(f"callback {r.id}"))
    bridge.drain(budget_s=0.0)  # no time to hand anything over: the callback must wait too
    assert seen == []
    bridge.drain(budget_s=None)
    assert seen == ["event w1", "callback w1"]

    # Answered while a drain runs (after it looked): the callback waits for the next drain.
    late: Future[WorkerRef] = Future()
    bridge.call(late, on_result=lambda r: seen.append(f"late {r.id}"))
    bridge.worker_added.connect(lambda ev: late.done() or late.set_result(ev.worker))
    source.events.put(WorkerStarted(2.0, WorkerRef("w2", 4243, 2.0, "python3", ("python3",), True)))
    bridge.drain(budget_s=None)
    assert seen[-1] == "event w2"
    bridge.drain(budget_s=None)
    assert seen[-1] == "late w2"
