"""Changes of the warning and critical levels as ``levels`` events: emitted by a real engine,
printed by ``watch``, recorded and read back, exported, and replayed in the window.

The GUI tests record from a live window on a real engine with a real worker, then scrub the
replay to either side of each change."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from conftest import PY, EventLog, sleeper_code
from gui_helpers import GUI_MARKS, HOLDER, confirmer, make_window  # noqa: F401 (fixtures)
from test_gui_record_support import close_replays  # noqa: F401 (fixture)
from test_recording import Notices, Pump, as_json
from oomscope.core.engine import Engine, EngineConfig
from oomscope.core.errors import WorkerGone
from oomscope.core.events import LevelsChanged, Samples, Stopped, WorkerRef, WorkerStarted
from oomscope.core.launch import LaunchSpec
from oomscope.core.recording import SessionFile, open_recorder
from oomscope.core.sizes import parse_level
from oomscope.core.thresholds import ThresholdConfig
from oomscope.core.watch.hook import HOOKED, EventHook
from oomscope.core.watch.printers import JsonPrinter, TextPrinter, describe, printed

OOMSCOPE = [PY, "-m", "oomscope"]
GLOBAL = ThresholdConfig(warn=parse_level("400MiB"), crit=parse_level("90%"), sustain_s=2.0, hysteresis=0.05)
RAISED = replace(GLOBAL, warn=parse_level("500MiB"))
OWN = ThresholdConfig(warn=parse_level("50MiB"), crit=parse_level("100MiB"), metric="anon", on_crit="terminate")
OWN_PERCENT = ThresholdConfig(warn=parse_level("7%"), crit=parse_level("33.3%"), hysteresis=0.1)
REF = WorkerRef("w1", 4242, 1764412921.25, "node", ("node", "worker.js"), True, 1, 1)


def gui(test: Any) -> Any:
    for mark in GUI_MARKS:
        test = mark(test)
    return test


def _levels(events: list[Any]) -> list[LevelsChanged]:
    return [e for e in events if isinstance(e, LevelsChanged)]


# ------------------------------------------------------------------ the engine


def test_the_engine_emits_each_real_change_of_levels_in_order(make_engine) -> None:
    eng, log = make_engine(thresholds=GLOBAL)
    ref = eng.launch(LaunchSpec(tuple(sleeper_code()))).result(10)
    log.wait_for(lambda e: isinstance(e, WorkerStarted))
    before = time.time()
    eng.set_thresholds(GLOBAL).result(5)  # what it has already: nothing to tell
    eng.set_thresholds(RAISED).result(5)
    eng.set_worker_thresholds(ref.id, OWN).result(5)
    eng.set_worker_thresholds(ref.id, OWN).result(5)  # the same again
    eng.set_worker_thresholds(ref.id, None).result(5)
    eng.set_worker_thresholds(ref.id, None).result(5)  # on the global ones already
    eng.set_thresholds(GLOBAL).result(5)  # the last change: every event before it is queued by now
    log.wait_for(lambda e: isinstance(e, LevelsChanged) and e.thresholds == GLOBAL)
    got = _levels(log.events)
    # A worker's own levels are compared on the global metric: the event says what is in force.
    assert [(e.worker, e.thresholds) for e in got] == [
        (None, RAISED), (ref, replace(OWN, metric="rss")), (ref, None), (None, GLOBAL)]
    assert all(before <= e.t <= time.time() for e in got)
    assert [e.t for e in got] == sorted(e.t for e in got)
    assert eng.thresholds == GLOBAL and eng.worker_thresholds(ref.id).result(5) is None

    # An exited worker's levels cannot change, and nothing is said about them.
    eng.terminate(ref.id, kill_now=True).result(5)
    log.wait_exit(ref.id)
    with pytest.raises(WorkerGone):
        eng.set_worker_thresholds(ref.id, OWN).result(5)
    eng.set_thresholds(RAISED).result(5)
    log.wait_for(lambda e: isinstance(e, LevelsChanged) and e.thresholds == RAISED and e.t > got[-1].t)
    assert [(e.worker, e.thresholds) for e in _levels(log.events)[4:]] == [(None, RAISED)]


# ------------------------------------------------------------------ JSON and watch's lines


def test_a_worker_the_settings_file_gives_own_levels_is_told_right_after_it_starts(make_engine) -> None:
    """``[workers."regex"]`` levels are applied as the worker is added: the window and a
    recording learn them from a levels event that follows the worker's start."""
    eng, log = make_engine(thresholds=GLOBAL, worker_overrides=(("special", OWN),))
    plain = eng.launch(LaunchSpec(tuple(sleeper_code()), name="plain")).result(10)
    special = eng.launch(LaunchSpec(tuple(sleeper_code()), name="special")).result(10)
    told = log.wait_for(lambda e: isinstance(e, LevelsChanged))
    assert told.worker == special and told.thresholds == replace(OWN, metric="rss")
    kinds = [(e.kind, getattr(e, "worker", None)) for e in log.events]
    assert kinds.index(("levels", special)) == kinds.index(("worker_started", special)) + 1
    eng.workers().result(5)
    assert not [e for e in _levels(log.events) if e.worker == plain]


