"""The recorder with a real engine and real workers, read back with SessionFile.

The strongest check is the round trip: every event the engine emitted, rebuilt from the file,
gives the same ``watch --json`` objects in the same order.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import PY, EventLog
from oomscope.core.engine import EngineConfig
from oomscope.core.errors import BadInput
from oomscope.core.events import Event, Output, Sample, Samples, Stopped, WorkerRef, WorkerStarted
from oomscope.core.launch import LaunchSpec
from oomscope.core.recording import Recorder, SessionFile, open_recorder
from oomscope.core.recording.rows import OUTPUT_LINES_PER_WORKER
from oomscope.core.recording.samplecodec import FIELDS
from oomscope.core.sizes import Level
from oomscope.core.thresholds import ThresholdConfig, thresholds_from_json

MiB = 1 << 20


class Notices:
    """What the recorder told the user, and a way to wait for a message (from its thread)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self._changed = threading.Condition()

    def __call__(self, level: str, message: str) -> None:
        with self._changed:
            self.seen.append((level, message))
            self._changed.notify_all()

    def wait_for(self, text: str, timeout: float = 15.0) -> str:
        with self._changed:
            ok = self._changed.wait_for(lambda: any(text in m for _, m in self.seen), timeout)
        assert ok, f"no notice with {text!r} within {timeout} s; got {self.seen}"
        return next(m for _, m in self.seen if text in m)


