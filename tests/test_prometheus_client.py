"""The Prometheus HTTP API client: every way an answer can fail (nothing listening, no answer in
time, a server that is not Prometheus, an HTTP error), URLs as users type them, and counting a
counter's rises. Its queries against a real Prometheus are in test_prometheus_fleet.py, on the
rig that test starts anyway."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from oomscope.core.errors import BadInput
from oomscope.core.prometheus import PrometheusClient, PrometheusUnreachable, QueryFailed
from oomscope.core.prometheus.client import normalise_url
from oomscope.core.prometheus.fleet import increments
from test_prometheus_rig import Target, free_port


def test_nothing_listening_says_so_and_what_to_check() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(PrometheusUnreachable) as e:
        PrometheusClient(url, timeout_s=5).query("up")
    assert str(e.value) == f"cannot reach Prometheus at {url}: connection refused — is it running? check the URL"


def test_no_answer_in_time() -> None:
    with socket.socket() as silent:  # accepts connections (the backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(PrometheusUnreachable, match=r"did not answer within 0\.5 s"):
            PrometheusClient(url, timeout_s=0.5).query("up")
        assert time.monotonic() - started < 5


def test_a_metrics_endpoint_is_not_a_prometheus_server() -> None:
    target = Target()  # prometheus_client's own server: it takes GET only
    try:
        with pytest.raises(QueryFailed) as e:
            PrometheusClient(f"http://{target.address}").query("up")
        assert "HTTP 405" in str(e.value) and str(e.value).endswith(
            "is this the Prometheus server's URL (usually port 9090)?")
    finally:
        target.close()


class _Answers(http.server.BaseHTTPRequestHandler):
    """Answers every POST with ``status`` and ``body``."""

    status = 200
    body = b""

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def answering() -> Iterator[Callable[[int, bytes], str]]:
    servers: list[tuple[http.server.ThreadingHTTPServer, threading.Thread]] = []

    def serve(status: int, body: bytes) -> str:
        handler = type("Handler", (_Answers,), {"status": status, "body": body})
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        servers.append((httpd, thread))
        return f"http://127.0.0.1:{httpd.server_port}"

    yield serve
    for httpd, thread in servers:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_http_error_with_the_servers_text(answering: Callable[[int, bytes], str]) -> None:
    url = answering(503, b"too many queries in flight")
    with pytest.raises(QueryFailed) as e:
        PrometheusClient(url).query_range("up", 0, 60, 15)
    assert str(e.value) == (f"Prometheus at {url} answered /api/v1/query_range with HTTP 503 "
                            "Service Unavailable: too many queries in flight")


def test_a_web_page_is_not_an_answer(answering: Callable[[int, bytes], str]) -> None:
    url = answering(200, b"<html><body>Grafana</body></html>")
    with pytest.raises(QueryFailed) as e:
        PrometheusClient(url).query("up")
    assert str(e.value) == (f"{url} answered /api/v1/query, but not as Prometheus does (it sent "
                            "'<html><body>Grafana</body></html>'…): is this the Prometheus server's URL "
                            "(usually port 9090)?")
    url = answering(200, b'{"status": "success", "data": {"resultType": "matrix", "result": [{"oops": 1}]}}')
    with pytest.raises(QueryFailed, match="a form oomscope does not know"):
        PrometheusClient(url).query("up")


@pytest.mark.parametrize("given, expected", [
    ("localhost:9090", "http://localhost:9090"),
    (" https://prom.example:443/prometheus/ ", "https://prom.example:443/prometheus"),
    ("http://[::1]:9090", "http://[::1]:9090"),
])
def test_urls_as_users_type_them(given: str, expected: str) -> None:
    assert normalise_url(given) == expected


@pytest.mark.parametrize("given, text", [
    ("", "no Prometheus URL"),
    ("ftp://host:21", "must start with http:// or https://"),
    ("http://host:99999", "the port is not a number"),
    ("http://:9090", "names no host"),
    ("http://host:9090/graph?g0.expr=up", r"without \?query"),
])
def test_bad_urls_are_bad_input(given: str, text: str) -> None:
    with pytest.raises(BadInput, match=text):
        PrometheusClient(given)


def test_counter_increments_resets_and_the_first_sample(tmp_path: Path) -> None:
    """Rises count; a fall is a reset counting what the new process counted; the first sample
    counts only where the timestamp gauge puts its event inside the window."""
    from oomscope.core.prometheus import LabelledSeries

    t = np.array([10.0, 11.0, 12.0, 13.0, 14.0])
    counter = LabelledSeries({}, t, np.array([1.0, 1.0, 3.0, 1.0, 1.0]))
    assert increments(counter, 5.0) == [(11.0, 12.0, 2), (12.0, 13.0, 1)]
    stamp = LabelledSeries({}, t, np.array([9.5, 9.5, 11.7, 12.9, 12.9]))
    assert increments(counter, 5.0, stamp)[0] == (5.0, 10.0, 1)
    assert increments(counter, 9.6, stamp)[0] == (11.0, 12.0, 2)  # its event was before the window