def test_json_form_of_global_own_and_dropped_levels() -> None:
    t = 1764412925.5
    assert LevelsChanged(t, None, GLOBAL).to_json() == {
        "t": t, "event": "levels", "warn": {"bytes": 400 << 20}, "crit": {"percent": 90.0}, "metric": "rss",
        "on_warn": "none", "on_crit": "none", "sustain_s": 2.0, "hysteresis_percent": 5.0}
    own = LevelsChanged(t, REF, replace(OWN_PERCENT, warn=None)).to_json()
    assert own["worker"] == REF.to_json()
    assert (own["warn"], own["crit"], own["hysteresis_percent"]) == (None, {"percent": 33.3}, 10.0)
    assert LevelsChanged(t, REF, OWN_PERCENT).to_json()["warn"] == {"percent": 7.0}  # not 7.000000000000001
    # Back to the global levels: no level fields at all (null would mean "no level").
    assert LevelsChanged(t, REF, None).to_json() == {"t": t, "event": "levels", "worker": REF.to_json(),
                                                     "back_to_global": True}
    with pytest.raises(ValueError, match="global levels"):
        LevelsChanged(t, None, None)


def test_watch_prints_levels_and_hands_them_to_the_on_event_hook(tmp_path: Path) -> None:
    t = time.time()
    events = [LevelsChanged(t, None, GLOBAL), LevelsChanged(t, REF, OWN), LevelsChanged(t, REF, None)]
    assert all(printed(e) and isinstance(e, HOOKED) for e in events)
    text = io.StringIO()
    printer = TextPrinter(text)
    for e in events:
        printer(e)
    stamp = time.strftime("%H:%M:%S", time.localtime(t))
    assert text.getvalue().splitlines() == [
        f"{stamp} levels changed: warning 400.0 MiB, critical 90% (rss)",
        f"{stamp} w1 node[4242] own levels: warning 50.0 MiB, critical 100.0 MiB (anon); terminate at critical",
        f"{stamp} w1 node[4242] follows the global levels again",
    ]
    assert describe(LevelsChanged(t, None, ThresholdConfig(crit=parse_level("1GiB"), on_warn="terminate"))) == \
        f"{stamp} levels changed: warning off, critical 1.0 GiB (rss); terminate at warning"

    out, err = io.StringIO(), io.StringIO()
    hooked = tmp_path / "hooked.jsonl"
    hook = EventHook(f"cat >> {hooked}", err)
    both = hook.wrap(JsonPrinter(out, err))
    for e in events:
        both(e)
    hook.finish()
    wanted = [e.to_json() for e in events]
    assert [json.loads(line) for line in out.getvalue().splitlines()] == wanted
    # Each hook runs on its own, not waited for: they may finish in any order.
    assert sorted(hooked.read_text().splitlines()) == sorted(json.dumps(w, separators=(",", ":")) for w in wanted)
    assert err.getvalue() == ""


