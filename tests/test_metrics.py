"""``watch --metrics-port``: the exporter on a real engine with real workers, scraped over HTTP and
read with prometheus_client's own parser."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from conftest import PY, v1_memory_writable
from oomscope.core.engine import EngineConfig
from oomscope.core.errors import BadInput
from oomscope.core.events import CauseUpdated, KernelOom, WorkerExited, WorkerRef, WorkerStarted
from oomscope.core.launch import LaunchSpec
from oomscope.core.prometheus.metrics import MetricsBook, start_exporter
from oomscope.core.oomlog.records import KillRecord
from oomscope.core.sizes import Level
from oomscope.core.thresholds import ThresholdConfig
from test_prometheus_rig import HOLDER, LEAKER, QUITTER, SLEEPER, WAIT_THEN, Agent, run_arg, scrape, wait_until

GAUGE_LABELS = {"host", "worker", "pid"}


def samples(families: dict[str, Any], name: str, **labels: str) -> list[Any]:
    """Samples of a family (a counter's family is named without _total) matching the labels."""
    family = families.get(name.removesuffix("_total"))
    if family is None:
        return []
    return [s for s in family.samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]


def value(families: dict[str, Any], name: str, **labels: str) -> float | None:
    found = samples(families, name, **labels)
    assert len(found) <= 1, found
    return found[0].value if found else None


@pytest.fixture
def agents(tmp_path: Path) -> Any:
    started: list[Agent] = []

    def start(host: str, args: list[str], expire_s: float = 300.0) -> Agent:
        agent = Agent(tmp_path, host, args, expire_s)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()


def test_scrape_shows_the_workers_real_memory_and_its_exit_cause(agents: Any, tmp_path: Path) -> None:
    trigger = tmp_path / "quit"
    code = "import os, sys, time\nheld = bytearray(50 << 20)\n" + WAIT_THEN.split("\n", 1)[1] + "sys.exit(3)\n"
    agent = agents("host-m", ["--run", run_arg(SLEEPER), "--run", run_arg(code, str(trigger))])
    assert agent.metrics_url.startswith("http://127.0.0.1:")  # loopback unless asked otherwise
    started = agent.wait_event(lambda e: e["event"] == "worker_started" and e["worker"]["slot"] == 2)
    pid = str(started["worker"]["pid"])
    label = f"{started['worker']['name']}#2"

    def scraped_rss_was_sampled() -> float | None:
        rss = value(scrape(agent.metrics_url), "oomscope_worker_rss_bytes", worker=label, pid=pid)
        # A sample taken once the whole 50 MiB is in (not while the holder is still filling it).
        sampled = {e["rss"] for e in agent.events() if e["event"] == "sample" and str(e["worker"]["pid"]) == pid
                   and e["anon"] >= 50 << 20}
        return rss if rss is not None and rss >= 50 << 20 and int(rss) in sampled else None

    rss = wait_until(scraped_rss_was_sampled, 15, "a scraped RSS of the 50 MiB holder that the agent sampled")
    assert rss < 200 << 20
    families = scrape(agent.metrics_url)
    for name in ("oomscope_worker_rss_bytes", "oomscope_worker_anon_bytes", "oomscope_worker_threshold_level",
                 "oomscope_worker_running", "oomscope_worker_life"):
        assert families[name].type == "gauge"
        assert all(set(s.labels) == GAUGE_LABELS and s.labels["host"] == "host-m" for s in families[name].samples)
    assert value(families, "oomscope_worker_anon_bytes", pid=pid) >= 50 << 20
    assert value(families, "oomscope_worker_running", pid=pid) == 1.0
    # Counters start at 0 for every cause, so Prometheus sees the first exit as an increment.
    assert {s.labels["cause"]: s.value for s in samples(families, "oomscope_worker_exits_total", worker=label)} == {
        "oom-kill": 0.0, "heap-oom": 0.0, "terminated": 0.0, "signal": 0.0, "exit": 0.0, "unknown": 0.0}
    assert families["oomscope_worker_exits"].type == "counter"

    trigger.touch()
    exited = agent.wait_event(lambda e: e["event"] == "worker_exited")
    assert (exited["cause"], exited["exit_code"]) == ("exit", 3)
    families = wait_until(lambda: (f := scrape(agent.metrics_url)) and value(
        f, "oomscope_worker_exits_total", worker=label, cause="exit") == 1.0 and f, 10, "the exit counted")
    assert value(families, "oomscope_worker_running", pid=pid) == 0.0  # still there: expiry is 300 s
    assert value(families, "oomscope_worker_last_exit_timestamp_seconds", worker=label,
                 cause="exit") == pytest.approx(exited["t"], abs=1e-3)
    assert value(families, "oomscope_worker_exits_total", worker=label, cause="signal") == 0.0


def test_a_gone_workers_gauges_expire_and_its_slots_counters_live_on(agents: Any, tmp_path: Path, gate) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[restart]\nbackoff_initial_s = 0.2\nbackoff_cap_s = 0.2\n")
    # Each life (the same command) counts itself, then waits at its own gate until the test has
    # seen a sample of it (so it has gauges to expire), then exits 1.
    gates = [gate(), gate()]
    lives_dir = tmp_path / "lives"
    lives_dir.mkdir()
    code = ("import fcntl, os, sys\n"
            f"d, gates = {str(lives_dir)!r}, {[g.path for g in gates]!r}\n"
            "n = len(os.listdir(d))\n"
            "open(os.path.join(d, str(n)), 'w').close()\n"
            "fcntl.flock(open(gates[n]), fcntl.LOCK_SH)\n"
            "sys.exit(1)\n")
    agent = agents("host-x", ["--config", str(config), "--restart", "1", "--run", run_arg(SLEEPER),
                              "--run", run_arg(code)], expire_s=2.0)
    lives = []
    for n, held in zip((1, 2), gates):
        life = agent.wait_event(lambda e, n=n: e["event"] == "worker_started" and e["worker"]["slot"] == 2
                                and e["worker"]["life"] == n)
        agent.wait_event(lambda e, pid=life["worker"]["pid"]: e["event"] == "sample" and e["worker"]["pid"] == pid)
        held.open()
        lives.append(life)
    label = f"{lives[0]['worker']['name']}#2"
    pids = [str(e["worker"]["pid"]) for e in lives]
    second_exit = agent.wait_event(lambda e: e["event"] == "worker_exited" and str(e["worker"]["pid"]) == pids[1])
    families = scrape(agent.metrics_url)
    assert value(families, "oomscope_worker_exits_total", worker=label, cause="exit") == 2.0
    assert value(families, "oomscope_worker_life", pid=pids[1]) == 2.0
    assert value(families, "oomscope_worker_running", pid=pids[1]) == 0.0

    def gauges_gone() -> dict[str, Any] | None:
        f = scrape(agent.metrics_url)
        return f if not samples(f, "oomscope_worker_rss_bytes", worker=label) else None

    families = wait_until(gauges_gone, 10, "the restarted slot's gauges expire")
    assert time.time() - second_exit["t"] >= 2.0 - 0.05  # not before --metrics-expire
    assert not samples(families, "oomscope_worker_running", worker=label)
    # The slot's counters stay, and the sleeper's gauges are untouched.
    assert value(families, "oomscope_worker_exits_total", worker=label, cause="exit") == 2.0
    assert len(samples(families, "oomscope_worker_rss_bytes")) == 1


@pytest.mark.cgroup
@pytest.mark.skipif(not v1_memory_writable(), reason="needs root and a writable cgroup v1 memory controller")
def test_an_oom_kill_counts_as_oom_kill_and_as_a_kernel_kill(agents: Any, tmp_path: Path) -> None:
    trigger = tmp_path / "leak"
    trigger.touch()
    agent = agents("host-k", ["--mem-limit", "48MiB", "--run", run_arg(SLEEPER),
                              "--run", run_arg(LEAKER, str(trigger))])
    exited = agent.wait_event(lambda e: e["event"] == "worker_exited", timeout_s=30)
    assert exited["cause"] == "oom-kill"
    label = f"{exited['worker']['name']}#{exited['worker']['slot']}"
    families = scrape(agent.metrics_url)
    assert value(families, "oomscope_worker_exits_total", worker=label, cause="oom-kill") == 1.0
    assert value(families, "oomscope_kernel_oom_kills_total", killer="kernel-memcg", watched="true") == 1.0
    assert value(families, "oomscope_worker_cgroup_limit_bytes", pid=str(exited["worker"]["pid"])) == 48 << 20
    assert value(families, "oomscope_kernel_log_source_up", source="kmsg") == 1.0


@pytest.mark.cgroup
@pytest.mark.skipif(not v1_memory_writable(), reason="needs root and a writable cgroup v1 memory controller")
def test_levels_in_bytes_and_the_level_reached_with_the_engines_config(make_engine) -> None:
    """Given the engine's config, percent levels resolve against each worker's cgroup limit."""
    thresholds = ThresholdConfig(warn=Level(fraction=0.25), crit=Level(fraction=0.9), metric="anon")
    eng, log = make_engine(thresholds=thresholds)
    book = MetricsBook("h", 300.0, EngineConfig(thresholds=thresholds))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(book)
    ref = eng.launch(LaunchSpec((PY, "-c", HOLDER), mem_limit_bytes=128 << 20)).result(10)
    log.wait_for(lambda e: e.kind == "threshold" and e.worker.id == ref.id and e.level == "warning")
    for event in log.events:
        book.on_event(event)
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    pid = str(ref.pid)
    assert value(families, "oomscope_worker_threshold_level", pid=pid) == 1.0
    assert value(families, "oomscope_worker_threshold_bytes", pid=pid, level="warning", metric="anon") == 32 << 20
    assert value(families, "oomscope_worker_threshold_bytes", pid=pid, level="critical") == int(0.9 * (128 << 20))
    assert value(families, "oomscope_worker_cgroup_limit_bytes", pid=pid) == 128 << 20


def test_late_cause_and_unwatched_kills_count_history_does_not() -> None:
    """Counters only rise: a cause corrected by a late kernel record counts under the new cause;
    kernel kills of other processes count, kills replayed from before the start do not."""
    clock = [100.0]
    book = MetricsBook("h", 30.0, clock=lambda: clock[0])
    ref = WorkerRef("w1", 4242, 1.0, "node", ("node", "app.js"), True, slot=3)
    record = KillRecord("kernel-memcg", pid=4242)
    book.on_event(WorkerStarted(1.0, ref))
    book.on_event(WorkerExited(2.0, ref, cause="signal", exit_code=None, signal="SIGKILL"))
    book.on_event(CauseUpdated(3.0, ref, cause="oom-kill", previous="signal", oom=record))
    book.on_event(KernelOom(4.0, KillRecord("earlyoom", pid=77)))
    book.on_event(KernelOom(5.0, KillRecord("kernel-global", pid=78), history=True))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(book)
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    assert value(families, "oomscope_worker_exits_total", worker="node#3", cause="signal") == 1.0
    assert value(families, "oomscope_worker_exits_total", worker="node#3", cause="oom-kill") == 1.0
    assert value(families, "oomscope_worker_last_exit_timestamp_seconds", worker="node#3", cause="oom-kill") == 3.0
    kills = {(s.labels["killer"], s.labels["watched"]): s.value
             for s in samples(families, "oomscope_kernel_oom_kills_total") if s.value}
    # The late record was of a watched worker; earlyoom's was of some other process.
    assert kills == {("kernel-memcg", "true"): 1.0, ("earlyoom", "false"): 1.0}
    assert len(samples(families, "oomscope_kernel_oom_kills_total")) == 8  # every killer, both ways, from 0
    assert value(families, "oomscope_worker_running", pid="4242") == 0.0
    clock[0] += 30.0  # expiry is checked at the scrape, also without new events
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    assert not samples(families, "oomscope_worker_running")
    assert value(families, "oomscope_worker_exits_total", worker="node#3", cause="oom-kill") == 1.0


def test_loopback_by_default_and_a_warning_for_any_other_address() -> None:
    notices: list[tuple[str, str]] = []
    exporter = start_exporter(0, notice=lambda level, text: notices.append((level, text)))
    try:
        assert exporter.url == f"http://127.0.0.1:{exporter.port}/metrics"
        assert [level for level, _ in notices] == ["info"] and exporter.url in notices[0][1]
        assert scrape(exporter.url) is not None
    finally:
        exporter.close()
    with pytest.raises(OSError):  # closed: nothing listens there any more
        socket.create_connection(("127.0.0.1", exporter.port), timeout=2).close()
    notices.clear()
    exporter = start_exporter(0, "0.0.0.0", notice=lambda level, text: notices.append((level, text)))
    exporter.close()
    warnings = [text for level, text in notices if level == "warning"]
    assert len(warnings) == 1 and "no authentication" in warnings[0] and "0.0.0.0" in warnings[0]


@pytest.mark.parametrize("port, addr, text", [
    (70000, "127.0.0.1", "a port is a number from 1 to 65535"),
    (-1, "127.0.0.1", "a port is a number"),
    (0, "not an address!", "not an address to listen on"),
    (0, "192.0.2.7", "not an address of this machine"),
])
def test_bad_port_or_address_is_bad_input(port: int, addr: str, text: str) -> None:
    with pytest.raises(BadInput, match=text):
        start_exporter(port, addr, notice=lambda level, message: None)


def test_taken_port_exits_2_before_anything_is_launched(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = subprocess.run([PY, "-m", "oomscope", "watch", "--json", "--metrics-port", str(port),
                            "--run", "echo should-not-run"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert f"--metrics-port {port}: the port is already in use" in r.stderr
    assert "Traceback" not in r.stderr
    assert "should-not-run" not in r.stdout + r.stderr and "worker_started" not in r.stdout


def test_an_agent_that_ends_by_itself_waits_for_the_scrape_of_its_last_exit(agents: Any, tmp_path: Path) -> None:
    """The only worker quits, so watch ends; it keeps serving until a scrape has carried that
    exit (Prometheus would never see it otherwise), then stops at once."""
    trigger = tmp_path / "quit"
    agent = agents("host-l", ["--metrics-linger", "30", "--run", run_arg(QUITTER, str(trigger))])
    started = agent.wait_event(lambda e: e["event"] == "worker_started")
    label = f"{started['worker']['name']}#1"
    assert value(scrape(agent.metrics_url), "oomscope_worker_exits_total", worker=label, cause="exit") == 0.0
    trigger.touch()
    agent.wait_event(lambda e: e["event"] == "notice" and "waiting up to 30 s for Prometheus" in e["message"])
    assert agent.process.poll() is None  # still serving
    assert value(scrape(agent.metrics_url), "oomscope_worker_exits_total", worker=label, cause="exit") == 1.0
    assert agent.process.wait(timeout=10) == 3  # the only command's own exit status
    assert not [e for e in agent.events() if e["event"] == "notice" and "no scrape" in e["message"]]


def test_linger_waits_only_for_a_scrape_that_is_coming() -> None:
    """Only a response written out in full counts as scraped; nobody scraping means no wait."""
    exporter = start_exporter(0, notice=lambda level, text: None)
    try:
        book = exporter.book
        ref = WorkerRef("w1", 4242, 1.0, "python3", ("python3",), True, slot=1)
        book.on_event(WorkerStarted(1.0, ref))
        book.on_event(WorkerExited(2.0, ref, cause="exit", exit_code=0, signal=None))
        assert not book.unscraped_changes()  # nobody has ever scraped: nothing to wait for
        assert value(scrape(exporter.url), "oomscope_worker_exits_total", worker="python3#1", cause="exit") == 1.0
        assert not book.unscraped_changes() and book.wait_scraped(0.01)
        book.on_event(CauseUpdated(3.0, ref, cause="oom-kill", previous="signal"))
        assert book.unscraped_changes() and not book.wait_scraped(0.05)
        generate_latest(exporter_registry(book))  # collected, but nothing sent anywhere
        assert book.unscraped_changes()
        scrape(exporter.url)
        assert book.wait_scraped(0.01)
    finally:
        exporter.close()


def exporter_registry(book: MetricsBook) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(book)
    return registry
