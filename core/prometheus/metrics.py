"""``watch --metrics-port``: the engine's events as Prometheus metrics on ``/metrics``.

prometheus_client writes the exposition format and serves it (its own ``CollectorRegistry``, not
the process-wide one); what oomscope adds is one collector over a small state that the watch
thread updates from events. Each scrape copies that state under a lock and formats the copy
outside it, so an event costs a few attribute writes and neither side waits long on the other.

Label cardinality stays bounded (docs/DESIGN.md "Beyond one machine"):

* ``worker`` names the slot, not the process: ``python3#2`` is slot 2 whichever life runs in it,
  so a restarted worker keeps its series and its counters. Workers without a slot (``--attach``,
  ``--match``) are named by their process name alone; their ``pid`` keeps the gauges apart and
  their counters add up per name.
* A worker's gauges carry ``pid`` and disappear ``expire_s`` after it exits; the counters of its
  slot (``worker`` and ``cause``, no ``pid``) live on, starting at 0 for every cause so that
  Prometheus sees the first increment as one.
* ``host`` is ``$OOMSCOPE_HOST`` where set (two agents on one machine, a pod name), else the
  machine's host name.
"""

from __future__ import annotations

import copy
import errno
import ipaddress
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from socketserver import ThreadingMixIn
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..causes import CAUSES
from ..errors import BadInput
from ..dispatch import Dispatcher
from ..events import (
    CauseUpdated,
    CrashLoop,
    Doctor,
    Event,
    Heap,
    KernelLineRead,
    KernelOom,
    LevelPending,
    LevelsChanged,
    Notice,
    Output,
    Samples,
    SourceChanged,
    Stopped,
    Terminate,
    ThreadExited,
    Threshold,
    WorkerAttached,
    WorkerExited,
    WorkerRef,
    WorkerStarted,
)
from ..oomlog.records import KILLERS, KillRecord
from ..thresholds import CRITICAL, LEVEL_RANK, WARNING, ThresholdConfig

if TYPE_CHECKING:
    from ..engine import EngineConfig

HOST_ENV = "OOMSCOPE_HOST"
DEFAULT_EXPIRE_S = 300.0
# A scrape prunes expired workers anyway; between scrapes, events check at most this often.
_EXPIRY_CHECK_S = 1.0

Notify = Callable[[str, str], None]  # (level, message)

# Metric names, in one place: the fleet reader (core/prometheus) queries the same ones.
RSS = "oomscope_worker_rss_bytes"
ANON = "oomscope_worker_anon_bytes"
HEAP_USED = "oomscope_worker_heap_used_bytes"
HEAP_LIMIT = "oomscope_worker_heap_limit_bytes"
CGROUP_LIMIT = "oomscope_worker_cgroup_limit_bytes"
THRESHOLD_LEVEL = "oomscope_worker_threshold_level"
THRESHOLD_BYTES = "oomscope_worker_threshold_bytes"
RUNNING = "oomscope_worker_running"
LIFE = "oomscope_worker_life"
EXITS = "oomscope_worker_exits"  # exposed as oomscope_worker_exits_total
LAST_EXIT = "oomscope_worker_last_exit_timestamp_seconds"
KERNEL_KILLS = "oomscope_kernel_oom_kills"  # exposed as oomscope_kernel_oom_kills_total
SOURCE_UP = "oomscope_kernel_log_source_up"


def host_label() -> str:
    return os.environ.get(HOST_ENV, "").strip() or socket.gethostname()


def worker_label(ref: WorkerRef) -> str:
    """The slot a worker lives in (``python3#2``); its name where it has no slot."""
    return f"{ref.name}#{ref.slot}" if ref.slot is not None else ref.name


