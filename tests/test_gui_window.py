"""The main window on a real engine: terminate by click and key, refusals, thresholds typed and
dragged, settings remembered."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import PY
from gui_helpers import GUI_MARKS, HOLDER, confirmer, make_window, settings_at, worker_row_text  # noqa: F401 (fixtures)
from oomscope.core.launch import LaunchSpec
from oomscope.core.sizes import parse_level
from oomscope.core.thresholds import ThresholdConfig
from oomscope.gui.plot import FORECAST_ROOM

pytestmark = GUI_MARKS


def _launch_holder(qtbot: Any, window: Any, mib: int = 24, name: str = "holder") -> Any:
    window.launch(LaunchSpec((PY, "-c", HOLDER.format(mib=mib)), name=name))
    qtbot.waitUntil(lambda: any(w.ref.name == name for w in window.roster.workers), timeout=10_000)
    w = next(w for w in window.roster.workers if w.ref.name == name)
    qtbot.waitUntil(lambda: w.last is not None and w.last.rss > mib << 20, timeout=10_000)
    return w


def _select(qtbot: Any, window: Any, worker_id: str) -> None:
    from oomscope.gui.qt import Qt

    index = window.proxy.mapFromSource(window.model.row_of(worker_id))
    rect = window.table.visualRect(index)
    qtbot.mouseClick(window.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert [w.id for w in window.selected_workers()] == [worker_id]


def test_clicking_terminate_ends_the_worker_and_marks_the_timeline(qtbot, make_window, confirmer) -> None:
    from oomscope.core.causes import TERMINATED
    from oomscope.gui.models import COL_STATE
    from oomscope.gui.qt import Qt

    window = make_window()
    w = _launch_holder(qtbot, window)
    _select(qtbot, window, w.id)
    button = window.toolbar.widgetForAction(window.terminate_action)
    assert button.isEnabled()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    # The confirmation named the worker and its memory.
    assert confirmer.asked == [([w.id], False)]
    assert "holder RSS" in confirmer.texts[0][0] and "MiB" in confirmer.texts[0][0]
    qtbot.waitUntil(lambda: worker_row_text(window, w.id, COL_STATE).startswith("exited"), timeout=10_000)
    assert worker_row_text(window, w.id, COL_STATE) == "exited: terminated (SIGTERM, by user)"
    qtbot.waitUntil(lambda: any(cause == TERMINATED for _t, cause in window.timeline.markers()), timeout=5_000)
    assert not window.terminate_action.isEnabled()  # the selection holds only a dead worker now


def test_delete_key_asks_and_cancel_leaves_the_worker_alone(qtbot, make_window, confirmer) -> None:
    from oomscope.gui.models import COL_STATE
    from oomscope.gui.qt import Qt

    confirmer.answer = None
    window = make_window()
    w = _launch_holder(qtbot, window)
    _select(qtbot, window, w.id)
    qtbot.keyClick(window.table, Qt.Key.Key_Delete)
    assert confirmer.asked == [([w.id], False)]
    qtbot.keyClick(window.table, Qt.Key.Key_Delete, Qt.KeyboardModifier.ShiftModifier)
    assert confirmer.asked[-1] == ([w.id], True)
    window.bridge.drain()
    assert w.alive and worker_row_text(window, w.id, COL_STATE) == "running"


def test_refused_terminate_shows_the_engine_message(qtbot, make_window) -> None:
    window = make_window()
    w = _launch_holder(qtbot, window)
    window.engine.terminate(w.id, kill_now=True).result(5)
    qtbot.waitUntil(lambda: not w.alive, timeout=10_000)
    # The user's click raced with the exit: the engine refuses, the window says why.
    window.controls.terminate([w], False)
    qtbot.waitUntil(lambda: bool(window.message_bar.history), timeout=5_000)
    assert "has already exited" in window.message_bar.history[-1]
    assert window.message_bar.isVisible()


def test_terminate_all_critical_targets_only_critical_workers(qtbot, make_window, confirmer) -> None:
    window = make_window(ThresholdConfig(crit=parse_level("40MiB")))
    assert not window.terminate_critical_action.isEnabled()  # no worker, nothing to terminate
    small = _launch_holder(qtbot, window, mib=8, name="small")
    assert not window.terminate_critical_action.isEnabled()
    big = _launch_holder(qtbot, window, mib=64, name="big")
    qtbot.waitUntil(lambda: big.level == "critical", timeout=10_000)
    qtbot.waitUntil(window.terminate_critical_action.isEnabled, timeout=2_000)
    window.terminate_critical_action.trigger()
    assert confirmer.asked == [([big.id], False)]
    qtbot.waitUntil(lambda: not big.alive, timeout=10_000)
    assert small.alive and big.cause == "terminated"
    assert not window.terminate_critical_action.isEnabled()


def test_dragging_the_critical_line_changes_the_engine_threshold(qtbot, make_window) -> None:
    from oomscope.gui.plot import MIB
    from oomscope.gui.qt import QPointF, Qt

    window = make_window(ThresholdConfig(crit=parse_level("200MiB")))
    w = _launch_holder(qtbot, window, mib=32)
    window.plot.redraw()
    line = window.plot.lines["critical"]
    assert line.isVisible() and line.value() == 200.0
    view = window.plot.view_box
    (x0, x1), _ = view.viewRange()
    x = x0 + 0.6 * (x1 - x0)
    widget = window.plot.plot_widget
    start = widget.mapFromScene(view.mapViewToScene(QPointF(x, line.value())))
    end = widget.mapFromScene(view.mapViewToScene(QPointF(x, 20.0)))
    viewport = widget.viewport()
    with qtbot.waitSignal(window.bridge.threshold_crossed, timeout=10_000,
                          check_params_cb=lambda ev: ev.worker.id == w.id and ev.level == "critical"
                          ) as crossed:
        qtbot.mousePress(viewport, Qt.MouseButton.LeftButton, pos=start)
        for i in range(1, 11):
            qtbot.mouseMove(viewport, start + (end - start) * (i / 10))
        qtbot.mouseRelease(viewport, Qt.MouseButton.LeftButton, pos=end)
    new_crit = window.thresholds.crit
    assert new_crit is not None and new_crit.bytes is not None
    assert abs(new_crit.bytes / MIB - 20.0) < 4.0
    # The engine compares against the dragged level: its event names it as the limit.
    assert crossed.args[0].limit == new_crit.bytes
    assert window.crit_edit.text().endswith("MiB")


def test_typed_levels_reach_the_engine_and_bad_ones_are_refused(qtbot, make_window) -> None:
    window = make_window()
    w = _launch_holder(qtbot, window, mib=32)
    window.crit_edit.setText("abc")
    window.crit_edit.editingFinished.emit()
    assert "invalid size" in window.message_bar.history[-1]
    assert window.crit_edit.text() == ""  # the field shows what the engine has
    window.warn_edit.setText("90%")
    window.crit_edit.setText("80%")
    window.crit_edit.editingFinished.emit()
    assert "must be below" in window.message_bar.history[-1]
    window.warn_edit.setText("8MiB")
    window.crit_edit.setText("1GiB")
    with qtbot.waitSignal(window.bridge.threshold_crossed, timeout=10_000,
                          check_params_cb=lambda ev: ev.worker.id == w.id) as crossed:
        window.crit_edit.editingFinished.emit()
    assert (crossed.args[0].level, crossed.args[0].limit) == ("warning", 8 << 20)


def test_layout_thresholds_and_plot_choices_are_remembered(qtbot, make_window, tmp_path) -> None:
    window = make_window()
    window.crit_edit.setText("300MiB")
    window.crit_edit.editingFinished.emit()
    window.plot.set_window(900.0)
    window.table.header().resizeSection(0, 222)
    window.close()
    settings = settings_at(tmp_path / "settings.ini")
    assert settings.value("thresholds/crit") == "300MiB"
    assert float(settings.value("plot/window")) == 900.0
    again = make_window()
    assert again.plot.window_s == 900.0
    assert again.table.header().sectionSize(0) == 222


def test_the_trend_column_and_the_plot_show_the_engines_forecast(qtbot, make_window, gate) -> None:
    from oomscope.gui.models import COL_TREND, duration_text
    from oomscope.gui.qt import Qt

    # About 12 MiB/s (some 700 MiB/min, so the table says MiB/min) until the test has seen all it
    # needs (at most 400 MiB, as a bound should the test hang); then it exits.
    grown = gate()
    grow = (f"import time\n{grown.poll_code}c = []\nfor _ in range(1600):\n"
            "    if gate_open():\n        break\n"
            "    c.append(bytearray(1 << 18)); time.sleep(0.02)\n"
            f"else:\n    {grown.wait_code}\n")
    window = make_window(ThresholdConfig(crit=parse_level("2GiB"), metric="anon"), interval_s=0.05,
                         trend_window_s=2.0, trend_bucket_s=0.2, trend_start_up_s=0.0)
    assert window.plot.shown_metric == window.engine.thresholds.metric == "anon"
    window.launch(LaunchSpec((PY, "-c", grow), name="grower"))
    qtbot.waitUntil(lambda: any(w.ref.name == "grower" for w in window.roster.workers), timeout=10_000)
    w = next(w for w in window.roster.workers if w.ref.name == "grower")
    cell = lambda: window.model.row_of(w.id).siblingAtColumn(COL_TREND)  # noqa: E731

    def forecast_shown() -> bool:
        window.plot.redraw()  # what the throttled redraw does on the next sample, without waiting for it
        s = w.last
        text = str(window.model.data(cell()))
        tip = str(window.model.data(cell(), Qt.ItemDataRole.ToolTipRole))
        return (s is not None and s.trend_bytes_per_s is not None and s.trend_bytes_per_s > 5 * (1 << 20)
                and text.startswith("+") and text.endswith("MiB/min") and "critical in" in tip
                and w.id in window.plot.trend_extensions)

    qtbot.waitUntil(forecast_shown, timeout=20_000)
    s = w.last
    assert s is not None and s.trend_bytes_per_s is not None and s.eta_crit_s is not None
    # The row's tooltip carries the same forecast; no cgroup limit here, so no time to one.
    row_tip = str(window.model.data(cell().siblingAtColumn(0), Qt.ItemDataRole.ToolTipRole))
    assert "critical in" in row_tip and "limit in" not in row_tip
    x0, y0, x1, y1 = window.plot.trend_extensions[w.id]
    assert x1 > x0 and y1 > y0
    # Follow leaves room right of the newest sample, so the forecast is seen, not cut at "now"
    # (a 4 s window, once the session is longer than that: otherwise it grows from the left).
    window.plot.window_s = 4.0  # shorter than any choice in the box, to keep the test short
    qtbot.waitUntil(lambda: w.series.times()[-1] - w.series.times()[0] > 4.5, timeout=10_000)
    t0, t1 = window.plot.x_range()
    newest = max(float(x.series.times()[-1]) for x in window.roster.workers)
    assert t1 - t0 == pytest.approx(4.0)
    assert t1 - newest == pytest.approx(1.0 + FORECAST_ROOM * 4.0)
    # It stops at the critical level (2 GiB), or at least climbs at the engine's rate.
    slope = (y1 - y0) * (1 << 20) / (x1 - x0)
    assert abs(y1 - 2048.0) < 2.0 or abs(slope - s.trend_bytes_per_s) < 0.01 * s.trend_bytes_per_s
    pens = window.plot.curves.trend_lines()
    assert pens and all(pen.style() == Qt.PenStyle.DashLine for pen, _ in pens)
    assert duration_text(130) == "2 min 10 s" and duration_text(180) == "3 min" and duration_text(45) == "45 s"
    grown.open()


def test_a_pending_level_shows_in_the_state_column(qtbot, make_window) -> None:
    """Above critical, not yet for the sustain time: the row says so and counts, then turns
    critical when the sustain time has passed."""
    from oomscope.gui.models import COL_STATE

    config = ThresholdConfig(warn=None, crit=parse_level("16MiB"), sustain_s=1.5)
    window = make_window(thresholds=config)
    w = _launch_holder(qtbot, window, mib=24, name="pending")
    qtbot.waitUntil(lambda: "over critical" in worker_row_text(window, w.id, COL_STATE), timeout=10_000)
    text = worker_row_text(window, w.id, COL_STATE)
    assert text.startswith("running · over critical ") and text.endswith(" / 1.5 s"), text
    qtbot.waitUntil(lambda: worker_row_text(window, w.id, COL_STATE) == "critical", timeout=10_000)


def test_a_limited_worker_shows_its_limit_line_and_percent_of_usage(qtbot, make_window) -> None:
    """The cgroup limit is drawn as the worker's own dashed line, and "% of limit" divides what
    the limit counts (the cgroup's usage), not RSS."""
    from conftest import v1_memory_writable
    from oomscope.gui.models import COL_PERCENT

    if not v1_memory_writable():
        pytest.skip("needs a writable cgroup v1 memory controller (root)")
    window = make_window()
    window.launch(LaunchSpec((PY, "-c", HOLDER.format(mib=24)), name="limited", mem_limit_bytes=128 << 20))
    # Two samples: the limit line spans the time the worker was drawn, nothing with one.
    qtbot.waitUntil(lambda: any(w.ref.name == "limited" and w.last is not None and w.last.cgroup_usage
                                and len(w.series) >= 2 for w in window.roster.workers), timeout=10_000)
    w = next(w for w in window.roster.workers if w.ref.name == "limited")
    window.plot.redraw()
    assert window.plot.cgroup_limit_lines == {w.id: 128 << 20}
    assert any(abs(poly.at(0).y() - 128.0) < 1e-6 for _pen, poly in window.plot.curves.limit_lines())
    window.refresh_table()  # no event is handled between this and the reads below
    s = w.last
    assert s is not None and s.cgroup_usage is not None and s.cgroup_usage != s.rss
    assert worker_row_text(window, w.id, COL_PERCENT) == f"{100.0 * s.cgroup_usage / (128 << 20):.0f} %"
