"""The fleet window's views are the main window's SessionView (issue #15): its table grouped by
host with check boxes and a filter, its plot with the legend, its timeline and its detail pane,
over what a real Prometheus scraped from two Kubernetes nodes (the rig's stand-in for
cAdvisor and kube-state-metrics; no agents, no cgroups: this runs wherever prometheus does)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gui_helpers import GUI_MARKS, settings_at
from test_prometheus_rig import KubeStandIn, PrometheusServer, needs_prometheus

pytestmark = [*GUI_MARKS, needs_prometheus, pytest.mark.slow]

NODE_1 = (("shop", "api-7d9f", "api"), ("shop", "web-5c2b", "web"))
NODE_2 = (("batch", "etl-1a2b", "etl"),)
API, WEB, ETL = "k8s/shop/api-7d9f/api", "k8s/shop/web-5c2b/web", "k8s/batch/etl-1a2b/etl"


class TwoNodes:
    """Two nodes' exporters scraped by a real Prometheus; api on node-1 was OOM-killed."""

    def __init__(self, workdir: Path, stack: list[Any]) -> None:
        self.node_1 = KubeStandIn(NODE_1, node="node-1")
        stack.append(self.node_1.close)
        self.node_2 = KubeStandIn(NODE_2, node="node-2")
        stack.append(self.node_2.close)
        self.node_1.set_working_set(180e6)
        self.node_1.set_working_set(300e6, NODE_1[1])
        self.node_2.set_working_set(90e6)
        self.prom = PrometheusServer(workdir / "prometheus", {"kube": [self.node_1.address, self.node_2.address]})
        stack.append(self.prom.stop)
        self.prom.wait_for("count(count_over_time(container_memory_working_set_bytes[1m]) >= 3) == 3")
        self.node_1.oom_kill()
        self.node_1.set_working_set(20e6)
        self.prom.wait_for("container_oom_events_total > 0")
        self.prom.wait_for('kube_pod_container_status_last_terminated_reason{reason="OOMKilled"} == 1')
        self.prom.wait_for("container_memory_working_set_bytes < 50e6")


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoNodes]:
    stack: list[Any] = []
    try:
        yield TwoNodes(tmp_path_factory.mktemp("fleet-view"), stack)
    finally:
        for close in reversed(stack):
            close()


@pytest.fixture
def window(qtbot: Any, nodes: TwoNodes, tmp_path: Path) -> Any:
    from oomscope.gui.fleet import FleetWindow

    w = FleetWindow(nodes.prom.url, settings_at(tmp_path / "settings.ini"))
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    if w.fetches == 0:
        with qtbot.waitSignal(w.refreshed, timeout=20000) as blocker:
            pass
        assert blocker.args == [True], w.problem
    assert w.problem is None, w.problem
    return w


def drawn(window: Any) -> set[str]:
    return set(window.plot.drawn_curves)


def name_check(window: Any, key: str) -> Any:
    """The Name cell's check state of ``key``'s row, as the table shows it."""
    from oomscope.gui.qt import Qt

    view = window.view
    return view.proxy.mapFromSource(view.model.row_of(key)).data(Qt.ItemDataRole.CheckStateRole)


def test_the_fleet_windows_views_are_a_session_view(window: Any, qtmodeltester: Any) -> None:
    from oomscope.gui.fleet import FleetModel
    from oomscope.gui.qt import Qt
    from oomscope.gui.session_view import SessionView

    view = window.view
    assert isinstance(view, SessionView) and window.centralWidget() is view
    assert (window.plot, window.timeline, window.roster) == (view.plot, view.timeline, view.roster)
    assert isinstance(view.model, FleetModel) and view.table.model() is view.proxy
    qtmodeltester.check(view.model)
    # Hosts over their workers, unfolded; every worker of the fleet drawn, and in the legend.
    hosts = [view.proxy.index(r, 0) for r in range(view.proxy.rowCount())]
    assert [h.data() for h in hosts] == ["node-1", "node-2"]
    assert [[view.proxy.index(r, 0, h).data() for r in range(view.proxy.rowCount(h))] for h in hosts] == [
        ["shop/api-7d9f/api", "shop/web-5c2b/web"], ["batch/etl-1a2b/etl"]]
    assert all(view.table.isExpanded(h) for h in hosts)
    assert drawn(window) == {API, WEB, ETL}
    assert {key for key, _text, shown in view.plot.legend.entries() if shown} == {API, WEB, ETL}
    assert view.plot.legend.isVisible()
    # No kernel log here: its pane is left out; the detail pane is there.
    assert not view.kernel_dock.isVisible() and view.detail_dock.isVisible()
    assert name_check(window, API) == Qt.CheckState.Checked


