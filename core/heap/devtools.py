"""The DevTools protocol side of the inspector probe: :class:`NodeInspector` opens node's
inspector (SIGUSR1 through the pidfd), follows its worker threads through ``NodeWorker`` and asks
every thread for ``Runtime.getHeapUsage`` at once. See :mod:`.inspector` for the whole story."""

from __future__ import annotations

import json
import signal
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final

from .. import procfs
from ..errors import Error, Refused, WorkerGone
from ..pidfd import ProcessHandle
from .inspectorjs import CLOSE_JS, THREAD_INFO_JS, error_text, evaluate, parse, thread_info
from .listeners import (
    POLL_INTERVAL_S,
    Listener,
    await_listener,
    configured_port,
    node_executable,
    own_listeners,
    raise_if_taken,
    same_netns,
)
from .messages import HeapReport
from .ownport import connect, move_to_own_port, port_lock
from .websocket import ConnectionLost, WebSocket

# A closed connection with a live process may just be the process in the middle of exiting; the
# pidfd tells which within this time.
_EXIT_GRACE_S: Final = 1.0

class InspectorClosed(Error):
    """The inspector connection ended while the process lives on (it closed its inspector)."""


@dataclass(slots=True)
class _Thread:
    """A thread the probe talks to: ``session`` None for the main thread."""

    session: str | None
    thread_id: int | None = None
    heap_limit: int = 0
    usage: tuple[int, int, float] | None = None
    """``usedSize``, ``totalSize``, Unix time: held until the thread's id is known too."""


@dataclass(slots=True)
class _Pending:
    """Answers a query waits for, keyed by (session, message id)."""

    usage: dict[tuple[str | None, int], _Thread] = field(default_factory=dict)
    info: dict[tuple[str | None, int], _Thread] = field(default_factory=dict)