@dataclass
class _Process:
    """The gauges of one worker process (one life of a slot)."""

    ref: WorkerRef
    worker: str
    thresholds: ThresholdConfig | None
    rss: int | None = None
    anon: int | None = None
    heap_used: int | None = None
    heap_limit: int | None = None
    cgroup_limit: int | None = None
    level: int = 0
    # Levels the engine reported crossing: exact (per-worker overrides included) where known.
    crossed: dict[str, int] | None = None
    crossed_metric: str | None = None
    gone_mono: float | None = None

    def threshold_bytes(self) -> dict[str, int]:
        """Warning and critical in bytes, where known: from the configured thresholds (a percent
        resolves against the cgroup limit; on the heap metric only sizes resolve here, the
        engine's crossings fill in the rest)."""
        out: dict[str, int] = {}
        cfg = self.thresholds
        if cfg is not None:
            limit = self.cgroup_limit if cfg.metric != "heap" else None
            warn, crit = cfg.levels_for(limit)
            if warn is not None:
                out[WARNING] = warn
            if crit is not None:
                out[CRITICAL] = crit
        if self.crossed:
            out.update(self.crossed)
        return out


class MetricsBook(Collector):
    """What the exporter knows, updated from events, read by prometheus_client at each scrape."""

    def __init__(self, host: str, expire_s: float, config: EngineConfig | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.host = host
        self.expire_s = expire_s
        self.config = config
        self.clock = clock
        self._lock = threading.Lock()
        self._procs: dict[str, _Process] = {}  # by engine worker id
        self._exits: dict[tuple[str, str], int] = {}  # (worker label, cause) -> count
        self._last_exit: dict[tuple[str, str], float] = {}
        # (killer, watched): "true" for a kill of a watched worker, "false" for any other process.
        self._kills: dict[tuple[str, str], int] = {(k, w): 0 for k in KILLERS for w in ("true", "false")}
        self._sources: dict[str, bool] = {}
        self._next_expiry = 0.0
        # Counter changes made, and how many of them the latest scrape carried: an agent that
        # ends waits for one more scrape, so its last deaths reach Prometheus.
        self._counted = 0
        self._served = 0
        self.scrapes = 0
        self._scraped = threading.Condition(self._lock)
        self._dispatch = self._handlers()

    # ----------------------------------------------------------------- events

    def on_event(self, event: Event) -> None:
        with self._lock:
            self._dispatch(event)
            now = self.clock()
            if now >= self._next_expiry:
                self._expire(now)

    def _handlers(self) -> Dispatcher[object]:
        return Dispatcher({
            Samples: self._on_samples,
            WorkerStarted: lambda ev: self._add(ev.worker, ev.cgroup_limit),
            WorkerAttached: lambda ev: self._add(ev.worker, ev.cgroup_limit),
            Threshold: self._on_threshold,
            WorkerExited: self._on_exit,
            # Counters only go up: a cause corrected by a late kernel record counts again,
            # under the new cause (docs/prometheus.md, "Metrics").
            CauseUpdated: self._on_exit,
            KernelOom: self._on_kernel_oom,
            SourceChanged: self._on_source,
        }, ignore=(Heap, Output, Notice, KernelLineRead, Stopped, LevelsChanged, Terminate, ThreadExited,
                   Doctor, CrashLoop, LevelPending), name="metrics")

    def _on_threshold(self, event: Threshold) -> None:
        p = self._procs.get(event.worker.id)
        if p is not None:
            p.level = LEVEL_RANK.get(event.level, 0)
            if event.limit is not None and event.level in (WARNING, CRITICAL):
                p.crossed = dict(p.crossed or {}, **{event.level: event.limit})
                p.crossed_metric = event.metric

    def _on_kernel_oom(self, event: KernelOom) -> None:
        if not event.history:  # kills from before oomscope started are not counted
            self._count_kill(event.record, watched=False)
            self._counted += 1

    def _on_source(self, event: SourceChanged) -> None:
        self._sources[event.state.name] = event.state.ok

    def _add(self, ref: WorkerRef, cgroup_limit: int | None) -> _Process:
        p = self._procs.get(ref.id)
        if p is None:
            worker = worker_label(ref)
            thresholds = None
            if self.config is not None:
                own = self.config.override_for(ref)
                glob = self.config.thresholds
                # An override's levels apply on the global metric (Worker.refresh_levels).
                thresholds = glob if own is None else replace(own, metric=glob.metric)
            p = self._procs[ref.id] = _Process(ref, worker, thresholds, cgroup_limit=cgroup_limit)
            for cause in CAUSES:
                self._exits.setdefault((worker, cause), 0)
        return p

    def _on_samples(self, event: Samples) -> None:
        procs = self._procs
        for s in event.samples:
            p = procs.get(s.worker.id)
            if p is None:
                p = self._add(s.worker, s.cgroup_limit)
            p.rss, p.anon = s.rss, s.anon
            # The Python reporter has no heap limit and says 0: that is "unknown", not a limit.
            p.heap_used, p.heap_limit = s.heap_used, s.heap_limit or None
            if s.cgroup_limit is not None:
                p.cgroup_limit = s.cgroup_limit

    def _on_exit(self, event: WorkerExited | CauseUpdated) -> None:
        p = self._procs.get(event.worker.id) or self._add(event.worker, None)
        if p.gone_mono is None:
            p.gone_mono = self.clock()
        key = (p.worker, event.cause)
        self._exits[key] = self._exits.get(key, 0) + 1
        self._last_exit[key] = event.t
        if event.oom is not None:
            self._count_kill(event.oom, watched=True)
        self._counted += 1

    def _count_kill(self, record: KillRecord, watched: bool) -> None:
        key = (record.killer, "true" if watched else "false")
        self._kills[key] = self._kills.get(key, 0) + 1

    def _expire(self, now: float) -> None:
        self._next_expiry = now + _EXPIRY_CHECK_S
        gone = [wid for wid, p in self._procs.items()
                if p.gone_mono is not None and now - p.gone_mono >= self.expire_s]
        for wid in gone:
            del self._procs[wid]

    # ---------------------------------------------------------------- scrapes

    def collect(self) -> Iterator[Metric]:
        # Copy under the lock, format outside it: formatting 200 workers takes milliseconds, and
        # the watch thread must not wait that long for its next event.
        with self._lock:
            self._expire(self.clock())
            procs = [copy.copy(p) for p in self._procs.values()]
            exits, last_exit = dict(self._exits), dict(self._last_exit)
            kills, sources = dict(self._kills), dict(self._sources)
        return iter(self._families(procs, exits, last_exit, kills, sources))

    def counted(self) -> int:
        with self._lock:
            return self._counted

    def sent(self, counted: int) -> None:
        """A scrape's response, collected after ``counted`` counter changes, has been written
        out in full (only then has Prometheus got it)."""
        with self._lock:
            self._served = max(self._served, counted)
            self.scrapes += 1
            self._scraped.notify_all()

    def unscraped_changes(self) -> bool:
        """Whether a counter changed since the last scrape (False while nobody scrapes at all)."""
        with self._lock:
            return self.scrapes > 0 and self._served < self._counted

    def wait_scraped(self, timeout_s: float) -> bool:
        """Wait until a scrape has carried every counter change so far; False on timeout."""
        with self._lock:
            target = self._counted
            return self._scraped.wait_for(lambda: self._served >= target, timeout_s)

    def _families(self, procs: list[_Process], exits: dict[tuple[str, str], int],
                  last_exit: dict[tuple[str, str], float], kills: dict[tuple[str, str], int],
                  sources: dict[str, bool]) -> list[Metric]:
        host = self.host
        labels = ["host", "worker", "pid"]
        g = {
            RSS: GaugeMetricFamily(RSS, "Resident set size of the worker process", labels=labels),
            ANON: GaugeMetricFamily(ANON, "Anonymous resident memory of the worker process (what the "
                                    "kernel's OOM killer counts)", labels=labels),
            HEAP_USED: GaugeMetricFamily(HEAP_USED, "Heap used, summed over the worker's reporting "
                                         "threads (V8, or the Python reporter)", labels=labels),
            HEAP_LIMIT: GaugeMetricFamily(HEAP_LIMIT, "Heap limit, summed over the worker's reporting "
                                          "threads", labels=labels),
            CGROUP_LIMIT: GaugeMetricFamily(CGROUP_LIMIT, "Memory limit of the worker's cgroup (the "
                                            "smallest of its cgroup and parents)", labels=labels),
            THRESHOLD_LEVEL: GaugeMetricFamily(THRESHOLD_LEVEL, "Threshold level the worker is at: 0 "
                                               "normal, 1 warning, 2 critical", labels=labels),
            RUNNING: GaugeMetricFamily(RUNNING, "1 while the worker process runs, 0 once it exited (its "
                                       "series disappear --metrics-expire seconds later)", labels=labels),
            LIFE: GaugeMetricFamily(LIFE, "Which life of its slot the worker process is (restarts + 1)",
                                    labels=labels),
        }
        levels = GaugeMetricFamily(THRESHOLD_BYTES, "Warning and critical level in bytes, on the metric "
                                   "the levels apply to", labels=labels + ["level", "metric"])
        for p in procs:
            values = [host, p.worker, str(p.ref.pid)]
            for name, value in ((RSS, p.rss), (ANON, p.anon), (HEAP_USED, p.heap_used),
                                (HEAP_LIMIT, p.heap_limit), (CGROUP_LIMIT, p.cgroup_limit)):
                if value is not None:
                    g[name].add_metric(values, float(value))
            g[THRESHOLD_LEVEL].add_metric(values, float(p.level))
            g[RUNNING].add_metric(values, 0.0 if p.gone_mono is not None else 1.0)
            g[LIFE].add_metric(values, float(p.ref.life))
            metric = p.thresholds.metric if p.thresholds is not None else (p.crossed_metric or "")
            for level, value in sorted(p.threshold_bytes().items()):
                levels.add_metric(values + [level, metric], float(value))
        counter = CounterMetricFamily(EXITS, "Worker exits by cause (per slot: every life of a slot "
                                      "counts here)", labels=["host", "worker", "cause"])
        last = GaugeMetricFamily(LAST_EXIT, "Unix time of the slot's last exit with this cause",
                                 labels=["host", "worker", "cause"])
        for (worker, cause), n in sorted(exits.items()):
            counter.add_metric([host, worker, cause], float(n))
            t = last_exit.get((worker, cause))
            if t is not None:
                last.add_metric([host, worker, cause], t)
        killed = CounterMetricFamily(KERNEL_KILLS, "OOM kills in the kernel log (and systemd-oomd, "
                                     "earlyoom) since the agent started; watched: of a worker the "
                                     "agent watches, or of any other process", labels=["host", "killer", "watched"])
        for (killer, watched), n in sorted(kills.items()):
            killed.add_metric([host, killer, watched], float(n))
        up = GaugeMetricFamily(SOURCE_UP, "1 where the kernel log source can be read, 0 where not "
                               "(the agent's log says why)", labels=["host", "source"])
        for source, ok in sorted(sources.items()):
            up.add_metric([host, source], 1.0 if ok else 0.0)
        return [*g.values(), levels, counter, last, killed, up]


class Exporter:
    """The ``watch`` sink: every event goes to the book; ``close()`` stops serving."""

    def __init__(self, book: MetricsBook, server: Any, thread: threading.Thread, url: str) -> None:
        self.book = book
        self.url = url
        self.port = int(server.server_port)
        self._server = server
        self._thread = thread

    def __call__(self, event: Event) -> None:
        self.book.on_event(event)

    def linger(self, timeout_s: float, notice: Notify) -> None:
        """Before an agent that ended by itself stops serving: wait (bounded) for the scrape that
        carries its last exits, which Prometheus would otherwise never see."""
        if timeout_s <= 0 or not self.book.unscraped_changes():
            return
        notice("info", f"waiting up to {timeout_s:g} s for Prometheus to scrape the final counts "
               f"from {self.url}")
        if not self.book.wait_scraped(timeout_s):
            notice("warning", f"no scrape of {self.url} within {timeout_s:g} s: Prometheus will not "
                   "see the last exits (raise --metrics-linger above its scrape interval)")

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5.0)


