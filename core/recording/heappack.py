"""Heap reports in the session file: every report of one commit in one packed row.

Why this form: a Node.js fleet of 200 workers with 4 threads each, reporting once a second,
sends 2.9 million heap reports an hour; a row per report (about 77 bytes) would be some
220 MB an hour for the heap alone. Reports come about as often as commits (once a second), so
a row per thread and commit would hold one report and save nothing. A row instead holds all the
reports of one commit that share a ``runtime`` (kept once per row as text), packed column by
column by :mod:`samplecodec` with :data:`LAYOUT`. Within the row the reports are sorted by
worker, process and thread: neighbours are then the same worker's threads (the same pid, stored
as its difference from the worker's pid: mostly 0) or one thread's successive reports (when it
reports faster than once a commit), whose values differ little. ``seq`` is kept per report, so
a replay puts every report back into the engine's order; its time is kept bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from ..events import Heap, WorkerRef
from .samplecodec import CodecError, Layout, pack, unpack

FIELDS = ("worker_id", "pid_offset", "thread_id", "t", "heap_used", "heap_total", "heap_limit",
          "old_space_used", "old_space_limit", "external", "array_buffers", "is_main", "stale")
LAYOUT = Layout(FIELDS, times=frozenset({"t"}))

# A report as ``heap.csv`` has it: the columns of the table of one row per report that came
# before the packed form, kept so exports and their readers do not change.
REPORT_COLUMNS = ("session_id", "seq", "t", "worker", "pid", "thread_id", "heap_used", "heap_total",
                  "heap_limit", "old_space_used", "old_space_limit", "external", "array_buffers",
                  "is_main", "stale", "runtime")

Pending = tuple[int, int, Heap]  # (seq, the file's worker number, the report)
Row = tuple[int, int, int, int, str, bytes]  # the heap table's columns


def pack_rows(session_id: int, batch: int, reports: Iterable[Pending]) -> list[Row]:
    """The ``heap`` rows of one commit: one per runtime."""
    by_runtime: dict[str, list[Pending]] = {}
    for p in reports:
        by_runtime.setdefault(p[2].runtime, []).append(p)
    rows: list[Row] = []
    for runtime, group in by_runtime.items():
        group.sort(key=lambda p: (p[1], p[2].pid, p[2].thread_id, p[0]))
        seqs = [seq for seq, _, _ in group]
        values = [(wid, h.pid - h.worker.pid, h.thread_id, h.t, h.heap_used, h.heap_total, h.heap_limit,
                   h.old_space_used, h.old_space_limit, h.external, h.array_buffers, int(h.is_main),
                   int(h.stale)) for _, wid, h in group]
        rows.append((session_id, batch, min(seqs), len(seqs), runtime, pack(seqs, values, layout=LAYOUT)))
    return rows


def unpack_row(runtime: str, data: bytes, n: int, refs: Mapping[int, WorkerRef]) -> list[tuple[int, Heap]]:
    """One row's reports as ``(seq, Heap)``, in the row's order. Raises CodecError for a
    blob that does not decode (or holds another number of reports than its row says) and
    KeyError for a report of a worker the file does not have."""
    u = unpack(data, LAYOUT)
    if len(u) != n:
        raise CodecError(f"heap row says {n} reports, its blob holds {len(u)}")
    out = []
    columns = zip(u.seqs, *(u.columns[f] for f in FIELDS))
    for seq, wid, offset, thread_id, t, used, total, limit, old_used, old_limit, external, buffers, main, stale in columns:
        ref = refs[wid]
        out.append((seq, Heap(t, ref, ref.pid + offset, thread_id, used, total, limit, old_used, old_limit,
                              external, buffers, bool(main), bool(stale), runtime)))
    return out


def in_order(rows: Iterable[tuple[int, str, bytes, int]], refs: Mapping[int, WorkerRef],
             damaged: Callable[[int, Exception], None] | None = None) -> Iterator[tuple[int, Heap]]:
    """``(seq, Heap)`` in the engine's order from the rows ``(batch, runtime, data, n)`` in batch
    order: a batch's seqs all come before the next batch's, so sorting within a batch is enough.
    With ``damaged``, a row that does not unpack is left out and passed to it (its batch and
    the error) instead of raising."""
    batch: int | None = None
    pending: list[tuple[int, Heap]] = []
    for number, runtime, data, n in rows:
        if number != batch:
            pending.sort(key=lambda item: item[0])
            yield from pending
            pending = []
            batch = number
        try:
            pending += unpack_row(runtime, data, n, refs)
        except (CodecError, KeyError, TypeError) as e:
            if damaged is None:
                raise
            damaged(number, e)
    pending.sort(key=lambda item: item[0])
    yield from pending


def report_row(session_id: int, seq: int, h: Heap) -> tuple[Any, ...]:
    """A report as a row of :data:`REPORT_COLUMNS`."""
    return (session_id, seq, h.t, h.worker.id, h.pid, h.thread_id, h.heap_used, h.heap_total, h.heap_limit,
            h.old_space_used, h.old_space_limit, h.external, h.array_buffers, int(h.is_main), int(h.stale),
            h.runtime)
