"""The session file's tables, and how a file is recognised as one (or refused).

A session file is an SQLite database in WAL mode. ``PRAGMA application_id`` marks it as
oomscope's (so another program's database is recognised and left alone) and ``PRAGMA
user_version`` holds the schema version. Every table but ``sessions`` carries ``session_id``:
recording again into the same file adds a session. Events are ordered by ``seq``, one counter
per session across all tables, so a replay merges the tables back into the engine's order.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from ..errors import BadInput

APPLICATION_ID = 0x6F6F6D73  # "ooms"
SCHEMA_VERSION = 1
SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[tuple[str, str], ...]  # (name, SQL type)
    key: tuple[str, ...]
    doc: str
    # WITHOUT ROWID keeps a row's key and values in one b-tree, but moves a row of more than
    # about 1 kB to overflow pages of its own (4 kB each): a table of large rows keeps its rowid,
    # where rows of up to 4 kB stay in the leaf pages.
    rowid: bool = False

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.columns)

    def create_sql(self) -> str:
        cols = ", ".join(f'"{c}" {t}' for c, t in self.columns)
        key = ", ".join(f'"{c}"' for c in self.key)
        rowid = "" if self.rowid else " WITHOUT ROWID"
        return f'CREATE TABLE IF NOT EXISTS "{self.name}" ({cols}, PRIMARY KEY ({key})){rowid}'

    def insert_sql(self) -> str:
        cols = ", ".join(f'"{c}"' for c in self.column_names)
        marks = ", ".join("?" for _ in self.columns)
        return f'INSERT INTO "{self.name}" ({cols}) VALUES ({marks})'


_EVENT = (("session_id", "INTEGER NOT NULL"), ("seq", "INTEGER NOT NULL"), ("t", "REAL NOT NULL"))
_WORKER_EVENT = _EVENT + (("worker_id", "INTEGER"),)
_EVENT_KEY = ("session_id", "seq")

SESSIONS = Table("sessions", (
    ("id", "INTEGER"), ("host", "TEXT"), ("kernel", "TEXT"), ("started", "REAL NOT NULL"),
    ("ended", "REAL"), ("last_t", "REAL"), ("oomscope_version", "TEXT"), ("pid", "INTEGER"),
    ("command_line", "TEXT"), ("settings", "TEXT"), ("events_lost", "INTEGER NOT NULL DEFAULT 0"),
), ("id",), "one row per recording; ended is empty when oomscope did not stop normally")
WORKERS = Table("workers", (
    ("session_id", "INTEGER NOT NULL"), ("worker_id", "INTEGER NOT NULL"), ("id", "TEXT NOT NULL"),
    ("pid", "INTEGER NOT NULL"), ("start_time", "REAL"), ("name", "TEXT"), ("cmd", "TEXT"),
    ("launched", "INTEGER"), ("slot", "INTEGER"), ("life", "INTEGER"), ("seq", "INTEGER"), ("t", "REAL"),
    ("event", "TEXT"), ("parent_pid", "INTEGER"), ("cgroup", "TEXT"), ("cgroup_limit", "INTEGER"),
    ("output_dropped", "INTEGER NOT NULL DEFAULT 0"),
), ("session_id", "worker_id"), "one row per worker (a restarted worker is a new row in the same slot)")
TICKS = Table("ticks", _EVENT, _EVENT_KEY, "the time of each sampling tick")
SAMPLES = Table("samples", (
    ("session_id", "INTEGER NOT NULL"), ("batch", "INTEGER NOT NULL"), ("worker_id", "INTEGER NOT NULL"),
    ("first_seq", "INTEGER NOT NULL"), ("n", "INTEGER NOT NULL"), ("data", "BLOB NOT NULL"),
), ("session_id", "batch", "worker_id", "first_seq"), "one worker's samples of one batch, packed (samplecodec)")
HEAP = Table("heap", (
    ("session_id", "INTEGER NOT NULL"), ("batch", "INTEGER NOT NULL"), ("first_seq", "INTEGER NOT NULL"),
    ("n", "INTEGER NOT NULL"), ("runtime", "TEXT NOT NULL"), ("data", "BLOB NOT NULL"),
), ("session_id", "batch", "first_seq"), "the heap reports of one batch and runtime, packed (heappack)",
    rowid=True)  # a row holds a second of a fleet's reports: often over 1 kB
THRESHOLDS = Table("thresholds", _WORKER_EVENT + (
    ("level", "TEXT"), ("previous", "TEXT"), ("metric", "TEXT"), ("value", "INTEGER"), ("limit", "INTEGER"),
), _EVENT_KEY, "a worker's level changed")
# Levels as the session's settings hold them: a size in bytes or a fraction of the limit (0.75).
LEVELS = Table("levels", _WORKER_EVENT + (
    ("warn_bytes", "INTEGER"), ("warn_fraction", "REAL"), ("crit_bytes", "INTEGER"), ("crit_fraction", "REAL"),
    ("metric", "TEXT"), ("on_warn", "TEXT"), ("on_crit", "TEXT"), ("sustain_s", "REAL"), ("hysteresis", "REAL"),
    ("back_to_global", "INTEGER NOT NULL DEFAULT 0"),
), _EVENT_KEY, "the levels in force changed: the global ones (no worker) or one worker's own")
ACTIONS = Table("actions", _WORKER_EVENT + (
    ("by", "TEXT"), ("signal", "TEXT"), ("reason", "TEXT"),
), _EVENT_KEY, "oomscope signalled a worker")
EXITS = Table("exits", _WORKER_EVENT + (
    ("cause", "TEXT"), ("exit_code", "INTEGER"), ("signal", "TEXT"), ("by", "TEXT"), ("evidence", "TEXT"),
    ("kill_id", "INTEGER"), ("stderr_tail", "TEXT"), ("restart_in_s", "REAL"),
), _EVENT_KEY, "a worker exited, with its cause")
CAUSE_UPDATES = Table("cause_updates", _WORKER_EVENT + (
    ("cause", "TEXT"), ("previous", "TEXT"), ("kill_id", "INTEGER"), ("evidence", "TEXT"),
), _EVENT_KEY, "a later finding changed an exited worker's cause")
KILL_FIELDS = ("killer", "pid", "comm", "uid", "total_vm_kb", "anon_rss_kb", "file_rss_kb", "shmem_rss_kb",
               "constraint", "oom_memcg", "task_memcg", "kernel_time_s", "wall_time")
KILLS = Table("kills", (
    ("session_id", "INTEGER NOT NULL"), ("kill_id", "INTEGER NOT NULL"), ("seq", "INTEGER NOT NULL"),
    ("t", "REAL NOT NULL"), ("event", "TEXT NOT NULL"), ("worker_id", "INTEGER"), ("history", "INTEGER"),
    ("killer", "TEXT"), ("pid", "INTEGER"), ("comm", "TEXT"), ("uid", "INTEGER"), ("total_vm_kb", "INTEGER"),
    ("anon_rss_kb", "INTEGER"), ("file_rss_kb", "INTEGER"), ("shmem_rss_kb", "INTEGER"),
    ("constraint", "TEXT"), ("oom_memcg", "TEXT"), ("task_memcg", "TEXT"), ("kernel_time_s", "REAL"),
    ("wall_time", "TEXT"), ("extra", "TEXT"),
), ("session_id", "kill_id"), "a kernel (or systemd-oomd/earlyoom) kill record")
KILL_LINES = Table("kill_lines", (
    ("session_id", "INTEGER NOT NULL"), ("kill_id", "INTEGER NOT NULL"), ("n", "INTEGER NOT NULL"),
    ("line", "TEXT"),
), ("session_id", "kill_id", "n"), "the kernel's lines of a kill record, verbatim")
KERNEL_LINES = Table("kernel_lines", _EVENT + (
    ("text", "TEXT"), ("oom", "INTEGER"), ("history", "INTEGER"), ("kernel_time_s", "REAL"),
), _EVENT_KEY, "kernel log lines as the kernel log pane shows them")
SOURCES = Table("sources", _EVENT + (
    ("source", "TEXT"), ("ok", "INTEGER"), ("reason", "TEXT"),
), _EVENT_KEY, "the kernel log source tried, and why it cannot be used")
THREAD_EXITS = Table("thread_exits", _WORKER_EVENT + (
    ("pid", "INTEGER"), ("thread_id", "INTEGER"), ("cause", "TEXT"), ("message", "TEXT"),
), _EVENT_KEY, "a worker thread ended inside a live process")
DOCTOR = Table("doctor", _WORKER_EVENT + (
    ("advice", "TEXT"), ("reason", "TEXT"), ("suggested", "TEXT"),
), _EVENT_KEY, "advice about a worker's configuration")
NOTICES = Table("notices", _WORKER_EVENT + (
    ("level", "TEXT"), ("message", "TEXT"),
), _EVENT_KEY, "what the user was told (warnings, errors)")
CRASH_LOOPS = Table("crash_loops", _WORKER_EVENT + (
    ("deaths", "INTEGER"), ("window_s", "REAL"), ("message", "TEXT"),
), _EVENT_KEY, "a slot's crash-loop guard stopped its restarts")
OUTPUT = Table("output", _WORKER_EVENT + (
    ("stream", "TEXT"), ("line", "TEXT"),
), _EVENT_KEY, "lines launched workers wrote (bounded per worker)")

TABLES = (SESSIONS, WORKERS, TICKS, SAMPLES, HEAP, THRESHOLDS, LEVELS, ACTIONS, EXITS, CAUSE_UPDATES, KILLS,
          KILL_LINES, KERNEL_LINES, SOURCES, THREAD_EXITS, DOCTOR, NOTICES, CRASH_LOOPS, OUTPUT)
# Tables added after files of this schema version were written: a file may lack them (a reader
# then finds no rows; a recorder adds them).
LATER_TABLES = (CRASH_LOOPS,)

# A worker's samples are read by worker (incident export) and replayed by batch (the key).
INDEXES = ('CREATE INDEX IF NOT EXISTS samples_by_worker ON samples (session_id, worker_id, batch)',)


def create_schema(db: sqlite3.Connection) -> None:
    """Inside the caller's transaction: tables, indexes, and the marks that say what the file is."""
    for table in TABLES:
        if table is SESSIONS:
            # A rowid table: new sessions get the next id even when two recorders share the file.
            cols = ", ".join(f'"{c}" {t}' + (" PRIMARY KEY" if c == "id" else "") for c, t in table.columns)
            db.execute(f'CREATE TABLE IF NOT EXISTS "sessions" ({cols})')
        else:
            db.execute(table.create_sql())
    for sql in INDEXES:
        db.execute(sql)
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


