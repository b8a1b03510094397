"""``oomscope open`` / ``export``: a session file read back as the engine's own events.

The file is opened read-only (SQLite ``mode=ro``): opening, replaying or exporting never
changes it, and nothing stored in it is ever run — command lines are text to show.
A file left by a ``kill -9`` (its ``-wal`` beside it) opens with every committed batch; its
session has ``ended`` None.
"""

from __future__ import annotations

import heapq
import math
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import BadInput
from ..events import Event, Heap, Sample, Samples, WorkerAttached, WorkerRef, WorkerStarted
from ..oomlog.records import KillRecord
from . import heappack, schema
from .samplecodec import FIELDS, CodecError, Unpacked, unpack
from .rowevents import (TABLE_OF, DamagedRow, Streamed, builders, export_columns, finite, is_int, kill_record,
                        loads_or, shown)


@dataclass(frozen=True)
class SessionInfo:
    """One recording in the file. ``ended`` is None when oomscope did not stop normally
    (``last_t`` is then the time of the last committed batch)."""

    id: int
    host: str | None
    kernel: str | None
    started: float
    ended: float | None
    settings: dict[str, Any]
    command_line: list[str] | None
    last_t: float | None = None
    oomscope_version: str | None = None
    pid: int | None = None
    events_lost: int = 0


@dataclass(frozen=True)
class WorkerInfo:
    """A worker row: its identity and how it came (``event``: ``worker_started``,
    ``worker_attached``, or None when recording began after it)."""

    worker_id: int
    ref: WorkerRef
    event: str | None
    seq: int | None
    t: float | None
    parent_pid: int | None
    cgroup: str | None
    cgroup_limit: int | None
    output_dropped: int




