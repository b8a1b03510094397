"""``oomscope open FILE.db`` and the replay window: session files recorded by a real
``oomscope watch --record``, opened as a user opens them."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from conftest import PY
from gui_helpers import HOLDER, settings_at
from test_gui_record_support import OOMSCOPE, assert_plausible_png, cli_env, close_replays, png_facts, \
    record_with_watch  # noqa: F401 (fixture)


def _garbage(tmp_path: Path) -> Path:
    path = tmp_path / "garbage.db"
    path.write_bytes(os.urandom(4096))
    return path


def _foreign_sqlite(tmp_path: Path) -> Path:
    import sqlite3

    path = tmp_path / "other.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    return path


@pytest.mark.parametrize("make, says", [
    (_garbage, "is not an oomscope session file"),
    (_foreign_sqlite, "not an oomscope session file"),
    (lambda tmp: tmp / "missing.db", "no such file"),
    (lambda tmp: tmp, "is a directory"),
], ids=["garbage", "another-sqlite", "missing", "directory"])
def test_open_refuses_what_is_not_a_session_file(tmp_path: Path, make, says) -> None:
    path = make(tmp_path)
    before = path.read_bytes() if path.is_file() else None
    r = subprocess.run(OOMSCOPE + ["open", str(path)], env=cli_env(tmp_path, QT_QPA_PLATFORM="offscreen"),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("oomscope open: ") and says in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1  # one clear line, no window's chatter
    if before is not None:
        assert path.read_bytes() == before  # looked at, never changed


@pytest.mark.gui
def test_open_renders_the_replay_window(tmp_path: Path) -> None:
    """The ``open`` subcommand's own code path, screenshot after it has loaded (the parser
    has no --screenshot for ``open``; the runner takes one)."""
    session = tmp_path / "run.db"
    record_with_watch(session, tmp_path, f"{PY} -c 'import time; b = bytearray(24 << 20); time.sleep(0.5)'",
                      extra=("--warn", "16MiB", "--crit", "1GiB"))
    shot = tmp_path / "replay.png"
    code = ("import argparse, sys\nfrom oomscope.gui.app import run\n"
            f"sys.exit(run(argparse.Namespace(subcommand='open', file={str(session)!r}, "
            f"screenshot={str(shot)!r}, after=0.5)))\n")
    r = subprocess.run([PY, "-c", code], env=cli_env(tmp_path), capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stderr
    width, height, _colours = png_facts(shot)
    assert (width, height) == (1400, 900)
    assert_plausible_png(shot)


@pytest.fixture
def marker_session(tmp_path: Path) -> tuple[Path, Path]:
    """A session whose only worker appends a line to a file each time it runs."""
    marker = tmp_path / "ran.txt"
    session = tmp_path / "marker.db"
    record_with_watch(session, tmp_path, f"{PY} -c \"open({str(marker)!r}, 'a').write('ran\\n'); "
                      "import time; b = bytearray(8 << 20); time.sleep(0.6)\"")
    assert marker.read_text() == "ran\n"
    return session, marker


@pytest.mark.gui
@pytest.mark.qt_log_ignore(r"This plugin does not support propagateSizeHints")
def test_a_replay_never_runs_what_the_file_holds(qtbot, tmp_path, marker_session, close_replays,
                                                 monkeypatch) -> None:
    from oomscope.gui.qt import QtCore, QTimer
    from oomscope.gui.replay import open_replay

    # Every way this process could start a program, recorded (and refused) from here on: a
    # start is seen as it is tried, not guessed from its traces after some wait.
    started: list[str] = []

    def refuse(what: str) -> Any:
        def tried(*args: Any, **kw: Any) -> Any:
            started.append(f"{what}{args!r}")
            raise AssertionError(f"a replay tried to start a program: {what}{args!r}")
        return tried

    monkeypatch.setattr(subprocess.Popen, "_execute_child", refuse("Popen"))
    for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system", "execv", "execve"):
        monkeypatch.setattr(os, name, refuse(f"os.{name}"))
    monkeypatch.setattr(QtCore.QProcess, "start", refuse("QProcess.start"))
    monkeypatch.setattr(QtCore.QProcess, "startDetached", refuse("QProcess.startDetached"))

    session, marker = marker_session
    replay = open_replay(session, settings_at(tmp_path / "settings.ini"))
    assert replay is not None
    close_replays.append(replay)
    replay.show()
    qtbot.waitExposed(replay)
    (w,) = replay.roster.workers
    assert w.state_text() == "exited: exit (0)" and str(marker) in " ".join(w.ref.cmd)
    # Every action a user could try, in every state the slider gives.
    for t in (replay.data.t_start, (replay.data.t_start + w.exit.t) / 2, replay.data.t_end):
        replay.scrub_to(t)
        replay.select_worker(w.id)
        for action in replay.actions():
            if action.objectName() in ("quit", "open-session", "save-plot-png", "save-timeline-png",
                                       "export-incident", "connect-prometheus"):
                continue  # these open dialogs; none of them runs a worker's command
            action.trigger()
    # A replay has no entry point that would start or attach anything, not even a refusing one.
    assert not any(hasattr(replay, name) for name in ("launch", "attach", "attach_children", "engine"))
    assert not {a.objectName() for a in replay.actions()} & {"launch", "attach", "terminate", "kill"}
    # Whatever the actions queued runs before a timer posted after them all fires.
    done: list[bool] = []
    QTimer.singleShot(0, lambda: done.append(True))
    qtbot.waitUntil(lambda: bool(done), timeout=10_000)
    assert started == []
    assert marker.read_text() == "ran\n"
    assert [p.cmdline() for p in psutil.Process().children(recursive=True)
            if str(marker) in " ".join(p.cmdline())] == []


@pytest.mark.gui
@pytest.mark.qt_log_ignore(r"This plugin does not support propagateSizeHints")
def test_a_session_ended_by_a_crash_says_so(qtbot, tmp_path, close_replays) -> None:
    from oomscope.core.recording import SessionFile
    from oomscope.gui.replay import open_replay

    session = tmp_path / "crash.db"
    tag = f"oomscope-crash-test-{os.getpid()}-{time.monotonic_ns()}"
    watch = subprocess.Popen(OOMSCOPE + ["watch", "--record", str(session), "--interval", "0.1", "--run",
                                         f"{PY} -c 'import time; b = bytearray(8 << 20); time.sleep(20)' {tag}"],
                             env=cli_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    worker_pid = None
    try:
        assert watch.stdout is not None
        for line in watch.stdout:  # "... w1 python3[PID] started: ..."
            if " started" in line:
                worker_pid = int(line.split("[", 1)[1].split("]", 1)[0])
                break
        # The recorder commits once a second: wait until a batch with samples is in the file.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with SessionFile.open(session) as f:
                workers = f.workers()
                if workers and len(f.worker_samples(None, workers[0].worker_id)["t"]) >= 3:
                    break
            time.sleep(0.1)
        else:
            pytest.fail("no samples were committed to the session file")
        watch.send_signal(signal.SIGKILL)  # oomscope dies without a word: no end mark
        watch.wait(10)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait(10)
        if watch.stdout is not None:
            watch.stdout.close()
        # The worker outlives a SIGKILLed watch: end it, by PID, after checking it is ours.
        if worker_pid is not None:
            try:
                if tag in " ".join(psutil.Process(worker_pid).cmdline()):
                    os.kill(worker_pid, signal.SIGKILL)
            except (psutil.NoSuchProcess, ProcessLookupError):
                pass

    replay = open_replay(session, settings_at(tmp_path / "settings.ini"))
    assert replay is not None
    close_replays.append(replay)
    assert replay.info.ended is None
    stamp = time.strftime("%H:%M:%S", time.localtime(replay.data.t_end))
    assert replay.end_label.text().strip() == f"ended by a crash; recorded up to {stamp}"
    (w,) = replay.roster.workers
    assert w.alive and len(w.series) >= 3  # everything up to the last committed batch is there


@pytest.mark.gui
@pytest.mark.qt_log_ignore(r"This plugin does not support propagateSizeHints")
def test_a_file_with_several_sessions_lets_the_user_pick(qtbot, tmp_path, close_replays) -> None:
    from oomscope.gui.qt import QTimer, QtWidgets
    from oomscope.gui.replay import SessionChoiceDialog, open_replay

    session = tmp_path / "two.db"
    for code in (0, 5):
        record_with_watch(session, tmp_path, f"{PY} -c 'import sys, time; time.sleep(0.3); sys.exit({code})'",
                          status=code)
    seen: list[list[str]] = []

    def pick_the_first() -> None:
        dialog = QtWidgets.QApplication.activeModalWidget()
        assert isinstance(dialog, SessionChoiceDialog)
        seen.append([dialog.list.item(i).text() for i in range(dialog.list.count())])
        dialog.list.setCurrentRow(0)
        dialog.accept()

    QTimer.singleShot(0, pick_the_first)
    replay = open_replay(session, settings_at(tmp_path / "settings.ini"))
    assert replay is not None
    close_replays.append(replay)
    assert len(seen) == 1 and [s.split(" · ")[0] for s in seen[0]] == ["session 1", "session 2"]
    assert "(session 1, " in replay.windowTitle()
    assert [w.state_text() for w in replay.roster.workers] == ["exited: exit (0)"]

    QTimer.singleShot(0, lambda: QtWidgets.QApplication.activeModalWidget().reject())
    assert open_replay(session, settings_at(tmp_path / "settings.ini")) is None  # cancelled: no window
    second = open_replay(session, settings_at(tmp_path / "settings.ini"), session_id=2)
    assert second is not None
    close_replays.append(second)
    assert [w.state_text() for w in second.roster.workers] == ["exited: exit (5)"]


@pytest.mark.gui
@pytest.mark.qt_log_ignore(r"This plugin does not support propagateSizeHints")
def test_a_worker_recorded_from_after_its_start_appears_with_its_first_sample(
        qtbot, tmp_path, make_engine, close_replays) -> None:
    """A recorder that joined a running engine (another program's way to record) never saw the
    worker's start: the replay shows the worker from its first recorded sample."""
    from oomscope.core.events import Samples
    from oomscope.core.launch import LaunchSpec
    from oomscope.core.recording import open_recorder
    from oomscope.gui.replay import open_replay

    engine, log = make_engine()
    ref = engine.launch(LaunchSpec((PY, "-c", HOLDER.format(mib=4)), name="early")).result(timeout=10)
    log.wait_samples(ref.id, 2)
    recorder = open_recorder(tmp_path / "late.db", engine.config, lambda level, message: None)
    joined = len(log.events)
    log.wait_samples(ref.id, 8)
    recorded = log.events[joined:]
    for ev in recorded:
        recorder(ev)
    recorder.close()
    first = min(ev.t for ev in recorded if isinstance(ev, Samples))

    replay = open_replay(tmp_path / "late.db", settings_at(tmp_path / "settings.ini"))
    assert replay is not None
    close_replays.append(replay)
    (w,) = replay.roster.workers
    assert (w.id, w.ref.pid, w.ref.name, w.alive) == (ref.id, ref.pid, "early", True)
    assert len(w.series) == sum(1 for ev in recorded if isinstance(ev, Samples) for s in ev.samples
                                if s.worker.id == ref.id)
    assert float(w.series.times()[0]) == first
