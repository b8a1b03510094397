"""Per-worker threshold overrides from the window: the dialog, the engine's verdicts, the marks."""

from __future__ import annotations

from typing import Any

from conftest import PY
from gui_helpers import GUI_MARKS, HOLDER, confirmer, make_window  # noqa: F401 (fixtures)
from oomscope.core.events import Threshold
from oomscope.core.launch import LaunchSpec
from oomscope.core.sizes import parse_level
from oomscope.core.thresholds import ThresholdConfig

pytestmark = GUI_MARKS


def _launch(qtbot: Any, window: Any, name: str, mib: int = 24) -> Any:
    window.launch(LaunchSpec((PY, "-c", HOLDER.format(mib=mib)), name=name))
    qtbot.waitUntil(lambda: any(w.ref.name == name for w in window.roster.workers), timeout=10_000)
    w = next(w for w in window.roster.workers if w.ref.name == name)
    qtbot.waitUntil(lambda: w.last is not None and w.last.rss > mib << 20, timeout=10_000)
    return w


def _select(window: Any, worker_id: str) -> None:
    window.select_worker(worker_id)
    assert [w.id for w in window.selected_workers()] == [worker_id]


def test_own_levels_make_only_that_worker_warn(qtbot, make_window) -> None:
    from oomscope.gui.dialogs import WorkerThresholdsDialog
    from oomscope.gui.models import COL_STATE
    from oomscope.gui.qt import Qt

    # Global levels every holder stays far below; two identical holders.
    window = make_window(ThresholdConfig(warn=parse_level("1GiB"), crit=parse_level("2GiB")))
    one = _launch(qtbot, window, "one")
    two = _launch(qtbot, window, "two")
    _select(window, one.id)
    assert window.worker_thresholds_action.isEnabled()
    menu = window.table_menu()
    assert window.worker_thresholds_action in menu.actions()
    assert window.worker_thresholds_action.text() == "Thresholds for this worker…"
    menu.deleteLater()

    seen: list[Any] = []
    window.bridge.threshold_crossed.connect(seen.append)
    window.worker_thresholds_action.trigger()  # what the context menu entry triggers
    dialog = window.worker_thresholds_dialog
    assert isinstance(dialog, WorkerThresholdsDialog) and dialog.isVisible()
    assert (dialog.warn.text(), dialog.crit.text()) == ("1GiB", "2GiB")  # starts from the global ones
    assert not dialog.global_button.isEnabled()  # nothing to drop yet
    dialog.crit.setText("abc")
    qtbot.mouseClick(dialog.apply_button, Qt.MouseButton.LeftButton)
    assert dialog.isVisible() and "invalid size" in dialog.error.text()  # said why, stayed open
    dialog.warn.setText("8MiB")
    dialog.crit.setText("1GiB")
    dialog.terminate.setChecked(True)
    with qtbot.waitSignal(window.bridge.threshold_crossed, timeout=10_000,
                          check_params_cb=lambda ev: ev.worker.id == one.id) as crossed:
        qtbot.mouseClick(dialog.apply_button, Qt.MouseButton.LeftButton)
    ev = crossed.args[0]
    assert (ev.level, ev.limit, ev.metric) == ("warning", 8 << 20, "rss")
    # The engine's next tick compared the other worker with the global levels: still normal.
    with qtbot.waitSignal(window.bridge.samples_added, timeout=5_000,
                          check_params_cb=lambda e: any(s.worker.id == two.id for s in e.samples)):
        pass
    assert [t.worker.id for t in seen if isinstance(t, Threshold)] == [one.id]
    assert two.level == "normal" and one.level == "warning"
    expected = ThresholdConfig(warn=parse_level("8MiB"), crit=parse_level("1GiB"), on_crit="terminate")
    assert window.engine.worker_thresholds(one.id).result(5) == expected
    assert window.engine.worker_thresholds(two.id).result(5) is None

    # Visible: a mark in the State column, its tooltip, the plot's lines, the detail pane.
    state = window.model.row_of(one.id).siblingAtColumn(COL_STATE)
    assert window.model.data(state, Qt.ItemDataRole.DecorationRole) is not None
    other = window.model.row_of(two.id).siblingAtColumn(COL_STATE)
    assert window.model.data(other, Qt.ItemDataRole.DecorationRole) is None
    tip = window.model.data(state, Qt.ItemDataRole.ToolTipRole)
    assert "own thresholds: warning 8.0 MiB, critical 1.0 GiB, terminate at critical" in tip
    window.plot.redraw()
    assert window.plot.levels_owner == one.id
    assert window.plot.lines["warning"].value() == 8.0
    assert "own" in window.plot.lines["warning"].label.format
    assert "own thresholds: warning 8.0 MiB" in window.detail.text()
    _select(window, two.id)  # another worker: the global lines again
    assert window.plot.levels_owner is None and window.plot.lines["warning"].value() == 1024.0

    # "Use global": the override goes, and the worker is compared with the global levels again.
    _select(window, one.id)
    dialog = window.open_worker_thresholds()
    assert dialog.global_button.isEnabled()
    with qtbot.waitSignal(window.bridge.threshold_crossed, timeout=10_000,
                          check_params_cb=lambda ev: ev.worker.id == one.id and ev.level == "normal"):
        qtbot.mouseClick(dialog.global_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: one.override is None, timeout=5_000)
    assert window.engine.worker_thresholds(one.id).result(5) is None
    assert window.model.data(state, Qt.ItemDataRole.DecorationRole) is None
    assert window.plot.levels_owner is None
    assert two.alive and one.alive  # "terminate at critical" never came near


