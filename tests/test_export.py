"""``oomscope export``: CSV per table and one JSON document, from a session recorded with a
real engine; the columns the README documents are the columns written."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import PY, REPO, EventLog, Gate
from oomscope.core.engine import Engine, EngineConfig
from oomscope.core.events import KernelLineRead, Samples, Stopped, WorkerExited, WorkerRef, WorkerStarted
from oomscope.core.launch import LaunchSpec
from oomscope.core.recording import SessionFile, open_recorder
from oomscope.core.recording.export import CSV_TABLES, SAMPLE_COLUMNS, csv_header, csv_name, write_samples_csv

OOMSCOPE = [PY, "-m", "oomscope"]
README = REPO / "docs" / "recording.md"  # the export section


def export(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*OOMSCOPE, "export", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def session_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[Any]]]:
    """Two sessions: a real one (two workers, one printing, one terminated) and a short one."""
    path = tmp_path_factory.mktemp("export") / "s.db"
    events: list[Any] = []
    for run in range(2):
        eng = Engine(EngineConfig(interval_s=0.05)).start()
        rec = open_recorder(path, eng.config, lambda level, message: None, commit_interval_s=0.2)
        log = EventLog(eng)
        try:
            if run == 0:
                held = Gate(path.parent / "gate")
                hold = f"print('hello'); b = b'x' * (8 << 20); {held.wait_code}"
                a = eng.launch(LaunchSpec((PY, "-c", hold))).result(10)
                b = eng.launch(LaunchSpec((PY, "-c", "import time; time.sleep(60)"))).result(10)
                # a goes once six samples of its 8 MiB are in (with b's, the session holds more
                # than the 10 samples the export tests count on), b is terminated after that.
                log.wait_for(lambda e: sum(s.anon >= 8 << 20 for s in log.samples_of(a.id)) >= 6)
                held.open()
                log.wait_exit(a.id)
                eng.terminate(b.id)
                log.wait_exit(b.id)
            else:
                c = eng.launch(LaunchSpec((PY, "-c", "print('second')"))).result(10)
                log.wait_exit(c.id)
        finally:
            eng.stop()
        log.wait_for(lambda e: isinstance(e, Stopped))
        for ev in log.events:
            rec(ev)
        rec.close()
        assert rec.failed is None
        if run == 0:
            events = [e for e in log.events if not isinstance(e, Stopped)]
    yield path, events


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def header_of(path: Path) -> list[str]:
    with open(path, newline="") as f:
        return next(csv.reader(f))


def test_csv_has_one_file_per_table_with_its_columns(session_file, tmp_path: Path) -> None:
    path, events = session_file
    out = tmp_path / "csv" / "deep"
    r = export(str(path), "--csv", str(out), "--session", "1")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(csv_name(t) for t in CSV_TABLES)
    for table in CSV_TABLES:
        assert header_of(out / csv_name(table)) == list(csv_header(table)), table.name
    samples = read_csv(out / "samples.csv")
    expected = [(e.t, s) for e in events if isinstance(e, Samples) for s in e.samples]
    by_worker: dict[str, list[Any]] = {}
    for t, s in expected:
        by_worker.setdefault(s.worker.id, []).append((t, s))
    got = [(row["worker"], float(row["t"]), int(row["rss"]), int(row["anon"])) for row in samples]
    want = [(wid, round(t, 6), s.rss, s.anon) for wid in sorted(by_worker) for t, s in by_worker[wid]]
    assert got == want and len(got) > 10
    exits = read_csv(out / "exits.csv")
    assert [(row["worker"], row["cause"]) for row in exits] == \
        [(e.worker.id, e.cause) for e in events if isinstance(e, WorkerExited)]
    assert {row["cause"] for row in exits} == {"exit", "terminated"}
    workers = read_csv(out / "workers.csv")
    refs = [e.worker for e in events if isinstance(e, WorkerStarted)]
    assert [(w["worker"], int(w["pid"]), json.loads(w["cmd"])) for w in workers] == \
        [(r.id, r.pid, list(r.cmd)) for r in refs]
    assert len(read_csv(out / "kernel_lines.csv")) == sum(isinstance(e, KernelLineRead) for e in events)
    assert [row["line"] for row in read_csv(out / "output.csv")] == ["hello"]
    assert {row["session_id"] for row in samples + exits + workers} == {"1"}
    (session,) = read_csv(out / "sessions.csv")
    assert session["id"] == "1" and json.loads(session["settings"])["interval_s"] == 0.05


def test_the_docs_document_every_csv_column() -> None:
    text = README.read_text()
    documented = {}
    for m in re.finditer(r"^\| `(\w+\.csv)` \|[^|]*\| (.+?) \|\s*$", text, re.MULTILINE):
        documented[m.group(1)] = re.findall(r"`(\w+)`", m.group(2))
    assert documented == {csv_name(t): list(csv_header(t)) for t in CSV_TABLES}


def test_existing_files_are_kept_unless_forced(session_file, tmp_path: Path) -> None:
    path, _ = session_file
    out = tmp_path / "csv"
    assert export(str(path), "--csv", str(out)).returncode == 0
    (out / "exits.csv").write_text("mine\n")
    again = export(str(path), "--csv", str(out))
    assert again.returncode == 2 and "already holds" in again.stderr and "exits.csv" in again.stderr
    assert (out / "exits.csv").read_text() == "mine\n"
    forced = export(str(path), "--csv", str(out), "--force")
    assert forced.returncode == 0, forced.stderr
    assert header_of(out / "exits.csv") == list(csv_header(next(t for t in CSV_TABLES if t.name == "exits")))
    doc = tmp_path / "s.json"
    doc.write_text("{}")
    refused = export(str(path), "--json", str(doc))
    assert refused.returncode == 2 and "--force" in refused.stderr and doc.read_text() == "{}"


def test_json_document(session_file, tmp_path: Path) -> None:
    path, events = session_file
    target = tmp_path / "s.json"
    r = export(str(path), "--json", str(target))
    assert r.returncode == 0, r.stderr
    doc = json.loads(target.read_text())
    assert doc["format"] == "oomscope-session" and [s["id"] for s in doc["sessions"]] == [1, 2]
    first = doc["sessions"][0]
    assert first["ended"] is not None and first["settings"]["interval_s"] == 0.05
    want = json.loads(json.dumps([e.to_json() for e in events if not isinstance(e, Samples)]))
    assert first["events"] == want
    assert [w["id"] for w in first["workers"]] == ["w1", "w2"]
    assert first["workers"][0]["event"] == "worker_started"
    for wid, columns in first["samples"].items():
        mine = [(round(e.t, 6), s) for e in events if isinstance(e, Samples) for s in e.samples if s.worker.id == wid]
        assert columns["t"] == [t for t, _ in mine]
        assert columns["rss"] == [s.rss for _, s in mine]
        assert columns["cgroup_usage"] == [s.cgroup_usage for _, s in mine]
        assert set(columns) == {"t", *SAMPLE_COLUMNS[4:]}
    stdout = export(str(path), "--json", "--session", "2")
    assert stdout.returncode == 0, stdout.stderr
    (only,) = json.loads(stdout.stdout)["sessions"]
    assert only["id"] == 2 and [e["line"] for e in only["events"] if e["event"] == "output"] == ["second"]


def test_listing_and_unknown_session(session_file, tmp_path: Path) -> None:
    path, _ = session_file
    r = export(str(path))
    assert r.returncode == 0, r.stderr
    rows = r.stdout.splitlines()
    assert rows[0].split()[:3] == ["SESSION", "STARTED", "ENDED"]
    assert [row.split()[0] for row in rows[1:]] == ["1", "2"]
    assert [int(row.split()[5]) for row in rows[1:]] == [2, 1]  # workers per session
    bad = export(str(path), "--csv", str(tmp_path / "out"), "--session", "99")
    assert bad.returncode == 2 and "has no session 99; it has 1, 2" in bad.stderr
    assert not (tmp_path / "out").exists()


def test_unwritable_targets(session_file, tmp_path: Path) -> None:
    path, _ = session_file
    plain = tmp_path / "plain"
    plain.write_text("x")
    r = export(str(path), "--csv", str(plain))
    assert r.returncode == 2 and "is not a directory" in r.stderr, r.stderr
    r = export(str(path), "--csv", str(plain / "sub"))
    assert r.returncode == 2 and "cannot write" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = export(str(path), "--json", str(tmp_path / "no" / "such" / "dir.json"))
    assert r.returncode == 2 and "cannot write" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_nothing_stored_is_ever_run(tmp_path: Path) -> None:
    """Command lines in a session file are text: opening, replaying and exporting run nothing."""
    markers = [tmp_path / "worker-ran", tmp_path / "oomscope-ran"]
    path = tmp_path / "s.db"
    rec = open_recorder(path, EngineConfig(), lambda level, message: None,
                        command_line=["sh", "-c", f"touch {markers[1]}"])
    ref = WorkerRef("w1", 4242, 1.0, "sh", ("sh", "-c", f"touch {markers[0]}"), True, 1, 1)
    rec(WorkerStarted(time.time(), ref, None, None))
    rec(WorkerExited(time.time(), ref, "exit", 0, None))
    rec.close()
    with SessionFile.open(path) as f:
        back = list(f.events())
        assert back[0].worker.cmd == ref.cmd
    assert export(str(path), "--csv", str(tmp_path / "csv"), "--json", str(tmp_path / "s.json")).returncode == 0
    assert export(str(path)).returncode == 0
    assert not any(m.exists() for m in markers)


def test_write_samples_csv_from_columns_and_from_rows() -> None:
    out = io.StringIO()
    n = write_samples_csv({"worker": "w3", "pid": 77, "t": np.array([1.5, 2.25]),
                           "rss": np.array([4096.0, 8192.0]), "heap_used": np.array([np.nan, 1e6]),
                           "trend_bytes_per_s": [12.34, None]}, out)
    assert n == 2
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows[0] == list(SAMPLE_COLUMNS)
    first = dict(zip(SAMPLE_COLUMNS, rows[1]))
    assert (first["session_id"], first["worker"], first["pid"], first["t"], first["rss"]) == \
        ("", "w3", "77", "1.500000", "4096")
    assert first["heap_used"] == "" and first["trend_bytes_per_s"] == "12.3"
    assert dict(zip(SAMPLE_COLUMNS, rows[2]))["heap_used"] == "1000000"
    again = io.StringIO()
    assert write_samples_csv([{"worker": "w3", "pid": 77, "t": 1.5, "rss": 4096, "heap_used": math.nan,
                               "trend_bytes_per_s": 12.34}], again, header=False) == 1
    assert again.getvalue().splitlines()[0] == out.getvalue().splitlines()[1]
    with pytest.raises(ValueError, match="different lengths"):
        write_samples_csv({"t": [1.0, 2.0], "rss": [1]}, io.StringIO())
