"""A session's events, shown in a SessionView: the engine's as they come, or a recording's as
the replay feeds them again. Every event kind has its handler or is ignored on purpose
(``handle_event`` is a ``Dispatcher``; tests check it covers them all)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from oomscope.core.causes import HEAP_OOM, OOM_KILL
from oomscope.core.dispatch import Dispatcher
from oomscope.core.events import (
    CauseUpdated,
    CrashLoop,
    Doctor,
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
    WorkerRef,
    WorkerStarted,
)
from oomscope.core.sizes import format_size
from oomscope.core.thresholds import LEVEL_RANK, ThresholdConfig

from .advice import advice_plain
from .qt import QObject, Signal
from .session_view import PLOT_METRIC, SessionView
from .throttle import Throttle

_TABLE_REFRESH_S = 0.25
NotifyFn = Callable[[str, str], None]


class GlobalLevels(Protocol):
    """Who decides which global levels are in force when a ``levels`` event says some are."""

    def on_announced(self, announced: ThresholdConfig | None) -> None: ...


class SessionEvents(QObject):
    worker_exited = Signal(object)  # WorkerExited, after the view has shown it
    notice_seen = Signal()  # before a notice is shown (the recorder's writer reports trouble so)
    stopped = Signal()

    def __init__(self, view: SessionView, levels: GlobalLevels, notify: NotifyFn) -> None:
        super().__init__(view)
        self.view = view
        self.levels = levels
        self.notify = notify
        self.last_source: SourceChanged | None = None  # a recording's preamble says it again
        self.oom_notified: set[str] = set()  # worker ids already announced as memory deaths
        self.refresh_table = Throttle(self._refresh_values, _TABLE_REFRESH_S, "table-refresh", view)
        self.handle_event: Dispatcher[object] = Dispatcher({
            WorkerStarted: self._on_worker_added,
            WorkerAttached: self._on_worker_added,
            Samples: self._on_samples_added,
            Threshold: self._on_threshold_crossed,
            LevelsChanged: self._on_levels_changed,
            Terminate: self._on_terminate_sent,
            WorkerExited: self._on_worker_exited,
            CauseUpdated: self._on_cause_updated,
            CrashLoop: self._on_crash_loop,
            Output: self._on_output_received,
            Notice: self._on_notice_received,
            KernelLineRead: self._on_kernel_line_received,
            KernelOom: self._on_kernel_oom_received,
            SourceChanged: self._on_source_changed,
            Heap: self._on_heap_reported,
            ThreadExited: self._on_thread_exited,
            Doctor: self._on_advice_given,
            LevelPending: self._on_level_pending,
            Stopped: lambda _ev: self.stopped.emit(),
        }, name="window")

    def _on_worker_added(self, ev: WorkerStarted | WorkerAttached) -> None:
        self.view.model.add_worker(ev)
        self.view.update_status()
        self.view.plot.request_redraw()

    def _on_samples_added(self, ev: Samples) -> None:
        roster = self.view.roster
        had = (roster.any_heap(), roster.any_cgroup_usage())
        roster.on_samples(ev)
        if had != (roster.any_heap(), roster.any_cgroup_usage()):
            self.view.plot.update_metric_choices()  # heap used, cgroup usage: offered once someone has it
        self.refresh_table()
        self.view.plot.request_redraw()

    def _refresh_values(self) -> None:
        """The table's numbers, and the detail pane's when it shows a running worker: the two
        must never tell different stories about the same worker."""
        self.view.model.refresh_values()
        shown = self.view.detail.worker
        if shown is not None and shown.alive:
            self.view.detail.refresh()

    def _on_level_pending(self, ev: LevelPending) -> None:
        """Above a level, not yet for the sustain time: the State column counts it up."""
        self.view.show_worker_changed(self.view.roster.on_pending(ev))

    def _on_threshold_crossed(self, ev: Threshold) -> None:
        w = self.view.roster.on_threshold(ev)
        self.view.show_worker_changed(w)
        self.view.actions_stale.emit()  # "Terminate all critical" is there only while someone is
        # Entering a level (not coming down to it) whose action, in the worker's own levels or
        # else the global ones, is "notify": as the settings file's on_warn / on_crit say.
        config = w.override if w is not None and w.override is not None else self.view.thresholds
        if LEVEL_RANK[ev.level] > LEVEL_RANK[ev.previous] and config.action(ev.level) == "notify":
            metric = PLOT_METRIC.get(ev.metric, ev.metric).replace("_", " ")
            limit = f" ({ev.level} level {format_size(ev.limit)})" if ev.limit else ""
            self.notify(f"oomscope: {ev.worker.name} is {ev.level}",
                        f"{ev.worker.name} ({ev.worker.id}, PID {ev.worker.pid}): {metric} "
                        f"{format_size(ev.value)}{limit}")

    def _on_levels_changed(self, ev: LevelsChanged) -> None:
        """Levels the engine applies from now on; in a replay, the levels in force from then on.

        Never sent back to the engine."""
        if ev.worker is None:
            self.levels.on_announced(ev.thresholds)
            return
        w = self.view.roster.by_id.get(ev.worker.id)
        if w is None or w.override == ev.thresholds:
            return
        w.override = ev.thresholds
        self.view.model.worker_changed(w)
        self.view.show_plot_levels()
        self.view.plot.request_redraw()
        if self.view.detail.worker is w:
            self.view.detail.refresh()

    def _on_terminate_sent(self, ev: Terminate) -> None:
        w = self.view.roster.on_terminate(ev)
        if w is not None:
            self.view.model.worker_changed(w)
        self.view.say(f"{ev.worker.name} ({ev.worker.id}): {ev.signal} sent by {ev.by}"
                      + (f" — {ev.reason}" if ev.reason else ""), 8000)

    def _on_worker_exited(self, ev: WorkerExited) -> None:
        view = self.view
        w, _death = view.roster.on_exit(ev)
        if w is not None:
            view.model.worker_changed(w)
        view.timeline.request_refresh()
        view.kernel_pane.tie_record(ev.oom, ev.worker.id)
        if view.detail.worker is w and w is not None:
            view.detail.refresh()
        view.say(f"{ev.worker.name} ({ev.worker.id}, PID {ev.worker.pid}) "
                 f"{w.state_text() if w else 'exited: ' + ev.cause}", 10000)
        view.update_status()
        view.actions_stale.emit()
        view.show_plot_levels()
        view.plot.request_redraw()
        self._notify_memory_death(ev.worker, ev.cause, ev.restart_in_s)
        self.worker_exited.emit(ev)

    def _on_cause_updated(self, ev: CauseUpdated) -> None:
        w, _death = self.view.roster.on_cause_updated(ev)
        # The kernel's record can arrive after the exit: a "signal" death found to be an OOM kill
        # is announced then.
        self._notify_memory_death(ev.worker, ev.cause, None)
        self.view.show_worker_changed(w)
        self.view.timeline.request_refresh()
        self.view.kernel_pane.tie_record(ev.oom, ev.worker.id)

    def _notify_memory_death(self, ref: WorkerRef, cause: str, restart_in_s: float | None) -> None:
        if cause not in (OOM_KILL, HEAP_OOM) or ref.id in self.oom_notified:
            return
        self.oom_notified.add(ref.id)
        what = "killed by the kernel's OOM killer" if cause == OOM_KILL else "V8 heap out of memory"
        title = f"oomscope: {ref.name} {'OOM-killed' if cause == OOM_KILL else 'heap OOM'}"
        text = f"{ref.name} ({ref.id}, PID {ref.pid}): {what} ({cause.replace('-', ' ').upper()})"
        if restart_in_s is not None:
            text += f"; restarting in {restart_in_s:g} s"
        self.notify(title, text)

    def _on_heap_reported(self, ev: Heap) -> None:
        view = self.view
        w = view.model.apply_heap(ev)
        if view.plot.shown_metric == "heap_used":
            view.plot.request_redraw()  # throttled: a report per thread per interval costs no extra frames
        if w is not None and w.threads and not view.table.rootIsDecorated():
            view.table.setRootIsDecorated(True)
            view.table.expand(view.proxy.mapFromSource(view.model.row_of(w.id)))

    def _on_thread_exited(self, ev: ThreadExited) -> None:
        view = self.view
        w, death = view.model.apply_thread_exit(ev)
        if w is not None and w.threads and not view.table.rootIsDecorated():
            view.table.setRootIsDecorated(True)
        if death is not None:
            view.timeline.request_refresh()
            view.plot.request_redraw()  # the x range reaches every marker
        if w is not None and view.detail.worker is w:
            view.detail.refresh()
        if ev.cause == HEAP_OOM:
            self.notify(f"oomscope: {ev.worker.name} thread heap OOM",
                        f"{ev.worker.name} ({ev.worker.id}, PID {ev.pid}): worker thread "
                        f"{ev.thread_id} ran out of V8 heap (HEAP OOM); the process lives on"
                        + (f" — {ev.message}" if ev.message else ""))
        view.say(f"{ev.worker.name} ({ev.worker.id}): thread {ev.thread_id} ended: "
                 f"{ev.cause}" + (f" — {ev.message}" if ev.message else ""), 10000)

    def _on_advice_given(self, ev: Doctor) -> None:
        w = self.view.roster.on_doctor(ev)
        self.view.show_worker_changed(w)
        text = f"{ev.worker.name} ({ev.worker.id}): {advice_plain(ev.advice, ev.reason, ev.suggested)}"
        self.view.message_bar.show_message(text, "warning")

    def _on_output_received(self, ev: Output) -> None:
        self.view.roster.add_output(ev.worker.id, ev.stream, ev.line)

    def _on_notice_received(self, ev: Notice) -> None:
        self.notice_seen.emit()
        who = f"{ev.worker.name} ({ev.worker.id}): " if ev.worker is not None else ""
        w = self.view.roster.on_notice(ev)
        self.view.show_worker_changed(w)
        if ev.level == "info":
            self.view.say(who + ev.message, 8000)
        else:
            self.view.message_bar.show_message(who + ev.message, ev.level)

    def _on_crash_loop(self, ev: CrashLoop) -> None:
        """The engine gave up restarting a slot: that needs the user, so it is an error-red bar
        (not the amber of a passing warning), a desktop notification, and a note on the worker."""
        w = self.view.roster.on_crash_loop(ev)
        self.view.show_worker_changed(w)
        who = f"{ev.worker.name} ({ev.worker.id}): "
        self.view.message_bar.show_message(who + ev.message, "error")
        self.notify(f"oomscope: {ev.worker.name} crash loop", who + ev.message)

    def _on_kernel_line_received(self, ev: KernelLineRead) -> None:
        self.view.kernel_lines.append(ev)
        self.view.kernel_pane.add_line(ev)

    def _on_kernel_oom_received(self, ev: KernelOom) -> None:
        self.view.roster.on_kernel_oom(ev)
        self.view.timeline.request_refresh()

    def _on_source_changed(self, ev: SourceChanged) -> None:
        self.last_source = ev
        view = self.view
        st = ev.state
        view.kernel_pane.set_source(st.name, st.ok, st.reason)
        if st.ok:
            view.kernel_source = f"{st.name} ✓"
            view.source_status.setToolTip(f"OOM kill records are read from {st.name}")
        else:
            view.kernel_source = f"{st.name} unavailable"
            view.source_status.setToolTip(f"{st.name}: {st.reason}")
        view.update_status()
