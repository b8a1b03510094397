"""The real-Prometheus rig shared by the Prometheus tests, and the checks of the rig itself.

* :class:`PrometheusServer`: Debian's ``prometheus`` binary on a loopback port with a temporary
  config (scrape interval 1 s) and TSDB; stopped by its PID.
* :class:`Agent`: ``oomscope watch --json --metrics-port 0`` as a user runs it, its JSON lines in
  a file (a pipe left unread would block it), stopped by its PID with SIGINT (it terminates its
  workers and removes their cgroups; what a killed agent leaves behind is removed here).
* :class:`KubeStandIn`: there is no Kubernetes cluster here. A loopback endpoint built with
  prometheus_client stands in for kube-state-metrics and cAdvisor: it exposes
  ``kube_pod_container_status_last_terminated_reason``, ``kube_pod_container_status_restarts_total``,
  ``container_memory_working_set_bytes`` and ``container_oom_events_total`` with the labels the
  real exporters use, and the test changes the values over time.

Waiting is on conditions (an event in the agent's output, an answer of Prometheus's API), never
on a fixed sleep.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.exposition import generate_latest, start_http_server
from prometheus_client.parser import text_string_to_metric_families

from conftest import PY, REPO

# $OOMSCOPE_PROMETHEUS (what .ci/run sets, from .ci/fetch-prometheus), else one on PATH.
PROMETHEUS = os.environ.get("OOMSCOPE_PROMETHEUS") or shutil.which("prometheus")
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="no prometheus binary: set OOMSCOPE_PROMETHEUS=$(.ci/fetch-prometheus) (downloads "
    "Debian's package into .ci/cache, installs nothing) or put prometheus on PATH",
)
T = TypeVar("T")

# Workers the rig's agents launch: each waits for its trigger file where it takes one.
WAIT_THEN = "import os, sys, time\nwhile not os.path.exists(sys.argv[1]): time.sleep(0.05)\n"
LEAKER = WAIT_THEN + "chunks = []\nwhile True:\n    chunks.append(bytearray(1 << 20)); time.sleep(0.01)\n"
QUITTER = WAIT_THEN + "sys.exit(3)\n"
HOLDER = "import time\nheld = bytearray(40 << 20)\ntime.sleep(300)\n"
SLEEPER = "import time\ntime.sleep(300)\n"


def run_arg(code: str, *args: str) -> str:
    """A ``--run`` command line running ``code`` with this interpreter."""
    return " ".join([PY, "-c", shlex.quote(code), *map(shlex.quote, args)])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], T | None], timeout_s: float, what: str) -> T:
    """Poll ``check`` until it returns something truthy (a condition on a real server's answer)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(0.1)


def scrape(url: str) -> dict[str, Any]:
    """The metric families an endpoint serves, parsed by prometheus_client's own parser."""
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def stop_process(p: subprocess.Popen[Any], first: int = signal.SIGTERM, grace_s: float = 20.0) -> None:
    """Signal a process this test started (by its PID, through Popen), SIGKILL if it lingers."""
    if p.poll() is None:
        p.send_signal(first)
        try:
            p.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)


class PrometheusServer:
    def __init__(self, workdir: Path, jobs: dict[str, list[str]]) -> None:
        assert PROMETHEUS is not None
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "prometheus.yml"
        lines = ["global:", "  scrape_interval: 1s", "  scrape_timeout: 1s", "scrape_configs:"]
        for job, targets in jobs.items():
            lines += [f"  - job_name: {job}", "    static_configs:",
                      f"      - targets: [{', '.join(repr(t) for t in targets)}]"]
        config.write_text("\n".join(lines) + "\n")
        self.log_path = workdir / "prometheus.log"
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_until(self._ready, 30, f"prometheus ready on {self.url} (log: {self.log_path})")
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"prometheus exited: {self.log_path.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def query(self, promql: str) -> list[dict[str, Any]]:
        data = urllib.request.urlopen(self.url + "/api/v1/query?" + urllib.parse.urlencode({"query": promql}),
                                      timeout=5).read()
        return list(json.loads(data)["data"]["result"])

    def wait_for(self, promql: str, timeout_s: float = 20.0) -> list[dict[str, Any]]:
        return wait_until(lambda: self.query(promql), timeout_s, f"prometheus has {promql}")

    def stop(self) -> None:
        stop_process(self.process)
        self._log.close()


