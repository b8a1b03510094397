"""Issue #8 end to end: a real Prometheus scrapes two ``oomscope watch`` agents and a stand-in for
kube-state-metrics/cAdvisor; the fleet reader gets both hosts' workers, their memory, the
OOM kill (in a real cgroup v1 of the agent's own) with the right worker label, and the
Kubernetes container's OOM kill back from Prometheus's API. On the same Prometheus (it takes
seconds to start scraping, so one rig serves the module): the client's own queries, and the
GUI's fleet window.

The two agents run on this one machine and tell themselves apart by ``OOMSCOPE_HOST`` (a and b).
Each launched worker is one of ours; the leaker leaks only once Prometheus has seen it, inside
a 64 MiB cgroup its agent made, and its agent removes that cgroup.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import v1_memory_writable
from oomscope.core.errors import BadInput
from oomscope.core.prometheus import PrometheusClient, QueryFailed, read_fleet
from oomscope.core.prometheus.fleet import any_of, increments, promql_string
from test_prometheus_rig import (HOLDER, LEAKER, QUITTER, SLEEPER, WEIRD, Agent, KubeStandIn, PrometheusServer,
                                 Target, free_port, needs_prometheus, run_arg, scrape)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.cgroup,
    needs_prometheus,
    pytest.mark.skipif(not v1_memory_writable(), reason="needs root and a writable cgroup v1 memory controller"),
]

class FleetRig:
    """Two agents, the Kubernetes stand-in and Prometheus, after one OOM kill of each kind."""

    def __init__(self, workdir: Path, stack: list[Any]) -> None:
        trigger_a, trigger_b = workdir / "leak-now", workdir / "quit-now"
        self.kube = KubeStandIn((("shop", "api-7d9f", "api"), ("shop", "web-5c2b", "web")))
        stack.append(self.kube.close)
        self.kube.set_working_set(180e6)
        self.kube.set_working_set(500e6, ("shop", "web-5c2b", "web"))  # big, and never killed
        self.a = Agent(workdir, "a", ["--mem-limit", "64MiB", "--run", run_arg(SLEEPER),
                                      "--run", run_arg(LEAKER, str(trigger_a))])
        stack.append(self.a.stop)
        self.b = Agent(workdir, "b", ["--warn", "30MiB", "--crit", "1GiB", "--sustain", "0",
                                      "--run", run_arg(HOLDER), "--run", run_arg(QUITTER, str(trigger_b))])
        stack.append(self.b.stop)
        self.target = Target()  # for the client's own checks
        stack.append(self.target.close)
        self.prom = PrometheusServer(workdir / "prometheus", {
            "oomscope": [self.a.address, self.b.address], "kube": [self.kube.address],
            "rig": [self.target.address]})
        stack.append(self.prom.stop)
        # Everything is in Prometheus before anything dies: the deaths are increments it sees.
        for host in ("a", "b"):  # a few scrapes of each worker: a curve, not a dot
            self.prom.wait_for(f'count(count_over_time(oomscope_worker_rss_bytes{{host="{host}"}}[1m]) >= 3) == 2')
        self.prom.wait_for("count_over_time(container_memory_working_set_bytes[1m]) >= 3")
        trigger_a.touch()
        trigger_b.touch()
        self.kube.oom_kill()
        self.kube.set_working_set(20e6)
        self.target.counter.labels("x").inc(2)
        self.target.gauge.labels("x").set(2.5e6)
        self.a_exit = self.a.wait_event(lambda e: e["event"] == "worker_exited", timeout_s=30)
        # Agent b reads the same kernel log: a's leaker is a process it does not watch.
        leaker_pid = self.a_exit["worker"]["pid"]
        self.b_saw = self.b.wait_event(lambda e: e["event"] == "kernel_oom" and e["oom"]["pid"] == leaker_pid)
        self.b_exit = self.b.wait_event(lambda e: e["event"] == "worker_exited")
        self.prom.wait_for('oomscope_worker_exits_total{host="a",cause="oom-kill"} > 0')
        self.prom.wait_for('oomscope_worker_exits_total{host="b",cause="exit"} > 0')
        self.prom.wait_for('oomscope_kernel_oom_kills_total{host="b",watched="false",killer="kernel-memcg"} > 0')
        self.prom.wait_for("container_oom_events_total > 0")
        self.prom.wait_for('kube_pod_container_status_last_terminated_reason{reason="OOMKilled"} == 1')
        self.prom.wait_for("container_memory_working_set_bytes < 50e6")
        self.prom.wait_for("rig_deaths_total == 2")
        self.prom.wait_for('rig_memory_bytes{who="x"} == 2.5e6')

    def started(self, agent: Agent) -> dict[str, dict[str, Any]]:
        """worker label (name#slot) -> its worker_started event."""
        return {f"{e['worker']['name']}#{e['worker']['slot']}": e for e in agent.events()
                if e["event"] == "worker_started"}


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetRig]:
    stack: list[Any] = []
    try:
        yield FleetRig(tmp_path_factory.mktemp("fleet"), stack)
    finally:
        for close in reversed(stack):
            close()


