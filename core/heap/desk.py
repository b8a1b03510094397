"""Heap reports inside the engine: the reporters' socket, attach-time inspection, per-thread
bookkeeping, stale threads, worker-thread deaths and the doctor's advice.

It runs on the engine thread only, and reaches the engine through the few callables it is
given: register a descriptor in the loop, emit an event, run something later or soon, find the
worker a PID belongs to, read the thresholds in force.
"""

from __future__ import annotations

import os
import selectors
import time
from collections.abc import Callable, Iterable

from ..doctor import max_old_space_mb, node_heap_advice, off_heap_advice
from ..errors import BadInput, Error, WorkerGone
from ..events import Doctor, Event, Heap, Notice, ThreadExited
from .inspector import node_executable
from .messages import HeapReport, ThreadEnded, ThreadHello
from .server import Connection, HeapServer
from .book import ThreadState
from .inspection import InspectionThread
from ..thresholds import ThresholdConfig
from ..worker import Worker

# The end of a thread's connection comes first; the creating thread's word on *why* (a
# worker's ERR_WORKER_OUT_OF_MEMORY) arrives a moment later on another connection.
THREAD_END_SETTLE_S = 1.0


class HeapDesk:
    def __init__(
        self,
        *,
        selector: selectors.BaseSelector,
        emit: Callable[[Event], None],
        at: Callable[[float, Callable[[], None]], None],
        call_soon: Callable[[Callable[[], None]], None],
        owner_of: Callable[[int], Worker | None],
        thresholds: Callable[[], ThresholdConfig],
        interval_s: float,
    ) -> None:
        self._selector = selector
        self._emit = emit
        self._at = at
        self._call_soon = call_soon
        self._owner_of = owner_of
        self._thresholds = thresholds
        self.interval_s = interval_s
        self.server: HeapServer | None = None
        self._thread_deaths: set[tuple[int, int]] = set()
        self._refused_peers: set[int] = set()
        self._inspections: dict[str, InspectionThread] = {}

    @property
    def socket_path(self) -> str | None:
        return self.server.socket_path if self.server is not None else None

    def open(self) -> None:
        try:
            self.server = HeapServer(is_allowed=self._allowed)
        except Error as e:
            self._emit(Notice(time.time(), "warning", f"heap reports unavailable: {e}"))
            return
        self._selector.register(self.server.fileno(), selectors.EVENT_READ, self._on_accept)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for insp in self._inspections.values():
            insp.stop()  # closes each inspector port before we go
        self._inspections.clear()

    # ------------------------------------------------------------- reporters

    def _allowed(self, pid: int, uid: int) -> bool:
        # Only our own workers (or their descendants), running as the user we run as.
        return uid == os.geteuid() and self._owner_of(pid) is not None

    def _on_accept(self) -> None:
        server = self.server
        if server is None:
            return
        for conn in server.accept():
            w = self._owner_of(conn.pid)
            if w is None:  # the worker exited between the check and now
                conn.close()
                continue
            self._selector.register(conn.fileno(), selectors.EVENT_READ,
                                    lambda c=conn, w=w: self._on_conn(c, w))
        for peer in server.take_refused():
            if peer.pid not in self._refused_peers:  # say it once per peer, not per attempt
                self._refused_peers.add(peer.pid)
                self._emit(Notice(time.time(), "warning",
                                  f"refused a heap report connection from PID {peer.pid} "
                                  f"(uid {peer.uid}): {peer.reason}"))

    def _on_conn(self, conn: Connection, w: Worker) -> None:
        messages, eof = conn.read()
        mono = time.monotonic()
        for msg in messages:
            if isinstance(msg, HeapReport):
                self._take(w, [msg], mono)
            elif isinstance(msg, ThreadHello):
                w.heap.hello(msg, mono)
            elif isinstance(msg, ThreadEnded):
                self._on_thread_end(w, msg)
        if eof:
            self._selector.unregister(conn.fileno())
            conn.close()

    def _take(self, w: Worker, reports: Iterable[HeapReport], mono: float, *, by_inspector: bool = False) -> None:
        for r in reports:
            st = w.heap.report(r, mono)
            if by_inspector:
                st.is_main = r.thread_id == 0  # the inspector sends no hello
            self._emit(heap_event(w, st, r))
        thresholds = self._thresholds()
        if thresholds.metric == "heap":
            w.refresh_levels(thresholds)
        if not w.heap.advised:
            self._advise(w)
        if not w.heap.advised_off_heap and w.cgroup_limit:
            advice = off_heap_advice(*w.heap.off_heap(), w.cgroup_limit)
            if advice is not None:
                w.heap.advised_off_heap = True
                self._emit(Doctor(time.time(), w.ref, advice.advice, advice.reason, advice.suggested))

    def _on_thread_end(self, w: Worker, msg: ThreadEnded) -> None:
        key = (msg.pid, msg.thread_id)
        if not w.heap.known(msg.pid, msg.thread_id):
            # The socket takes any process of the worker's tree: a thread that never reported
            # cannot have died of its heap as far as we know, whatever the message claims.
            if not w.heap.refused_unknown_end:
                w.heap.refused_unknown_end = True
                self._emit(Notice(time.time(), "warning",
                                  f"ignored a heap report that thread {msg.thread_id} of PID "
                                  f"{msg.pid} ended ({msg.cause or 'no cause'}): that thread never "
                                  "reported its heap", w.ref))
            return
        st = w.heap.end(msg.pid, msg.thread_id)
        if msg.thread_id == 0 or (st is not None and st.is_main):
            return  # the process itself is ending: its pidfd tells the rest
        if key in self._thread_deaths:
            return
        if msg.cause is not None:
            self._thread_deaths.add(key)
            self._emit(ThreadExited(time.time(), w.ref, msg.pid, msg.thread_id, msg.cause, msg.message))
            return

        def settle() -> None:
            if key not in self._thread_deaths:
                self._thread_deaths.add(key)
                self._emit(ThreadExited(time.time(), w.ref, msg.pid, msg.thread_id, "exit", None))
        self._at(time.monotonic() + THREAD_END_SETTLE_S, settle)

    def _advise(self, w: Worker) -> None:
        main = w.heap.main_report()
        if main is None:
            return
        w.heap.advised = True
        st = w.heap.threads.get((main.pid, 0))
        if st is None or st.runtime != "node":
            return
        words = list(w.ref.cmd) + [w.node_options or ""]
        advice = node_heap_advice(main.heap_limit, w.cgroup_limit, max_old_space_mb(words))
        if advice is not None:
            self._emit(Doctor(time.time(), w.ref, advice.advice, advice.reason, advice.suggested))

    def check_stale(self, live: Iterable[Worker], mono: float) -> None:
        for w in live:
            if not w.heap.threads:
                continue
            for st in w.heap.newly_stale(mono, self.interval_s):
                if st.report is not None:
                    self._emit(heap_event(w, st, st.report, stale=True))

    # ------------------------------------------------------------ inspection

    def inspect(self, w: Worker) -> None:
        if w.exited:
            raise WorkerGone(f"worker {w.ref.id} ({w.ref.name}, PID {w.ref.pid}) has already exited")
        if w.ref.id in self._inspections:
            return
        if w.launched:
            raise BadInput(f"worker {w.ref.id} was launched by oomscope: it reports its heap already")
        node_executable(w.ref.pid)  # Refused, with the reason, for anything but node

        def reports(batch: list[HeapReport]) -> None:
            self._call_soon(lambda: None if w.exited else self._take(w, batch, time.monotonic(),
                                                                     by_inspector=True))

        def problem(text: str) -> None:
            self._call_soon(lambda: self._emit(Notice(time.time(), "warning",
                                                      f"heap inspection: {text}", w.ref)))

        def opened(address: str, by_us: bool) -> None:
            # Opening an inspector lets any local user run code in that process: say so, and where.
            text = (f"heap inspection: opened the inspector of PID {w.ref.pid} on {address}; it "
                    "closes when oomscope lets go of the worker, or within a second if oomscope "
                    "dies" if by_us else
                    f"heap inspection: using the inspector PID {w.ref.pid} already had open on "
                    f"{address} (left open afterwards)")
            self._call_soon(lambda: self._emit(Notice(time.time(), "info", text, w.ref)))

        self._inspections[w.ref.id] = InspectionThread(
            w.ref.pid, w.handle.start_ticks, self.interval_s, reports, problem, opened).start()

    def worker_exited(self, w: Worker) -> None:
        insp = self._inspections.pop(w.ref.id, None)
        if insp is not None:
            insp.stop(join_timeout_s=0)  # it closes the inspector by itself


def heap_event(w: Worker, st: ThreadState, r: HeapReport, stale: bool = False) -> Heap:
    return Heap(time.time(), w.ref, r.pid, r.thread_id, r.heap_used, r.heap_total, r.heap_limit,
                r.old_space_used, r.old_space_limit, r.external, r.array_buffers,
                is_main=st.is_main, stale=stale, runtime=st.runtime)
