"""Prometheus as a data source: an HTTP API client and the fleet reader built on it (Qt-free)."""

from .client import LabelledSeries, PrometheusClient, PrometheusError, PrometheusUnreachable, QueryFailed
from .fleet import Fleet, RemoteDeath, RemoteHost, RemoteWorker, read_fleet, step_for

__all__ = [
    "Fleet",
    "LabelledSeries",
    "PrometheusClient",
    "PrometheusError",
    "PrometheusUnreachable",
    "QueryFailed",
    "RemoteDeath",
    "RemoteHost",
    "RemoteWorker",
    "read_fleet",
    "step_for",
]
