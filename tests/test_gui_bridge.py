"""The bridge's promise: a command's events are handled before its callback runs."""

from __future__ import annotations

import queue
from concurrent.futures import Future
from typing import Any

from gui_helpers import GUI_MARKS, confirmer, make_window  # noqa: F401 (fixtures)
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


def test_the_bridge_and_the_window_cover_every_event_kind(qtbot, make_window) -> None:
    """The GUI's two dispatchers: a new event kind that neither handles nor ignores fails here."""
    from oomscope.core.dispatch import event_classes
    from oomscope.gui.bridge import EngineBridge

    window = make_window()
    dispatchers = {"bridge": EngineBridge(Source())._dispatch, "window": window.handle_event}
    missing = {name: [cls.__name__ for cls in event_classes() if not d.covers(cls)]
               for name, d in dispatchers.items()}
    assert missing == {"bridge": [], "window": []}


def test_a_crash_loop_is_an_error_a_notification_and_a_note_on_the_worker(qtbot, make_window) -> None:
    """The window knows a crash loop by its event (not by a message's words): the restart
    notice of a plain exit, even one whose text says "crash loop", stays a passing warning."""
    import time

    from oomscope.core.events import CrashLoop, Notice, WorkerExited

    window = make_window()
    shown: list[tuple[str, str]] = []
    window.notifier.show_fn = lambda title, text: shown.append((title, text))
    ref = WorkerRef("cl1", 4_194_304, time.time() - 5, "leaker", ("leaker",), True, slot=7, life=2)
    queue_ = window.engine.events
    queue_.put(WorkerStarted(time.time() - 4, ref))
    queue_.put(Notice(time.time() - 3, "warning", "not a crash loop, whatever this says", ref))
    queue_.put(WorkerExited(time.time() - 2, ref, cause="oom-kill", exit_code=None, signal="SIGKILL"))
    with qtbot.waitSignal(window.bridge.crash_loop_detected, timeout=5_000):
        queue_.put(CrashLoop(time.time(), ref, 2, 60.0, "slot 7, life 2: crash loop: 2 memory deaths"))
    assert [t for t, _ in shown if "crash loop" in t] == ["oomscope: leaker crash loop"]
    assert window.message_bar.history[-1].endswith("slot 7, life 2: crash loop: 2 memory deaths")
    assert "rgb(250, 220, 220)" in window.message_bar.styleSheet()  # the error red
    assert window.roster.by_id["cl1"].notices[-1] == "slot 7, life 2: crash loop: 2 memory deaths"
