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

import queue
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from ..events import Event, Samples
from .opening import describe_sqlite_error, is_busy, open_session
from .rows import EventRows

Notify = Callable[[str, str], None]  # (level, message); thread-safe

COMMIT_INTERVAL_S: Final = 1.0
# What may wait in memory for a slow disk, counted in samples (an event counts one, a tick of
# N workers N): about 100 s of 200 workers at 10 Hz, some 50 MB (measured: 250 bytes a
# sample). Beyond it events are dropped and counted (the session row's events_lost), and the
# user is told once.
MAX_BACKLOG: Final = 200_000
# Another process holding the file's write lock (a second recorder) is waited for by SQLite
# for BUSY_TIMEOUT_S, then the batch is retried at the next commit, up to BUSY_RETRIES times.
BUSY_TIMEOUT_S: Final = 5.0
BUSY_RETRIES: Final = 10
CLOSE_TIMEOUT_S: Final = 30.0

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
    db, session_id = open_session(path, config, list(sys.argv if command_line is None else command_line),
                                  busy_timeout_s)
    return Recorder(path, db, session_id, notice, commit_interval_s, max_backlog)


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
        self._rows = EventRows(session_id)
        self._batch_no = 0
        self._busy_retries = 0
        self._committed_t: float | None = None
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

    def _take(self, ev: Event) -> None:
        self._taken_weight += len(ev.samples) if isinstance(ev, Samples) else 1
        if self._rows.take(ev):
            self.events_recorded += 1

    def _commit(self) -> bool:
        """Write the batch in one transaction. False: busy, keep it for the next try."""
        db, rows = self._db, self._rows
        assert db is not None
        statements = rows.statements(self._batch_no, self._committed_t, self.events_dropped)
        try:
            db.execute("BEGIN IMMEDIATE")
            for sql, values in statements:
                db.executemany(sql, values)
            db.execute("COMMIT")
        except sqlite3.Error as e:
            self._rollback()
            if is_busy(e) and self._busy_retries < BUSY_RETRIES:
                self._busy_retries += 1
                return False
            self._fail(describe_sqlite_error(e, self.path), lost=rows.batch.events)
            return True
        self._busy_retries = 0
        done = rows.committed()
        self.samples_recorded += done.sample_count
        self.batches += 1
        self._batch_no += 1
        self._committed_t = done.last_t if done.last_t is not None else self._committed_t
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
                self._fail(describe_sqlite_error(e, self.path))
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

