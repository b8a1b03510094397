"""Opening a session file for writing: the checks that refuse a path before anything is
launched, the schema of a new file, the session's own row; and SQLite's errors in words."""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from ..errors import BadInput
from ..jsonable import jsonable
from . import schema

_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_FULL, _SQLITE_CANTOPEN = 5, 6, 8, 10, 13, 14


def open_session(path: Path, config: Any, command_line: list[str],
                 busy_timeout_s: float) -> tuple[sqlite3.Connection, int]:
    """The file open for writing (WAL, autocommit) and the id of a new session in it.

    Raises :class:`BadInput` for a path that cannot be recorded to; a file this call created is
    removed again then.
    """
    db, created = _open_for_writing(path, busy_timeout_s)
    try:
        session_id = _start_session(db, config, command_line)
    except sqlite3.Error as e:
        db.close()
        if created:
            _remove_quietly(path)
        raise BadInput(f"cannot record to {path}: {describe_sqlite_error(e, path)}") from None
    return db, session_id


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
        raise BadInput(f"cannot record to {path}: {describe_sqlite_error(e, path)}") from None
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
        raise BadInput(f"cannot record to {path}: {describe_sqlite_error(e, path)}") from None
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


def _remove_quietly(path: Path) -> None:
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            p.unlink()
        except OSError:
            pass


def is_busy(e: sqlite3.Error) -> bool:
    """Another connection holds the lock: worth trying again later."""
    return _primary_code(e) in (_SQLITE_BUSY, _SQLITE_LOCKED)


def _primary_code(e: sqlite3.Error) -> int:
    """0 for an error without a code; extended codes add detail in the high bits."""
    return (getattr(e, "sqlite_errorcode", 0) or 0) & 0xFF


def describe_sqlite_error(e: sqlite3.Error, path: Path) -> str:
    code = _primary_code(e)
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