def start_exporter(port: int, addr: str = "127.0.0.1", *, expire_s: float = DEFAULT_EXPIRE_S,
                   notice: Notify, config: EngineConfig | None = None) -> Exporter:
    """Serve ``http://ADDR:PORT/metrics`` (port 0: any free port, told in a notice).

    Everything that can go wrong with the address or the port is a :class:`BadInput` raised here,
    before ``watch`` launches anything."""
    if isinstance(port, bool) or not 0 <= port <= 65535:
        raise BadInput(f"--metrics-port {port}: a port is a number from 1 to 65535 (0: any free port)")
    if not expire_s > 0:
        raise BadInput(f"--metrics-expire {expire_s:g}: give a number of seconds above 0")
    try:
        infos = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as e:
        why = (e.strerror if isinstance(e, socket.gaierror) else None) or str(e)
        raise BadInput(f"--metrics-addr {addr!r}: not an address to listen on ({why}): give an IP address "
                       f"of this machine, such as 127.0.0.1 (the default), ::1 or 0.0.0.0") from None
    ip = str(infos[0][4][0])
    book = MetricsBook(host_label(), expire_s, config)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(book)
    try:
        server, thread = _serve(infos[0][0], ip, port, _telling_when_sent(make_wsgi_app(registry), book))
    except OSError as e:
        raise BadInput(_bind_error(port, addr, e)) from None
    bound = int(server.server_port)
    host_part = f"[{ip}]" if ":" in ip else ip
    url = f"http://{host_part}:{bound}/metrics"
    exporter = Exporter(book, server, thread, url)
    notice("info", f"Prometheus metrics on {url} (host label {book.host!r})")
    if not ipaddress.ip_address(ip.split("%")[0]).is_loopback:
        notice("warning", f"the metrics endpoint {url} has no authentication: anyone who can reach "
               f"{addr} reads worker names, PIDs and memory; keep it on 127.0.0.1 (the default) or "
               "behind a firewall or network policy that lets only Prometheus in")
    return exporter


