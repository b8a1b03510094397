"""Files that are not (or not quite) session files, and places that cannot be written.

Each gets a message saying what is wrong and what to do — from the reader, from ``export``
(exit code 2) and from ``watch --record`` (exit code 2, nothing launched) — and a file of
another kind is never changed. Read-only places are real: a tmpfs mounted read-only, and
uid 65534 for permissions.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import PY
from oomscope.core.engine import EngineConfig
from oomscope.core.errors import BadInput
from oomscope.core.events import Sample, Samples, WorkerExited, WorkerRef, WorkerStarted
from oomscope.core.recording import SCHEMA_VERSION, SessionFile, open_recorder

OOMSCOPE = [PY, "-m", "oomscope"]
MiB = 1 << 20


def record_small_session(path: Path, ticks: int = 20, workers: int = 3) -> None:
    """A short session of synthetic events (what the engine emits, without running it)."""
    rec = open_recorder(path, EngineConfig(), lambda level, message: None, command_line=["test"])
    refs = [WorkerRef(f"w{i}", 30_000 + i, 1.0, "python3", ("python3", "job.py"), True, i, 1)
            for i in range(1, workers + 1)]
    t = time.time()
    for r in refs:
        rec(WorkerStarted(t, r, None, None))
    for k in range(ticks):
        rec(Samples(t + k * 0.1, tuple(Sample(r, (100 + k * i) * MiB, (90 + k) * MiB, 0) for i, r in enumerate(refs))))
    for r in refs:
        rec(WorkerExited(t + ticks * 0.1, r, "exit", 0, None))
    rec.close()
    assert rec.failed is None


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextlib.contextmanager
def tmpfs(where: Path, size: str = "4m") -> Iterator[Path]:
    """A tmpfs of our own at ``where`` (root only); unmounted afterwards, also on failure."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


def remount_read_only(where: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True, capture_output=True)


# ------------------------------------------------------------------ kinds of bad file

def _directory(p: Path) -> None:
    p.mkdir()


def _text(p: Path) -> None:
    p.write_text("just some notes\n")


def _other_sqlite(p: Path) -> None:
    db = sqlite3.connect(p)
    db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
    db.execute("INSERT INTO invoices (amount) VALUES (12.5)")
    db.commit()
    db.close()


def _newer(p: Path) -> None:
    record_small_session(p)
    db = sqlite3.connect(p)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 98}")
    db.close()


