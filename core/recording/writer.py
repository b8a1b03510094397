"""``watch --record``: every engine event into a session file, from a writer thread of its own.

The thread that calls the recorder (``watch``'s loop, the GUI's bridge) only puts the event on
a queue; a writer thread turns events into rows and commits them in one transaction at most
once a second (``commit_interval_s``). So the engine never waits on the disk, and a ``kill -9``
of oomscope loses at most the last second: SQLite in WAL mode with ``synchronous=NORMAL`` makes
a committed transaction survive the death of the process (not a power cut, which may lose the
last transactions but never breaks the file).

Trouble while recording (disk full, the file system turned read-only, an I/O error) stops the
recording, not the session: ``failed`` says why, ``notice`` tells the user, and later events
are counted, not kept.
"""

from __future__ import annotations

import json
import os
import platform
import queue
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Final

from ..errors import BadInput
from ..jsonable import jsonable
from ..thresholds import ROW_COLUMNS, thresholds_to_row
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
from ..oomlog.records import DETAIL_FIELDS, KillRecord
from . import heappack, schema
from .samplecodec import pack

Notify = Callable[[str, str], None]  # (level, message); thread-safe

COMMIT_INTERVAL_S: Final = 1.0
# What may wait in memory for a slow disk, counted in samples (an event counts one, a tick of
# N workers N): about 100 s of 200 workers at 10 Hz, some 50 MB (measured: 250 bytes a
# sample). Beyond it events are dropped and counted (the session row's events_lost), and the
# user is told once.
MAX_BACKLOG: Final = 200_000
# Worker output is kept for the replay's detail pane, bounded: a chatty worker must not fill
# the disk. The stderr tail of every exit is kept with the exit whatever this says.
OUTPUT_LINES_PER_WORKER: Final = 2000
OUTPUT_LINE_CHARS: Final = 2000
# Another process holding the file's write lock (a second recorder) is waited for by SQLite
# for BUSY_TIMEOUT_S, then the batch is retried at the next commit, up to BUSY_RETRIES times.
BUSY_TIMEOUT_S: Final = 5.0
BUSY_RETRIES: Final = 10
CLOSE_TIMEOUT_S: Final = 30.0

_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_FULL, _SQLITE_CANTOPEN = 5, 6, 8, 10, 13, 14
_CLOSE = object()


def open_recorder(path: Path, config: Any, notice: Notify, *,
                  command_line: Sequence[str] | None = None,
                  commit_interval_s: float = COMMIT_INTERVAL_S,
                  max_backlog: int = MAX_BACKLOG,
                  busy_timeout_s: float = BUSY_TIMEOUT_S) -> Recorder:
    """Open (or create) the session file and start a new session in it.

    Raises :class:`BadInput` for a path that cannot be recorded to — before the caller has
    launched anything. ``config`` (the EngineConfig) is stored as the session's settings;
    ``command_line`` defaults to this process's ``sys.argv``.
    """
    path = Path(path)
    db, created = _open_for_writing(path, busy_timeout_s)
    try:
        session_id = _start_session(db, config, list(sys.argv if command_line is None else command_line))
    except sqlite3.Error as e:
        db.close()
        if created:
            _remove_quietly(path)
        raise BadInput(f"cannot record to {path}: {_describe_sqlite_error(e, path)}") from None
    return Recorder(path, db, session_id, notice, commit_interval_s, max_backlog)


def _open_for_writing(path: Path, busy_timeout_s: float) -> tuple[sqlite3.Connection, bool]:
    existed = os.path.lexists(path)
    if existed:
        if schema.check_readable(path):
            ro = schema.connect_read_only(path)
            try:
                schema.check_marks(path, ro)
            finally:
                ro.close()
        # else: an empty file (mktemp's) holds nothing to lose; it becomes a session file.
    elif not path.parent.is_dir():
        raise BadInput(f"cannot record to {path}: the directory {path.parent} does not exist")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        os.close(fd)
    except OSError as e:
        raise BadInput(f"cannot record to {path}: {schema.describe_oserror(e)}; give a path where "
                       "you may write") from None
    try:
        db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False,
                             timeout=busy_timeout_s)
    except sqlite3.Error as e:
        if not existed:
            _remove_quietly(path)
        raise BadInput(f"cannot record to {path}: {_describe_sqlite_error(e, path)}") from None
    try:
        db.execute("PRAGMA journal_mode=WAL").fetchone()
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("BEGIN IMMEDIATE")
        try:
            fresh = db.execute("PRAGMA application_id").fetchone()[0] == 0
            if fresh and db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                fresh = False  # another program's tables in what looked empty: refused below
            if fresh:
                schema.create_schema(db)
            else:
                schema.check_marks(path, db)
                for table in schema.LATER_TABLES:
                    db.execute(table.create_sql())
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    except sqlite3.Error as e:
        db.close()
        if not existed:
            _remove_quietly(path)
        raise BadInput(f"cannot record to {path}: {_describe_sqlite_error(e, path)}") from None
    except BaseException:
        db.close()
        raise
    return db, not existed