# ------------------------------------------------------------------ recognising a file

RECORD_HINT = "record one with `oomscope watch --record FILE.db`"


def check_readable(path: Path) -> bool:
    """Raise BadInput unless ``path`` can be opened as a session file; False for an empty file.

    Reads the first bytes itself, so a file of another kind is refused before SQLite opens it
    (and can never be changed by it).
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file; give the path of a session file ({RECORD_HINT})") from None
    except OSError as e:
        raise BadInput(f"{path}: cannot be read: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise BadInput(f"{path} is a directory: give the path of a session file ({RECORD_HINT})")
    try:
        with open(path, "rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except PermissionError:
        raise BadInput(f"{path}: permission denied (owned by uid {st.st_uid}, mode "
                       f"{stat.S_IMODE(st.st_mode):04o}); run as its owner or copy the file") from None
    except OSError as e:
        raise BadInput(f"{path}: cannot be read: {e.strerror or e}") from None
    if not head:
        return False
    if head != SQLITE_MAGIC:
        raise BadInput(f"{path} is not an oomscope session file (it is not an SQLite database); "
                       f"{RECORD_HINT}")
    return True


def check_marks(path: Path, db: sqlite3.Connection) -> None:
    """The database is oomscope's and of a schema this oomscope reads."""
    try:
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        version = db.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError as e:
        raise BadInput(f"{path} is damaged or not an SQLite database ({e}); {RECORD_HINT}") from None
    if app_id != APPLICATION_ID:
        raise BadInput(f"{path} is an SQLite database but not an oomscope session file "
                       f"(application id {app_id:#x}); oomscope leaves it alone: give another path")
    if version > SCHEMA_VERSION:
        raise BadInput(f"{path} was made by a newer oomscope (schema {version}); this one reads up to "
                       f"{SCHEMA_VERSION}: upgrade oomscope")
    if version < 1:
        raise BadInput(f"{path} is an unfinished oomscope session file (no schema version): give another path")