def test_dragging_a_workers_own_line_changes_only_its_levels(qtbot, make_window) -> None:
    window = make_window(ThresholdConfig(crit=parse_level("2GiB")))
    w = _launch(qtbot, window, "solo")
    _select(window, w.id)
    window.set_worker_levels(w.id, ThresholdConfig(crit=parse_level("1GiB")))
    qtbot.waitUntil(lambda: w.override is not None, timeout=5_000)
    # A drag ends as threshold_moved; the window gives the new level to this worker only.
    with qtbot.waitSignal(window.bridge.threshold_crossed, timeout=10_000,
                          check_params_cb=lambda ev: ev.worker.id == w.id and ev.level == "critical"):
        window.plot.threshold_moved.emit("critical", 16 << 20)
    qtbot.waitUntil(lambda: w.override is not None and w.override.crit == parse_level("16MiB"), timeout=5_000)
    assert window.thresholds.crit == parse_level("2GiB")  # the global level is untouched
    assert window.engine.thresholds.crit == parse_level("2GiB")


def test_own_levels_keep_the_global_sustain_and_hysteresis(qtbot, make_window) -> None:
    """The dialog sets a worker's levels and its action at critical; how long a value must stay
    above a level, and how far below it must fall, stay what the settings file says."""
    from oomscope.gui.dialogs import WorkerThresholdsDialog

    base = ThresholdConfig(warn=parse_level("1GiB"), crit=parse_level("2GiB"), sustain_s=2.0, hysteresis=0.05,
                           on_warn="terminate")
    window = make_window(base)
    one = _launch(qtbot, window, "one")
    _select(window, one.id)
    window.worker_thresholds_action.trigger()
    dialog = window.worker_thresholds_dialog
    assert isinstance(dialog, WorkerThresholdsDialog)
    dialog.warn.setText("8MiB")
    dialog.crit.setText("16MiB")
    own = dialog.build_config()
    assert (own.warn, own.crit, own.on_crit) == (parse_level("8MiB"), parse_level("16MiB"), "none")
    assert (own.sustain_s, own.hysteresis, own.on_warn, own.metric) == (2.0, 0.05, "terminate", "rss")
    dialog.close()
