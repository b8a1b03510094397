"""File → Record to… in the live window, and the recording replayed: real workers, one of them
OOM-killed by the kernel inside a small cgroup v1 of its own, and a real full disk (tmpfs)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import pytest

from conftest import PY, is_root, v1_memory_writable
from gui_helpers import GUI_MARKS, HOLDER, confirmer, make_window  # noqa: F401 (fixtures)
from oomscope.core.launch import LaunchSpec
from oomscope.core.sizes import parse_level
from oomscope.core.thresholds import ThresholdConfig
from test_gui_record_support import assert_plausible_png, close_replays  # noqa: F401 (fixture)
from test_recording_files import tmpfs

pytestmark = GUI_MARKS

# The demo's fast leaker without its idle start: 2 MiB every 20 ms.
LEAKER = "import time\nkept = []\nwhile True:\n    kept.append(b'\\x01' * (2 << 20)); time.sleep(0.02)\n"
EXIT_3 = "import sys, time\nheld = bytearray(12 << 20)\nheld[::4096] = b'x' * len(held[::4096])\ntime.sleep(1)\nsys.exit(3)\n"
LEVELS = ThresholdConfig(warn=parse_level("30MiB"), crit=parse_level("45MiB"))


LIVE_ACTIONS = {"launch", "attach", "terminate", "kill", "terminate-critical", "worker-thresholds", "record",
                "stop-recording"}


def _rows(window: Any) -> dict[str, tuple[int, str, str]]:
    return {w.id: (w.ref.pid, w.ref.name, w.state_text()) for w in window.roster.workers}


def _deaths(window: Any) -> list[tuple[str, str, float]]:
    return [(d.worker_id, d.cause, round(d.t, 6)) for d in window.roster.deaths if d.worker_id is not None]


@pytest.mark.cgroup
@pytest.mark.skipif(not v1_memory_writable(), reason="needs root and a writable cgroup v1 memory controller")
def test_recorded_oom_kill_replays_as_the_live_window_showed_it(qtbot, make_window, tmp_path, close_replays) -> None:
    from oomscope.core.causes import OOM_KILL

    window = make_window(thresholds=LEVELS)
    path = tmp_path / "session.db"
    assert window.start_recording(path)
    assert window.recording_status.text() == "● recording to session.db"
    assert window.stop_recording_action.isEnabled() and window.record_action.isEnabled()

    window.launch(LaunchSpec((PY, "-c", HOLDER.format(mib=20)), name="steady"))
    window.launch(LaunchSpec((PY, "-c", EXIT_3), name="exit-3"))
    window.launch(LaunchSpec((PY, "-c", LEAKER), mem_limit_bytes=64 << 20, name="leaker"))
    qtbot.waitUntil(lambda: len(window.roster.workers) == 3, timeout=10_000)
    by_name = {w.ref.name: w for w in window.roster.workers}
    leaker, exit3, steady = by_name["leaker"], by_name["exit-3"], by_name["steady"]
    kmsg = os.access("/dev/kmsg", os.R_OK)
    qtbot.waitUntil(lambda: leaker.cause == OOM_KILL and (leaker.oom is not None or not kmsg)
                    and exit3.cause == "exit" and len(steady.series) > 5, timeout=30_000)
    saved = window.stop_recording()
    assert saved == path and window.recorder is None
    assert window.recording_status.text() == "recording: off"
    live_rows, live_deaths = _rows(window), _deaths(window)
    live_series = {w.id: (w.series.times().copy(), w.series.values("rss").copy()) for w in window.roster.workers}

    replay = window.open_session(path)
    assert replay is not None
    close_replays.append(replay)
    # Nothing that reaches a process is part of a replay: no engine, no live controls, no recording.
    assert not hasattr(replay, "engine") and not hasattr(replay, "controls") and not hasattr(replay, "recording")
    assert not {a.objectName() for a in replay.actions()} & LIVE_ACTIONS
    assert replay.findChild(type(replay.end_label), "recording-status").text() == "replay (read-only)"
    assert replay.windowTitle().startswith("oomscope replay — session.db (session 1, ")
    assert "ended by a crash" not in replay.end_label.text()

    # The table, the timeline and the curves are what the live window showed when recording stopped.
    assert _rows(replay) == live_rows
    assert _deaths(replay) == live_deaths
    markers = replay.timeline.markers()
    for _wid, cause, t in live_deaths:
        assert any(c == cause and abs(x - t) < 1e-3 for x, c in markers), (cause, t, markers)
    for w in replay.roster.workers:
        t, rss = live_series[w.id]
        n = len(w.series)
        assert n > 3
        if w.alive:  # the steady worker went on sampling after the recording stopped
            assert n <= len(t)
        else:
            assert n == len(t)
        assert (w.series.times() == t[:n]).all() and (w.series.values("rss") == rss[:n]).all()
    assert set(replay.plot.drawn_curves) == set(live_rows)
    # The levels it was recorded with, not movable; nothing can be launched, signalled or re-recorded.
    assert replay.warn_edit.text() == window.warn_edit.text() == "30MiB" and not replay.warn_edit.isEnabled()
    assert not any(line.movable for line in replay.plot.lines.values())
    r_leaker = replay.roster.by_id[leaker.id]
    assert r_leaker.cause == OOM_KILL and r_leaker.exit is not None and r_leaker.exit.signal == "SIGKILL"
    if kmsg:
        replay.select_worker(leaker.id)
        assert f"Killed process {leaker.ref.pid}" in replay.detail.kernel_text()
        assert any(f"Killed process {leaker.ref.pid}" in line for line, wid in replay.kernel_pane.tied_rows()
                   if wid == leaker.id)

    # The slider, before the kill: the leaker is alive, its marker not yet there, the plot ends there.
    died = r_leaker.exit.t
    replay.scrub_to(died - 0.25)
    assert replay.shown_at == pytest.approx(died - 0.25, abs=0.06)
    before = replay.roster.by_id[leaker.id]
    assert before.alive and before.state_text() in ("running", "warning", "critical")
    assert float(before.series.times()[-1]) < died
    assert all(d.worker_id != leaker.id for d in replay.roster.deaths)
    # The plot ends at the slider's time (plus a margin of 5 % of the span shown, a second at least),
    # not at the session's end.
    margin = 0.05 * max(replay.shown_at - replay.data.t_start, 1.0)
    assert replay.shown_at < replay.plot.view_box.viewRange()[0][1] <= replay.shown_at + margin + 1e-3
    replay.select_worker(leaker.id)
    # No action that would reach a process exists, whatever is selected (checked at the start too).
    assert not {a.objectName() for a in replay.actions()} & LIVE_ACTIONS
    assert [a.text() for a in replay.table_menu().actions() if not a.isSeparator()] == [
        "Export incident…", "Copy command line"]
    assert not replay.export_incident_action.isEnabled()  # alive at this time: no incident yet
    replay.scrub_to(replay.data.t_end)
    assert not replay.roster.by_id[leaker.id].alive
    assert [x.id for x in replay.selected_workers()] == [leaker.id]  # the selection survives a scrub
    assert replay.export_incident_action.isEnabled()

    # Incidents, from the replay (every column, from the file) and from the live window (its history).
    from oomscope.core.recording.export import SAMPLE_COLUMNS

    for source, out in ((replay, tmp_path / "from-replay"), (window, tmp_path / "from-live")):
        out.mkdir()
        folder = source.export_incident(leaker.id, out)
        assert folder is not None and folder.parent == out
        assert folder.name.startswith(f"incident-leaker-{leaker.ref.pid}-")
        assert sorted(p.name for p in folder.iterdir()) == ["README.txt", "cause.json", "kernel.log", "plot.png",
                                                            "samples.csv", "timeline.png"]
        cause = json.loads((folder / "cause.json").read_text())
        assert cause["cause"] == OOM_KILL == leaker.cause
        assert cause["evidence"] == list(leaker.evidence) and cause["signal"] == "SIGKILL"
        assert cause["worker"]["pid"] == leaker.ref.pid and cause["worker"]["cgroup_limit"] == 64 << 20
        assert cause["thresholds"]["warn"] == {"bytes": 30 << 20} and cause["thresholds"]["crit"] == {"bytes": 45 << 20}
        with (folder / "samples.csv").open() as f:
            rows = list(csv.DictReader(f))
        assert tuple(rows[0]) == SAMPLE_COLUMNS
        assert len(rows) == len(live_series[leaker.id][0])
        assert [float(r["t"]) for r in rows] == pytest.approx(list(live_series[leaker.id][0]), abs=1e-6)
        assert {r["worker"] for r in rows} == {leaker.id} and {r["pid"] for r in rows} == {str(leaker.ref.pid)}
        assert abs(int(rows[-1]["rss"]) - float(live_series[leaker.id][1][-1])) < 64
        if source is replay:
            assert cause["source"]["session_file"] == str(path)
            assert rows[-1]["cgroup_limit"] == str(64 << 20)  # the file has every column
        log = (folder / "kernel.log").read_text()
        if kmsg:
            assert cause["oom"]["pid"] == leaker.ref.pid
            assert f"Killed process {leaker.ref.pid}" in log.split("# 2.")[0]  # the record, raw
            assert f"Killed process {leaker.ref.pid}" in log.split("# 2.")[1]  # ...and the lines around it
        assert_plausible_png(folder / "plot.png", min_width=1200)
        assert_plausible_png(folder / "timeline.png", min_width=1200, min_height=100)
    # The live window's view is back as it was after the export.
    assert window.plot.follow and window.plot.selected == set()

    # Plot and timeline as PNG from the File menu's functions.
    for name, save in (("plot.png", replay.files.save_plot_png), ("timeline.png", replay.files.save_timeline_png)):
        written = save(tmp_path / name)
        assert written == tmp_path / name
        assert_plausible_png(written, min_width=1200, min_height=100)


def test_record_menu_status_and_a_path_that_cannot_be_written(qtbot, make_window, tmp_path) -> None:
    from oomscope.core.recording import SessionFile

    window = make_window()
    names = [a.text() for a in window.file_menu.actions() if not a.isSeparator()]
    assert names == ["Record to…", "Stop recording", "Open session…", "Save plot as PNG…", "Save timeline as PNG…",
                     "Export incident…", "Connect to Prometheus…", "Quit"]
    assert window.open_session_action.shortcut().toString() == "Ctrl+O"
    assert not window.stop_recording_action.isEnabled() and not window.export_incident_action.isEnabled()

    assert not window.start_recording(tmp_path / "missing" / "s.db")
    assert "does not exist" in window.message_bar.history[-1] and window.recorder is None
    assert window.recording_status.text() == "recording: off"

    window.launch(LaunchSpec((PY, "-c", HOLDER.format(mib=4)), name="holder"))
    qtbot.waitUntil(lambda: bool(window.roster.workers) and len(window.roster.workers[0].series) >= 2, timeout=10_000)
    holder = window.roster.workers[0]
    # Begun mid-session: the worker already running is in the file, from the recording's start.
    path = tmp_path / "mid.db"
    assert window.start_recording(path)
    n0 = len(holder.series)
    qtbot.waitUntil(lambda: len(holder.series) >= n0 + 5, timeout=10_000)
    # Closing the window finishes the file (flushed and marked as ended).
    window.close()
    assert window.recorder is None
    with SessionFile.open(path) as f:
        (info,) = f.sessions()
        assert info.ended is not None
        (worker,) = f.workers(info.id)
        assert worker.ref.id == holder.id and worker.ref.pid == holder.ref.pid and worker.event == "worker_started"
        assert len(f.worker_samples(info.id, holder.id)["t"]) >= 5


def test_a_broken_recorder_stops_recording_not_the_session(qtbot, make_window, tmp_path) -> None:
    window = make_window()
    assert window.start_recording(tmp_path / "s.db")
    recorder = window.recorder

    def broken(event: object) -> None:
        raise RuntimeError("bug in a tap")

    # A tap that raises is dropped; the window's own handling of the event is not lost.
    window.bridge.taps.insert(0, broken)
    window.launch(LaunchSpec((PY, "-c", HOLDER.format(mib=2)), name="holder"))
    qtbot.waitUntil(lambda: len(window.roster.workers) == 1, timeout=10_000)
    assert broken not in window.bridge.taps and recorder in window.bridge.taps
    window.stop_recording()


@pytest.fixture
def small_disk(tmp_path: Path) -> Any:
    """A 1 MiB tmpfs of the test's own, unmounted at teardown (also when the test fails)."""
    with tmpfs(tmp_path / "small-disk", size="1m") as mount:
        yield mount