def read_only_uri(path: Path, *, immutable: bool = False) -> str:
    uri = "file:" + urllib.parse.quote(str(path.resolve())) + "?mode=ro"
    return uri + "&immutable=1" if immutable else uri


def connect_read_only(path: Path) -> sqlite3.Connection:
    """Open without ever writing: ``mode=ro`` (a WAL left by a crash is read, not replayed
    into the file). In a read-only directory a cleanly closed file has no ``-wal``/``-shm`` and
    SQLite cannot make them: such a file is opened ``immutable`` (nothing else can be writing
    it there)."""
    try:
        db = sqlite3.connect(read_only_uri(path), uri=True, check_same_thread=False)
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return db
    except sqlite3.OperationalError as e:
        if _directory_writable(path.parent):
            raise BadInput(f"{path} cannot be opened: {e}") from None
        if Path(f"{path}-wal").exists():
            raise BadInput(f"{path} was not closed normally (its {path.name}-wal file holds the last "
                           f"part), and SQLite cannot create {path.name}-shm in the read-only "
                           f"directory {path.parent}: copy {path.name} and {path.name}-wal to a "
                           "writable directory and open the copy") from None
    except sqlite3.DatabaseError as e:
        raise BadInput(f"{path} is damaged or not an SQLite database ({e}); {RECORD_HINT}") from None
    try:
        db = sqlite3.connect(read_only_uri(path, immutable=True), uri=True, check_same_thread=False)
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return db
    except sqlite3.DatabaseError as e:
        raise BadInput(f"{path} cannot be opened in the read-only directory {path.parent} ({e}): "
                       "copy it to a writable directory and open the copy") from None


def _directory_writable(directory: Path) -> bool:
    try:
        return os.access(directory, os.W_OK) and not os.statvfs(directory).f_flag & os.ST_RDONLY
    except OSError:
        return False


def describe_oserror(e: OSError) -> str:
    if e.errno == errno.ENOSPC:
        return "the disk is full"
    if e.errno == errno.EROFS:
        return "the file system is read-only"
    if e.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return e.strerror or str(e)