class SessionFile:
    """A session file, read-only. ``SessionFile.open(path)``; raises BadInput for anything
    that is not a session file this oomscope can read, with what to do about it."""

    def __init__(self, path: Path, db: sqlite3.Connection) -> None:
        self.path = path
        self._db = db
        self._tick_cache: dict[int, tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]] = {}
        #: What was found damaged and left out (or stood in for) while reading, in words, each
        #: once: an altered value, a sample blob that does not decode. The rest reads on.
        self.damage: list[str] = []

    def _damaged(self, what: str) -> None:
        if what not in self.damage:
            self.damage.append(what)

    @classmethod
    def open(cls, path: Path | str) -> SessionFile:
        path = Path(path)
        if not schema.check_readable(path):
            raise BadInput(f"{path} is empty: not an oomscope session file; {schema.RECORD_HINT}")
        db = schema.connect_read_only(path)
        try:
            schema.check_marks(path, db)
        except BaseException:
            db.close()
            raise
        return cls(path, db)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SessionFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ sessions

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """A damaged file says so, whatever query meets the damage first."""
        try:
            yield
        except sqlite3.DatabaseError as e:
            raise BadInput(f"{self.path} is damaged and cannot be read ({e}); a copy of a file "
                           "that was still being written may be incomplete: copy it again") from None
        except (CodecError, KeyError, DamagedRow) as e:  # a blob that does not decode, a row without its worker
            raise BadInput(f"{self.path} is damaged and cannot be read ({type(e).__name__}: {e})") from None

    def sessions(self) -> list[SessionInfo]:
        with self._reading():
            rows = self._db.execute(
                "SELECT id, host, kernel, started, ended, last_t, oomscope_version, pid, command_line, "
                "settings, events_lost FROM sessions ORDER BY id").fetchall()
        return [self._session_info(r) for r in rows]

    def _session_info(self, r: tuple[Any, ...]) -> SessionInfo:
        """A sessions row (its columns in schema order) with every value of the type it must have; a value altered into
        something else is named in ``damage`` and read as unknown (``started``, which a session
        cannot be without, as the time of its first sampling tick)."""
        sid = r[0]

        def bad(column: str, value: Any, instead: str) -> None:
            self._damaged(f"session {sid}: {column} is {shown(value)}, not {instead}")

        host, kernel, version = (self._text(sid, c, v) for c, v in (("host", r[1]), ("kernel", r[2]),
                                                                     ("oomscope_version", r[6])))
        ended, last_t = (self._time(sid, c, v) for c, v in (("ended", r[4]), ("last_t", r[5])))
        started = finite(r[3])
        if started is None:
            first = self._db.execute("SELECT min(t) FROM ticks WHERE session_id = ?", (sid,)).fetchone()[0]
            started = finite(first) or last_t or ended or 0.0
            bad("started", r[3], "a time; the time of its first sample stands in")
        pid = r[7] if r[7] is None or is_int(r[7]) else None
        if r[7] is not None and pid is None:
            bad("pid", r[7], "a process id")
        lost = r[10] if is_int(r[10]) else 0
        if r[10] is not None and not is_int(r[10]):
            bad("events_lost", r[10], "a count")
        return SessionInfo(sid, host, kernel, started, ended, loads_or(r[9], {}), loads_or(r[8], None), last_t,
                           version, pid, lost)

    def _text(self, sid: int, column: str, value: Any) -> str | None:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, (int, float)):
            return str(value)
        self._damaged(f"session {sid}: {column} is {shown(value)}, not text")
        return None

    def _time(self, sid: int, column: str, value: Any) -> float | None:
        t = finite(value)
        if value is not None and t is None:
            self._damaged(f"session {sid}: {column} is {shown(value)}, not a time")
        return t

    def session(self, session_id: int | None = None) -> SessionInfo:
        """The session with this id; None: the last one."""
        sessions = self.sessions()
        if not sessions:
            raise BadInput(f"{self.path} holds no recorded session")
        if session_id is None:
            return sessions[-1]
        for s in sessions:
            if s.id == session_id:
                return s
        raise BadInput(f"{self.path} has no session {session_id}; it has "
                       f"{', '.join(str(s.id) for s in sessions)}")

    def time_range(self, session_id: int | None = None) -> tuple[float, float]:
        s = self.session(session_id)
        end = s.ended if s.ended is not None else (s.last_t if s.last_t is not None else s.started)
        return s.started, max(end, s.started)

    def workers(self, session_id: int | None = None) -> list[WorkerInfo]:
        sid = self.session(session_id).id
        with self._reading():
            rows = self._db.execute(
                "SELECT worker_id, id, pid, start_time, name, cmd, launched, slot, life, event, seq, t, "
                "parent_pid, cgroup, cgroup_limit, output_dropped FROM workers WHERE session_id = ? "
                "ORDER BY worker_id", (sid,)).fetchall()
        out = []
        for r in rows:
            ref = WorkerRef(r[1], r[2], r[3], r[4], tuple(loads_or(r[5], [])), bool(r[6]), r[7],
                            r[8] if r[8] is not None else 1)
            out.append(WorkerInfo(r[0], ref, r[9], r[10], r[11], r[12], r[13], r[14], r[15] or 0))
        return out

    # ------------------------------------------------------------------ samples

    def worker_samples(self, session_id: int | None, worker_id: str | int) -> dict[str, npt.NDArray[Any]]:
        """One worker's samples as arrays: ``t`` (Unix seconds), ``seq``, and each sample field
        (``rss``, ``anon``, ``swap``, ``cgroup_usage``, ``cgroup_limit``, ``heap_used``,
        ``heap_total``, ``heap_limit`` in bytes, ``trend_bytes_per_s``, ``eta_limit_s``,
        ``eta_crit_s``) as float64 with NaN where not known (bytes stay exact below 2**53)."""
        sid = self.session(session_id).id
        wid = self._worker_number(sid, worker_id)
        with self._reading():
            blobs = self._db.execute(
                "SELECT batch, data FROM samples WHERE session_id = ? AND worker_id = ? ORDER BY batch, first_seq",
                (sid, wid)).fetchall()
            seq_list: list[int] = []
            columns: dict[str, list[Any]] = {f: [] for f in FIELDS}
            for batch, blob in blobs:
                u = self._unpack_samples(sid, wid, batch, blob)
                if u is None:
                    continue
                seq_list += u.seqs
                for f in FIELDS:
                    columns[f] += u.columns[f]
            seqs = np.array(seq_list, dtype=np.int64)
            times = self._times(sid, seqs)
        out: dict[str, npt.NDArray[Any]] = {"t": times, "seq": seqs}
        for f in FIELDS:
            out[f] = np.array(columns[f], dtype=np.float64)  # None becomes NaN
        return out

    def _unpack_samples(self, sid: int, wid: int, batch: int, blob: Any) -> Unpacked | None:
        """A samples row's blob decoded; None (and named in ``damage``) when it does not decode:
        about a second of one worker's samples is lost, not the file."""
        try:
            if not isinstance(blob, bytes):
                raise CodecError(f"a {type(blob).__name__} where a sample blob belongs")
            return unpack(blob)
        except CodecError as e:
            who = self._db.execute("SELECT id FROM workers WHERE session_id = ? AND worker_id = ?",
                                   (sid, wid)).fetchone()
            self._damaged(f"session {sid}: the samples of worker {who[0] if who else wid} in batch {batch} "
                          f"(about a second) are left out: {e}")
            return None

    def _worker_number(self, sid: int, worker_id: str | int) -> int:
        if isinstance(worker_id, int):
            return worker_id
        with self._reading():
            row = self._db.execute("SELECT worker_id FROM workers WHERE session_id = ? AND id = ?",
                                   (sid, worker_id)).fetchone()
        if row is None:
            raise BadInput(f"{self.path}: session {sid} has no worker {worker_id}")
        return int(row[0])

    def _ticks(self, sid: int, *, fresh: bool = False) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """The session's tick times, read once (an hour at 10 Hz is 36,000 rows, wanted by
        every worker's samples); ``fresh`` rereads them (a file still being recorded)."""
        cached = self._tick_cache.get(sid)
        if cached is not None and not fresh:
            return cached
        rows = self._db.execute("SELECT seq, t FROM ticks WHERE session_id = ? ORDER BY seq", (sid,)).fetchall()
        bad = [r for r in rows if not is_int(r[0]) or finite(r[1]) is None]
        if bad:  # an altered tick: its samples keep their place with an unknown time (NaN)
            self._damaged(f"session {sid}: {len(bad)} sampling tick(s) without a valid time, e.g. "
                          f"seq {shown(bad[0][0])} at {shown(bad[0][1])}")
            rows = [r for r in rows if is_int(r[0])]
        seq = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        t = np.fromiter((finite(r[1]) or math.nan for r in rows), dtype=np.float64, count=len(rows))
        self._tick_cache[sid] = (seq, t)
        return seq, t

    def _times(self, sid: int, seqs: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        if not seqs.size:
            return np.zeros(0)
        for fresh in (False, True):
            tick_seq, tick_t = self._ticks(sid, fresh=fresh)
            idx = np.searchsorted(tick_seq, seqs)
            if idx.max() < tick_seq.size and np.array_equal(tick_seq[idx], seqs):
                return tick_t[idx]
        raise BadInput(f"{self.path} is damaged: samples without their sampling tick")

    # ------------------------------------------------------------------ tables as exported

    def export_rows(self, table: schema.Table, session_id: int | None = None
                    ) -> tuple[tuple[str, ...], Iterator[tuple[Any, ...]]]:
        """A table's rows for export (None: every session), with the engine's worker id
        (``w3``) in a ``worker`` column in place of the file's internal worker number."""
        sids = [s.id for s in self.sessions()] if session_id is None else [self.session(session_id).id]
        names = export_columns(table)
        if table is schema.HEAP:
            return names, self._heap_rows(sids)
        if table.name not in self._tables():
            return names, iter(())  # a table added since this file was written
        cols = []
        for c in table.column_names:
            if c == "worker_id" and table is not schema.WORKERS:
                cols.append('w."id"')
            elif c != "worker_id":
                cols.append(f'x."{c}"')
        join = ("" if table is schema.WORKERS or "worker_id" not in table.column_names else
                " LEFT JOIN workers w ON w.session_id = x.session_id AND w.worker_id = x.worker_id")
        key = "id" if table is schema.SESSIONS else "session_id"
        order = ", ".join(f'x."{c}"' for c in table.key)
        marks = ", ".join("?" for _ in sids)
        sql = f'SELECT {", ".join(cols)} FROM "{table.name}" x{join} WHERE x."{key}" IN ({marks}) ORDER BY {order}'

        def rows() -> Iterator[tuple[Any, ...]]:
            with self._reading():
                if table is not schema.SESSIONS:
                    yield from self._db.execute(sql, sids)
                    return
                for row in self._db.execute(sql, sids):  # the values as sessions() reads them
                    s = self._session_info(row)
                    yield (s.id, s.host, s.kernel, s.started, s.ended, s.last_t, s.oomscope_version, s.pid,
                           *row[8:10], s.events_lost)

        return names, rows()

    def _heap_rows(self, sids: list[int]) -> Iterator[tuple[Any, ...]]:
        """Heap reports one row each, as the table of one row per report had them."""
        for sid in sids:
            with self._reading(), self._snapshot():
                refs = {w.worker_id: w.ref for w in self.workers(sid)}
                for seq, h in self._heap_events(sid, refs):
                    yield heappack.report_row(sid, seq, h)

    # ------------------------------------------------------------------ events

    def events(self, session_id: int | None = None, *, samples: bool = True) -> Iterator[Event]:
        """The session's events, rebuilt as the engine emitted them, in the engine's order.

        ``samples=False`` leaves the ``Samples`` ticks out (a viewer that loads them in bulk
        with :meth:`worker_samples`)."""
        sid = self.session(session_id).id
        with self._reading(), self._snapshot():
            workers = self.workers(sid)
            refs = {w.worker_id: w.ref for w in workers}
            kills = self._kills(sid)
            streams: list[Iterator[Streamed]] = [iter(sorted(start_events(workers), key=lambda x: x[0]))]
            if samples:
                streams.append(self._sample_events(sid, refs))
            streams.append(self._heap_events(sid, refs))
            rebuild = builders(refs, kills)
            present = self._tables()
            for cls, table in TABLE_OF.items():
                build = rebuild.handler_for(cls)
                if build is not None and table.name in present:
                    streams.append(self._table_events(sid, table, build))
            for _, ev in heapq.merge(*streams, key=lambda item: item[0]):
                yield ev

    @contextmanager
    def _snapshot(self) -> Iterator[None]:
        """One read transaction around all the queries of a replay: a file that is still being
        recorded gives a consistent picture (no sample of a worker the replay has not met)."""
        if self._db.in_transaction:
            yield
            return
        self._db.execute("BEGIN")
        try:
            yield
        finally:
            if self._db.in_transaction:
                self._db.execute("COMMIT")

    def _table_events(self, sid: int, table: schema.Table,
                      build: Callable[[tuple[Any, ...]], Event | None]) -> Iterator[Streamed]:
        cols = ", ".join(f'"{c}"' for c in table.column_names)
        at = table.column_names.index("seq")
        t_at = table.column_names.index("t")
        cur = self._db.execute(f'SELECT {cols} FROM "{table.name}" WHERE session_id = ? ORDER BY seq', (sid,))
        for row in cur:
            try:
                if not is_int(row[at]) or finite(row[t_at]) is None:
                    raise DamagedRow(f"seq {shown(row[at])}, t {shown(row[t_at])}")
                ev = build(row)
            except (DamagedRow, KeyError, TypeError, ValueError) as e:
                # An altered value, a row naming a worker the file does not have: that event is
                # left out, the replay goes on.
                self._damaged(f"session {sid}: a row of {table.name} is left out ({type(e).__name__}: {e})")
                continue
            if ev is not None:
                yield row[at], ev

    def _heap_events(self, sid: int, refs: dict[int, WorkerRef]) -> Iterator[tuple[int, Heap]]:
        cur = self._db.execute("SELECT batch, runtime, data, n FROM heap WHERE session_id = ? "
                               "ORDER BY batch, first_seq", (sid,))
        def damaged(batch: int, e: Exception) -> None:
            self._damaged(f"session {sid}: the heap reports of batch {batch} are left out ({type(e).__name__}: {e})")

        yield from heappack.in_order(cur, refs, damaged)

    def _tables(self) -> set[str]:
        """The tables this file has (an older file lacks ``schema.LATER_TABLES``)."""
        return {name for (name,) in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def _kills(self, sid: int) -> dict[int, tuple[tuple[Any, ...], KillRecord]]:
        """kill_id → (row, the typed record)."""
        lines: dict[int, list[str]] = {}
        for kid, line in self._db.execute(
                "SELECT kill_id, line FROM kill_lines WHERE session_id = ? ORDER BY kill_id, n", (sid,)):
            lines.setdefault(kid, []).append(line)
        cols = ", ".join(f'"{c}"' for c in schema.KILLS.column_names)
        out = {}
        for row in self._db.execute(f"SELECT {cols} FROM kills WHERE session_id = ?", (sid,)):
            contract: dict[str, Any] = dict(zip(schema.KILL_FIELDS, row[7:7 + len(schema.KILL_FIELDS)]))
            out[row[1]] = (row, kill_record(contract, lines.get(row[1], []), loads_or(row[-1], {})))
        return out

    def _sample_events(self, sid: int, refs: dict[int, WorkerRef]) -> Iterator[Streamed]:
        tick_seq, tick_t = self._ticks(sid, fresh=True)
        t_of = dict(zip(tick_seq.tolist(), tick_t.tolist()))
        cur = self._db.execute(
            "SELECT batch, worker_id, data FROM samples WHERE session_id = ? ORDER BY batch, worker_id, first_seq",
            (sid,))
        batch: int | None = None
        by_seq: dict[int, list[Sample]] = {}
        for number, wid, blob in cur:
            if number != batch:
                yield from self._ticks_of(sid, by_seq, t_of)
                by_seq = {}
                batch = number
            u = self._unpack_samples(sid, wid, number, blob)
            ref = refs.get(wid)
            if u is None or ref is None:
                continue
            columns = [u.columns[f] for f in FIELDS]
            for seq, *values in zip(u.seqs, *columns):
                lst = by_seq.get(seq)
                if lst is None:
                    lst = by_seq[seq] = []
                lst.append(Sample(ref, *values))
        yield from self._ticks_of(sid, by_seq, t_of)

    def _ticks_of(self, sid: int, by_seq: dict[int, list[Sample]], t_of: dict[int, float]) -> Iterator[Streamed]:
        for seq in sorted(by_seq):
            t = t_of.get(seq)
            if t is None:  # committed after the ticks were read (a file still being recorded)?
                tick_seq, tick_t = self._ticks(sid, fresh=True)
                t_of.update(zip(tick_seq.tolist(), tick_t.tolist()))
                t = t_of.get(seq)
            if t is None:
                raise BadInput(f"{self.path} is damaged: samples without their sampling tick")
            yield seq, Samples(t, tuple(by_seq[seq]))


def start_events(workers: list[WorkerInfo]) -> Iterator[Streamed]:
    for w in workers:
        if w.seq is None or w.t is None:
            continue
        if w.event == WorkerStarted.kind:
            yield w.seq, WorkerStarted(w.t, w.ref, w.cgroup, w.cgroup_limit)
        elif w.event == WorkerAttached.kind:
            yield w.seq, WorkerAttached(w.t, w.ref, w.parent_pid, w.cgroup, w.cgroup_limit)