@pytest.mark.skipif(not is_root(), reason="mounting a small tmpfs needs root")
def test_a_full_disk_stops_the_recording_the_live_session_goes_on(qtbot, make_window, small_disk) -> None:
    window = make_window()
    path = small_disk / "s.db"
    assert window.start_recording(path)
    # Leave the recorder a few KiB of the 1 MiB, then let a chatty worker fill them.
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    (small_disk / "filler").write_bytes(b"\0" * max(0, free - 24 * 1024))
    chatty = "import sys, time\nwhile True:\n    print('x' * 1500, file=sys.stderr, flush=True); time.sleep(0.002)\n"
    window.launch(LaunchSpec((PY, "-c", chatty), name="chatty"))
    qtbot.waitUntil(lambda: window.recording_status.text().startswith("recording stopped:"), timeout=20_000)
    assert window.recording_status.text() == "recording stopped: the disk is full"
    assert "background" in window.recording_status.styleSheet()  # the warning style, not plain text
    assert window.recorder is None and not window.stop_recording_action.isEnabled()
    assert any("the disk is full" in m for m in window.message_bar.history)
    # The live session goes on: samples keep arriving after the recording stopped.
    chatty_w = window.roster.workers[0]
    n = len(chatty_w.series)
    qtbot.waitUntil(lambda: len(chatty_w.series) >= n + 5, timeout=10_000)
    assert chatty_w.alive
    assert window.record_action.isEnabled()  # another try, elsewhere, is one click away