def _bind_error(port: int, addr: str, e: OSError) -> str:
    if e.errno == errno.EADDRINUSE:
        return (f"--metrics-port {port}: the port is already in use on {addr}: choose another port "
                f"(0 picks a free one), or stop the program that holds it (ss -ltnp 'sport = :{port}')")
    if e.errno == errno.EADDRNOTAVAIL:
        return (f"--metrics-addr {addr}: not an address of this machine: give one of its addresses "
                "(ip -brief address), 127.0.0.1 (the default) or 0.0.0.0 for all")
    if e.errno == errno.EACCES:
        return (f"--metrics-port {port}: not permitted to listen on it (ports below 1024 need root): "
                "choose a port from 1024 up, e.g. 9464")
    return f"cannot serve metrics on {addr} port {port}: {e.strerror or e}"


# prometheus_client's own start_http_server, with two differences: the response tells the book
# once it has been written out (an agent that ends waits for exactly that), and the server is
# ours to close.

class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # a scrape every few seconds is not news for the terminal


class _Sent:
    """A response body; the WSGI server calls ``close()`` once it has written all of it."""

    def __init__(self, body: Iterable[bytes], done: Callable[[], None]) -> None:
        self._body = body
        self._done = done

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        close = getattr(self._body, "close", None)
        if close is not None:
            close()
        self._done()


def _telling_when_sent(app: Any, book: MetricsBook) -> Any:
    def scrape(environ: dict[str, Any], start_response: Any) -> Any:
        counted = book.counted()  # read before collecting: all of these are in this response
        body = app(environ, start_response)
        if environ.get("PATH_INFO") == "/favicon.ico":
            return body
        return _Sent(body, lambda: book.sent(counted))
    return scrape


def _serve(family: int, host: str, port: int, app: Any) -> tuple[WSGIServer, threading.Thread]:
    server_class = type("_MetricsServer", (_ThreadingServer,), {"address_family": family})
    server: WSGIServer = make_server(host, port, app, server_class, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    return server, thread
