"""Restart policies from the Launch dialog, slots and lives in the worker table, and desktop
notifications for memory deaths — on a real engine with real processes."""

from __future__ import annotations

import shlex
from typing import Any

import pytest

from conftest import PY, v1_memory_writable
from gui_helpers import GUI_MARKS, confirmer, make_window, settings_at  # noqa: F401 (fixtures)
from oomscope.core.launch import LaunchSpec
from oomscope.core.restart import RestartPolicy
from oomscope.core.sizes import parse_level
from oomscope.core.thresholds import ThresholdConfig

pytestmark = GUI_MARKS

FAILING = f"{shlex.quote(PY)} -c 'import sys; sys.exit(1)'"
# The demo's fast leaker without its idle start: 2 MiB every 20 ms.
LEAKER = "import time\nkept = []\nwhile True:\n    kept.append(b'\\x01' * (2 << 20)); time.sleep(0.02)\n"


def _launch_from_dialog(window: Any, command: str, restarts: int) -> Any:
    """Fill the Launch dialog as a user would and launch what it returns through the window."""
    from oomscope.gui.dialogs import LaunchDialog

    dialog = LaunchDialog(window.settings, window)
    dialog.command.setText(command)
    dialog.mem_limit.setText("")
    dialog.restart.setValue(restarts)
    dialog._on_accept()
    assert dialog.spec is not None, dialog.error.text()
    policy = dialog.restart_policy()
    window.launch(dialog.spec, restart=policy)
    return policy


def test_restart_spin_box_is_remembered_and_gives_three_lives_in_one_slot(qtbot, make_window, tmp_path) -> None:
    window = make_window()
    policy = _launch_from_dialog(window, FAILING, 2)
    assert policy == RestartPolicy(max=2)
    assert int(settings_at(tmp_path / "settings.ini").value("dialogs/launch/restart")) == 2
    from oomscope.gui.dialogs import LaunchDialog

    again = LaunchDialog(window.settings, window)
    assert again.restart.value() == 2 and again.restart.text() == "up to 2 times"
    assert "1 s, 2 s, 4 s" in again.restart.toolTip() and "crash-loop" in again.restart.toolTip()
    again.restart.setValue(0)
    assert again.restart.text() == "never"

    # 1 s + 2 s of backoff: three lives, then no restarts left.
    qtbot.waitUntil(lambda: len(window.roster.workers) == 3 and not window.roster.workers[-1].alive,
                    timeout=15_000)
    slots = {w.ref.slot for w in window.roster.workers}
    assert len(slots) == 1 and None not in slots
    assert [w.ref.life for w in window.roster.workers] == [1, 2, 3]
    assert all(w.cause == "exit" for w in window.roster.workers)
    assert window.roster.slot_deaths[slots.pop()] == {"exit": 3}
    # On the plot the lives are one line in one colour, broken at each death; choosing one life
    # brings out all of them.
    assert len({w.color_index for w in window.roster.workers}) == 1
    window.select_worker(window.roster.workers[-1].id)
    qtbot.waitUntil(lambda: all(window.plot.is_chosen(w) for w in window.roster.workers), timeout=5_000)
    lives = [w for w in sorted(window.roster.workers, key=lambda w: w.ref.life) if len(w.series)]
    for died, next_life in zip(lives, lives[1:]):  # (a life too short for a sample draws nothing)
        assert died.series.times()[-1] < next_life.series.times()[0]  # the gap at the death


def test_a_restarted_life_shows_its_slot_and_the_slots_deaths(qtbot, make_window) -> None:
    from oomscope.gui.models import COL_NAME
    from oomscope.gui.qt import Qt

    window = make_window()
    seen: dict[int, tuple[str, str]] = {}

    def on_added(ev: Any) -> None:
        # Connected after the window's own handler: the row exists, and the roster has heard
        # every exit before this start (the engine's order), but not this life's own exit.
        index = window.model.row_of(ev.worker.id)
        seen[ev.worker.life] = (str(window.model.data(index.siblingAtColumn(COL_NAME))),
                                str(window.model.data(index, Qt.ItemDataRole.ToolTipRole)))

    window.bridge.worker_added.connect(on_added)
    _launch_from_dialog(window, FAILING, 2)
    qtbot.waitUntil(lambda: 3 in seen, timeout=15_000)
    name, tip = seen[3]
    third = window.roster.workers[2]
    assert name.endswith(f" · slot {third.ref.slot} · life 3"), name
    assert "deaths in this slot so far: 2 exit" in tip, tip
    first_name, first_tip = seen[1]
    assert "life" not in first_name  # a first life says nothing about slots in its name
    assert "so far" not in first_tip
    # The detail pane tells the same story.
    window.select_worker(third.id)
    qtbot.waitUntil(lambda: window.detail.worker is third, timeout=5_000)
    assert f"slot {third.ref.slot} · life 3" in window.detail.text()