# ------------------------------------------------------------------ recording, reading, export


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Any]]:
    """A real engine session with two workers: the global levels raised, one worker given its own
    and dropped again, the other given percent levels; every event recorded."""
    path = tmp_path_factory.mktemp("levels") / "s.db"
    eng = Engine(EngineConfig(interval_s=0.05, thresholds=GLOBAL)).start()
    notices = Notices()
    rec = open_recorder(path, eng.config, notices, commit_interval_s=0.2)
    log = EventLog(eng)
    pump = Pump(log, rec)
    try:
        a = eng.launch(LaunchSpec(tuple(sleeper_code()))).result(10)
        b = eng.launch(LaunchSpec(tuple(sleeper_code()))).result(10)

        def ticks(n: int) -> None:
            seen = sum(isinstance(e, Samples) for e in log.events)
            pump.wait_for(lambda e: sum(isinstance(x, Samples) for x in log.events) >= seen + n)

        ticks(3)
        eng.set_thresholds(RAISED).result(5)
        ticks(2)
        eng.set_worker_thresholds(a.id, OWN).result(5)
        ticks(2)
        eng.set_worker_thresholds(a.id, None).result(5)
        eng.set_worker_thresholds(b.id, OWN_PERCENT).result(5)
        ticks(2)
    finally:
        eng.stop()
    pump.wait_for(lambda e: isinstance(e, Stopped))
    rec.close()
    assert rec.failed is None and not notices.seen
    return path, [e for e in log.events if not isinstance(e, Stopped)]


def test_levels_come_back_from_the_file_as_the_same_events_in_order(recorded) -> None:
    path, events = recorded
    with SessionFile.open(path) as f:
        back = list(f.events())
    assert as_json(back) == as_json(events)  # every event, the levels among them, in the engine's order
    mine = _levels(events)
    assert _levels(back) == mine  # the same objects: worker refs, levels, sizes and fractions exact
    assert [(e.worker.id if e.worker else None, e.thresholds is None) for e in mine] == \
        [(None, False), ("w1", False), ("w1", True), ("w2", False)]
    assert mine[-1].thresholds is not None and mine[-1].thresholds.warn == parse_level("7%")


def _export(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*OOMSCOPE, "export", *args], capture_output=True, text=True, timeout=120)


def test_export_csv_and_json_hold_the_levels(recorded, tmp_path: Path) -> None:
    path, events = recorded
    mine = _levels(events)
    r = _export(str(path), "--csv", str(tmp_path / "csv"))
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "csv" / "levels.csv", newline="") as f:
        rows = list(csv.DictReader(f))

    def cell(v: Any) -> str:
        return "" if v is None else str(v)

    want = []
    for e in mine:
        c = e.thresholds
        row = {"session_id": "1", "worker": e.worker.id if e.worker else "",
               "back_to_global": "1" if c is None else "0"}
        for name in ("warn", "crit"):
            level = getattr(c, name) if c else None
            row[f"{name}_bytes"] = cell(level.bytes if level else None)
            row[f"{name}_fraction"] = cell(level.fraction if level else None)
        for name in ("metric", "on_warn", "on_crit", "sustain_s", "hysteresis"):
            row[name] = cell(getattr(c, name) if c else None)
        want.append(row)
    assert [{k: v for k, v in row.items() if k not in ("seq", "t")} for row in rows] == want
    assert [float(row["t"]) for row in rows] == [e.t for e in mine]
    assert rows[0]["warn_bytes"] == str(500 << 20) and rows[0]["crit_fraction"] == "0.9"

    r = _export(str(path), "--json", str(tmp_path / "s.json"))
    assert r.returncode == 0, r.stderr
    (session,) = json.loads((tmp_path / "s.json").read_text())["sessions"]
    assert [e for e in session["events"] if e["event"] == "levels"] == as_json(mine)