class Agent:
    """One ``oomscope watch`` with a host label of its own."""

    def __init__(self, workdir: Path, host: str, args: list[str], expire_s: float = 300.0) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.out_path = workdir / f"agent-{host}.jsonl"
        self.err_path = workdir / f"agent-{host}.err"
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        env = dict(os.environ, OOMSCOPE_HOST=host)
        self.process = subprocess.Popen(
            [PY, "-m", "oomscope", "watch", "--json", "--interval", "0.1", "--metrics-port", "0",
             "--metrics-expire", str(expire_s), *args],
            stdout=self._out, stderr=self._err, stdin=subprocess.DEVNULL, env=env, cwd=REPO)
        try:
            notice = self.wait_event(lambda e: e["event"] == "notice" and "metrics on" in e["message"])
        except BaseException:
            self.stop()
            raise
        self.metrics_url = notice["message"].split(" on ", 1)[1].split(" ", 1)[0]
        self.address = self.metrics_url.split("//", 1)[1].split("/", 1)[0]

    def events(self) -> list[dict[str, Any]]:
        lines = self.out_path.read_text().splitlines()
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass  # a line still being written
        return out

    def wait_event(self, pred: Callable[[dict[str, Any]], bool], timeout_s: float = 20.0) -> dict[str, Any]:
        def seen() -> dict[str, Any] | None:
            if self.process.poll() is not None and not any(pred(e) for e in self.events()):
                raise AssertionError(f"agent {self.host} exited with {self.process.returncode}: "
                                     f"{self.err_path.read_text()[-2000:]}")
            return next((e for e in self.events() if pred(e)), None)
        return wait_until(seen, timeout_s, f"agent {self.host}: an event")

    def stop(self) -> None:
        stop_process(self.process, signal.SIGINT)
        self._out.close()
        self._err.close()
        # A killed agent cannot remove its workers' cgroups: do it for it (only its own).
        for e in self.events():
            cg = e.get("cgroup") if e.get("event") == "worker_started" else None
            directory = f"/sys/fs/cgroup/memory{cg}" if cg else None
            if directory and os.path.isdir(directory) and "/oomscope/" in directory:
                with open(os.path.join(directory, "cgroup.procs")) as f:
                    for pid in f.read().split():
                        try:
                            os.kill(int(pid), signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                deadline = time.monotonic() + 5
                while os.path.isdir(directory):
                    try:
                        os.rmdir(directory)
                    except OSError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.05)


class KubeStandIn:
    """kube-state-metrics' and cAdvisor's OOM signals for a few containers, on a loopback port.

    ``key`` is (namespace, pod, container); the first container is the default one."""

    LABELS = ("namespace", "pod", "container")

    def __init__(self, keys: tuple[tuple[str, str, str], ...] = (("shop", "api-7d9f", "api"),),
                 node: str = "node-1") -> None:
        self.registry = CollectorRegistry()
        self.key = keys[0]
        self.reason = Gauge("kube_pod_container_status_last_terminated_reason", "Describes the last reason "
                            "the container was in terminated state.", [*self.LABELS, "reason"],
                            registry=self.registry)
        self.restarts = Counter("kube_pod_container_status_restarts", "The number of container restarts per "
                                "container.", list(self.LABELS), registry=self.registry)
        self.working_set = Gauge("container_memory_working_set_bytes", "Current working set in bytes.",
                                 [*self.LABELS, "node"], registry=self.registry)
        self.oom_events = Counter("container_oom_events", "Count of out of memory events observed for the "
                                  "container", [*self.LABELS, "node"], registry=self.registry)
        self.node = node
        for key in keys:
            self.restarts.labels(*key)
            self.oom_events.labels(*key, node)
        self.server, self._thread = start_http_server(0, "127.0.0.1", registry=self.registry)
        self.address = f"127.0.0.1:{self.server.server_port}"

    def set_working_set(self, value: float, key: tuple[str, str, str] | None = None) -> None:
        self.working_set.labels(*(key or self.key), self.node).set(value)

    def oom_kill(self, key: tuple[str, str, str] | None = None) -> None:
        """What the two exporters show after the kubelet restarted an OOM-killed container."""
        key = key or self.key
        self.oom_events.labels(*key, self.node).inc()
        self.reason.labels(*key, "OOMKilled").set(1)
        self.restarts.labels(*key).inc()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


WEIRD = 'a.b(c)|d\\e"f [g]*'  # every character a regex or a PromQL string treats specially


class Target:
    """A scrape target of our own: one gauge and one counter the test sets (the client's checks)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.gauge = Gauge("rig_memory_bytes", "test gauge", ["who"], registry=self.registry)
        self.counter = Counter("rig_deaths", "test counter", ["who"], registry=self.registry)
        self.gauge.labels("x").set(1.5e6)
        self.gauge.labels(WEIRD).set(7.0)
        self.counter.labels("x")
        self.server, _ = start_http_server(0, "127.0.0.1", registry=self.registry)
        self.address = f"127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ------------------------------------------------------------------- the rig's own checks

def test_kube_stand_in_exposes_what_the_real_exporters_name() -> None:
    k = KubeStandIn()
    try:
        k.set_working_set(123e6)
        k.oom_kill()
        families = scrape(f"http://{k.address}/metrics")
        reason = families["kube_pod_container_status_last_terminated_reason"].samples[0]
        assert reason.labels == {"namespace": "shop", "pod": "api-7d9f", "container": "api", "reason": "OOMKilled"}
        assert reason.value == 1.0
        # prometheus_client's parser names a counter's family without _total; its sample keeps it.
        oom = [s for s in families["container_oom_events"].samples if s.name == "container_oom_events_total"]
        assert [s.value for s in oom] == [1.0]
        assert families["container_memory_working_set_bytes"].samples[0].value == 123e6
        assert "kube_pod_container_status_restarts_total" in generate_latest(k.registry).decode()
    finally:
        k.close()