def test_closing_the_window_records_the_launched_workers_end(qtbot, make_window, tmp_path) -> None:
    """Closing the window ends the session: the engine stops its launched workers before the
    recording is finished, so the file does not leave them running for ever."""
    from oomscope.core.events import WorkerExited
    from oomscope.core.recording import SessionFile

    window = make_window()
    path = tmp_path / "closed.db"
    assert window.start_recording(path)
    window.launch(LaunchSpec((PY, "-c", HOLDER.format(mib=8)), name="sleeper"))
    qtbot.waitUntil(lambda: bool(window.roster.workers) and len(window.roster.workers[0].series) > 2,
                    timeout=10_000)
    pid = window.roster.workers[0].ref.pid
    window.close()
    assert window.recorder is None
    with SessionFile.open(path) as f:
        exits = [e for e in f.events() if isinstance(e, WorkerExited)]
        (info,) = f.sessions()
    assert [(e.worker.pid, e.cause, e.by) for e in exits] == [(pid, "terminated", "oomscope-exit")]
    assert info.ended is not None


def test_a_session_opened_from_the_menu_is_read_on_another_thread(qtbot, make_window, tmp_path,
                                                                   close_replays) -> None:
    """File → Open session… reads the file off the GUI thread (the live window keeps handling
    its engine's events meanwhile), and the replay that opens equals one read on the spot."""
    import threading

    from oomscope.gui import file_actions as reading_module  # where File → Open session… reads

    window = make_window()
    path = tmp_path / "bg.db"
    assert window.start_recording(path)
    window.launch(LaunchSpec((PY, "-c", HOLDER.format(mib=8)), name="holder"))
    qtbot.waitUntil(lambda: bool(window.roster.workers) and len(window.roster.workers[0].series) > 3,
                    timeout=10_000)
    window.stop_recording()

    readers: list[str] = []
    real_read = reading_module.read_session

    def read_elsewhere(p: Path, sid: int) -> Any:
        readers.append(threading.current_thread().name)
        return real_read(p, sid)

    reading_module.read_session = read_elsewhere
    try:
        future = window.open_session_in_background(path)
        assert future is not None
        qtbot.waitUntil(lambda: len(window.replay_windows) == 1, timeout=15_000)
    finally:
        reading_module.read_session = real_read
    replay = window.replay_windows[0]
    close_replays.append(replay)
    assert readers == ["session-reader"]  # not the GUI thread, which went on draining meanwhile
    here = window.open_session(path)
    assert here is not None
    close_replays.append(here)
    assert _rows(replay) == _rows(here) and [w.id for w in replay.roster.workers] == ["w1"]

    garbage = tmp_path / "notes.txt"
    garbage.write_text("not a session\n")
    assert window.open_session_in_background(garbage) is None
    assert "not an oomscope session file" in window.message_bar.history[-1]