def test_without_a_tray_notifications_go_to_the_message_bar(qtbot, make_window) -> None:
    from oomscope.gui.qt import QtWidgets

    window = make_window()
    assert not QtWidgets.QSystemTrayIcon.isSystemTrayAvailable()  # offscreen has none
    assert window.notifier.tray is None
    window.notifier.notify("oomscope: w OOM-killed", "w (w1, PID 1): killed")
    assert window.message_bar.isVisible()
    assert window.message_bar.history[-1] == "oomscope: w OOM-killed: w (w1, PID 1): killed"


@pytest.mark.cgroup
@pytest.mark.skipif(not v1_memory_writable(), reason="needs root and a writable cgroup v1 memory controller "
                    "(/sys/fs/cgroup/memory)")
def test_oom_kills_notify_and_the_crash_loop_guard_is_shown(qtbot, make_window) -> None:
    window = make_window(ThresholdConfig(crit=parse_level("50%"), on_crit="notify"))
    shown: list[tuple[str, str]] = []
    window.notifier.show_fn = lambda title, text: shown.append((title, text))
    window.launch(LaunchSpec((PY, "-c", LEAKER), name="leaker", mem_limit_bytes=48 << 20),
                  restart=RestartPolicy(max=3))
    # Two OOM kills within a minute: the crash-loop guard stops the slot before its third life.
    qtbot.waitUntil(lambda: any("crash loop" in text for _title, text in shown), timeout=60_000)
    ooms = [(title, text) for title, text in shown if "OOM" in title and "crash loop" not in title]
    assert len(ooms) == 2, shown
    assert all("leaker" in title and "OOM" in text for title, text in ooms)
    assert any("leaker is critical" in title for title, _text in shown)
    assert len(window.roster.workers) == 2
    assert any("crash loop" in line for line in window.message_bar.history)
    last = window.roster.workers[-1]
    assert last.ref.life == 2 and last.cause == "oom-kill"
    window.select_worker(last.id)
    qtbot.waitUntil(lambda: window.detail.worker is last, timeout=5_000)
    assert window.detail.notices.isVisibleTo(window.detail)
    assert "crash loop" in window.detail.notices.text()


def test_the_launch_dialog_follows_the_settings_files_restart_numbers(qtbot, make_window) -> None:
    """[restart] of the settings file (here: first wait 0.25 s, cap 0.5 s, max 2) is what a launch
    from the dialog follows; the dialog only chooses the count, and its tooltip shows the numbers."""
    from oomscope.gui.qt import QtWidgets, QTimer

    window = make_window(restart=RestartPolicy(max=2, backoff_initial_s=0.25, backoff_cap_s=0.5,
                                               crash_loop_kills=4))
    exits: list[Any] = []
    window.bridge.worker_exited.connect(exits.append)
    seen: dict[str, Any] = {}

    def fill() -> None:
        dialog = QtWidgets.QApplication.activeModalWidget()
        seen["value"], seen["tip"] = dialog.restart.value(), dialog.restart.toolTip()
        dialog.command.setText(FAILING)
        dialog.mem_limit.setText("")
        dialog._on_accept()

    QTimer.singleShot(0, fill)
    window.open_launch_dialog()
    assert seen["value"] == 2  # the file's max, as nothing was chosen in the dialog before
    assert "0.25 s, 0.5 s, 0.5 s" in seen["tip"] and "4 times" in seen["tip"]
    qtbot.waitUntil(lambda: len(exits) == 3, timeout=15_000)
    assert [e.restart_in_s for e in exits] == [0.25, 0.5, None]
