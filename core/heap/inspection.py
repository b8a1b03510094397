"""Heap of attached Node.js processes through the inspector (opt-in: ``--inspect-heap``).

The probe talks a blocking protocol (opening can take seconds: SIGUSR1, then the port), so
each inspected process gets a thread of its own that hands its reports to the engine thread;
the engine's loop never waits on a socket it does not select on. The inspector is closed
again when the worker goes, when inspection is stopped, and when the engine stops (Ctrl-C
included): while it is open, any local user could run code in that process.
"""

from __future__ import annotations

import os
import selectors
import threading
import time
from collections.abc import Callable

from ..errors import Error, WorkerGone
from .inspector import NodeInspector
from .messages import HeapReport
from ..pidfd import ProcessHandle

ReportSink = Callable[[list[HeapReport]], None]
ProblemSink = Callable[[str], None]
# Told once the inspector is open: where it listens, and whether oomscope opened it.
OpenedSink = Callable[[str, bool], None]


class InspectionThread:
    """Opens the inspector of one process, queries it every interval, closes it at the end."""

    def __init__(self, pid: int, start_ticks: int, interval_s: float, on_reports: ReportSink,
                 on_problem: ProblemSink, on_opened: OpenedSink | None = None) -> None:
        self.pid = pid
        self._on_opened = on_opened
        self._start_ticks = start_ticks
        self._interval_s = interval_s
        self._on_reports = on_reports
        self._on_problem = on_problem
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._wake_lock = threading.Lock()
        self._wake_closed = False
        self._thread = threading.Thread(target=self._run, name=f"oomscope-inspect-{pid}", daemon=True)

    def start(self) -> InspectionThread:
        self._thread.start()
        return self

    def stop(self, join_timeout_s: float = 5.0) -> None:
        self._stop.set()
        with self._wake_lock:  # the thread closes the pipe under this lock when it ends
            if not self._wake_closed:
                try:
                    os.write(self._wake_w, b"\0")
                except BlockingIOError:
                    pass  # full of wake-ups already
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(join_timeout_s)

    def _run(self) -> None:
        inspector: NodeInspector | None = None
        handle: ProcessHandle | None = None
        try:
            # A handle of our own: the engine's may be closed under us when the worker exits.
            handle = ProcessHandle.open(self.pid, self._start_ticks)
            inspector = NodeInspector.open(self.pid, handle)
            if self._on_opened is not None:
                self._on_opened(inspector.address, inspector.opened_by_us)
            with selectors.DefaultSelector() as sel:
                # Node holds its exit until its debugger clients let go: watch the connection
                # between queries, not only at them, so an exiting process is released at once.
                sel.register(inspector.fileno(), selectors.EVENT_READ)
                sel.register(self._wake_r, selectors.EVENT_READ)
                next_query = time.monotonic()
                while not self._stop.is_set():
                    now = time.monotonic()
                    if now >= next_query:
                        # A blocked thread must not hold the others' reports past one interval.
                        self._on_reports(inspector.query(timeout_s=min(self._interval_s, 1.0)))
                        next_query = now + self._interval_s
                        continue
                    for key, _ in sel.select(next_query - now):
                        if key.fd == self._wake_r:
                            break
                        inspector.handle_events()
        except WorkerGone:
            pass  # the process ended: its pidfd tells the engine, nothing to add here
        except Error as e:
            if not self._stop.is_set():
                self._on_problem(str(e))
        finally:
            if inspector is not None:
                try:
                    inspector.close()
                except Error as e:
                    self._on_problem(f"could not close the inspector of PID {self.pid}: {e}")
            if handle is not None:
                handle.close()
            with self._wake_lock:
                self._wake_closed = True
                for fd in (self._wake_r, self._wake_w):
                    os.close(fd)
