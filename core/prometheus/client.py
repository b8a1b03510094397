"""A small client for Prometheus's HTTP API: instant and range queries, answers as numpy series.

urllib and json only (no new dependency). Every failure becomes a :class:`PrometheusError` whose
text says what happened and what to check: the server is not there, it refused the query (with
its own error text), it answered but is not Prometheus, it took too long.
"""

from __future__ import annotations

import json
import math
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import BadInput, Error

FloatArray = npt.NDArray[np.float64]
DEFAULT_TIMEOUT_S = 10.0
# Prometheus refuses a range query of more than 11,000 points per series.
MAX_POINTS = 11_000


class PrometheusError(Error):
    """A Prometheus query that did not give an answer; the message says why and what to check."""


class PrometheusUnreachable(PrometheusError):
    """No answer at all: nothing listens, unknown host, timeout, TLS failure."""


class QueryFailed(PrometheusError):
    """The server answered, but with an error (bad PromQL, overload, not a Prometheus API)."""


@dataclass(frozen=True, slots=True)
class LabelledSeries:
    """One series of an answer: its labels (``__name__`` included where Prometheus keeps it),
    times (Unix seconds) and values. An instant vector's series hold one point each."""

    labels: Mapping[str, str]
    times: FloatArray
    values: FloatArray

    @property
    def name(self) -> str:
        return self.labels.get("__name__", "")

    def last(self) -> float:
        return float(self.values[-1]) if len(self.values) else math.nan

    def __len__(self) -> int:
        return len(self.times)


