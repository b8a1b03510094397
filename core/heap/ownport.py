"""An inspector of its own for each node process, though siblings share node's port.

Every worker of a node ``cluster`` (or a pool of node processes started alike) would open its
inspector on the same configured port (9229). oomscope opens one at a time, under a lock per
port, and moves each at once onto a port the kernel picks; the move also installs a watchdog
that closes the inspector within a second of oomscope's death.
"""

from __future__ import annotations

import json
import os
import threading
import time

from ..errors import Error, WorkerGone
from ..pidfd import ProcessHandle
from .httpclient import debugger_path
from .inspectorjs import evaluate, move_js, parse
from .listeners import POLL_INTERVAL_S, Listener, own_listeners
from .websocket import ConnectionLost, WebSocket

# Siblings (a node cluster's workers, a pool of node processes) share the configured port: one
# of them opens it at a time, then moves to a port of its own, freeing it for the next.
_PORT_LOCKS: dict[int, threading.Lock] = {}
_PORT_LOCKS_GUARD = threading.Lock()


def port_lock(port: int) -> threading.Lock:
    with _PORT_LOCKS_GUARD:
        return _PORT_LOCKS.setdefault(port, threading.Lock())


def client_host(listener: Listener) -> str:
    """Where to connect to a listener: a wildcard address is reached through loopback."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(listener.host, listener.host)


def connect(pid: int, listener: Listener, deadline: float, quickack: bool = True) -> WebSocket:
    host = client_host(listener)
    left = max(0.1, deadline - time.monotonic())
    path = debugger_path(host, listener.port, pid, left)
    return WebSocket.connect(host, listener.port, path, pid, timeout_s=left, quickack=quickack)


def move_to_own_port(pid: int, handle: ProcessHandle, listener: Listener,
                      deadline: float) -> Listener:
    """Move an inspector oomscope just opened off the configured port, onto one the kernel
    picks: the configured port is free again for the next sibling, and the inspector closes
    itself within a second of oomscope's death (even by SIGKILL), instead of staying open to
    every local user until the process exits."""
    host = client_host(listener)
    before = set(own_listeners(pid))
    conn = connect(pid, listener, deadline)
    try:
        conn.send_texts([json.dumps({"id": 1, "method": "Runtime.evaluate",
                                     "params": evaluate(move_js(host, os.getpid()))})])
        # The close inside the evaluate ends this connection, usually before any answer: the
        # end is the expected outcome, and the listeners below say whether the move happened.
        while True:
            try:
                text = conn.receive(deadline)
            except ConnectionLost:
                break
            if text is None or parse(text).get("id") == 1:
                break
    finally:
        conn.close()
    while True:
        now_open = own_listeners(pid)
        moved = [s for s in now_open if s not in before]
        if moved and all(s.port != listener.port for s in now_open):
            return moved[0]
        left = deadline - time.monotonic()
        if left <= 0:
            raise Error(f"the inspector of PID {pid} did not move off port {listener.port} in "
                        "the time allowed (is its main thread blocked?); it may still be open")
        if handle.wait_exited(min(POLL_INTERVAL_S, left)):
            raise WorkerGone(f"node process {pid} exited while its inspector was being opened")