def _start_session(db: sqlite3.Connection, config: Any, command_line: list[str]) -> int:
    cur = db.execute(
        'INSERT INTO sessions (host, kernel, started, oomscope_version, pid, command_line, settings) '
        'VALUES (?, ?, ?, ?, ?, ?, ?)',
        (platform.node(), platform.release(), time.time(), _version(), os.getpid(),
         json.dumps(command_line), json.dumps(jsonable(config))))
    session_id = cur.lastrowid
    assert session_id is not None
    return session_id


def _version() -> str | None:
    try:
        return metadata.version("oomscope")
    except metadata.PackageNotFoundError:
        return None


def _levels_row(ev: LevelsChanged) -> tuple[Any, ...]:
    """The ``levels`` columns after ``worker_id``; a worker back on the global levels has
    only ``back_to_global``."""
    if ev.thresholds is None:
        return (None,) * len(ROW_COLUMNS) + (1,)
    return (*thresholds_to_row(ev.thresholds), 0)


def _remove_quietly(path: Path) -> None:
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            p.unlink()
        except OSError:
            pass


def _describe_sqlite_error(e: sqlite3.Error, path: Path) -> str:
    code = getattr(e, "sqlite_errorcode", None)
    if code is not None:
        code &= 0xFF  # the primary code; extended codes add detail in the high bits
    if code == _SQLITE_FULL:
        return "the disk is full"
    if code == _SQLITE_READONLY:
        return "the file or its file system is read-only"
    if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return "another program holds the file locked"
    if code == _SQLITE_CANTOPEN and not os.access(path.parent, os.W_OK | os.X_OK):
        return (f"SQLite needs to create {path.name}-wal beside it, and the directory "
                f"{path.parent} is not writable")
    if code == _SQLITE_IOERR:
        return f"input/output error ({e})"
    return str(e)


class _Batch:
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