def test_a_damaged_levels_row_is_a_clear_message_not_a_traceback(recorded, tmp_path: Path) -> None:
    path, _ = recorded
    copy = tmp_path / "damaged.db"
    copy.write_bytes(path.read_bytes())
    db = sqlite3.connect(copy)
    db.execute("UPDATE levels SET metric = 'bogus' WHERE worker_id IS NULL")
    db.commit()
    db.close()
    r = _export(str(copy), "--json", str(tmp_path / "out.json"))
    # The row is left out and named (exit status 1); the rest of the session is exported.
    assert r.returncode == 1
    assert "is damaged" in r.stderr and "levels at seq" in r.stderr and "bogus" in r.stderr
    assert "Traceback" not in r.stderr
    doc = json.loads((tmp_path / "out.json").read_text())
    damage, = doc["damaged"]
    assert "a row of levels is left out" in damage and "bogus" in damage
    events = doc["sessions"][0]["events"]
    assert not any(e["event"] == "levels" and e["worker"] is None for e in events)
    assert any(e["event"] == "worker_exited" for e in events)


# ------------------------------------------------------------------ the window


def _wait_samples(qtbot: Any, w: Any, n: int) -> None:
    have = len(w.series)
    qtbot.waitUntil(lambda: len(w.series) >= have + n, timeout=10_000)


def _launch(qtbot: Any, window: Any, name: str) -> Any:
    window.launch(LaunchSpec((PY, "-c", HOLDER.format(mib=8)), name=name))
    qtbot.waitUntil(lambda: any(w.ref.name == name for w in window.roster.workers), timeout=10_000)
    w = next(w for w in window.roster.workers if w.ref.name == name)
    _wait_samples(qtbot, w, 3)
    return w


def _count_calls(monkeypatch: pytest.MonkeyPatch, engine: Any, name: str) -> list[Any]:
    """The window's calls of one engine command (the real command still runs)."""
    calls: list[Any] = []
    real = getattr(engine, name)

    def counted(*args: Any) -> Any:
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(engine, name, counted)
    return calls


@gui
def test_a_replay_shows_the_levels_in_force_at_the_sliders_time(qtbot, make_window, tmp_path, close_replays,
                                                               monkeypatch) -> None:
    window = make_window(thresholds=ThresholdConfig(warn=parse_level("300MiB"), crit=parse_level("600MiB")))
    sent = _count_calls(monkeypatch, window.engine, "set_thresholds")
    path = tmp_path / "levels.db"
    assert window.start_recording(path)
    w = _launch(qtbot, window, "holder")
    seen: list[LevelsChanged] = []
    window.bridge.levels_changed.connect(seen.append)

    assert window.set_levels(parse_level("200MiB"), parse_level("400MiB"))
    qtbot.waitUntil(lambda: len(seen) == 1 and window.levels.in_flight == 0, timeout=5_000)
    _wait_samples(qtbot, w, 3)
    own = ThresholdConfig(warn=parse_level("50MiB"), crit=parse_level("100MiB"))
    window.set_worker_levels(w.id, own)
    qtbot.waitUntil(lambda: w.override == own and len(seen) == 2, timeout=5_000)
    _wait_samples(qtbot, w, 3)
    window.set_worker_levels(w.id, None)
    qtbot.waitUntil(lambda: w.override is None and len(seen) == 3, timeout=5_000)
    _wait_samples(qtbot, w, 3)
    assert window.stop_recording() == path
    # The echoes were shown, never sent back: one command for one change.
    assert len(sent) == 1 and window.thresholds.warn == parse_level("200MiB")
    t_global, t_own, t_back = (e.t for e in seen)
    assert [(e.worker, e.thresholds) for e in seen] == [
        (None, window.thresholds), (w.ref, own), (w.ref, None)]

    replay = window.open_session(path)
    assert replay is not None
    close_replays.append(replay)
    lines = replay.plot.lines

    def shown() -> tuple[float, float, str | None]:
        return lines["warning"].value(), lines["critical"].value(), replay.plot.levels_owner

    assert shown() == (200.0, 400.0, None)  # the session's end
    replay.scrub_to(t_global - 0.03)
    assert shown() == (300.0, 600.0, None)  # the levels the recording began with
    assert (replay.warn_edit.text(), replay.crit_edit.text()) == ("300MiB", "600MiB")
    replay.scrub_to(t_global + 0.03)
    assert shown() == (200.0, 400.0, None)
    assert (replay.warn_edit.text(), replay.crit_edit.text()) == ("200MiB", "400MiB")

    replay.select_worker(w.id)  # a worker's own levels show with that worker selected
    replay.scrub_to(t_own - 0.03)
    assert shown() == (200.0, 400.0, None) and replay.roster.by_id[w.id].override is None
    replay.scrub_to(t_own + 0.03)
    assert shown() == (50.0, 100.0, w.id) and replay.roster.by_id[w.id].override == own
    assert replay.warn_edit.text() == "200MiB"  # the global levels did not change with it
    replay.scrub_to(t_back + 0.03)
    assert shown() == (200.0, 400.0, None) and replay.roster.by_id[w.id].override is None
    replay.scrub_to(t_global - 0.03)  # back before everything, the worker still selected
    assert shown() == (300.0, 600.0, None)
    assert not any(line.movable for line in lines.values())