BAD: dict[str, tuple[Callable[[Path], None], str]] = {
    "directory": (_directory, "is a directory"),
    "text": (_text, "is not an oomscope session file (it is not an SQLite database)"),
    "other-sqlite": (_other_sqlite, "is an SQLite database but not an oomscope session file"),
    "newer": (_newer, f"made by a newer oomscope (schema {SCHEMA_VERSION + 98}); this one reads up to "
                      f"{SCHEMA_VERSION}: upgrade oomscope"),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_file_is_refused_with_a_message_and_left_alone(kind: str, tmp_path: Path) -> None:
    make, text = BAD[kind]
    path = tmp_path / "s.db"
    make(path)
    before = digest(path) if path.is_file() else None
    with pytest.raises(BadInput, match=_re(text)):
        SessionFile.open(path)
    with pytest.raises(BadInput, match=_re(text)):
        open_recorder(path, EngineConfig(), lambda level, message: None)
    r = subprocess.run([*OOMSCOPE, "export", str(path), "--csv", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and text in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()
    w = subprocess.run([*OOMSCOPE, "watch", "--record", str(path), "--run", "echo should-not-run"],
                       capture_output=True, text=True, timeout=60)
    assert w.returncode == 2 and "Traceback" not in w.stderr, w.stderr
    assert "should-not-run" not in w.stdout + w.stderr
    if before is not None:
        assert digest(path) == before  # never modified
        assert not Path(f"{path}-wal").exists() and not Path(f"{path}-shm").exists()


def _re(text: str) -> str:
    return re.escape(text)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "gone.db"
    with pytest.raises(BadInput, match="no such file; give the path of a session file"):
        SessionFile.open(path)
    r = subprocess.run([*OOMSCOPE, "export", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "no such file" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not path.exists()


def test_missing_directory_for_recording(tmp_path: Path) -> None:
    target = tmp_path / "nope" / "s.db"
    with pytest.raises(BadInput, match="the directory .*nope does not exist"):
        open_recorder(target, EngineConfig(), lambda level, message: None)
    assert not target.parent.exists()


def test_empty_file_becomes_a_session_file_for_the_recorder_but_is_refused_by_the_reader(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()  # as mktemp leaves it
    with pytest.raises(BadInput, match="is empty"):
        SessionFile.open(path)
    record_small_session(path)
    with SessionFile.open(path) as f:
        assert len(f.sessions()) == 1


def test_damaged_file_says_so_on_reading(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    record_small_session(path, ticks=400, workers=20)
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 6 * page
    for i in range(2 * page, len(data), 7):
        data[i] = (data[i] * 31 + 17) & 0xFF  # scribble over everything after the first pages
    path.write_bytes(bytes(data))
    with pytest.raises(BadInput, match="damaged"):
        with SessionFile.open(path) as f:
            list(f.events())
    r = subprocess.run([*OOMSCOPE, "export", str(path), "--json"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "damaged" in r.stderr and "Traceback" not in r.stderr, r.stderr


# ------------------------------------------------------------------ read-only places

def test_read_only_file_system(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    record_small_session(src / "clean.db")
    record_small_session(src / "wal.db")
    db = sqlite3.connect(src / "wal.db")
    assert db.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    db.close()  # a WAL-mode file closed normally: no -wal, no -shm beside it
    assert not Path(f"{src}/wal.db-wal").exists()
    with tmpfs(tmp_path / "ro") as ro:
        for name in ("clean.db", "wal.db"):
            shutil.copy(src / name, ro / name)
        remount_read_only(ro)
        before = digest(ro / "clean.db")
        for name in ("clean.db", "wal.db"):
            with SessionFile.open(ro / name) as f:
                (info,) = f.sessions()
                assert info.ended is not None
                assert len(list(f.events())) == 3 + 20 + 3
        with pytest.raises(BadInput, match="read-only"):
            open_recorder(ro / "new.db", EngineConfig(), lambda level, message: None)
        with pytest.raises(BadInput, match="read-only"):
            open_recorder(ro / "clean.db", EngineConfig(), lambda level, message: None)
        w = subprocess.run([*OOMSCOPE, "watch", "--record", str(ro / "new.db"), "--run", "echo should-not-run"],
                           capture_output=True, text=True, timeout=60)
        assert w.returncode == 2 and "read-only" in w.stderr and "should-not-run" not in w.stdout, w.stderr
        assert digest(ro / "clean.db") == before


# ------------------------------------------------------------------ as another user

@pytest.fixture
def nobody() -> list[str]:
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run as uid 65534")
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", PY, "-m", "oomscope"]
    probe = subprocess.run([*prefix, "--help"], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip(f"this checkout's Python is not usable by uid 65534: {probe.stderr.strip()[-200:]}")
    return prefix


def test_permissions_as_another_user(nobody: list[str]) -> None:
    top = Path(tempfile.mkdtemp(prefix="oomscope-perm-"))
    try:
        top.chmod(0o755)  # nobody may look in, not write
        record_small_session(top / "private.db")
        (top / "private.db").chmod(0o600)
        r = subprocess.run([*nobody, "export", str(top / "private.db")], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, r.stderr
        assert "permission denied (owned by uid 0, mode 0600)" in r.stderr and "Traceback" not in r.stderr
        w = subprocess.run([*nobody, "watch", "--record", str(top / "mine.db"), "--run", "echo should-not-run"],
                           capture_output=True, text=True, timeout=60)
        assert w.returncode == 2 and "permission denied" in w.stderr, w.stderr
        assert "should-not-run" not in w.stdout + w.stderr and not (top / "mine.db").exists()
        (top / "private.db").chmod(0o644)  # readable, in a directory nobody cannot write
        ok = subprocess.run([*nobody, "export", str(top / "private.db")], capture_output=True, text=True, timeout=60)
        assert ok.returncode == 0 and "crashed" not in ok.stdout, ok.stderr
        assert ok.stdout.splitlines()[1].split()[0] == "1"
    finally:
        shutil.rmtree(top)