def test_the_legend_and_the_check_box_hide_a_fleet_workers_curve_across_refreshes(
        qtbot: Any, window: Any) -> None:
    from oomscope.gui.qt import Qt

    legend = window.view.plot.legend
    item = legend.item_of(WEB)
    assert item is not None
    qtbot.mouseClick(legend.list.viewport(), Qt.MouseButton.LeftButton, pos=legend.list.visualItemRect(item).center())
    qtbot.waitUntil(lambda: drawn(window) == {API, ETL}, timeout=5000)
    assert name_check(window, WEB) == Qt.CheckState.Unchecked
    # A refresh builds every worker anew: the one hidden stays hidden.
    with qtbot.waitSignal(window.refreshed, timeout=20000) as blocker:
        window.refresh_action.trigger()
    assert blocker.args == [True]
    window.plot.redraw()
    assert drawn(window) == {API, ETL} and name_check(window, WEB) == Qt.CheckState.Unchecked
    # The table's check box shows it again, and hides another.
    view = window.view
    view.proxy.setData(view.proxy.mapFromSource(view.model.row_of(WEB)), Qt.CheckState.Checked,
                       Qt.ItemDataRole.CheckStateRole)
    view.proxy.setData(view.proxy.mapFromSource(view.model.row_of(ETL)), Qt.CheckState.Unchecked,
                       Qt.ItemDataRole.CheckStateRole)
    qtbot.waitUntil(lambda: drawn(window) == {API, WEB}, timeout=5000)
    assert {key: shown for key, _text, shown in legend.entries()} == {API: True, WEB: True, ETL: False}


def test_the_filter_filters_the_fleets_table_and_plot(qtbot: Any, window: Any) -> None:
    from oomscope.gui.qt import Qt

    view = window.view
    qtbot.keyClicks(view.filter_edit, "node-2")  # a host's name: the host and all its workers
    qtbot.waitUntil(lambda: drawn(window) == {ETL}, timeout=5000)
    host = view.proxy.index(0, 0)
    assert view.proxy.rowCount() == 1 and host.data() == "node-2" and view.proxy.rowCount(host) == 1
    assert [key for key, _t, _s in view.plot.legend.entries()] == [ETL]
    view.filter_edit.setText("web")  # a worker's name: that worker under its host
    qtbot.waitUntil(lambda: drawn(window) == {WEB}, timeout=5000)
    qtbot.keyClick(view.filter_edit, Qt.Key.Key_Escape)
    assert view.filter_edit.text() == ""
    qtbot.waitUntil(lambda: drawn(window) == {API, WEB, ETL}, timeout=5000)


def test_selecting_a_killed_container_shows_its_story_and_a_death_marker_selects_it(window: Any) -> None:
    view = window.view
    assert window.select_worker(WEB) and window.selected_keys() == [WEB]
    assert view.detail.worker is window.roster.by_id[WEB]
    assert window.plot.selected == {WEB}
    [death] = [d for d in window.roster.deaths if d.worker_id == API]
    assert death.cause == "oom-kill"
    window.timeline.death_clicked.emit(death)  # as a click on its marker does
    assert window.selected_keys() == [API] and view.detail.worker is window.roster.by_id[API]
    # Restarted by the kubelet, it runs on: the pane says what the exporters counted.
    told = view.detail.text()
    assert "evidence: " in told and "oom-kill (counted by cadvisor+kube-state-metrics)" in told
    # The exporters publish no PID: none is made up ("PID 0" named the kernel's idle task).
    assert "PID" not in told.split("\n")[0], told
    assert all(not text.endswith(" · 0") and "PID" not in text for _id, text, _shown in window.plot.legend.entries())
    assert "shop/api-7d9f/api @ node-1: killed by the OOM killer" in window.statusBar().currentMessage()
    assert not window.select_worker("k8s/no/such/thing")