@gui
def test_the_live_window_never_fights_an_edit_and_shows_changes_made_elsewhere(qtbot, make_window,
                                                                               monkeypatch) -> None:
    window = make_window(thresholds=ThresholdConfig(warn=parse_level("300MiB"), crit=parse_level("600MiB"),
                                                    sustain_s=1.5, hysteresis=0.05))
    engine = window.engine
    real_set = engine.set_thresholds
    sent = _count_calls(monkeypatch, engine, "set_thresholds")
    seen: list[LevelsChanged] = []
    window.bridge.levels_changed.connect(seen.append)

    # Two quick changes, then the user starts typing the next critical level: the engine's echo
    # of the first change arrives after the second was made, and must not undo either.
    assert window.set_levels(parse_level("200MiB"), parse_level("600MiB"))
    assert window.set_levels(parse_level("250MiB"), parse_level("600MiB"))
    window.crit_edit.setText("7")
    qtbot.waitUntil(lambda: len(seen) == 2 and window.levels.in_flight == 0, timeout=5_000)
    assert window.crit_edit.text() == "7" and window.warn_edit.text() == "250MiB"
    assert window.plot.lines["warning"].value() == 250.0
    assert len(sent) == 2
    # Only the levels changed: sustain and hysteresis are still the ones the session began with.
    assert engine.thresholds == window.thresholds
    assert (engine.thresholds.sustain_s, engine.thresholds.hysteresis) == (1.5, 0.05)

    # Someone else changes the engine's levels: the window shows them and sends nothing back.
    elsewhere = replace(window.thresholds, warn=parse_level("150MiB"), crit=parse_level("500MiB"))
    real_set(elsewhere).result(5)
    qtbot.waitUntil(lambda: window.thresholds == elsewhere, timeout=5_000)
    assert (window.warn_edit.text(), window.crit_edit.text()) == ("150MiB", "500MiB")
    assert (window.plot.lines["warning"].value(), window.plot.lines["critical"].value()) == (150.0, 500.0)
    assert len(sent) == 2 and len(seen) == 3


@gui
def test_a_recording_begun_mid_session_starts_with_the_workers_own_levels(qtbot, make_window, tmp_path) -> None:
    window = make_window(thresholds=ThresholdConfig(crit=parse_level("600MiB")))
    w = _launch(qtbot, window, "holder")
    own = ThresholdConfig(warn=parse_level("40MiB"), crit=parse_level("80MiB"))
    window.set_worker_levels(w.id, own)
    qtbot.waitUntil(lambda: w.override == own, timeout=5_000)
    path = tmp_path / "mid.db"
    assert window.start_recording(path)
    _wait_samples(qtbot, w, 3)
    assert window.stop_recording() == path
    with SessionFile.open(path) as f:
        back = list(f.events(samples=False))
    first = [e for e in back if e.kind in ("worker_started", "levels")][:2]
    assert [(e.kind, e.worker) for e in first] == [("worker_started", w.ref), ("levels", w.ref)]
    assert first[1].thresholds == own and first[1].t == first[0].t  # both from the recording's start