def normalise_url(url: str) -> str:
    """``localhost:9090`` → ``http://localhost:9090``; raises BadInput for what is no URL."""
    text = url.strip()
    if not text:
        raise BadInput("no Prometheus URL: give one like http://localhost:9090")
    if "://" not in text:
        text = "http://" + text
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https"):
        raise BadInput(f"{url!r} is not a Prometheus URL: it must start with http:// or https:// "
                       "(e.g. http://localhost:9090)")
    try:
        port = parts.port
    except ValueError:
        raise BadInput(f"{url!r}: the port is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise BadInput(f"{url!r} names no host: give one like http://localhost:9090")
    del port
    if parts.query or parts.fragment:
        raise BadInput(f"{url!r}: give the server's address only (http://host:9090, or with the path "
                       "prefix it is served under), without ?query or #fragment")
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


class PrometheusClient:
    """``query`` and ``query_range`` of one server (``url`` may carry a path prefix)."""

    def __init__(self, url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        if not timeout_s > 0:
            raise BadInput(f"timeout {timeout_s:g} s: give a number of seconds above 0")
        self.url = normalise_url(url)
        self.timeout_s = timeout_s

    def query(self, promql: str, at: float | None = None) -> list[LabelledSeries]:
        """An instant query (at ``at``, default now). A range-vector expression (``x[5m]``)
        answers with every raw sample in the range: one series per labelled series."""
        params = {"query": promql}
        if at is not None:
            params["time"] = _stamp(at)
        return self._series(self._post("/api/v1/query", params))

    def query_range(self, promql: str, start: float, end: float, step_s: float) -> list[LabelledSeries]:
        """Values every ``step_s`` seconds from ``start`` to ``end`` (Unix seconds)."""
        if not step_s > 0:
            raise BadInput(f"step {step_s:g} s: give a number of seconds above 0")
        if not end >= start:
            raise BadInput("the time range ends before it starts")
        if (end - start) / step_s > MAX_POINTS:
            raise BadInput(f"{(end - start) / step_s:.0f} points per series is more than Prometheus "
                           f"answers ({MAX_POINTS}): choose a larger step or a shorter range")
        params = {"query": promql, "start": _stamp(start), "end": _stamp(end), "step": f"{step_s:g}"}
        return self._series(self._post("/api/v1/query_range", params))

    # --------------------------------------------------------------- transport

    def _post(self, path: str, params: Mapping[str, str]) -> Any:
        body = urllib.parse.urlencode(params).encode()
        request = urllib.request.Request(self.url + path, data=body, method="POST", headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
            "User-Agent": "oomscope",
        })
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as e:
            raise self._http_error(e, path) from None
        except urllib.error.URLError as e:
            raise self._unreachable(e.reason) from None
        except (TimeoutError, socket.timeout) as e:
            raise self._unreachable(e) from None
        except OSError as e:  # a connection reset halfway through the answer
            raise self._unreachable(e) from None
        answer = self._json(raw, path)
        if not isinstance(answer, dict) or answer.get("status") != "success" or "data" not in answer:
            error = answer.get("error") if isinstance(answer, dict) else None
            raise QueryFailed(f"Prometheus at {self.url} did not answer the query: "
                              f"{error or 'no data in its answer'}")
        return answer["data"]

    def _json(self, raw: bytes, path: str) -> Any:
        try:
            return json.loads(raw)
        except ValueError:
            start = raw[:60].decode("utf-8", "replace").strip().splitlines()
            seen = f" (it sent {start[0]!r}…)" if start else ""
            raise QueryFailed(f"{self.url} answered {path}, but not as Prometheus does{seen}: is this the "
                              "Prometheus server's URL (usually port 9090)?") from None

    def _unreachable(self, reason: object) -> PrometheusUnreachable:
        if isinstance(reason, ConnectionRefusedError):
            why = "connection refused — is it running? check the URL"
        elif isinstance(reason, socket.gaierror):
            host = urllib.parse.urlsplit(self.url).hostname
            why = f"unknown host {host!r} — check the URL"
        elif isinstance(reason, (TimeoutError, socket.timeout)):
            return PrometheusUnreachable(f"Prometheus at {self.url} did not answer within {self.timeout_s:g} s — "
                                         "is it overloaded, or does the URL name another service?")
        elif isinstance(reason, OSError) and reason.strerror:
            why = f"{reason.strerror.lower()} — check the URL and the network"
        else:
            why = f"{reason} — check the URL"
        return PrometheusUnreachable(f"cannot reach Prometheus at {self.url}: {why}")

    def _http_error(self, e: urllib.error.HTTPError, path: str) -> PrometheusError:
        try:
            raw = e.read()
        except OSError:
            raw = b""
        finally:
            e.close()
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = None
        if isinstance(answer, dict) and answer.get("error"):
            kind = f" {answer['errorType']}" if answer.get("errorType") else ""
            return QueryFailed(f"Prometheus at {self.url} refused the query (HTTP {e.code}{kind}): "
                               f"{answer['error']}")
        text = raw[:200].decode("utf-8", "replace").strip()
        # Prometheus serves both paths, by GET and POST: a 404 or 405 is another kind of server.
        hint = " — is this the Prometheus server's URL (usually port 9090)?" if e.code in (404, 405) else ""
        return QueryFailed(f"Prometheus at {self.url} answered {path} with HTTP {e.code} {e.reason}"
                           + (f": {text}" if text else "") + hint)

    def _series(self, data: Any) -> list[LabelledSeries]:
        try:
            kind = data["resultType"]
            result = data["result"]
            if kind in ("scalar", "string"):
                t, v = result
                return [LabelledSeries({}, np.array([float(t)]), np.array([_number(v)]))]
            out = []
            for item in result:
                labels = {str(k): str(v) for k, v in item["metric"].items()}
                points = item["values"] if kind == "matrix" else [item["value"]]
                times = np.fromiter((float(p[0]) for p in points), np.float64, len(points))
                values = np.fromiter((_number(p[1]) for p in points), np.float64, len(points))
                out.append(LabelledSeries(labels, times, values))
            return out
        except (KeyError, TypeError, ValueError, IndexError):
            raise QueryFailed(f"Prometheus at {self.url} answered in a form oomscope does not know "
                              "(not the /api/v1 query format)") from None


def _number(text: Any) -> float:
    # Prometheus sends sample values as strings: "1.5", "NaN", "+Inf".
    return float(text)


def _stamp(t: float) -> str:
    return f"{t:.3f}"