def test_the_oom_kill_of_host_a_is_the_leakers_with_its_worker_label(rig: FleetRig) -> None:
    assert (rig.a_exit["cause"], rig.a_exit["signal"]) == ("oom-kill", "SIGKILL"), rig.a_exit
    fleet = read_fleet(PrometheusClient(rig.prom.url), window_s=180)
    oom = [d for d in fleet.deaths if d.kind == "oomscope" and d.cause == "oom-kill"]
    assert len(oom) == 1, fleet.deaths
    death = oom[0]
    leaker = rig.a_exit["worker"]
    assert (death.host, death.worker, death.pid) == ("a", f"{leaker['name']}#{leaker['slot']}", leaker["pid"])
    # The agent's last-exit timestamp places the death at the engine's own time of the exit.
    assert death.t == pytest.approx(rig.a_exit["t"], abs=0.01)
    assert death.key == f"a/{leaker['name']}#{leaker['slot']}/{leaker['pid']}"
    dead = next(w for w in fleet.workers if w.key == death.key)
    assert not dead.running and dead.cgroup_limit == 64 << 20


def test_a_kill_of_a_process_an_agent_does_not_watch_is_on_its_kernel_lane(rig: FleetRig) -> None:
    """Both agents read this machine's kernel log: the leaker's kill is host a's worker's death,
    and for host b the kernel's kill of some other process (its lane, not a worker's)."""
    fleet = read_fleet(PrometheusClient(rig.prom.url), window_s=180)
    near = [d for d in fleet.deaths if d.cause == "kernel-oom" and abs(d.t - rig.a_exit["t"]) < 5]
    assert [(d.host, d.worker, d.key) for d in near] == [("b", "kernel-memcg kill", None)], fleet.deaths
    host_b = next(h for h in fleet.hosts if h.name == "b")
    assert host_b.kernel_kills.get("kernel-memcg", 0) >= 1


