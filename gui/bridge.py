"""The one way engine events reach Qt: a named QTimer drains ``Engine.events`` on the GUI thread.

The engine thread never touches a QObject (pyqtgraph issue 1398: plot items changed off the
GUI thread freeze the graph). Command results come back the same way: the futures the engine
returns are polled on the same tick, so the GUI thread never waits on the engine.

Any object with an ``events`` queue can stand in for the engine (a recorded session's replay has
one that stays empty and no commands at all). Taps (the session recorder) see every event the
bridge drains, in the engine's order, before the window handles it.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol

from oomscope.core.dispatch import Dispatcher
from oomscope.core.events import (
    CauseUpdated,
    CrashLoop,
    Doctor,
    Event,
    Heap,
    KernelLineRead,
    KernelOom,
    LevelPending,
    LevelsChanged,
    Notice,
    Output,
    Samples,
    SourceChanged,
    Stopped,
    Terminate,
    ThreadExited,
    Threshold,
    WorkerAttached,
    WorkerExited,
    WorkerStarted,
)

from .qt import QObject, QTimer, Signal

DRAIN_INTERVAL_MS = 40
# A tick hands over at most this much work, so a burst (hundreds of kernel lines replayed at
# start) cannot freeze the window; the rest waits for the next tick.
_DRAIN_BUDGET_S = 0.015

ResultFn = Callable[[Any], None]
ErrorFn = Callable[[BaseException], None]
Tap = Callable[[Event], None]


class EventQueue(Protocol):
    def get_nowait(self) -> Event: ...


class EventSource(Protocol):
    """What the bridge drains: the engine, or anything else with an ``events`` queue."""

    @property
    def events(self) -> EventQueue: ...


class NoEvents:
    """An event source that never has anything: a window showing recorded events only."""

    def __init__(self) -> None:
        self.events: queue.SimpleQueue[Event] = queue.SimpleQueue()


class EngineBridge(QObject):
    event_dispatched = Signal(object)  # every event, before its own signal below (the window's dispatcher)
    worker_added = Signal(object)  # WorkerStarted | WorkerAttached
    samples_added = Signal(object)  # Samples
    threshold_crossed = Signal(object)  # Threshold
    levels_changed = Signal(object)  # LevelsChanged (global, or one worker's own)
    terminate_sent = Signal(object)  # Terminate
    worker_exited = Signal(object)  # WorkerExited
    cause_updated = Signal(object)  # CauseUpdated
    output_received = Signal(object)  # Output
    notice_received = Signal(object)  # Notice
    kernel_line_received = Signal(object)  # KernelLineRead
    kernel_oom_received = Signal(object)  # KernelOom
    source_changed = Signal(object)  # SourceChanged
    crash_loop_detected = Signal(object)  # CrashLoop
    heap_reported = Signal(object)  # Heap (one thread's heap report)
    thread_exited = Signal(object)  # ThreadExited
    advice_given = Signal(object)  # Doctor
    level_pending = Signal(object)  # LevelPending
    engine_stopped = Signal()
    drained = Signal()  # after every tick that handed over at least one event
    tap_failed = Signal(object, object)  # the tap (now removed), the exception it raised

    def __init__(self, source: EventSource, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.source = source
        self.taps: list[Tap] = []
        self._pending: list[tuple[Future[Any], ResultFn | None, ErrorFn | None]] = []
        self._timer = QTimer(self)
        self._timer.setObjectName("engine-drain")
        self._timer.setInterval(DRAIN_INTERVAL_MS)
        self._timer.timeout.connect(self.drain)
        # A subclass of a known event (RestartCancelled is a Notice) goes where its base goes.
        self._dispatch: Dispatcher[object] = Dispatcher({
            WorkerStarted: self.worker_added.emit,
            WorkerAttached: self.worker_added.emit,
            Samples: self.samples_added.emit,
            Threshold: self.threshold_crossed.emit,
            LevelsChanged: self.levels_changed.emit,
            Terminate: self.terminate_sent.emit,
            WorkerExited: self.worker_exited.emit,
            CauseUpdated: self.cause_updated.emit,
            Output: self.output_received.emit,
            Notice: self.notice_received.emit,
            KernelLineRead: self.kernel_line_received.emit,
            KernelOom: self.kernel_oom_received.emit,
            SourceChanged: self.source_changed.emit,
            CrashLoop: self.crash_loop_detected.emit,
            Heap: self.heap_reported.emit,
            ThreadExited: self.thread_exited.emit,
            Doctor: self.advice_given.emit,
            LevelPending: self.level_pending.emit,
            Stopped: lambda _ev: self.engine_stopped.emit(),
        }, name="bridge")
        self.events_handled = 0

    def start(self) -> None:
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def call(self, future: Future[Any], on_result: ResultFn | None = None,
             on_error: ErrorFn | None = None) -> None:
        """Run ``on_result``/``on_error`` on the GUI thread once the engine answers."""
        self._pending.append((future, on_result, on_error))

    def drain(self, budget_s: float | None = _DRAIN_BUDGET_S) -> None:
        """Hand over queued events (for at most ``budget_s``; None: all of them)."""
        deadline = None if budget_s is None else time.monotonic() + budget_s
        handled = 0
        events = self.source.events
        # The engine emits a command's events before it answers the command: futures answered
        # by now have all their events in the queue, so once it is empty their callbacks may
        # run. A future answered during this drain waits for the next one.
        answered = [p for p in self._pending if p[0].done()]
        emptied = False
        while deadline is None or time.monotonic() < deadline:
            try:
                ev = events.get_nowait()
            except queue.Empty:
                emptied = True
                break
            handled += 1
            for tap in list(self.taps):
                try:
                    tap(ev)
                except Exception as e:  # noqa: BLE001 - a broken tap must not cost the window its events
                    self.taps.remove(tap)
                    self.tap_failed.emit(tap, e)
            self.dispatch(ev)
        self.events_handled += handled
        if emptied:  # a launch's WorkerStarted is handled before its callback runs
            self._poll_futures(answered)
        if handled:
            self.drained.emit()

    def dispatch(self, ev: Event) -> None:
        """Emit the signal for one event, as if it had just been drained (replays use this)."""
        self.event_dispatched.emit(ev)
        self._dispatch(ev)

    def _poll_futures(self, answered: list[tuple[Future[Any], ResultFn | None, ErrorFn | None]]) -> None:
        if not answered:
            return
        ready = {id(p) for p in answered}
        waiting = [p for p in self._pending if id(p) not in ready]
        self._pending = []  # a callback may make new calls: they land here
        for fut, on_result, on_error in answered:
            exc = fut.exception()
            if exc is not None:
                if on_error is not None:
                    on_error(exc)
            elif on_result is not None:
                on_result(fut.result())
        self._pending = waiting + self._pending
