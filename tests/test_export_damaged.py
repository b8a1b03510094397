"""Damaged and hostile session files: a file recorded by a real ``oomscope watch --record``,
then altered with sqlite3 the way a user, a bad copy or an attacker could. The damaged part is
named and left out; the rest is exported; nothing stored acts on the terminal."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import PY
from oomscope.core.printable import printable
from oomscope.core.recording import SessionFile
from oomscope.core.recording.samplecodec import unpack

OOMSCOPE = [PY, "-m", "oomscope"]
EVIL = "\x1b[2J\x1b[31mEVIL"


def oomscope(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*OOMSCOPE, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session of one worker holding 8 MiB for about 2.5 s, sampled every 50 ms: several
    batches of samples."""
    path = tmp_path_factory.mktemp("damaged") / "s.db"
    done = oomscope("watch", "--record", str(path), "--interval", "0.05", "--",
                    PY, "-c", "import time; b = b'x' * (8 << 20); time.sleep(2.5)")
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(DISTINCT batch) FROM samples").fetchone()[0] >= 2
    return path


@pytest.fixture
def copy(recorded: Path, tmp_path: Path) -> Iterator[Path]:
    target = tmp_path / "copy.db"
    shutil.copyfile(recorded, target)
    yield target


def alter(path: Path, sql: str, *params: object) -> None:
    db = sqlite3.connect(path)
    try:
        with db:
            db.execute(sql, params)
    finally:
        db.close()


def samples_in(document: dict[str, object]) -> int:
    sessions = document["sessions"]
    assert isinstance(sessions, list)
    return sum(len(columns["t"]) for s in sessions for columns in s["samples"].values())


def test_a_sound_file_exports_with_status_0_and_no_damage(recorded: Path) -> None:
    done = oomscope("export", str(recorded), "--json")
    assert done.returncode == 0 and done.stderr == ""
    doc = json.loads(done.stdout)
    assert doc["damaged"] == [] and samples_in(doc) > 20


def test_an_altered_start_time_is_named_and_the_rest_read(copy: Path, recorded: Path) -> None:
    alter(copy, "UPDATE sessions SET started = 'yesterday'")
    with SessionFile.open(copy) as f:
        s, = f.sessions()
        first_tick = f._db.execute("SELECT min(t) FROM ticks").fetchone()[0]
        assert isinstance(s.started, float) and s.started == first_tick
        assert f.time_range()[0] == first_tick
        assert len(list(f.events())) > 20
        assert f.damage == ["session 1: started is 'yesterday', not a time; the time of its first sample "
                            "stands in"]
    listing = oomscope("export", str(copy))
    assert listing.returncode == 1 and "Traceback" not in listing.stderr, listing.stderr
    assert listing.stdout.splitlines()[1].startswith("1 ")
    assert f"{copy} is damaged: session 1: started is 'yesterday'" in listing.stderr
    exported = oomscope("export", str(copy), "--json")
    assert exported.returncode == 1, exported.stderr
    doc = json.loads(exported.stdout)
    assert doc["sessions"][0]["started"] == first_tick and len(doc["damaged"]) == 1
    assert samples_in(doc) == samples_in(json.loads(oomscope("export", str(recorded), "--json").stdout))


def test_a_corrupt_sample_blob_loses_its_second_only(copy: Path, recorded: Path, tmp_path: Path) -> None:
    with sqlite3.connect(copy) as db:
        batch, first, blob = db.execute("SELECT batch, first_seq, data FROM samples ORDER BY batch DESC LIMIT 1").fetchone()
    lost = len(unpack(blob).seqs)
    alter(copy, "UPDATE samples SET data = ? WHERE batch = ? AND first_seq = ?", b"\x01\x00garbage", batch, first)
    whole = samples_in(json.loads(oomscope("export", str(recorded), "--json").stdout))

    with SessionFile.open(copy) as f:
        w, = f.workers()
        assert len(f.worker_samples(None, w.worker_id)["t"]) == whole - lost
        assert len(f.damage) == 1 and f"worker w1 in batch {batch}" in f.damage[0]

    exported = oomscope("export", str(copy), "--json")
    assert exported.returncode == 1 and "Traceback" not in exported.stderr
    doc = json.loads(exported.stdout)
    assert samples_in(doc) == whole - lost
    assert any(e["event"] == "worker_exited" for e in doc["sessions"][0]["events"])
    damaged, = doc["damaged"]
    assert damaged.startswith(f"session 1: the samples of worker w1 in batch {batch} (about a second) are left "
                              "out: sample blob")
    assert f"{copy} is damaged: session 1: the samples of worker w1 in batch {batch}" in exported.stderr

    out = tmp_path / "csv"
    csv_run = oomscope("export", str(copy), "--csv", str(out))
    assert csv_run.returncode == 1 and "is damaged" in csv_run.stderr
    rows = (out / "samples.csv").read_text().splitlines()
    assert len(rows) - 1 == whole - lost


def test_an_altered_event_row_is_left_out_not_fatal(copy: Path) -> None:
    alter(copy, "UPDATE exits SET t = 'soon'")
    done = oomscope("export", str(copy), "--json")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    doc = json.loads(done.stdout)
    assert not any(e["event"] == "worker_exited" for e in doc["sessions"][0]["events"])
    damaged, = doc["damaged"]
    assert damaged.startswith("session 1: a row of exits is left out (DamagedRow: seq ") and "t 'soon'" in damaged


def test_terminal_escapes_in_the_host_are_shown_not_obeyed(copy: Path) -> None:
    alter(copy, "UPDATE sessions SET host = ?", EVIL)
    done = oomscope("export", str(copy))
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout
    assert done.stdout.splitlines()[1].endswith("  \\x1b[2J\\x1b[31mEVIL")
    exported = oomscope("export", str(copy), "--json")
    assert json.loads(exported.stdout)["sessions"][0]["host"] == EVIL and "\x1b" not in exported.stdout


def test_printable() -> None:
    assert printable("plain text, tab\tand ünïcode") == "plain text, tab\tand ünïcode"
    assert printable(EVIL) == "\\x1b[2J\\x1b[31mEVIL"
    assert printable("a\nb\rc\x7f\x9b[1m") == "a\\x0ab\\x0dc\\x7f\\x9b[1m"
    assert printable("\u202eevil\u2028") == "\\u202eevil\\u2028"
