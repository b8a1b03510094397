"""The fleet as Prometheus holds it: hosts, workers with their memory, and every death.

Two kinds of sources, read the same way and shown side by side:

* oomscope agents (``oomscope watch --metrics-port``, core/prometheus/metrics.py): per-worker gauges, the
  exit counters of each slot by cause, the kernel log source and kill counters of each host.
* Kubernetes, for clusters without the agent: cAdvisor's ``container_memory_working_set_bytes``
  and ``container_oom_events_total`` (the kubelet's ``/metrics/cadvisor``), and kube-state-metrics'
  ``kube_pod_container_status_last_terminated_reason{reason="OOMKilled"}`` with
  ``kube_pod_container_status_restarts_total``. Each container is a worker of its node.

A death is an increment of a counter between two raw samples (a counter reset counts what the
new process has counted). Raw samples, not a stepped range query, so a death is placed at the
scrape that first saw it, whatever the step; the agent's ``last_exit_timestamp_seconds`` then
gives the exact time of a slot's latest death.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from . import metrics as m
from ..causes import KERNEL_OTHER, OOM_KILL
from .client import FloatArray, LabelledSeries, PrometheusClient, QueryFailed

OOMSCOPE = "oomscope"
KUBERNETES = "kubernetes"
LEVEL_NAMES = {0: "normal", 1: "warning", 2: "critical"}
# Kubernetes reports one OOM kill through cAdvisor and kube-state-metrics, scraped apart: reports
# of one container this close together are one death.
K8S_SAME_DEATH_S = 120.0
K8S_MAX_CONTAINERS = 50
_K8S_WORKING_SET = "container_memory_working_set_bytes"
_K8S_OOM_EVENTS = "container_oom_events_total"
_KSM_REASON = "kube_pod_container_status_last_terminated_reason"
_KSM_RESTARTS = "kube_pod_container_status_restarts_total"
_K8S_LABELS = ("namespace", "pod", "container")
# A range query needs no more points than a plot has pixels.
_TARGET_POINTS = 400


@dataclass(frozen=True)
class RemoteWorker:
    """One worker process (oomscope) or container (Kubernetes) with its memory in the window.

    ``rss``/``anon``/``heap_used`` share ``times`` and hold NaN where there was no value (for a
    container, the working set stands in for both RSS and anon RSS)."""

    key: str
    kind: str
    host: str
    worker: str
    pid: int | None
    times: FloatArray
    rss: FloatArray
    anon: FloatArray
    heap_used: FloatArray
    running: bool = True
    level: str = "normal"
    cgroup_limit: int | None = None
    heap_limit: int | None = None
    life: int | None = None
    # Warning and critical in bytes where the agent knows them, on ``levels_metric``.
    levels: dict[str, int] = field(default_factory=dict)
    levels_metric: str | None = None

    @property
    def last_time(self) -> float:
        return float(self.times[-1]) if len(self.times) else math.nan


@dataclass(frozen=True)
class RemoteDeath:
    t: float
    kind: str
    host: str
    worker: str
    cause: str
    source: str  # "oomscope", "cadvisor" or "kube-state-metrics"
    key: str | None = None  # the RemoteWorker that died, where it is in the window
    pid: int | None = None


@dataclass(frozen=True)
class RemoteHost:
    name: str
    kind: str
    sources: dict[str, bool] = field(default_factory=dict)  # kernel log source -> readable
    kernel_kills: dict[str, int] = field(default_factory=dict)  # killer -> kills since agent start


@dataclass(frozen=True)
class Fleet:
    start: float
    end: float
    step_s: float
    hosts: list[RemoteHost]
    workers: list[RemoteWorker]
    deaths: list[RemoteDeath]

    def host(self, name: str) -> RemoteHost | None:
        return next((h for h in self.hosts if h.name == name), None)

    def workers_of(self, host: str) -> list[RemoteWorker]:
        return [w for w in self.workers if w.host == host]


def step_for(window_s: float) -> float:
    """A whole-second step giving about ``_TARGET_POINTS`` points over the window."""
    return float(max(1, math.ceil(window_s / _TARGET_POINTS)))


def read_fleet(client: PrometheusClient, window_s: float, end: float | None = None,
               step_s: float | None = None) -> Fleet:
    """Everything the window shows, for the last ``window_s`` seconds up to ``end`` (now).

    Raw samples are fetched only for the counters that changed in the window (an instant query
    finds them first): a quiet fleet of thousands of series costs two small answers."""
    end = time.time() if end is None else end
    start = end - window_s
    step = step_s or step_for(window_s)
    grid = _Grid(start, end, step)
    rng = f"[{max(1, int(math.ceil(window_s)))}s]"
    workers = _oomscope_workers(client, grid)
    hosts = _oomscope_hosts(client, end, workers)
    deaths = _oomscope_deaths(_changed_raw(
        client, f"changes({m.EXITS}_total{rng}) > 0 or {m.LAST_EXIT} > {start:.3f}",
        f"{m.EXITS}_total|{m.LAST_EXIT}", ("host", "worker", "cause"), "", rng, end), start, workers)
    deaths += _kernel_deaths(_changed_raw(
        client, f'changes({m.KERNEL_KILLS}_total{{watched="false"}}{rng}) > 0',
        f"{m.KERNEL_KILLS}_total", ("host", "killer"), 'watched="false"', rng, end), start)
    ksm_oom = f'{_KSM_REASON}{{reason="OOMKilled"}}'
    k8s_raw = _changed_raw(
        client,
        f"changes({_K8S_OOM_EVENTS}{rng}) > 0 or changes({ksm_oom}{rng}) > 0"
        # a container's first OOMKilled termination makes the reason's series appear
        f" or (max_over_time({ksm_oom}{rng}) unless {ksm_oom} offset {rng[1:-1]})"
        f" or (changes({_KSM_RESTARTS}{rng}) > 0 and on (namespace, pod, container) "
        f"max_over_time({ksm_oom}{rng}) == 1)",
        f"{_K8S_OOM_EVENTS}|{_KSM_REASON}|{_KSM_RESTARTS}", _K8S_LABELS, 'reason=~"OOMKilled|"', rng, end)
    dying = {_k8s_key(s.labels) for s in k8s_raw}
    k8s_workers = _k8s_workers(client, grid, rng, dying)
    deaths += _k8s_deaths(k8s_raw, start, k8s_workers)
    known = {h.name for h in hosts}
    for w in k8s_workers:
        if w.host not in known:
            known.add(w.host)
            hosts.append(RemoteHost(w.host, KUBERNETES))
    for d in deaths:
        if d.host not in known:
            known.add(d.host)
            hosts.append(RemoteHost(d.host, d.kind))
    deaths.sort(key=lambda d: d.t)
    return Fleet(start, end, step, hosts, workers + k8s_workers, deaths)


def _changed_raw(client: PrometheusClient, changed: str, names: str, keys: tuple[str, ...],
                 extra: str, rng: str, end: float) -> list[LabelledSeries]:
    """Raw samples over ``rng`` of the series named ``names`` whose ``keys`` labels are among
    those the instant query ``changed`` returns (and only those)."""
    wanted = {tuple(s.labels.get(k, "") for k in keys) for s in client.query(changed, at=end)}
    if not wanted:
        return []
    matchers = ",".join([f'__name__=~"{names}"', *(f"{k}=~{promql_string(any_of(w[i] for w in wanted))}"
                                                     for i, k in enumerate(keys))] + ([extra] if extra else []))
    raw = client.query(f"{{{matchers}}}{rng}", at=end)
    return [s for s in raw if tuple(s.labels.get(k, "") for k in keys) in wanted]


def any_of(values: Iterable[str]) -> str:
    """A regular expression (RE2, as Prometheus anchors it) matching exactly these values."""
    return "|".join(re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", v) for v in sorted(set(values)))


def promql_string(text: str) -> str:
    """``text`` as a PromQL double-quoted string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class _Grid:
    """The time steps of a range query: values of several series line up on it."""

    def __init__(self, start: float, end: float, step_s: float) -> None:
        self.start, self.end, self.step_s = start, end, step_s
        self.times: FloatArray = start + step_s * np.arange(int((end - start) // step_s) + 1, dtype=np.float64)

    def place(self, series: LabelledSeries | None) -> FloatArray:
        out = np.full(len(self.times), np.nan)
        if series is not None and len(series):
            idx = np.rint((series.times - self.start) / self.step_s).astype(np.int64)
            ok = (idx >= 0) & (idx < len(out))
            out[idx[ok]] = series.values[ok]
        return out


# ---------------------------------------------------------------------- oomscope agents

_GAUGES = (m.RSS, m.ANON, m.HEAP_USED, m.HEAP_LIMIT, m.CGROUP_LIMIT, m.THRESHOLD_LEVEL, m.RUNNING, m.LIFE)


def _oomscope_workers(client: PrometheusClient, grid: _Grid) -> list[RemoteWorker]:
    names = "|".join(_GAUGES + (m.THRESHOLD_BYTES,))
    answer = client.query_range(f'{{__name__=~"{names}"}}', grid.start, grid.end, grid.step_s)
    by_process: dict[tuple[str, str, str], dict[str, LabelledSeries]] = {}
    levels: dict[tuple[str, str, str], list[LabelledSeries]] = {}
    for s in answer:
        key = (_host_of(s.labels), s.labels.get("worker", "?"), s.labels.get("pid", ""))
        if s.name == m.THRESHOLD_BYTES:
            levels.setdefault(key, []).append(s)
        else:
            by_process.setdefault(key, {})[s.name] = s
    workers = []
    for (host, worker, pid), series in sorted(by_process.items()):
        rss, anon, heap = (grid.place(series.get(n)) for n in (m.RSS, m.ANON, m.HEAP_USED))
        running = grid.place(series.get(m.RUNNING))
        # After an exit the gauges stay for --metrics-expire: not memory in use any more. The first
        # step that sees the exit keeps its values, the process's last ones: a worker that lived
        # less than a step still shows (and a curve ends where its process did, to a step).
        gone = running == 0.0
        gone[1:] &= gone[:-1]
        for values in (rss, anon, heap):
            values[gone] = np.nan
        seen = np.isfinite(rss) | np.isfinite(anon)
        if not seen.any():
            continue
        # Running is what the agent said at the window's end; a worker whose series stopped
        # before it (its agent is gone) is not known to run.
        running_now = running[-1] == 1.0 if m.RUNNING in series else bool(np.isfinite(rss[-1]))
        w_levels: dict[str, int] = {}
        levels_metric = None
        for s in levels.get((host, worker, pid), []):
            if len(s) and math.isfinite(s.last()):
                w_levels[s.labels.get("level", "?")] = int(s.last())
                levels_metric = s.labels.get("metric") or None
        workers.append(RemoteWorker(
            key=f"{host}/{worker}/{pid}", kind=OOMSCOPE, host=host, worker=worker,
            pid=int(pid) if pid.isdigit() else None,
            times=grid.times[seen], rss=rss[seen], anon=anon[seen], heap_used=heap[seen],
            running=bool(running_now),
            level=LEVEL_NAMES.get(int(_last(series.get(m.THRESHOLD_LEVEL)) or 0), "normal"),
            cgroup_limit=_last_int(series.get(m.CGROUP_LIMIT)),
            heap_limit=_last_int(series.get(m.HEAP_LIMIT)),
            life=_last_int(series.get(m.LIFE)),
            levels=w_levels, levels_metric=levels_metric,
        ))
    return workers


def _oomscope_hosts(client: PrometheusClient, end: float, workers: Sequence[RemoteWorker]) -> list[RemoteHost]:
    answer = client.query(f'{{__name__=~"{m.SOURCE_UP}|{m.KERNEL_KILLS}_total"}}', at=end)
    sources: dict[str, dict[str, bool]] = {}
    kills: dict[str, dict[str, int]] = {}
    for s in answer:
        host = _host_of(s.labels)
        if s.name == m.SOURCE_UP:
            sources.setdefault(host, {})[s.labels.get("source", "?")] = s.last() == 1.0
        else:  # watched or not, the host's kills by killer
            by_killer = kills.setdefault(host, {})
            killer = s.labels.get("killer", "?")
            by_killer[killer] = by_killer.get(killer, 0) + int(s.last())
    names = sorted(set(sources) | set(kills) | {w.host for w in workers})
    return [RemoteHost(n, OOMSCOPE, sources.get(n, {}), kills.get(n, {})) for n in names]


def _oomscope_deaths(answer: Iterable[LabelledSeries], start: float,
                     workers: Sequence[RemoteWorker]) -> list[RemoteDeath]:
    exits: dict[tuple[str, str, str], LabelledSeries] = {}
    stamps: dict[tuple[str, str, str], LabelledSeries] = {}
    for s in answer:
        key = (_host_of(s.labels), s.labels.get("worker", "?"), s.labels.get("cause", "?"))
        (exits if s.name == f"{m.EXITS}_total" else stamps)[key] = s
    deaths = []
    for (host, worker, cause), s in sorted(exits.items()):
        stamp = stamps.get((host, worker, cause))
        for t_prev, t, n in increments(s, start, stamp):
            exact = _stamp_between(stamp, t_prev, t)
            for i in range(n):
                when = exact if exact is not None and i == n - 1 else t
                wkey, pid = _who(workers, host, worker, when)
                deaths.append(RemoteDeath(when, OOMSCOPE, host, worker, cause, OOMSCOPE, wkey, pid))
    return deaths


def _kernel_deaths(answer: Iterable[LabelledSeries], start: float) -> list[RemoteDeath]:
    """OOM kills of processes no agent watches, as each agent's kernel log told them: on the
    timeline's kernel lane, at the scrape that first counted them (the counter has no names)."""
    deaths: list[RemoteDeath] = []
    for s in answer:
        host, killer = _host_of(s.labels), s.labels.get("killer", "?")
        for _t_prev, t, n in increments(s, start):
            deaths.extend(RemoteDeath(t, OOMSCOPE, host, f"{killer} kill", KERNEL_OTHER, OOMSCOPE)
                          for _ in range(n))
    return deaths


def increments(series: LabelledSeries, window_start: float,
               stamp: LabelledSeries | None = None) -> list[tuple[float, float, int]]:
    """(previous sample time, sample time, how many) for each rise of a counter's raw samples.

    A fall is a reset (the agent restarted): what the new count says happened since. The first
    sample has no predecessor; it counts only where ``stamp`` (the time of the latest event, a
    gauge) says that event lies in the window before it."""
    out: list[tuple[float, float, int]] = []
    t, v = series.times, series.values
    if not len(t):
        return out
    first = _stamp_between(stamp, window_start, float(t[0]))
    if first is not None and v[0] >= 1:
        out.append((window_start, float(t[0]), 1))
    for i in range(1, len(t)):
        rise = v[i] - v[i - 1] if v[i] >= v[i - 1] else v[i]
        if rise >= 1 and math.isfinite(rise):
            out.append((float(t[i - 1]), float(t[i]), int(round(rise))))
    return out


def _stamp_between(stamp: LabelledSeries | None, after: float, until: float) -> float | None:
    """The event time a timestamp gauge held at the scrape at ``until``, if it lies in (after, until]."""
    if stamp is None or not len(stamp):
        return None
    i = int(np.searchsorted(stamp.times, until, side="right")) - 1
    if i < 0:
        return None
    value = float(stamp.values[i])
    return value if after < value <= until else None


def _who(workers: Sequence[RemoteWorker], host: str, worker: str, t: float) -> tuple[str | None, int | None]:
    """The process of that slot that was alive last before ``t`` (the one that died)."""
    best: RemoteWorker | None = None
    for w in workers:
        if w.host != host or w.worker != worker or not len(w.times) or float(w.times[0]) > t:
            continue
        if best is None or w.last_time > best.last_time:
            best = w
    return (best.key, best.pid) if best is not None else (None, None)


# ------------------------------------------------------------------------- Kubernetes

def _k8s_key(labels: Mapping[str, str]) -> tuple[str, str, str]:
    return (labels.get("namespace", ""), labels.get("pod", ""), labels.get("container", ""))


def _k8s_host(labels: Mapping[str, str]) -> str:
    """The node a container runs on: cAdvisor's series name it (``node`` where relabelled, else
    the kubelet's ``instance``)."""
    return labels.get("node") or labels.get("instance") or KUBERNETES


def _k8s_workers(client: PrometheusClient, grid: _Grid, rng: str,
                 dying: set[tuple[str, str, str]]) -> list[RemoteWorker]:
    """The ``K8S_MAX_CONTAINERS`` containers with the largest working set in the window, and every
    container that was OOM-killed in it (a cluster has more containers than a plot has room)."""
    # cAdvisor also reports the pod's own cgroup (container="") and the pause container ("POD");
    # several series of one container (across its restarts) fold into one.
    ws = f'{_K8S_WORKING_SET}{{container!="",container!="POD"}}'
    by = "namespace, pod, container"
    top = f"topk({K8S_MAX_CONTAINERS}, max by ({by}) (max_over_time({ws}{rng} @ {grid.end:.3f})))"
    wanted = f"{top}"
    if dying:
        keys = ",".join(f"{k}=~{promql_string(any_of(d[i] for d in dying))}" for i, k in enumerate(_K8S_LABELS))
        wanted += f" or max by ({by}) ({_K8S_WORKING_SET}{{{keys}}})"
    expr = f"max by ({by}, node, instance) ({ws}) and on ({by}) ({wanted})"
    try:
        answer = client.query_range(expr, grid.start, grid.end, grid.step_s)
    except QueryFailed as e:
        if "@ modifier" not in str(e):
            raise
        # Prometheus before 2.33 without --enable-feature=promql-at-modifier: the largest
        # containers are then chosen at each step rather than once for the window.
        answer = client.query_range(expr.replace(f" @ {grid.end:.3f}", ""), grid.start, grid.end, grid.step_s)
    merged: dict[tuple[str, str, str], tuple[str, FloatArray]] = {}
    for s in answer:
        key = _k8s_key(s.labels)
        values = grid.place(s)
        if key in merged:
            values = np.fmax(merged[key][1], values)
        merged[key] = (_k8s_host(s.labels), values)
    workers: list[RemoteWorker] = []
    others = 0  # a check on the query's own choice (per step where the @ modifier is missing)
    for (ns, pod, container), (host, values) in sorted(merged.items()):
        if (ns, pod, container) not in dying:
            others += 1
            if others > K8S_MAX_CONTAINERS:
                continue
        seen = np.isfinite(values)
        if not seen.any():
            continue
        working = values[seen]
        workers.append(RemoteWorker(
            key=f"k8s/{ns}/{pod}/{container}", kind=KUBERNETES, host=host, worker=f"{ns}/{pod}/{container}",
            pid=None, times=grid.times[seen], rss=working, anon=working.copy(),
            heap_used=np.full(len(working), np.nan),
            running=bool(np.isfinite(values[-3:]).any()),
        ))
    return workers


def _k8s_deaths(answer: Iterable[LabelledSeries], start: float,
                workers: Sequence[RemoteWorker]) -> list[RemoteDeath]:
    reasons: dict[tuple[str, str, str], LabelledSeries] = {}
    restarts: dict[tuple[str, str, str], LabelledSeries] = {}
    nodes: dict[tuple[str, str, str], str] = {}
    reports: list[tuple[float, tuple[str, str, str], str]] = []  # (t, container, source)
    for s in answer:
        key = _k8s_key(s.labels)
        if s.labels.get("node"):
            nodes[key] = s.labels["node"]
        if s.name == _K8S_OOM_EVENTS:
            for _prev, t, n in increments(s, start):
                reports.extend((t, key, "cadvisor") for _ in range(n))
        elif s.name == _KSM_REASON:
            reasons[key] = s
        elif s.name == _KSM_RESTARTS:
            restarts[key] = s
    for key, s in reasons.items():
        ts, v = s.times, s.values
        gap = _typical_gap(ts)
        found: list[float] = []
        # The reason series appears (at 1) with a container's first OOMKilled termination, and
        # goes 0 → 1 when a later termination is an OOM kill again.
        if len(ts) and v[0] == 1.0 and float(ts[0]) - start > 2 * gap:
            found.append(float(ts[0]))
        found.extend(float(ts[i]) for i in range(1, len(ts)) if v[i] == 1.0 and v[i - 1] != 1.0)
        # A restart while the last termination reads OOMKilled: an OOM kill too (the reason
        # stays at 1 through a crash loop of them).
        r = restarts.get(key)
        if r is not None:
            for _prev, rt, _n in increments(r, start):
                i = int(np.searchsorted(ts, rt, side="right")) - 1
                if i >= 0 and v[i] == 1.0:
                    found.append(rt)
        found.sort()
        for i, ft in enumerate(found):
            if i == 0 or ft - found[i - 1] > 2 * gap:  # the reason's flip and the restart: one kill
                reports.append((ft, key, "kube-state-metrics"))
    reports.sort()
    by_key = {w.key: w for w in workers}
    merged: list[tuple[float, tuple[str, str, str], set[str]]] = []
    for t, key, source in reports:
        # cAdvisor and kube-state-metrics each report the same kill: a report joins a death of
        # the other exporter close in time; reports of one exporter are separate kills.
        twin = next((d for d in reversed(merged) if d[1] == key and source not in d[2]
                     and abs(t - d[0]) <= K8S_SAME_DEATH_S), None)
        if twin is not None:
            twin[2].add(source)
            continue
        merged.append((t, key, {source}))
    deaths = []
    for t, (ns, pod, container), sources in merged:
        wkey = f"k8s/{ns}/{pod}/{container}"
        w = by_key.get(wkey)
        host = w.host if w is not None else nodes.get((ns, pod, container), KUBERNETES)
        deaths.append(RemoteDeath(t, KUBERNETES, host, f"{ns}/{pod}/{container}", OOM_KILL,
                                  "+".join(sorted(sources)), wkey if w is not None else None, None))
    return deaths


def _typical_gap(times: FloatArray) -> float:
    return float(np.median(np.diff(times))) if len(times) > 1 else 60.0


# ------------------------------------------------------------------------------ helpers

def _host_of(labels: Mapping[str, str]) -> str:
    return labels.get("host") or labels.get("instance") or "?"


def _last(series: LabelledSeries | None) -> float | None:
    if series is None or not len(series):
        return None
    finite = series.values[np.isfinite(series.values)]
    return float(finite[-1]) if len(finite) else None


def _last_int(series: LabelledSeries | None) -> int | None:
    value = _last(series)
    return int(value) if value is not None else None
