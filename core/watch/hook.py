"""``watch --on-event CMD``: each notable event as one JSON object on a hook command's stdin."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections import deque
from typing import TextIO

from ..events import (
    CauseUpdated,
    CrashLoop,
    Doctor,
    Event,
    KernelOom,
    LevelsChanged,
    Terminate,
    ThreadExited,
    Threshold,
    WorkerExited,
)
from .printers import Printer, printed


HOOKED = (Threshold, WorkerExited, CauseUpdated, CrashLoop, ThreadExited, KernelOom, Doctor, Terminate, LevelsChanged)


# At most this many hook commands run at once; the next events wait, up to MAX_QUEUED of them.
# 400 workers exiting together must not start 400 shells at once (a fork storm on a machine
# already in memory trouble).
MAX_RUNNING = 8
MAX_QUEUED = 1000


class EventHook:
    """``--on-event CMD``: CMD gets each notable event as JSON on stdin.

    ``max_running`` hooks run side by side, each started by a thread of its own that waits for
    it, so a slow hook never holds the events back; the events behind them wait in a queue of
    ``max_queued``, and an event that finds the queue full is dropped (said once, and the count
    at the end). :meth:`finish` lets the queue drain for a bounded time.
    """

    def __init__(self, command: str, err: TextIO, finish_timeout_s: float = 10.0,
                 max_running: int = MAX_RUNNING, max_queued: int = MAX_QUEUED) -> None:
        self.command = command
        self.err = err
        self.finish_timeout_s = finish_timeout_s
        self.max_queued = max_queued
        self.failures = 0
        self.dropped = 0
        self._cond = threading.Condition()
        self._pending: deque[bytes] = deque()
        self._closing = False
        self._running: set[subprocess.Popen[bytes]] = set()
        self._threads = [threading.Thread(target=self._serve, name=f"on-event-{i}", daemon=True)
                         for i in range(max_running)]
        for t in self._threads:
            t.start()

    def wrap(self, printer: Printer) -> Printer:
        def both(event: Event) -> None:
            printer(event)
            if isinstance(event, HOOKED) and printed(event):
                self.run(event)
        return both

    def run(self, event: Event) -> None:
        data = (json.dumps(event.to_json(), separators=(",", ":")) + "\n").encode()
        with self._cond:
            if len(self._pending) < self.max_queued:
                self._pending.append(data)
                self._cond.notify()
                return
            self.dropped += 1
            first = self.dropped == 1
        if first:
            self._say(f"--on-event: {self.max_queued} events wait for the {len(self._threads)} hook "
                      "commands that run at once; events are dropped until they catch up (how many "
                      "is told at the end)")

    def _serve(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if not self._pending:
                    return
                data = self._pending.popleft()
            self._run_one(data)

    def _run_one(self, data: bytes) -> None:
        try:
            p = subprocess.Popen(["/bin/sh", "-c", self.command], stdin=subprocess.PIPE,
                                 start_new_session=True)
        except OSError as e:
            self._failed(f"cannot start the --on-event command: {e}")
            return
        with self._cond:
            self._running.add(p)
        try:
            try:
                p.communicate(data)
            except BrokenPipeError:
                pass  # the hook did not read its stdin: its business
            rc = p.wait()
        finally:
            with self._cond:
                self._running.discard(p)
        if rc != 0:
            self._failed(f"the --on-event command exited with code {rc}")

    def _failed(self, text: str) -> None:
        with self._cond:
            self.failures += 1
            say = self.failures <= 3  # say it, but do not flood the terminal
        if say:
            self._say(text)

    def _say(self, text: str) -> None:
        self.err.write(f"oomscope watch: {text}\n")
        self.err.flush()

    def finish(self) -> None:
        """Let the queued and running hooks finish, for up to ``finish_timeout_s``; then what
        still runs is left running and what still waits is not run, and both are told."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        deadline = time.monotonic() + self.finish_timeout_s
        for t in self._threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        with self._cond:
            running = sorted(p.pid for p in self._running)
            unrun = len(self._pending)
            self._pending.clear()
        for pid in running:
            self._failed(f"the --on-event command (PID {pid}) still runs; left running")
        if unrun:
            self._say(f"--on-event: {unrun} events were not given to the hook command: it was "
                      f"still busy {self.finish_timeout_s:g} s after watch ended")
        if self.dropped:
            self._say(f"--on-event: {self.dropped} events were dropped (more than {self.max_queued} "
                      "waited for a hook command)")
