"""What ``oomscope watch`` prints: the ``--json`` lines (the contract in docs/events.md) or one readable
line per state change, and which events it prints at all."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TextIO

from ..causes import OOM_KILL
from ..dispatch import Dispatcher
from ..events import (
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
    WorkerRef,
    WorkerStarted,
)
from ..printable import printable
from ..sizes import format_size

Printer = Callable[[Event], None]


class JsonPrinter:
    """The ``--json`` contract: one event per line on stdout, flushed per line.

    Worker output is passed through on stderr, prefixed, so stdout stays pure JSON.
    """

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out = out
        self.err = err
        self.dispatch: Dispatcher[object] = Dispatcher({
            Output: self._output,
            Samples: lambda ev: self._write(ev.to_json_lines()),
            # Every other event prints its own JSON form, when ``watch`` prints it at all.
            Event: lambda ev: self._write([ev.to_json()]) if printed(ev) else None,
        }, name="watch --json")

    def __call__(self, event: Event) -> None:
        self.dispatch(event)

    def _output(self, event: Output) -> None:
        # Human text on a terminal, unlike stdout's JSON: a worker's name and output are escaped.
        self.err.write(printable(f"[{event.worker.id} {event.worker.name} {event.stream}] {event.line}") + "\n")
        self.err.flush()

    def _write(self, objs: list[dict[str, Any]]) -> None:
        for obj in objs:
            self.out.write(json.dumps(obj, separators=(",", ":")) + "\n")
        self.out.flush()


class TextPrinter:
    """One readable line per state change; samples are left out.

    Process names, command lines, output lines and messages come from elsewhere (a process
    names itself ``\\x1b[2J…`` at will): every line is passed through :func:`printable`, whole,
    so no field can be missed and no control character reaches the terminal."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def __call__(self, event: Event) -> None:
        text = describe(event)
        if text is not None:
            self.out.write(printable(text) + "\n")
            self.out.flush()


def printed(event: Event) -> bool:
    """What ``watch`` shows: not kernel log lines (the GUI's pane), not kills from before it
    started (replayed from the ring buffer), not its own end marker."""
    if isinstance(event, (KernelLineRead, Stopped)):
        return False
    if isinstance(event, KernelOom) and event.history:
        return False
    return True


def _stamp(event: Event) -> str:
    return time.strftime("%H:%M:%S", time.localtime(event.t))


def _describe_source(event: SourceChanged) -> str:
    st = event.state
    state = "ok" if st.ok else f"unavailable: {st.reason}"
    return f"{_stamp(event)} kernel log source {st.name}: {state}"


def _describe_kernel_oom(event: KernelOom) -> str | None:
    if event.history:
        return None
    r = event.record
    detail = (f"anon-rss {format_size((r.anon_rss_kb or 0) * 1024)}, {r.killer}"
              + (f" in {r.task_memcg}" if r.task_memcg else ""))
    who = event.concerns
    if who is None:
        return f"{_stamp(event)} kernel OOM kill of a process oomscope does not watch: PID {r.pid} ({r.comm}), {detail}"
    how = {"child": "a child of", "descendant": "a descendant of"}.get(event.relation or "", "in the cgroup of")
    return f"{_stamp(event)} kernel OOM kill of PID {r.pid} ({r.comm}), {how} {_who(who)}: {detail}"


def _describe_notice(event: Notice) -> str:
    target = f" {event.worker.id} {event.worker.name}[{event.worker.pid}]" if event.worker else ""
    return f"{_stamp(event)}{target} {event.level}: {event.message}"


def _describe_started(event: WorkerStarted) -> str:
    cg = f" in cgroup {event.cgroup} (limit {format_size(event.cgroup_limit)})" if event.cgroup_limit else ""
    return f"{_stamp(event)} {_who(event.worker)} started{cg}: {' '.join(event.worker.cmd)}"


def _describe_attached(event: WorkerAttached) -> str:
    parent = f" (child of {event.parent_pid})" if event.parent_pid else ""
    cg = f", cgroup limit {format_size(event.cgroup_limit)}" if event.cgroup_limit else ""
    return f"{_stamp(event)} {_who(event.worker)} attached{parent}{cg}"


def _describe_threshold(event: Threshold) -> str:
    head = f"{_stamp(event)} {_who(event.worker)}"
    if event.level == "normal":
        return f"{head} back to normal: {event.metric} {format_size(event.value)}"
    return f"{head} {event.level.upper()}: {event.metric} {format_size(event.value)} >= {format_size(event.limit)}"


def _describe_terminate(event: Terminate) -> str:
    why = f" ({event.reason})" if event.reason else ""
    return f"{_stamp(event)} {_who(event.worker)} {event.signal} sent by {event.by}{why}"


def _cause_text(cause: str) -> str:
    return "KILLED BY THE OOM KILLER" if cause == OOM_KILL else cause


def _describe_exit(event: WorkerExited) -> str:
    detail = []
    if event.signal:
        detail.append(event.signal)
    if event.exit_code is not None:
        detail.append(f"exit code {event.exit_code}")
    if event.by:
        detail.append(f"by {event.by}")
    detail.extend(event.evidence)
    again = f"; restart in {event.restart_in_s:g} s" if event.restart_in_s is not None else ""
    return (f"{_stamp(event)} {_who(event.worker)} exited: {_cause_text(event.cause)}"
            + (f" ({'; '.join(detail)})" if detail else "") + again)


def _describe_thread_exit(event: ThreadExited) -> str:
    cause = "HEAP EXHAUSTED (heap-oom)" if event.cause == "heap-oom" else event.cause
    why = f": {event.message}" if event.message else ""
    return f"{_stamp(event)} {_who(event.worker)} worker thread {event.thread_id} of PID {event.pid} ended: {cause}{why}"


def _describe_cause_updated(event: CauseUpdated) -> str:
    return (f"{_stamp(event)} {_who(event.worker)} cause updated: {_cause_text(event.cause)} "
            f"(was {event.previous}; {'; '.join(event.evidence)})")


_DESCRIBE: Dispatcher[str | None] = Dispatcher({
    SourceChanged: _describe_source,
    KernelOom: _describe_kernel_oom,
    Notice: _describe_notice,
    LevelsChanged: lambda ev: f"{_stamp(ev)} " + _describe_levels(ev),
    WorkerStarted: _describe_started,
    WorkerAttached: _describe_attached,
    Threshold: _describe_threshold,
    Terminate: _describe_terminate,
    WorkerExited: _describe_exit,
    CrashLoop: lambda ev: f"{_stamp(ev)} {_who(ev.worker)} CRASH LOOP: {ev.message}",
    Doctor: lambda ev: f"{_stamp(ev)} {_who(ev.worker)} doctor: {ev.advice} ({ev.reason})",
    ThreadExited: _describe_thread_exit,
    CauseUpdated: _describe_cause_updated,
    Output: lambda ev: f"[{ev.worker.id} {ev.worker.name} {ev.stream}] {ev.line}",
    LevelPending: lambda ev: _describe_pending(ev),
}, ignore=(Samples, Heap, KernelLineRead, Stopped), name="watch (text)")


def _describe_pending(event: LevelPending) -> str | None:
    """``over critical 230.0 MiB (limit 200.0 MiB): critical in 2 s unless it drops``; the
    clearing event prints nothing (the threshold line, or nothing at all, says what followed)."""
    if event.level is None:
        return None
    return (f"{_stamp(event)} {_who(event.worker)} over {event.level} {format_size(event.value)} "
            f"(limit {format_size(event.limit)}): {event.level} in {event.sustain_s:g} s unless it drops")


def describe(event: Event) -> str | None:
    """The line ``watch`` prints for ``event`` without ``--json``; None for what it leaves out."""
    return _DESCRIBE(event)


def _who(w: WorkerRef) -> str:
    return f"{w.id} {w.name}[{w.pid}]" + (f" (slot {w.slot}, life {w.life})" if w.slot is not None and w.life > 1 else "")


def _describe_levels(event: LevelsChanged) -> str:
    """``levels changed: warning 400.0 MiB, critical 90% (rss)``; for one worker, its own."""
    c = event.thresholds
    if c is None:  # only ever for one worker: LevelsChanged refuses global levels of None
        return f"{_who(event.worker)} follows the global levels again" if event.worker else "levels changed"
    text = f"warning {c.warn or 'off'}, critical {c.crit or 'off'} ({c.metric})"
    actions = [f"{action} at {level}" for level, action in (("warning", c.on_warn), ("critical", c.on_crit))
               if action != "none"]
    if actions:
        text += "; " + ", ".join(actions)
    if event.worker is not None:
        return f"{_who(event.worker)} own levels: {text}"
    return f"levels changed: {text}"