def test_both_hosts_and_their_workers_with_their_real_memory(rig: FleetRig) -> None:
    fleet = read_fleet(PrometheusClient(rig.prom.url), window_s=180)
    assert {h.name for h in fleet.hosts} >= {"a", "b", "node-1"}
    for agent in (rig.a, rig.b):
        started = rig.started(agent)
        remote = {w.worker: w for w in fleet.workers_of(agent.host)}
        assert set(remote) == set(started)
        for label, w in remote.items():
            assert w.pid == started[label]["worker"]["pid"]
            assert w.kind == "oomscope" and len(w.times) >= 2
    holder = next(w for w in fleet.workers_of("b") if w.running)
    # Every value Prometheus holds is one the agent sampled (its JSON lines say the same numbers).
    sampled = {e["rss"] for e in rig.b.events() if e["event"] == "sample" and e["worker"]["pid"] == holder.pid}
    values = {int(v) for v in holder.rss if math.isfinite(v)}
    assert values and values <= sampled
    assert 40 << 20 <= max(values) < 200 << 20
    # b's workers crossed 30 MiB: the holder is at warning, with the level the engine crossed.
    assert holder.level == "warning"
    assert holder.levels["warning"] == 30 << 20 and holder.levels_metric == "rss"
    source = fleet.host("a")
    assert source is not None and source.sources.get("kmsg") is True
    assert source.kernel_kills.get("kernel-memcg", 0) >= 1
    quit_ = [d for d in fleet.deaths if d.host == "b" and d.cause != "kernel-oom"]
    assert [(d.cause, d.worker, d.pid) for d in quit_] == [
        ("exit", f"{rig.b_exit['worker']['name']}#{rig.b_exit['worker']['slot']}", rig.b_exit["worker"]["pid"])]
    assert rig.b_exit["exit_code"] == 3


def test_kubernetes_container_and_its_oom_kill_reported_by_both_exporters(rig: FleetRig) -> None:
    fleet = read_fleet(PrometheusClient(rig.prom.url), window_s=180)
    containers = {w.worker: w for w in fleet.workers if w.kind == "kubernetes"}
    assert set(containers) == {"shop/api-7d9f/api", "shop/web-5c2b/web"}
    container = containers["shop/api-7d9f/api"]
    assert (container.host, container.pid, container.running) == ("node-1", None, True)
    assert {float(v) for v in container.rss} == {180e6, 20e6}
    [death] = [d for d in fleet.deaths if d.kind == "kubernetes"]
    assert (death.cause, death.key, death.host) == ("oom-kill", container.key, "node-1")
    assert death.source == "cadvisor+kube-state-metrics"  # one kill, seen by both: one death


def test_of_many_containers_the_largest_and_every_killed_one(rig: FleetRig, monkeypatch: pytest.MonkeyPatch) -> None:
    from oomscope.core.prometheus import fleet as fleet_module

    monkeypatch.setattr(fleet_module, "K8S_MAX_CONTAINERS", 1)
    fleet = read_fleet(PrometheusClient(rig.prom.url), window_s=180)
    # web is the largest (the one of the top 1), api is smaller but was OOM-killed.
    assert sorted(w.worker for w in fleet.workers if w.kind == "kubernetes") == [
        "shop/api-7d9f/api", "shop/web-5c2b/web"]
    monkeypatch.setattr(fleet_module, "K8S_MAX_CONTAINERS", 0)  # "the top 0": only the killed one
    fleet = read_fleet(PrometheusClient(rig.prom.url), window_s=180)
    assert [w.worker for w in fleet.workers if w.kind == "kubernetes"] == ["shop/api-7d9f/api"]


def test_agent_exposition_parses_with_prometheus_clients_parser(rig: FleetRig) -> None:
    families = scrape(rig.b.metrics_url)
    for name in ("oomscope_worker_rss_bytes", "oomscope_worker_anon_bytes", "oomscope_worker_threshold_level",
                 "oomscope_worker_running"):
        assert families[name].type == "gauge"
        for s in families[name].samples:
            assert set(s.labels) == {"host", "worker", "pid"} and s.labels["host"] == "b"
    exits = families["oomscope_worker_exits"]
    assert exits.type == "counter"
    by_cause = {(s.labels["worker"], s.labels["cause"]): s.value for s in exits.samples if s.name.endswith("_total")}
    quitter = f"{rig.b_exit['worker']['name']}#{rig.b_exit['worker']['slot']}"
    assert by_cause[(quitter, "exit")] == 1.0 and by_cause[(quitter, "oom-kill")] == 0.0
    assert families["oomscope_kernel_log_source_up"].samples[0].labels["host"] == "b"


# ------------------------------------------------- the client's queries on the same Prometheus

