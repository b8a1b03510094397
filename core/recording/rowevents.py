"""Session-file rows back into the engine's events: the builders ``SessionFile.events`` uses per
table, the kill records they carry, and the columns ``export`` writes (the reverse of
:mod:`.rows`)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from ..dispatch import Dispatcher
from ..errors import BadInput
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
from ..oomlog.lines import KernelLine
from ..oomlog.records import CONTRACT_FIELDS, DETAIL_FIELDS, KillRecord
from ..oomlog.sources import SourceState
from ..printable import printable
from ..thresholds import thresholds_from_row
from . import heappack, schema


class DamagedRow(Exception):
    """A row whose values cannot be the event it was (levels no engine would have taken)."""


# An event with the sequence number it was recorded at (the order of the merge).
Streamed = tuple[int, Event]


#: Which table holds the events of a class (rebuilt by ``builders``).
TABLE_OF: dict[type[Event], schema.Table] = {
    Threshold: schema.THRESHOLDS, LevelsChanged: schema.LEVELS, Terminate: schema.ACTIONS,
    WorkerExited: schema.EXITS, CauseUpdated: schema.CAUSE_UPDATES, KernelOom: schema.KILLS,
    KernelLineRead: schema.KERNEL_LINES, SourceChanged: schema.SOURCES, ThreadExited: schema.THREAD_EXITS,
    Doctor: schema.DOCTOR, Notice: schema.NOTICES, CrashLoop: schema.CRASH_LOOPS, Output: schema.OUTPUT,
}


def export_columns(table: schema.Table) -> tuple[str, ...]:
    """A table's columns as exported: ``worker`` (the engine's id, ``w3``) for ``worker_id``;
    in ``workers`` itself, ``worker`` is that id and the internal number is left out."""
    if table is schema.WORKERS:
        return tuple("worker" if c == "id" else c for c in table.column_names if c != "worker_id")
    if table is schema.HEAP:
        return heappack.REPORT_COLUMNS
    return tuple("worker" if c == "worker_id" else c for c in table.column_names)


def kill_record(contract: dict[str, Any], lines: list[str], details: Any) -> KillRecord:
    """The record a session file holds: its contract columns, its lines and (files written since
    records stay typed) the rest in ``extra``; what an older file lacks keeps its default."""
    fields: dict[str, Any] = {k: contract.get(k) for k in CONTRACT_FIELDS if k != "lines"}
    fields["killer"] = fields["killer"] or "kernel-global"
    if isinstance(details, dict):
        fields.update((k, v) for k, v in details.items() if k in DETAIL_FIELDS)
    fields["task_rows"] = tuple(fields.get("task_rows") or ())
    if not isinstance(fields.get("extra", {}), dict):
        del fields["extra"]
    if fields.get("wall_time_unix") is None and isinstance(fields["wall_time"], str):
        try:  # a file from before records kept their details: the ISO stamp is all there is
            fields["wall_time_unix"] = datetime.fromisoformat(fields["wall_time"]).timestamp()
        except ValueError:
            pass
    return KillRecord(lines=tuple(lines), **fields)


def builders(refs: dict[int, WorkerRef], kills: dict[int, tuple[tuple[Any, ...], KillRecord]]
              ) -> Dispatcher[Event | None]:
    """Per event class, how a row of its table (its columns in schema order) becomes the event
    it was. The handlers take rows, not events: the dispatcher is asked for them by class."""

    def record(kill_id: int | None) -> KillRecord | None:
        return kills[kill_id][1] if kill_id is not None and kill_id in kills else None

    def kernel_oom(r: tuple[Any, ...]) -> Event | None:
        if r[4] != KernelOom.kind:
            return None  # a record carried by an exit or a cause update: that event has it
        return KernelOom(r[3], kills[r[1]][1], bool(r[6]))

    def notice(r: tuple[Any, ...]) -> Event:
        return Notice(r[2], r[4], r[5], refs.get(r[3]) if r[3] is not None else None)

    def levels(r: tuple[Any, ...]) -> Event:
        worker = refs[r[3]] if r[3] is not None else None
        if r[13]:
            return LevelsChanged(r[2], worker, None)
        try:
            config = thresholds_from_row(r[4:13])
        except (BadInput, TypeError) as e:
            raise DamagedRow(f"levels at seq {r[1]}: {e}") from None
        return LevelsChanged(r[2], worker, config)

    def kernel_line(r: tuple[Any, ...]) -> Event:
        text = r[3] or ""
        return KernelLineRead(r[2], KernelLine(text, text, history=bool(r[5]), kernel_time_s=r[6]), bool(r[4]))

    return Dispatcher({
        Threshold: lambda r: Threshold(r[2], refs[r[3]], r[4], r[6], r[7], r[8], r[5]),
        LevelsChanged: levels,
        Terminate: lambda r: Terminate(r[2], refs[r[3]], r[4], r[5], r[6]),
        WorkerExited: lambda r: WorkerExited(r[2], refs[r[3]], r[4], r[5], r[6], r[7], record(r[9]),
                                             tuple(loads_or(r[8], [])), tuple(loads_or(r[10], [])), r[11]),
        CauseUpdated: lambda r: CauseUpdated(r[2], refs[r[3]], r[4], r[5], record(r[6]), tuple(loads_or(r[7], []))),
        KernelOom: kernel_oom,
        KernelLineRead: kernel_line,
        SourceChanged: lambda r: SourceChanged(r[2], SourceState(r[3], bool(r[4]), r[5])),
        ThreadExited: lambda r: ThreadExited(r[2], refs[r[3]], r[4], r[5], r[6], r[7]),
        Doctor: lambda r: Doctor(r[2], refs[r[3]], r[4], r[5], r[6]),
        Notice: notice,  # RestartCancelled is recorded as the notice it also is
        CrashLoop: lambda r: CrashLoop(r[2], refs[r[3]], r[4], r[5], r[6]),
        Output: lambda r: Output(r[2], refs[r[3]], r[4], r[5]),
    # Samples, heap reports and worker starts have tables of their own shape (rebuilt by
    # _sample_events, _heap_events, start_events); Stopped is never recorded.
    }, ignore=(Samples, Heap, WorkerStarted, WorkerAttached, Stopped, LevelPending), name="session reader")


def finite(value: Any) -> float | None:
    """A stored time or size as a float; None for anything else (text, a blob, NaN, inf)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def shown(value: Any) -> str:
    """A stored value as a damage note shows it: short, and printable whatever it holds."""
    if isinstance(value, bytes):
        return f"a {len(value)}-byte blob"
    text = repr(value)
    return printable(text if len(text) <= 40 else text[:37] + "...")


def loads_or(text: str | None, default: Any) -> Any:
    if text is None:
        return default
    try:
        return json.loads(text)
    except (ValueError, TypeError):  # not JSON, or not text at all (an altered value)
        return default