class Recorder:
    """Takes every engine event (``recorder(event)``, never blocks) and records it.

    ``path``, ``session_id``; ``failed`` is None while recording works, else why it stopped.
    To start recording in the middle of a session, feed the workers' original
    ``WorkerStarted``/``WorkerAttached`` events first: a replay shows a worker from its start event.
    """

    def __init__(self, path: Path, db: sqlite3.Connection, session_id: int, notice: Notify,
                 commit_interval_s: float = COMMIT_INTERVAL_S, max_backlog: int = MAX_BACKLOG) -> None:
        self.path = path
        self.session_id = session_id
        self.failed: str | None = None
        self.notice = notice
        self.commit_interval_s = commit_interval_s
        self.max_backlog = max_backlog
        # Figures for the status bar and the benchmark (written by the writer thread).
        self.events_recorded = 0
        self.samples_recorded = 0
        self.batches = 0
        self.writer_cpu_s = 0.0
        self._db: sqlite3.Connection | None = db
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        # Backlog = put - taken, each counter written by one thread only (no lock needed).
        self._put_weight = 0
        self._taken_weight = 0
        self.events_dropped = 0  # refused at the door: the backlog was full
        self._dropped_told = 0
        self._lost_after_failure = 0  # counted by the writer thread
        self._refused = 0  # counted by the caller's thread: arrived after a failure or close
        self._closing = False
        self._seq = 0
        self._kill_id = 0
        self._worker_ids: dict[str, int] = {}
        self._output_lines: dict[int, int] = {}
        self._output_dropped: dict[int, int] = {}
        self._output_dropped_written: dict[int, int] = {}
        self._batch = _Batch()
        self._batch_no = 0
        self._busy_retries = 0
        self._committed_t: float | None = None
        self._dispatch = self._handlers()
        self._thread = threading.Thread(target=self._run, name=f"oomscope-recorder-{session_id}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ the caller's side

    def __call__(self, event: Event) -> None:
        if self.failed is not None or self._closing:
            self._refused += 1
            return
        weight = len(event.samples) if isinstance(event, Samples) else 1
        if self._put_weight - self._taken_weight + weight > self.max_backlog:
            self.events_dropped += 1
            return
        self._put_weight += weight
        self._queue.put(event)

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Commit what is left, mark the session ended, close the file. Waits for the writer
        (at most ``timeout_s``; a disk that slow gets a notice and the session stays unended)."""
        if self._closing:
            return
        self._closing = True
        self._queue.put(_CLOSE)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self.notice("error", f"recording to {self.path}: the disk did not take the last events "
                        f"within {timeout_s:g} s; the session is not marked as ended")

    @property
    def backlog(self) -> int:
        return self._put_weight - self._taken_weight

    # ------------------------------------------------------------ the writer thread

    def _run(self) -> None:
        cpu0 = time.thread_time()
        try:
            self._loop(cpu0)
        except Exception as e:  # a bug must not take the session down with it
            self._fail(f"internal error in the recorder: {type(e).__name__}: {e}")
        finally:
            self.writer_cpu_s = time.thread_time() - cpu0

    def _loop(self, cpu0: float) -> None:
        deadline: float | None = None
        get = self._queue.get
        while True:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                item = get(timeout=timeout)
            except queue.Empty:
                item = None
            if item is _CLOSE:
                self._finish()
                return
            if item is not None and self._db is not None:
                if deadline is None:
                    deadline = time.monotonic() + self.commit_interval_s
                assert isinstance(item, Event)
                self._take(item)
            elif item is not None:
                self._lost_after_failure += 1
            if deadline is not None and time.monotonic() >= deadline:
                deadline = None
                if self._db is not None:
                    if not self._commit():
                        deadline = time.monotonic() + self.commit_interval_s  # busy: try again
                self.writer_cpu_s = time.thread_time() - cpu0

    def _handlers(self) -> Dispatcher[object]:
        """Per event class, how it becomes rows; each handler reads ``self._seq`` and ``ev.t``."""
        return Dispatcher({
            Samples: self._take_samples,
            Heap: lambda ev: self._batch.heap.append((self._seq, self._wid(ev.worker, self._seq, ev.t), ev)),
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

    def _take(self, ev: Event) -> None:
        weight = len(ev.samples) if isinstance(ev, Samples) else 1
        self._taken_weight += weight
        handler = self._dispatch.handler_for(type(ev))
        if handler is None:
            return
        self._seq += 1
        b = self._batch
        b.events += 1
        b.last_t = ev.t if b.last_t is None or ev.t > b.last_t else b.last_t
        handler(ev)
        self.events_recorded += 1

    def _row(self, table: schema.Table, ev: Event, *values: Any) -> None:
        self._batch.add(table, (self.session_id, self._seq, ev.t, *values))

    def _wid_or_none(self, ref: WorkerRef | None, t: float) -> int | None:
        return self._wid(ref, self._seq, t) if ref is not None else None

    def _take_samples(self, ev: Samples) -> None:
        seq = self._seq
        self._batch.add(schema.TICKS, (self.session_id, seq, ev.t))
        samples = self._batch.samples
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
            self._batch.worker_updates.append((seq, t, ev.kind, parent, ev.cgroup, ev.cgroup_limit,
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
        self._batch.add(schema.WORKERS, (self.session_id, wid, ref.id, ref.pid, ref.start_time, ref.name,
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
        self._batch.add(schema.OUTPUT, (self.session_id, seq, t, wid, ev.stream, ev.line[:OUTPUT_LINE_CHARS]))

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
        self._batch.add(schema.KILLS, (self.session_id, kid, seq, t, event, wid, history,
                                  *(contract[k] for k in schema.KILL_FIELDS),
                                  json.dumps(jsonable(details))))
        for n, line in enumerate(record.lines):
            self._batch.add(schema.KILL_LINES, (self.session_id, kid, n, str(line)))
        return kid

    def _commit(self) -> bool:
        """Write the batch in one transaction. False: busy, keep it for the next try."""
        db, b = self._db, self._batch
        assert db is not None
        sid = self.session_id
        seq_cache: dict[tuple[int, ...], bytes] = {}
        sample_rows = [(sid, self._batch_no, wid, seqs[0], len(seqs), pack(seqs, values, seq_cache))
                       for wid, (seqs, values) in b.samples.items()]
        heap_rows = heappack.pack_rows(sid, self._batch_no, b.heap)
        try:
            db.execute("BEGIN IMMEDIATE")
            for table, rows in b.rows.items():
                db.executemany(table.insert_sql(), rows)
            if sample_rows:
                db.executemany(schema.SAMPLES.insert_sql(), sample_rows)
            if heap_rows:
                db.executemany(schema.HEAP.insert_sql(), heap_rows)
            if b.worker_updates:
                db.executemany('UPDATE workers SET seq = ?, t = ?, event = ?, parent_pid = ?, cgroup = ?, '
                               'cgroup_limit = ? WHERE session_id = ? AND worker_id = ?', b.worker_updates)
            changed = [(n, sid, wid) for wid, n in self._output_dropped.items()
                       if self._output_dropped_written.get(wid) != n]
            if changed:
                db.executemany("UPDATE workers SET output_dropped = ? WHERE session_id = ? AND worker_id = ?",
                               changed)
            last_t = b.last_t if b.last_t is not None else self._committed_t
            db.execute("UPDATE sessions SET last_t = ?, events_lost = ? WHERE id = ?",
                       (last_t, self.events_dropped, sid))
            db.execute("COMMIT")
        except sqlite3.Error as e:
            self._rollback()
            code = (getattr(e, "sqlite_errorcode", 0) or 0) & 0xFF
            if code in (_SQLITE_BUSY, _SQLITE_LOCKED) and self._busy_retries < BUSY_RETRIES:
                self._busy_retries += 1
                return False
            self._fail(_describe_sqlite_error(e, self.path), lost=b.events)
            return True
        self._busy_retries = 0
        for wid, n in self._output_dropped.items():
            self._output_dropped_written[wid] = n
        self.samples_recorded += sum(len(seqs) for seqs, _ in b.samples.values())
        self.batches += 1
        self._batch_no += 1
        self._committed_t = b.last_t if b.last_t is not None else self._committed_t
        self._batch = _Batch()
        if self.events_dropped > self._dropped_told:
            if self._dropped_told == 0:
                self.notice("warning", f"recording to {self.path} falls behind (the disk is slow): "
                            f"{self.events_dropped} events dropped so far; the file's session row counts them")
            self._dropped_told = self.events_dropped
        return True

    def _rollback(self) -> None:
        if self._db is not None and self._db.in_transaction:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def _fail(self, reason: str, lost: int = 0) -> None:
        """Stop recording; the session goes on."""
        self._lost_after_failure += lost
        since = time.strftime("%H:%M:%S", time.localtime(self._committed_t)) if self._committed_t else None
        self.failed = reason
        if self._db is not None:
            self._rollback()
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            self._db = None
        after = f" after {since}" if since else ""
        self.notice("error", f"recording stopped: {reason} ({self.path}); the session goes on without "
                    f"recording; {lost} events{after} are not recorded, nor any from now on")

    def _finish(self) -> None:
        while self._db is not None and not self._commit():
            pass  # busy: _commit gives up (and fails the recording) after BUSY_RETRIES
        if self._db is not None:
            try:
                self._db.execute("UPDATE sessions SET ended = ?, events_lost = ? WHERE id = ?",
                                 (time.time(), self.events_dropped, self.session_id))
            except sqlite3.Error as e:
                self._fail(_describe_sqlite_error(e, self.path))
        db = self._db
        if db is not None:
            # A cleanly closed file is one self-contained file again (no -wal, no -shm): it can
            # be copied or opened in a read-only directory. Another process still using the
            # file keeps it in WAL mode; that is fine too.
            try:
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                db.execute("PRAGMA journal_mode=DELETE")
            except sqlite3.Error:
                pass
            db.close()
            self._db = None
        lost = self._lost_after_failure + self._refused + self.events_dropped
        if lost and self.failed is not None:
            self.notice("warning", f"recording to {self.path} ended with {lost} events not recorded "
                        f"({self.failed})")
        elif self.events_dropped:
            self.notice("warning", f"recording to {self.path}: {self.events_dropped} events were dropped "
                        "because the disk was too slow")

