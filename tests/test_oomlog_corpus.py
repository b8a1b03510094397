"""Every file of the OOM corpus, parsed and compared field by field with its expectation.

The corpus is the project's own copy under ``tests/data/oom-corpus`` (its README says where each
log comes from; tests/data/oom-corpus/FORMATS.md there describes the formats). A missing corpus is an error, not a
skip: these are the parser's main tests.

How a corpus expectation maps onto a ``KillRecord`` (see corpus README, "Expected JSON"):

* contract fields (pid, comm, uid, sizes, constraint, memcgs, killer): equal; a field the
  expectation leaves out must be None ("only fields the file really contains are filled");
* time: ``kernel_time_s`` -> ``kernel_time_s``; ``wall_time`` (the stamp *as printed*) ->
  ``wall_time_text``; ``wall_time_usec`` -> ``wall_time_usec``; ``monotonic_time_s`` ->
  ``monotonic_time_s``; each absent one must be None too;
* ``extra``: every expected key must be present and equal; the record may hold more.
  One corpus file names the oomd unit count ``processes_killed_in_unit`` where the others say
  ``processes_killed``; the parser uses the latter everywhere (``_EXTRA_ALIASES``).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from oomscope.core.oomlog import CONTRACT_FIELDS, KillRecord, LogReader, parse_file
from oomscope.core.oomlog.reader import iter_text_lines
from oomscope.core.oomlog.records import DETAIL_FIELDS, latest_revisions

CORPUS = Path(__file__).resolve().parent / "data" / "oom-corpus"

_RECORD_FIELDS = (
    "pid", "comm", "uid", "anon_rss_kb", "file_rss_kb", "shmem_rss_kb", "total_vm_kb",
    "constraint", "task_memcg", "oom_memcg", "killer",
)  # fmt: skip
_TIME_FIELDS = {
    "kernel_time_s": "kernel_time_s",
    "wall_time": "wall_time_text",
    "wall_time_usec": "wall_time_usec",
    "monotonic_time_s": "monotonic_time_s",
}
_EXTRA_ALIASES = {"processes_killed_in_unit": "processes_killed"}


def _corpus_logs() -> list[Path]:
    if not CORPUS.is_dir():
        raise RuntimeError(
            f"OOM corpus not found at {CORPUS}: it is part of the repository (tests/data/oom-corpus)"
        )
    logs = sorted(
        p for p in CORPUS.iterdir()
        if p.is_file() and not p.name.endswith(".expected.json") and p.suffix != ".md"
    )
    if not logs:
        raise RuntimeError(f"OOM corpus at {CORPUS} holds no log files")
    return logs


LOGS = _corpus_logs()


def _expected(path: Path) -> list[dict[str, Any]]:
    exp_path = path.with_name(path.name + ".expected.json")
    assert exp_path.is_file(), f"{path.name} has no {exp_path.name}"
    kills = json.loads(exp_path.read_text())["kills"]
    assert isinstance(kills, list)
    return kills


def test_corpus_is_complete() -> None:
    """Every log has an expectation and every expectation a log (a renamed file is noticed)."""
    expectations = {p.name[: -len(".expected.json")] for p in CORPUS.glob("*.expected.json")}
    assert expectations == {p.name for p in LOGS}
    assert len(LOGS) >= 30


@pytest.mark.parametrize("path", LOGS, ids=[p.name for p in LOGS])
def test_corpus_file(path: Path) -> None:
    expected = _expected(path)
    records = parse_file(path)
    assert len(records) == len(expected), [r.to_json() for r in records]
    for i, (rec, exp) in enumerate(zip(records, expected, strict=True)):
        where = f"{path.name} kill #{i}"
        for name in _RECORD_FIELDS:
            assert getattr(rec, name) == exp.get(name), f"{where}: {name}"
        for exp_name, attr in _TIME_FIELDS.items():
            assert getattr(rec, attr) == exp.get(exp_name), f"{where}: {exp_name}"
        for key, value in exp.get("extra", {}).items():
            got = rec.extra.get(_EXTRA_ALIASES.get(key, key))
            assert got == value, f"{where}: extra[{key!r}] = {got!r}, expected {value!r}"
        _check_record_shape(rec, where)
    # parse_file keeps the last revision of each decision: one record per id, ids in order.
    ids = [r.record_id for r in records]
    assert all(i > 0 for i in ids) and ids == sorted(set(ids)), ids


def _check_record_shape(rec: KillRecord, where: str) -> None:
    d = rec.to_json()
    assert tuple(d) == CONTRACT_FIELDS, where
    json.dumps(d)  # serialisable as is
    # What a session file keeps beyond the contract is JSON too (the recorder's ``extra``).
    json.dumps({f: dict(rec.extra) if f == "extra" else getattr(rec, f) for f in DETAIL_FIELDS})
    assert rec.lines, f"{where}: no raw lines"
    assert all(isinstance(x, str) and "\n" not in x for x in rec.lines), where
    if rec.pid is not None:
        assert any(str(rec.pid) in x for x in rec.lines), f"{where}: kill line missing from lines"
    for row in rec.task_rows:
        assert row in rec.lines, f"{where}: task row not among the report lines"
        assert f"{rec.pid}]" in row, where
    if rec.wall_time is not None:
        datetime.fromisoformat(rec.wall_time)


def test_task_rows_are_kept_for_the_victim() -> None:
    rec, = parse_file(CORPUS / "local-6.18-memcg-v1-node.dmesg.log")
    assert rec.task_rows == (
        "[  663.895546] [   6356]     0  6356   246244    24591    16192     8399         0   593920"
        "        0             0 node",
    )
    # The GUI shows the oom-kill: and Killed lines and the row: all are in `lines`, in order,
    # after the cgroup's usage lines (which say that its limit was hit).
    kinds = [ln.split("] ", 1)[1][:12] for ln in rec.lines]
    assert kinds == ["node invoked", "memory: usag", "memory+swap:", "kmem: usage ", "[  pid  ]   ",
                     "[   6356]   ", "oom-kill:con", "Memory cgrou"]


def test_journal_json_wall_time_is_the_event_time() -> None:
    rec, = parse_file(CORPUS / "local-6.18-memcg-v1-node.journal.json")
    # __REALTIME_TIMESTAMP - (__MONOTONIC_TIMESTAMP - _SOURCE_MONOTONIC_TIMESTAMP), tests/data/oom-corpus/FORMATS.md section 5
    assert rec.wall_time == "2026-11-29T06:20:23.486274+00:00"
    assert rec.wall_time_unix == pytest.approx(1795933223.486274, abs=1e-6)
    assert rec.wall_time_usec == 1795933223509707  # what journald stamped (receive time)


def test_revisions_reach_parse_results_and_streams_see_the_kill_first() -> None:
    """Streaming: the kill comes at its Killed line, the reaper line only revises it."""
    path = CORPUS / "local-6.18-memcg-v1-oom-reaper.kmsg"
    reader = LogReader(path.name)
    emitted: list[tuple[int, KillRecord]] = []
    with path.open("rb") as f:
        for n, raw in enumerate(iter_text_lines(f)):
            emitted += [(n, r) for r in reader.push(raw)]
    emitted += [(-1, r) for r in reader.flush()]
    (n0, first), (n1, second) = emitted
    assert "Killed process 7980" in first.lines[-1]
    assert first.revision == 0 and "oom_reaper" not in first.extra
    assert n1 == n0 + 1 and second.revision == 1 and second.record_id == first.record_id
    assert second.extra["oom_reaper"]["file_rss_kb"] == 12
    assert latest_revisions([first, second]) == [second]


def test_prefilter_changes_nothing() -> None:
    """The fast path (skip lines without OOM wording while idle) gives the same records."""
    for path in LOGS:
        with path.open("rb") as f:
            text = list(iter_text_lines(f))
        fast, slow = LogReader(prefilter=True), LogReader(prefilter=False)
        a = latest_revisions(fast.push_many(text) + fast.flush())
        b = latest_revisions(slow.push_many(text) + slow.flush())
        assert a == b, path.name
