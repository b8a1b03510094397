"""``watch --on-event CMD``: each notable event as one JSON object on a hook command's stdin."""

from __future__ import annotations

import json
import subprocess
import time
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


class EventHook:
    """``--on-event CMD``: CMD gets each notable event as JSON on stdin.

    Hooks run side by side and are not waited for (a slow hook must not hold the events back);
    finished ones are collected as events come, the rest at the end, for a bounded time.
    """

    def __init__(self, command: str, err: TextIO, finish_timeout_s: float = 10.0) -> None:
        self.command = command
        self.err = err
        self.finish_timeout_s = finish_timeout_s
        self.running: list[subprocess.Popen[bytes]] = []
        self.failures = 0

    def wrap(self, printer: Printer) -> Printer:
        def both(event: Event) -> None:
            printer(event)
            if isinstance(event, HOOKED) and printed(event):
                self.run(event)
        return both

    def run(self, event: Event) -> None:
        self._collect()
        try:
            p = subprocess.Popen(["/bin/sh", "-c", self.command], stdin=subprocess.PIPE,
                                 start_new_session=True)
        except OSError as e:
            self._failed(f"cannot start the --on-event command: {e}")
            return
        assert p.stdin is not None
        try:
            p.stdin.write((json.dumps(event.to_json(), separators=(",", ":")) + "\n").encode())
            p.stdin.close()
        except BrokenPipeError:
            pass  # the hook did not read its stdin: its business
        self.running.append(p)

    def _collect(self) -> None:
        still = []
        for p in self.running:
            rc = p.poll()
            if rc is None:
                still.append(p)
            elif rc != 0:
                self._failed(f"the --on-event command exited with code {rc}")
        self.running = still

    def _failed(self, text: str) -> None:
        self.failures += 1
        if self.failures <= 3:  # say it, but do not flood the terminal
            self.err.write(f"oomscope watch: {text}\n")
            self.err.flush()

    def finish(self) -> None:
        deadline = time.monotonic() + self.finish_timeout_s
        for p in self.running:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._failed(f"the --on-event command (PID {p.pid}) still runs; left running")
        self._collect()