def test_instant_range_and_raw_sample_queries(rig: FleetRig) -> None:
    server = rig.prom
    client = PrometheusClient(server.url.replace("http://", ""))  # the scheme may be left out
    [now] = client.query('rig_memory_bytes{who="x"}')
    assert now.name == "rig_memory_bytes" and now.labels["job"] == "rig" and now.last() == 2.5e6
    end = time.time()
    [ranged] = client.query_range('rig_memory_bytes{who="x"}', end - 20, end, 0.5)
    assert np.allclose(np.diff(ranged.times), 0.5) and ranged.times[-1] <= end + 0.001  # ms stamps
    assert set(ranged.values) == {1.5e6, 2.5e6}
    # A range selector answers with the raw samples: each scrape once, at its own time.
    [raw] = client.query("rig_deaths_total[30s]", at=end)
    assert 0.8 < float(np.median(np.diff(raw.times))) < 1.2  # scrape_interval 1s
    assert raw.values[0] == 0.0 and raw.values[-1] == 2.0
    [(_, t, n)] = increments(raw, end - 30)
    assert n == 2 and t == raw.times[int(np.argmax(raw.values))]
    [scalar] = client.query("scalar(rig_deaths_total) * 2")
    assert scalar.labels == {} and scalar.last() == 4.0
    assert math.isnan(client.query("0/0")[0].last())
    assert client.query('rig_memory_bytes{who="nobody"}') == []


def test_label_values_are_matched_exactly_whatever_their_characters(rig: FleetRig) -> None:
    server = rig.prom
    client = PrometheusClient(server.url)
    for values, expected in (([WEIRD], {WEIRD}), (["x", WEIRD], {"x", WEIRD}), (["a.b(c)"], set()),
                             (["x", "a.b.c."], {"x"})):
        answer = client.query(f"rig_memory_bytes{{who=~{promql_string(any_of(values))}}}")
        assert {s.labels["who"] for s in answer} == expected, values


def test_bad_promql_carries_prometheus_own_error(rig: FleetRig) -> None:
    server = rig.prom
    client = PrometheusClient(server.url)
    with pytest.raises(QueryFailed) as e:
        client.query("rate(rig_deaths_total[5m]")
    text = str(e.value)
    assert text.startswith(f"Prometheus at {server.url} refused the query (HTTP 400 bad_data): ")
    assert "parse error" in text
    with pytest.raises(BadInput, match="more than Prometheus answers"):
        client.query_range("up", 0, 86400, 1)


# ------------------------------------------------------------- the fleet window on this rig

def table_rows(window: Any) -> dict[str, list[dict[str, str]]]:
    """The fleet window's table as the user reads it: host -> its workers' rows (column title ->
    text), in the table's order."""
    from oomscope.gui.qt import Qt

    model = window.view.table.model()
    titles = [model.headerData(c, Qt.Orientation.Horizontal) for c in range(model.columnCount())]
    out: dict[str, list[dict[str, str]]] = {}
    for h in range(model.rowCount()):
        host = model.index(h, 0)
        out[str(host.data())] = [{title: str(model.index(r, c, host).data() or "") for c, title in enumerate(titles)}
                                 for r in range(model.rowCount(host))]
    return out