def as_json(events: list[Event]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for ev in events:
        if isinstance(ev, Stopped):
            continue
        out.extend(ev.to_json_lines() if isinstance(ev, Samples) else [ev.to_json()])
    # JSON text, as a user compares files: tuples and lists are the same there.
    return json.loads(json.dumps(out))


class Pump:
    """Waits for events as EventLog does, handing every event to the recorder on the way."""

    def __init__(self, log: EventLog, rec: Recorder) -> None:
        self.log, self.rec, self.handed = log, rec, 0

    def wait_for(self, pred: Callable[[Event], bool], timeout: float = 20.0) -> Event:
        def check(ev: Event) -> bool:
            self._hand_over()
            return pred(ev)

        ev = self.log.wait_for(check, timeout)
        self._hand_over()
        return ev

    def _hand_over(self) -> None:
        for e in self.log.events[self.handed:]:
            self.rec(e)
        self.handed = len(self.log.events)


def test_round_trip_of_a_real_session(make_engine, tmp_path: Path, gate) -> None:
    notices = Notices()
    thresholds = ThresholdConfig(warn=Level(bytes=20 * MiB), crit=Level(bytes=30 * MiB), metric="anon")
    eng, log = make_engine(thresholds=thresholds)
    rec = open_recorder(tmp_path / "s.db", eng.config, notices, command_line=["oomscope", "test"],
                        commit_interval_s=0.2)
    # Grows past both levels, then frees it all: up, and back to normal.
    # Each step waits at a gate until the test has seen the level it leads to.
    grown, freed = gate(), gate()
    grow = ("import time\nc = []\nfor _ in range(40):\n    c.append(b'x' * (1 << 20)); time.sleep(0.01)\n"
            f"print('grown', flush=True)\n{grown.wait_code}\nc.clear()\n{freed.wait_code}\n")
    w1 = eng.launch(LaunchSpec((PY, "-c", grow))).result(10)
    w2 = eng.launch(LaunchSpec((PY, "-c", "import time; time.sleep(60)"))).result(10)
    pump = Pump(log, rec)
    pump.wait_for(lambda e: e.kind == "threshold" and e.worker.id == w1.id and e.level == "critical")
    grown.open()
    pump.wait_for(lambda e: e.kind == "threshold" and e.worker.id == w1.id and e.level == "normal")
    freed.open()
    pump.wait_for(lambda e: e.kind == "worker_exited" and e.worker.id == w1.id)
    eng.terminate(w2.id)
    pump.wait_for(lambda e: e.kind == "worker_exited" and e.worker.id == w2.id)
    eng.stop()
    pump.wait_for(lambda e: isinstance(e, Stopped))
    rec.close()
    assert rec.failed is None and not notices.seen
    assert rec.batches >= 2  # committed along the way, not only at close

    with SessionFile.open(tmp_path / "s.db") as f:
        (info,) = f.sessions()
        assert info.id == rec.session_id
        assert info.ended is not None and info.ended >= info.last_t >= info.started
        assert info.command_line == ["oomscope", "test"]
        # The thresholds codec's form (the levels event's fields and grace_s), read back whole.
        assert info.settings["thresholds"]["warn"] == {"bytes": 20 * MiB}
        assert thresholds_from_json(info.settings["thresholds"]) == thresholds
        assert info.settings["interval_s"] == eng.config.interval_s
        back = list(f.events())
        assert as_json(back) == as_json(log.events)
        kinds = {e.kind for e in back}
        assert {"worker_started", "samples", "threshold", "output", "terminate", "worker_exited",
                "source"} <= kinds
        levels = [(e.previous, e.level) for e in back if e.kind == "threshold"]
        assert levels[0][0] == "normal" and levels[-1][1] == "normal" and levels[-1][0] != "normal", levels
        exits = {e.worker.id: e for e in back if e.kind == "worker_exited"}
        assert (exits[w1.id].cause, exits[w1.id].exit_code) == ("exit", 0)
        assert (exits[w2.id].cause, exits[w2.id].by) == ("terminated", "user")
        # The same worker objects the engine used, slot and life included.
        started = [e.worker for e in back if isinstance(e, WorkerStarted)]
        assert started == [w1, w2]

        arrays = f.worker_samples(None, w1.id)
        mine = log.samples_of(w1.id)
        times = [e.t for e in log.events if isinstance(e, Samples) for s in e.samples if s.worker.id == w1.id]
        np.testing.assert_array_equal(arrays["t"], np.array(times))
        np.testing.assert_array_equal(arrays["rss"], np.array([s.rss for s in mine], dtype=float))
        np.testing.assert_array_equal(arrays["anon"], np.array([s.anon for s in mine], dtype=float))
        assert arrays["anon"].max() > 40 * MiB
        first, last = f.time_range()
        assert first == info.started and last == info.ended
        assert set(arrays) >= {"t", *FIELDS}


def test_a_second_recording_adds_a_session(make_engine, tmp_path: Path) -> None:
    path = tmp_path / "two.db"
    outputs = []
    for word in ("first", "second"):
        eng, log = make_engine()
        rec = open_recorder(path, eng.config, Notices())
        ref = eng.launch(LaunchSpec((PY, "-c", f"print({word!r})"))).result(10)
        pump = Pump(log, rec)
        pump.wait_for(lambda e: e.kind == "worker_exited" and e.worker.id == ref.id)
        eng.stop()
        pump.wait_for(lambda e: isinstance(e, Stopped))
        rec.close()
        outputs.append(rec.session_id)
    with SessionFile.open(path) as f:
        assert [s.id for s in f.sessions()] == outputs and outputs[0] != outputs[1]
        lines = {sid: [e.line for e in f.events(sid) if isinstance(e, Output)] for sid in outputs}
        assert lines == {outputs[0]: ["first"], outputs[1]: ["second"]}
        assert [e.line for e in f.events() if isinstance(e, Output)] == ["second"]  # default: the last
        with pytest.raises(BadInput, match="has no session 99"):
            f.session(99)


def _ref(n: int) -> WorkerRef:
    return WorkerRef(f"w{n}", 40_000 + n, 1.0, "python3", ("python3", "job.py"), True, n, 1)


def _tick(t: float, refs: list[WorkerRef]) -> Samples:
    return Samples(t, tuple(Sample(r, 100 * MiB, 90 * MiB, 0) for r in refs))


def test_the_caller_never_waits_for_a_slow_disk_and_overflow_is_counted(tmp_path: Path) -> None:
    """Another process holds the file's write lock: the writer waits, the caller does not;
    past the backlog bound events are dropped, counted, said, and written into the session row."""
    path = tmp_path / "slow.db"
    notices = Notices()
    rec = open_recorder(path, EngineConfig(), notices, commit_interval_s=0.05, max_backlog=500)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the disk is "slow": the writer's commit must wait
    refs = [_ref(i) for i in range(1, 11)]
    calls, spent, t = 0, 0.0, time.time()
    deadline = time.monotonic() + 10
    while rec.events_dropped < 20 and time.monotonic() < deadline:
        t += 0.1
        ev = _tick(t, refs)
        t0 = time.perf_counter()
        rec(ev)
        spent += time.perf_counter() - t0
        calls += 1
    assert rec.events_dropped >= 20, "the backlog bound never dropped anything"
    assert spent / calls < 200e-6, f"{spent / calls * 1e6:.0f} µs per call while the writer is stuck"
    dropped = rec.events_dropped
    assert rec.batches == 0  # nothing could be committed while the lock was held
    blocker.execute("ROLLBACK")
    blocker.close()
    notices.wait_for("falls behind")
    rec.close()
    assert rec.failed is None
    with SessionFile.open(path) as f:
        (info,) = f.sessions()
        assert info.events_lost == dropped
        kept = [e for e in f.events() if isinstance(e, Samples)]
        assert len(kept) == calls - dropped
        assert [e.t for e in kept] == sorted(e.t for e in kept)


def test_a_file_locked_too_long_stops_the_recording_not_the_caller(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    notices = Notices()
    rec = open_recorder(path, EngineConfig(), notices, commit_interval_s=0.02, busy_timeout_s=0.02)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        refs = [_ref(1)]
        rec(_tick(time.time(), refs))
        message = notices.wait_for("recording stopped")
        assert "another program holds the file locked" in message and str(path) in message
        assert rec.failed is not None
        rec(_tick(time.time(), refs))  # after the failure: taken and counted, no error
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    rec.close()
    assert "events not recorded" in notices.seen[-1][1]


def test_worker_output_is_bounded_per_worker(make_engine, tmp_path: Path) -> None:
    extra = 37
    eng, log = make_engine()
    rec = open_recorder(tmp_path / "chatty.db", eng.config, Notices(), commit_interval_s=0.2)
    code = f"for i in range({OUTPUT_LINES_PER_WORKER + extra}): print('line', i)"
    ref = eng.launch(LaunchSpec((PY, "-u", "-c", code))).result(10)
    pump = Pump(log, rec)
    pump.wait_for(lambda e: e.kind == "worker_exited" and e.worker.id == ref.id)
    eng.stop()
    pump.wait_for(lambda e: isinstance(e, Stopped))
    rec.close()
    printed = [e for e in log.events if isinstance(e, Output)]
    assert len(printed) == OUTPUT_LINES_PER_WORKER + extra
    with SessionFile.open(tmp_path / "chatty.db") as f:
        kept = [e.line for e in f.events() if isinstance(e, Output)]
        (w,) = f.workers()
    assert kept == [e.line for e in printed[:OUTPUT_LINES_PER_WORKER]]
    assert w.output_dropped == extra


def test_recording_started_mid_session_replays_workers_fed_first(tmp_path: Path) -> None:
    """The GUI may start recording with workers already running: feeding their original start
    events first gives the replay its start events; a worker first seen in a sample has none."""
    path = tmp_path / "mid.db"
    rec = open_recorder(path, EngineConfig(), Notices())
    known, unknown = _ref(1), _ref(2)
    rec(WorkerStarted(50.0, known, "/oomscope/w1", 64 * MiB))
    rec(_tick(100.0, [known, unknown]))
    rec.close()
    with SessionFile.open(path) as f:
        back = list(f.events())
        workers = {w.ref.id: w for w in f.workers()}
    assert [e.kind for e in back] == ["worker_started", "samples"]
    assert back[0] == WorkerStarted(50.0, known, "/oomscope/w1", 64 * MiB)
    assert [s.worker for s in back[1].samples] == [known, unknown]
    assert (workers["w1"].event, workers["w2"].event) == ("worker_started", None)
