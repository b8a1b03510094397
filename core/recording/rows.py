"""The session file's rows: how each engine event becomes rows of ``schema``'s tables, gathered
for the next commit, and the statements that write one such batch.

Used by the recorder's writer thread only (no locks): it numbers the events (``seq``), gives
each worker and each kill record its id in the session, and bounds what a chatty worker's
output may take.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

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
from ..jsonable import jsonable
from ..oomlog.records import DETAIL_FIELDS, KillRecord
from ..thresholds import ROW_COLUMNS, thresholds_to_row
from . import heappack, schema
from .samplecodec import pack

# Worker output is kept for the replay's detail pane, bounded: a chatty worker must not fill
# the disk. The stderr tail of every exit is kept with the exit whatever this says.
OUTPUT_LINES_PER_WORKER: Final = 2000
OUTPUT_LINE_CHARS: Final = 2000

Statement = tuple[str, Sequence[tuple[Any, ...]]]  # SQL and the rows to run it with


class Batch:
    """Rows waiting for the next commit."""

    def __init__(self) -> None:
        self.rows: dict[schema.Table, list[tuple[Any, ...]]] = {}
        self.samples: dict[int, tuple[list[int], list[tuple[Any, ...]]]] = {}
        self.heap: list[heappack.Pending] = []
        self.worker_updates: list[tuple[Any, ...]] = []
        self.events = 0
        self.last_t: float | None = None

    def add(self, table: schema.Table, row: tuple[Any, ...]) -> None:
        rows = self.rows.get(table)
        if rows is None:
            rows = self.rows[table] = []
        rows.append(row)

    @property
    def sample_count(self) -> int:
        return sum(len(seqs) for seqs, _ in self.samples.values())


def _levels_row(ev: LevelsChanged) -> tuple[Any, ...]:
    """The ``levels`` columns after ``worker_id``; a worker back on the global levels has
    only ``back_to_global``."""
    if ev.thresholds is None:
        return (None,) * len(ROW_COLUMNS) + (1,)
    return (*thresholds_to_row(ev.thresholds), 0)


class EventRows:
    """Events of one session into rows: ``take(event)`` adds to ``batch``, ``statements()``
    writes it (inside the caller's transaction), ``committed()`` starts the next one."""

    def __init__(self, session_id: int) -> None:
        self.session_id = session_id
        self.batch = Batch()
        self._seq = 0
        self._kill_id = 0
        self._worker_ids: dict[str, int] = {}
        self._output_lines: dict[int, int] = {}
        self._output_dropped: dict[int, int] = {}
        self._output_dropped_written: dict[int, int] = {}
        self.dispatch = self._handlers()

    def _handlers(self) -> Dispatcher[object]:
        """Per event class, how it becomes rows; each handler reads ``self._seq`` and ``ev.t``."""
        return Dispatcher({
            Samples: self._take_samples,
            Heap: lambda ev: self.batch.heap.append((self._seq, self._wid(ev.worker, self._seq, ev.t), ev)),
            WorkerStarted: self._take_start,
            WorkerAttached: self._take_start,
            Output: self._take_output,
            KernelLineRead: lambda ev: self._row(schema.KERNEL_LINES, ev, ev.line.text, ev.oom, ev.line.history,
                                                 ev.line.kernel_time_s),
            Threshold: lambda ev: self._row(schema.THRESHOLDS, ev, self._wid(ev.worker, self._seq, ev.t), ev.level,
                                            ev.previous, ev.metric, ev.value, ev.limit),
            LevelsChanged: lambda ev: self._row(schema.LEVELS, ev, self._wid_or_none(ev.worker, ev.t),
                                                *_levels_row(ev)),
            Terminate: lambda ev: self._row(schema.ACTIONS, ev, self._wid(ev.worker, self._seq, ev.t), ev.by,
                                            ev.signal, ev.reason),
            WorkerExited: self._take_exit,
            CauseUpdated: self._take_cause_update,
            KernelOom: lambda ev: self._take_kill(ev.record, self._seq, ev.t, "kernel_oom", None, ev.history),
            SourceChanged: lambda ev: self._row(schema.SOURCES, ev, ev.state.name, ev.state.ok, ev.state.reason),
            ThreadExited: lambda ev: self._row(schema.THREAD_EXITS, ev, self._wid(ev.worker, self._seq, ev.t),
                                               ev.pid, ev.thread_id, ev.cause, ev.message),
            Doctor: lambda ev: self._row(schema.DOCTOR, ev, self._wid(ev.worker, self._seq, ev.t), ev.advice,
                                         ev.reason, ev.suggested),
            Notice: lambda ev: self._row(schema.NOTICES, ev, self._wid_or_none(ev.worker, ev.t), ev.level,
                                         ev.message),
            CrashLoop: lambda ev: self._row(schema.CRASH_LOOPS, ev, self._wid(ev.worker, self._seq, ev.t),
                                            ev.deaths, ev.window_s, ev.message),
        }, ignore=(Stopped, LevelPending), name="recorder")

    def take(self, ev: Event) -> bool:
        """Adds ``ev``'s rows to the batch; False for an event the file does not keep."""
        handler = self.dispatch.handler_for(type(ev))
        if handler is None:
            return False
        self._seq += 1
        b = self.batch
        b.events += 1
        b.last_t = ev.t if b.last_t is None or ev.t > b.last_t else b.last_t
        handler(ev)
        return True

    def _row(self, table: schema.Table, ev: Event, *values: Any) -> None:
        self.batch.add(table, (self.session_id, self._seq, ev.t, *values))

    def _wid_or_none(self, ref: WorkerRef | None, t: float) -> int | None:
        return self._wid(ref, self._seq, t) if ref is not None else None

    def _take_samples(self, ev: Samples) -> None:
        seq = self._seq
        self.batch.add(schema.TICKS, (self.session_id, seq, ev.t))
        samples = self.batch.samples
        ids = self._worker_ids
        for s in ev.samples:
            wid = ids.get(s.worker.id)
            if wid is None:
                wid = self._register(s.worker, seq, ev.t)
            buf = samples.get(wid)
            if buf is None:
                buf = samples[wid] = ([], [])
            buf[0].append(seq)
            buf[1].append(s[1:])

    def _take_start(self, ev: WorkerStarted | WorkerAttached) -> None:
        seq, t = self._seq, ev.t
        parent = ev.parent_pid if isinstance(ev, WorkerAttached) else None
        known = self._worker_ids.get(ev.worker.id)
        if known is None:
            self._register(ev.worker, seq, t, ev.kind, parent, ev.cgroup, ev.cgroup_limit)
        else:
            self.batch.worker_updates.append((seq, t, ev.kind, parent, ev.cgroup, ev.cgroup_limit,
                                              self.session_id, known))

    def _take_exit(self, ev: WorkerExited) -> None:
        seq, t = self._seq, ev.t
        wid = self._wid(ev.worker, seq, t)
        kill = self._take_kill(ev.oom, seq, t, "worker_exited", wid, False)
        self._row(schema.EXITS, ev, wid, ev.cause, ev.exit_code, ev.signal, ev.by, json.dumps(list(ev.evidence)),
                  kill, json.dumps(list(ev.stderr_tail)), ev.restart_in_s)

    def _take_cause_update(self, ev: CauseUpdated) -> None:
        seq, t = self._seq, ev.t
        wid = self._wid(ev.worker, seq, t)
        kill = self._take_kill(ev.oom, seq, t, "cause_updated", wid, False)
        self._row(schema.CAUSE_UPDATES, ev, wid, ev.cause, ev.previous, kill, json.dumps(list(ev.evidence)))

    def _wid(self, ref: WorkerRef, seq: int, t: float) -> int:
        wid = self._worker_ids.get(ref.id)
        return wid if wid is not None else self._register(ref, seq, t)

    def _register(self, ref: WorkerRef, seq: int, t: float, event: str | None = None,
                  parent_pid: int | None = None, cgroup: str | None = None,
                  cgroup_limit: int | None = None) -> int:
        """A worker's row; ``event`` is None for a worker first seen in another event than its
        start (a recording started mid-session): a replay then has no start event for it."""
        wid = len(self._worker_ids) + 1
        self._worker_ids[ref.id] = wid
        self.batch.add(schema.WORKERS, (self.session_id, wid, ref.id, ref.pid, ref.start_time, ref.name,
                                        json.dumps(list(ref.cmd)), ref.launched, ref.slot, ref.life,
                                        seq if event else None, t if event else None, event, parent_pid,
                                        cgroup, cgroup_limit, 0))
        return wid

    def _take_output(self, ev: Output) -> None:
        seq, t = self._seq, ev.t
        wid = self._wid(ev.worker, seq, t)
        n = self._output_lines.get(wid, 0)
        if n >= OUTPUT_LINES_PER_WORKER:
            self._output_dropped[wid] = self._output_dropped.get(wid, 0) + 1
            return
        self._output_lines[wid] = n + 1
        self.batch.add(schema.OUTPUT, (self.session_id, seq, t, wid, ev.stream, ev.line[:OUTPUT_LINE_CHARS]))

    def _take_kill(self, record: KillRecord | None, seq: int, t: float, event: str,
                   wid: int | None, history: bool) -> int | None:
        if record is None:
            return None
        self._kill_id += 1
        kid = self._kill_id
        contract = record.to_json()
        # The contract has columns; the rest of the record goes to ``extra`` so that a replay
        # rebuilds the same typed record (its wall time in Unix seconds, its task-table rows).
        details = {f: getattr(record, f) for f in DETAIL_FIELDS}
        details["extra"] = dict(record.extra)
        self.batch.add(schema.KILLS, (self.session_id, kid, seq, t, event, wid, history,
                                      *(contract[k] for k in schema.KILL_FIELDS),
                                      json.dumps(jsonable(details))))
        for n, line in enumerate(record.lines):
            self.batch.add(schema.KILL_LINES, (self.session_id, kid, n, str(line)))
        return kid

    def statements(self, batch_no: int, last_t: float | None, events_lost: int) -> list[Statement]:
        """What writes the batch, in order; the samples and heap reports are packed here, before
        the caller takes the file's write lock. ``last_t`` and ``events_lost`` go to the session
        row."""
        b, sid = self.batch, self.session_id
        seq_cache: dict[tuple[int, ...], bytes] = {}
        sample_rows = [(sid, batch_no, wid, seqs[0], len(seqs), pack(seqs, values, seq_cache))
                       for wid, (seqs, values) in b.samples.items()]
        heap_rows = heappack.pack_rows(sid, batch_no, b.heap)
        out: list[Statement] = [(table.insert_sql(), rows) for table, rows in b.rows.items()]
        if sample_rows:
            out.append((schema.SAMPLES.insert_sql(), sample_rows))
        if heap_rows:
            out.append((schema.HEAP.insert_sql(), heap_rows))
        if b.worker_updates:
            out.append(('UPDATE workers SET seq = ?, t = ?, event = ?, parent_pid = ?, cgroup = ?, '
                        'cgroup_limit = ? WHERE session_id = ? AND worker_id = ?', b.worker_updates))
        changed = [(n, sid, wid) for wid, n in self._output_dropped.items()
                   if self._output_dropped_written.get(wid) != n]
        if changed:
            out.append(("UPDATE workers SET output_dropped = ? WHERE session_id = ? AND worker_id = ?", changed))
        out.append(("UPDATE sessions SET last_t = ?, events_lost = ? WHERE id = ?",
                    [(b.last_t if b.last_t is not None else last_t, events_lost, sid)]))
        return out

    def committed(self) -> Batch:
        """The batch is in the file: the next one starts empty. Returns the one committed."""
        done = self.batch
        for wid, n in self._output_dropped.items():
            self._output_dropped_written[wid] = n
        self.batch = Batch()
        return done