@pytest.mark.gui
@pytest.mark.qt_log_ignore(r"This plugin does not support propagateSizeHints")
def test_fleet_window_lists_hosts_plots_memory_and_times_the_oom_kill(
        qtbot: Any, rig: FleetRig, tmp_path: Path) -> None:
    """File → Connect to Prometheus… on this rig: the window the issue asks for."""
    from gui_helpers import settings_at
    from oomscope.gui.fleet import FleetWindow

    window = FleetWindow(rig.prom.url, settings_at(tmp_path / "settings.ini"))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    with qtbot.waitSignal(window.refreshed, timeout=20000) as blocker:
        pass
    assert blocker.args == [True], window.problem
    assert not window.message_bar.isVisible()
    # The table: every host, every worker under its host.
    hosts = table_rows(window)
    assert set(hosts) >= {"a", "b", "node-1"}
    leaker = rig.a_exit["worker"]
    label = f"{leaker['name']}#{leaker['slot']}"
    a_rows = {row["Host / worker"]: row for row in hosts["a"]}
    assert set(a_rows) == set(rig.started(rig.a))
    assert a_rows[label]["PID"] == str(leaker["pid"]) and a_rows[label]["State"] == "exited: oom-kill"
    assert a_rows[label]["Deaths"] == "1"
    k8s = hosts["node-1"][0]
    assert k8s["Host / worker"] == "shop/api-7d9f/api" and k8s["Deaths"] == "1"
    # The plot drew every worker with points, the timeline holds both OOM kills.
    assert set(window.plot.drawn_curves) == {w.key for w in window.fleet.workers}
    assert all(points >= 1 for curves in window.plot.drawn_curves.values() for _name, points in curves)
    kills = [(t, d) for t, _lane, d in window.timeline.marker_deaths() if d.cause == "oom-kill"]
    by_worker = {d.worker_id: t for t, d in kills}
    key = f"a/{label}/{leaker['pid']}"
    assert by_worker[key] == pytest.approx(rig.a_exit["t"], abs=0.01)
    assert "k8s/shop/api-7d9f/api" in by_worker
    # Host b's kernel told of the same kill as one of a process b does not watch: its lane.
    other = [(d.name, lane) for t, lane, d in window.timeline.marker_deaths()
             if d.cause == "kernel-oom" and abs(t - rig.a_exit["t"]) < 5]
    assert other == [("kernel-memcg kill @ b", "kernel-oom")]
    # Selecting a worker with levels shows them as lines, and clicking a kill selects its worker.
    holder = next(w for w in window.fleet.workers_of("b") if w.running)
    assert window.select_worker(holder.key)
    assert window.plot.lines["warning"].isVisible() and window.plot.lines["warning"].value() == 30.0
    assert not window.plot.lines["warning"].movable
    window.timeline.death_clicked.emit(next(d for _t, d in kills if d.worker_id == key))  # as a click does
    assert window.selected_keys() == [key]
    assert window.plot.selected == {key}
    png = tmp_path / "fleet.png"
    assert window.grab().save(str(png))
    assert png.stat().st_size > 20_000
    if os.environ.get("OOMSCOPE_KEEP_SCREENSHOT"):
        window.grab().save(os.environ["OOMSCOPE_KEEP_SCREENSHOT"])
    # The plot's Window is the range asked of Prometheus, and remembered.
    with qtbot.waitSignal(window.refreshed, timeout=20000) as blocker:
        window.plot.window_box.setCurrentIndex(window.plot.window_box.findText("1 h"))
    assert blocker.args == [True] and window.fleet.end - window.fleet.start == 3600.0
    assert float(window.settings.value("fleet/window_s")) == 3600.0
    assert window.selected_keys() == [key]  # a refresh keeps the selection
    # A server gone: said in the window, and what was shown stays.
    with qtbot.waitSignal(window.refreshed, timeout=20000) as blocker:
        window.connect_to(f"http://127.0.0.1:{free_port()}")
    assert blocker.args == [False] and window.message_bar.isVisible()
    assert window.message_bar.full_text == window.problem
    assert "connection refused" in window.problem and "last successful refresh" in window.problem
    assert len(table_rows(window)) == len(hosts) and window.timeline.markers()


# ------------------------------------------------------------------- last: an agent goes away

def test_an_agent_that_stopped_leaves_its_workers_not_running(rig: FleetRig) -> None:
    """Runs last in this module: it stops agent b (SIGINT, as its user would)."""
    rig.b.stop()
    rig.prom.wait_for(f'up{{instance="{rig.b.address}"}} == 0')
    fleet = read_fleet(PrometheusClient(rig.prom.url), window_s=180)
    b_workers = fleet.workers_of("b")
    assert b_workers and not any(w.running for w in b_workers)
    assert any(w.running for w in fleet.workers_of("a"))  # a still runs its sleeper