class NodeInspector:
    """An open DevTools connection to one node process; :meth:`query` for per-thread heaps."""

    def __init__(self, handle: ProcessHandle, listener: Listener, conn: WebSocket,
                 opened_by_us: bool, timeout_s: float) -> None:
        self.handle = handle
        self.pid = handle.pid
        self.listener = listener
        self.opened_by_us = opened_by_us
        self.timeout_s = timeout_s
        self._conn: WebSocket | None = conn
        self._next_id = 0
        self._main = _Thread(session=None, thread_id=0)
        self._workers: dict[str, _Thread] = {}
        self._pending = _Pending()
        self._relayed: dict[int, str] = {}
        """Ids of sendMessageToWorker commands in flight, to the worker session they are for."""

    # -- opening

    @classmethod
    def open(cls, pid: int, handle: ProcessHandle, *, timeout_s: float = 5.0,
             quickack: bool = True) -> NodeInspector:
        """Open the inspector of node process PID (SIGUSR1 through ``handle``) and connect.

        Raises :class:`Refused` (not node, another network namespace), :class:`PortTaken`
        (nothing is signalled when the port is taken beforehand), :class:`WorkerGone`,
        :class:`NotPermitted`, or :class:`Error` (no inspector within ``timeout_s``).
        ``quickack`` False exists for the latency comparison only.
        """
        if handle.pid != pid:
            raise Refused(f"the process handle is for PID {handle.pid}, not PID {pid}")
        deadline = time.monotonic() + timeout_s
        node_executable(pid)
        # The pidfd was opened for one process; /proc/PID must still be that one, or the exe we
        # just checked belongs to a newcomer with a reused PID.
        if procfs.start_ticks(pid) != handle.start_ticks or not handle.is_alive():
            raise WorkerGone(f"process {pid} exited (its PID now belongs to another process)")
        same_netns(pid)
        port = configured_port(pid)
        before = own_listeners(pid)
        already = [s for s in before if s.port == port]
        opened_by_us = not already
        if already:
            listener = already[0]
        else:
            lock = port_lock(port)
            if not lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                raise Error(f"the inspector port {port} stayed busy with another node process "
                            f"oomscope is opening; PID {pid} was not signalled")
            try:
                raise_if_taken(pid, port)
                handle.send_signal(signal.SIGUSR1)
                listener = await_listener(pid, handle, before, port, deadline)
                listener = move_to_own_port(pid, handle, listener, deadline)
            finally:
                lock.release()
        try:
            conn = connect(pid, listener, deadline, quickack)
        except Error as e:
            if opened_by_us:
                e.add_note(f"the inspector of PID {pid} may still be open on port "
                           f"{listener.port}; it closes when the process exits")
            raise
        probe = cls(handle, listener, conn, opened_by_us, timeout_s)
        try:
            probe._start(deadline)
        except BaseException:
            probe.close()
            raise
        return probe

    @property
    def address(self) -> str:
        """Where the inspector listens, as a user would type it."""
        host = self.listener.host
        return f"[{host}]:{self.listener.port}" if ":" in host else f"{host}:{self.listener.port}"

    def _start(self, deadline: float) -> None:
        # A node whose inspector was opened by a signal does not exit while a client is
        # connected ("Waiting for the debugger to disconnect..."): this event is the cue to let
        # go at once, so the process ends as it would have without oomscope.
        self._call("NodeRuntime.notifyWhenWaitingForDisconnect", {"enabled": True}, deadline)
        # Attach events for workers that already run come before enable's answer (node sends
        # them while handling enable), so after this call every existing worker is known.
        self._call("NodeWorker.enable", {"waitForDebuggerOnStart": False}, deadline)
        answer = self._call("Runtime.evaluate", evaluate(THREAD_INFO_JS), deadline)
        info = thread_info(answer)
        if info is not None:
            self._main.heap_limit = info[1]

    def _call(self, method: str, params: dict[str, Any], deadline: float) -> dict[str, Any]:
        """One command on the main session, waited for (only used while opening)."""
        conn = self._connection()
        mid = self._id()
        conn.send_texts([json.dumps({"id": mid, "method": method, "params": params})])
        while True:
            msg = self._receive(conn, deadline)
            if msg is None:
                raise Error(f"the inspector of PID {self.pid} did not answer {method} "
                            f"within {self.timeout_s:g} s")
            if msg.get("id") == mid:
                if "error" in msg:
                    raise Error(f"the inspector of PID {self.pid} refused {method}: "
                                f"{error_text(msg)}")
                result = msg.get("result")
                return result if isinstance(result, dict) else {}

    # -- querying

    def query(self, timeout_s: float | None = None) -> list[HeapReport]:
        """One report per thread that answered within ``timeout_s`` (default: the one given to
        :meth:`open`), sorted by thread id, main thread (0) first.

        A thread that does not answer in time (blocked outside JavaScript) is left out, so the
        engine shows it as stale; its late answer is discarded. :class:`WorkerGone` when the
        process has exited, :class:`InspectorClosed` when it closed its inspector.
        """
        conn = self._connection()
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        # Answers still owed by the previous query are dropped with their keys: a late one is
        # then ignored instead of being taken for this query's.
        self._pending = _Pending()
        self._relayed.clear()
        # Attach events that came in since the last query are read first, so a worker started
        # after open() is asked in this very query.
        self.handle_events()
        threads = [self._main, *self._workers.values()]
        for t in threads:
            t.usage = None
        conn.send_texts([self._usage_request(t) for t in threads]
                        + [self._info_request(t) for t in threads if t.thread_id is None])
        answered: dict[int, HeapReport] = {}
        while self._pending.usage or self._pending.info:
            if self._receive(conn, deadline, answered) is None:
                break
        return sorted(answered.values(), key=lambda r: r.thread_id)

    def _usage_request(self, thread: _Thread) -> str:
        mid = self._id()
        self._pending.usage[(thread.session, mid)] = thread
        return self._wrap(thread.session, mid, "Runtime.getHeapUsage", {})

    def _info_request(self, thread: _Thread) -> str:
        mid = self._id()
        self._pending.info[(thread.session, mid)] = thread
        return self._wrap(thread.session, mid, "Runtime.evaluate", evaluate(THREAD_INFO_JS))

    def _wrap(self, session: str | None, mid: int, method: str, params: dict[str, Any]) -> str:
        inner = json.dumps({"id": mid, "method": method, "params": params})
        if session is None:
            return inner
        # The outer command's own answer is only an acknowledgement; the worker's answer comes
        # as a receivedMessageFromWorker event carrying the inner id.
        outer = self._id()
        self._relayed[outer] = session
        return json.dumps({"id": outer, "method": "NodeWorker.sendMessageToWorker",
                           "params": {"sessionId": session, "message": inner}})

    def _receive(self, conn: WebSocket, deadline: float,
                 answered: dict[int, HeapReport] | None = None) -> dict[str, Any] | None:
        """Read one protocol message and act on it; None when the deadline passed."""
        try:
            text = conn.receive(deadline)
        except ConnectionLost as e:
            conn.close()
            self._conn = None
            raise self._why_lost(e) from None
        if text is None:
            return None
        msg = parse(text)
        method = msg.get("method")
        params = msg.get("params")
        if not isinstance(params, dict):
            params = {}
        if method == "NodeRuntime.waitingForDisconnect":
            conn.close()
            self._conn = None
            if _wait_exit(self.handle, _EXIT_GRACE_S):
                raise WorkerGone(f"node process {self.pid} exited while attached")
            raise WorkerGone(f"node process {self.pid} is exiting; oomscope let go of it")
        if method == "NodeWorker.attachedToWorker":
            session = params.get("sessionId")
            if isinstance(session, str) and session not in self._workers:
                thread = self._workers[session] = _Thread(session=session)
                if answered is not None:
                    # Attached in the middle of a query: ask it in this query too.
                    conn.send_texts([self._usage_request(thread), self._info_request(thread)])
        elif method == "NodeWorker.detachedFromWorker":
            self._forget(str(params.get("sessionId")))
        elif method == "NodeWorker.receivedMessageFromWorker":
            session, inner = params.get("sessionId"), params.get("message")
            if isinstance(session, str) and isinstance(inner, str):
                self._answer(session, parse(inner), answered)
        elif method is None and "id" in msg:
            self._answer(None, msg, answered)
        return msg

    def _answer(self, session: str | None, msg: dict[str, Any],
                answered: dict[int, HeapReport] | None) -> None:
        mid = msg.get("id")
        if not isinstance(mid, int):
            return
        if session is None and mid in self._relayed:
            worker = self._relayed.pop(mid)
            if "error" in msg:
                # The worker session is gone (the thread ended): nothing will answer for it.
                self._forget(worker)
            return
        key = (session, mid)
        result = msg.get("result") if isinstance(msg.get("result"), dict) else None
        thread = self._pending.info.pop(key, None)
        if thread is not None:
            info = thread_info(result)
            if info is not None:
                thread.thread_id, thread.heap_limit = info
                self._report_if_ready(thread, answered)
            return
        thread = self._pending.usage.pop(key, None)
        if thread is None or result is None:
            return
        used, total = result.get("usedSize"), result.get("totalSize")
        if isinstance(used, (int, float)) and isinstance(total, (int, float)):
            thread.usage = (int(used), int(total), time.time())
            self._report_if_ready(thread, answered)

    def _forget(self, session: str) -> None:
        self._workers.pop(session, None)
        for pending in (self._pending.usage, self._pending.info):
            for key in [k for k in pending if k[0] == session]:
                del pending[key]
        for mid in [m for m, s in self._relayed.items() if s == session]:
            del self._relayed[mid]

    def fileno(self) -> int:
        """The connection's socket for the engine's selector: when readable, call
        :meth:`handle_events`."""
        return self._connection().sock.fileno()

    def handle_events(self) -> None:
        """Act on what node sent between queries, without blocking.

        Node holds its exit until every client has disconnected; an engine that selects on
        :meth:`fileno` and calls this when it is readable lets go of an exiting process at once
        (:class:`WorkerGone`) instead of at its next :meth:`query`.
        """
        conn = self._connection()
        while self._receive(conn, time.monotonic()) is not None:
            pass

    def _report_if_ready(self, thread: _Thread, answered: dict[int, HeapReport] | None) -> None:
        if answered is None or thread.usage is None or thread.thread_id is None:
            return
        used, total, t = thread.usage
        thread.usage = None
        answered[thread.thread_id] = HeapReport(
            pid=self.pid, thread_id=thread.thread_id, t=t, heap_used=used, heap_total=total,
            heap_limit=thread.heap_limit, old_space_used=None, old_space_limit=None,
            external=None, array_buffers=None, rss=None,
        )

    # -- closing

    def close(self) -> None:
        """Close the inspector in the process (if oomscope opened it) and the connection.

        Idempotent. Raises :class:`Error` only when the process lives on with its inspector port
        still open; the connection is closed either way.
        """
        conn, self._conn = self._conn, None
        if conn is None:
            return
        port = self.listener.port
        # One deadline for the whole close: on Ctrl-C the user waits for it.
        deadline = time.monotonic() + self.timeout_s
        try:
            if self.opened_by_us and not conn.closed:
                try:
                    # inspector.close() tears down every connection, ours included, before
                    # evaluate could answer: the end of the connection is the normal outcome.
                    self._call_on(conn, CLOSE_JS, deadline)
                except Error:
                    pass
        finally:
            conn.close()
        if not self.opened_by_us or self.handle.closed or not self.handle.is_alive():
            return
        while True:
            try:
                still = [s for s in own_listeners(self.pid)
                         if (s.host, s.port) == (self.listener.host, self.listener.port)]
            except WorkerGone:
                return
            if not still:
                return
            if time.monotonic() >= deadline:
                raise Error(
                    f"the inspector of PID {self.pid} is still open on port {port}: the process "
                    "did not run inspector.close() (is its main thread blocked?); any local user "
                    "can run code in it until it exits"
                )
            if _wait_exit(self.handle, POLL_INTERVAL_S):
                return

    def _call_on(self, conn: WebSocket, expression: str, deadline: float) -> None:
        mid = self._id()
        conn.send_texts([json.dumps({"id": mid, "method": "Runtime.evaluate",
                                     "params": evaluate(expression)})])
        while True:
            text = conn.receive(deadline)
            if text is None:
                return
            msg = parse(text)
            # An exiting process waits for us to let go: no answer will come.
            if msg.get("id") == mid or msg.get("method") == "NodeRuntime.waitingForDisconnect":
                return

    def __enter__(self) -> NodeInspector:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.close()
        except Error as e:
            if exc is None:
                raise
            # The error that ended the with-block stays the one raised; the open port is told too.
            exc.add_note(str(e))

    # -- helpers

    def _connection(self) -> WebSocket:
        if self._conn is None:
            raise InspectorClosed(f"the inspector probe of PID {self.pid} is closed")
        return self._conn

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _why_lost(self, e: Error) -> Error:
        if _wait_exit(self.handle, _EXIT_GRACE_S):
            return WorkerGone(f"node process {self.pid} exited while attached")
        return InspectorClosed(f"{e}; the process lives on (did it call inspector.close()?): "
                               "attach again to read its heaps")

    def __repr__(self) -> str:
        return (f"NodeInspector(pid={self.pid}, port={self.listener.port}, "
                f"workers={len(self._workers)}, open={self._conn is not None})")


def _wait_exit(handle: ProcessHandle, timeout_s: float) -> bool:
    """Whether the process exited within ``timeout_s``."""
    return handle.wait_exited(timeout_s)
