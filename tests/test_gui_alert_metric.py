"""What the plot shows and what the alerts compare are two settings; the cgroup's own usage as a
metric to plot. Real offscreen widgets on a real engine, real processes, real cgroups (v1)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from conftest import PY, v1_memory_writable
from gui_helpers import GUI_MARKS, HOLDER, confirmer, make_window, settings_at  # noqa: F401 (fixtures)
from oomscope.core.launch import LaunchSpec
from oomscope.core.sizes import Level
from oomscope.core.thresholds import CRITICAL, NORMAL, ThresholdConfig

pytestmark = GUI_MARKS

MIB = 1 << 20


def _holder(qtbot: Any, window: Any, name: str, mib: int = 24, limit: int | None = None) -> Any:
    window.launch(LaunchSpec((PY, "-c", HOLDER.format(mib=mib)), name=name, mem_limit_bytes=limit))
    qtbot.waitUntil(lambda: any(w.ref.name == name for w in window.roster.workers), timeout=10_000)
    w = next(w for w in window.roster.workers if w.ref.name == name)
    qtbot.waitUntil(lambda: w.last is not None and w.last.anon > mib * MIB, timeout=10_000)
    return w


def _more_samples(qtbot: Any, w: Any, n: int = 5) -> None:
    """Wait until the engine has sampled ``w`` ``n`` more times (and the window has seen them)."""
    start = len(w.series)
    qtbot.waitUntil(lambda: len(w.series) >= start + n, timeout=10_000)


def _choose_plot_metric(window: Any, metric: str) -> None:
    box = window.plot.metric_box
    box.setCurrentIndex(box.findData(metric))
    assert window.plot.shown_metric == metric


def _choose_alert_metric(qtbot: Any, window: Any, metric: str) -> None:
    """As a user does: focus the Alerts on box and step to ``metric`` with the arrow keys."""
    from oomscope.gui.qt import Qt

    box = window.alert_metric_box
    target = box.findData(metric)
    assert target >= 0
    box.setFocus()
    while box.currentIndex() != target:
        key = Qt.Key.Key_Down if box.currentIndex() < target else Qt.Key.Key_Up
        qtbot.keyClick(box, key)


def test_the_plot_metric_leaves_the_alerts_alone_and_the_alert_box_moves_them(qtbot, make_window) -> None:
    """A worker over its critical on RSS, whose anon RSS is under it: plotting anon (or heap)
    keeps it critical and the engine on RSS (it dropped to "running" when the plot metric moved
    the alerts); choosing anon in the Alerts on box is what moves them, and then it is running."""
    window = make_window(interval_s=0.05)
    w = _holder(qtbot, window, "holder", mib=24)
    s = w.last
    # Python's own file pages (libpython, its modules) are RSS but not anon: the level goes between.
    assert s.rss - s.anon > 4 * MIB, (s.rss, s.anon)
    crit = (s.rss + s.anon) // 2
    assert window.set_levels(None, Level(bytes=crit))
    qtbot.waitUntil(lambda: w.level == CRITICAL, timeout=10_000)
    assert window.alert_metric_box.currentData() == "rss"

    for metric in ("anon", "heap_used", "rss", "anon"):
        _choose_plot_metric(window, metric)
        _more_samples(qtbot, w)
        assert window.engine.thresholds.metric == window.thresholds.metric == "rss"
        assert window.alert_metric_box.currentData() == "rss"
        assert w.level == CRITICAL, metric
        window.plot.redraw()
        on_alert_metric = metric == "rss"
        # The critical line is drawn only where it means something: on the metric it compares.
        assert window.plot.lines["critical"].isVisible() == on_alert_metric
        assert window.plot.levels_note.isVisible() == (not on_alert_metric)
        if on_alert_metric:
            assert window.plot.lines["critical"].label.format.endswith("on RSS")
        else:
            assert "levels are on RSS" in window.plot.levels_note.text()

    # The plot is on anon; now the alerts are moved, on purpose.
    _choose_alert_metric(qtbot, window, "anon")
    qtbot.waitUntil(lambda: window.engine.thresholds.metric == "anon", timeout=5_000)
    qtbot.waitUntil(lambda: w.level == NORMAL, timeout=10_000)
    assert window.thresholds.metric == "anon"
    assert window.plot.shown_metric == "anon"  # the alert box does not move the plot either
    window.plot.redraw()
    assert window.plot.lines["critical"].isVisible() and not window.plot.levels_note.isVisible()
    assert window.plot.lines["critical"].label.format.endswith("on anon RSS")
    # Remembered as a choice of its own (the next window's engine starts on it).
    window.close()
    settings = settings_at(window.settings.fileName())
    assert settings.value("thresholds/metric") == "anon"
    assert settings.value("plot/metric") == "anon"


def test_a_read_only_window_shows_the_recorded_alert_metric_and_cannot_change_it(qtbot, tmp_path) -> None:
    import time

    import numpy as np

    from oomscope.core.recording import SessionInfo
    from oomscope.core.thresholds import settings_to_json
    from oomscope.gui.replay import ReplayWindow
    from oomscope.gui.session_data import SessionData

    now = time.time()
    recorded = ThresholdConfig(crit=Level(bytes=64 * MIB), metric="heap")
    info = SessionInfo(1, "host", None, now - 60, now, {"thresholds": settings_to_json(recorded)}, None)
    window = ReplayWindow(SessionData([], np.zeros(0), {}, now - 60, now), info, tmp_path / "s.db",
                          settings_at(tmp_path / "replay.ini"))
    qtbot.addWidget(window)
    assert window.levels_bar.alert_metric_box.currentData() == "heap"
    assert not window.levels_bar.alert_metric_box.isEnabled()
    assert window.plot.shown_metric == "heap_used"  # opened where the levels are drawn
    window.levels_bar.set_alert_metric("rss")
    assert window.thresholds.metric == "heap" and window.levels_bar.alert_metric_box.currentData() == "heap"
    window.levels_bar.set_levels(None, Level(bytes=8 * MIB))  # a replay's levels are the recording's
    assert window.thresholds == recorded and window.levels_bar.crit_edit.text() == "64MiB"
    window.close()


@pytest.mark.skipif(not v1_memory_writable(), reason="needs a writable cgroup v1 memory controller (root)")
def test_cgroup_usage_is_plotted_for_a_limited_worker_only(qtbot, make_window) -> None:
    """Offered once a worker has a cgroup of its own; its curve is the cgroup's usage against its
    limit line; a worker without one has no curve on that metric (no zeros)."""
    from oomscope.gui.history import METRICS
    from oomscope.gui.plot import MIB as PLOT_MIB

    window = make_window(interval_s=0.05)
    free = _holder(qtbot, window, "free", mib=16)
    _more_samples(qtbot, free, 2)
    # Its samples may carry the usage of the unlimited cgroup it sits in (here the root: the whole
    # machine's); without a limit that is no figure of its own, and the history keeps none.
    assert free.last.cgroup_limit is None
    item = window.plot.metric_box.model().item(METRICS.index("cgroup_usage"))
    assert not item.isEnabled()  # nobody has a cgroup usage yet: not offered

    limited = _holder(qtbot, window, "limited", mib=24, limit=128 * MIB)
    qtbot.waitUntil(lambda: limited.last.cgroup_usage is not None, timeout=10_000)
    qtbot.waitUntil(item.isEnabled, timeout=5_000)
    _choose_plot_metric(window, "cgroup_usage")
    _more_samples(qtbot, limited, 3)
    window.plot.redraw()
    assert set(window.plot.drawn_curves) == {limited.id}
    assert window.plot.cgroup_limit_lines == {limited.id: 128 * MIB}
    assert window.plot.plot_item.getAxis("left").labelText == "cgroup usage"
    [(_pen, poly)] = window.plot.curves.curve_lines()
    last_y = poly.at(poly.size() - 1).y()
    usage = limited.series.values("cgroup_usage")
    # The curve is the cgroup's usage (page cache included), not RSS.
    assert last_y * PLOT_MIB == pytest.approx(float(usage[-1]), rel=1e-3)
    assert float(usage[-1]) != pytest.approx(float(limited.series.values("rss")[-1]), rel=1e-3)
    # The free worker's history holds no zeros (nor the root's usage) there: unknown, so no curve.
    assert np.isnan(free.series.values("cgroup_usage")).all()
    # Plotting it moved nothing the alerts compare; the RSS levels are not drawn on it.
    assert window.engine.thresholds.metric == "rss"
    assert window.alert_metric_box.currentData() == "rss"
