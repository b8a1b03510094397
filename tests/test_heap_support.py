"""Helpers for the heap tests: a HeapServer pumped by selectors, waited on with a deadline."""

from __future__ import annotations

import os
import selectors
import shutil
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from oomscope.core.heap.messages import HeapReport, Message, ThreadEnded, ThreadHello
from oomscope.core.heap.server import Connection, HeapServer

NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed")


class Collector:
    """Everything a HeapServer received; ``wait_for`` pumps the socket until a condition holds."""

    def __init__(self, server: HeapServer) -> None:
        self.server = server
        self.sel = selectors.DefaultSelector()
        self.sel.register(server.fileno(), selectors.EVENT_READ, None)
        self.messages: list[Message] = []
        self.connections: list[Connection] = []
        self.closed: list[Connection] = []

    def pump(self, timeout: float) -> None:
        for key, _ in self.sel.select(timeout):
            conn = key.data
            if conn is None:
                for c in self.server.accept():
                    self.connections.append(c)
                    self.sel.register(c.fileno(), selectors.EVENT_READ, c)
                continue
            msgs, eof = conn.read()
            self.messages.extend(msgs)
            if eof:
                self.sel.unregister(conn.fileno())
                conn.close()
                self.closed.append(conn)

    def wait_for(self, pred: Callable[[Collector], Any], timeout: float = 15.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            got = pred(self)
            if got:
                return got
            left = deadline - time.monotonic()
            if left <= 0:
                tail = [type(m).__name__ for m in self.messages[-20:]]
                raise AssertionError(f"condition not met within {timeout} s; last messages: {tail}")
            self.pump(min(left, 0.2))

    def hellos(self, pid: int | None = None) -> list[ThreadHello]:
        return [m for m in self.messages if isinstance(m, ThreadHello) and pid in (None, m.pid)]

    def reports(self, pid: int | None = None, thread_id: int | None = None) -> list[HeapReport]:
        return [m for m in self.messages if isinstance(m, HeapReport) and pid in (None, m.pid)
                and thread_id in (None, m.thread_id)]

    def ended(self, pid: int | None = None) -> list[ThreadEnded]:
        return [m for m in self.messages if isinstance(m, ThreadEnded) and pid in (None, m.pid)]

    def close(self) -> None:
        self.sel.close()
        self.server.close()


def descendant_of(root: int) -> Callable[[int, int], bool]:
    """An is_allowed like the engine's: ``pid`` is ``root`` or below it, and the uid is ours."""
    def allowed(pid: int, uid: int) -> bool:
        if uid != os.geteuid():
            return False
        while pid > 1:
            if pid == root:
                return True
            try:
                with open(f"/proc/{pid}/stat", "rb") as f:
                    pid = int(f.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                return False
        return False
    return allowed


def run(argv: list[str], env: dict[str, str], timeout: float = 30.0,
        **kw: Any) -> subprocess.CompletedProcess[bytes]:
    kw.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run(argv, env=env, capture_output=True, timeout=timeout, **kw)
