"""The Unix socket the heap reporters connect to, one connection per reporting thread.

Made for the engine's ``selectors`` loop: everything is non-blocking, ``accept()`` and
``Connection.read()`` return what is there now, and nothing a peer sends can make them raise.
Who may connect is decided twice: the file system (a private 0700 directory, the socket 0600)
keeps other users out, and ``SO_PEERCRED`` lets the engine's ``is_allowed(pid, uid)`` accept only
its own workers and their descendants.
"""

from __future__ import annotations

import collections
import errno
import os
import shutil
import socket
import struct
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ..errors import Error
from .messages import (
    HeapReport,
    Message,
    ThreadEnded,
    ThreadHello,
    decode_line,
    ended_from,
    hello_from,
    report_from,
)

SOCKET_NAME: Final = "heap.sock"
_PEERCRED: Final = struct.Struct("3i")
# One read() takes at most this much from one peer, so a chatty peer cannot starve the others
# (selectors are level-triggered: what is left is reported again at once).
_READ_BUDGET_BYTES: Final = 256 * 1024
_RECV_BYTES: Final = 65536
_REFUSED_KEPT: Final = 256


class HeapSocketError(Error):
    """oomscope could not create its heap-report socket."""


@dataclass(frozen=True, slots=True)
class RefusedPeer:
    """A connection the server closed at once, and why."""

    pid: int
    uid: int
    reason: str


class Connection:
    """One reporting thread's connection (``pid``/``uid`` from SO_PEERCRED)."""

    def __init__(self, sock: socket.socket, pid: int, uid: int, *, max_line_bytes: int,
                 max_lines_per_s: float, on_close: Callable[[Connection], None]) -> None:
        self._sock = sock
        self.pid = pid
        self.uid = uid
        self.hello: ThreadHello | None = None
        self.lines_too_long = 0
        self.lines_over_rate = 0
        self.lines_invalid = 0
        self._max_line = max_line_bytes
        self._rate = max_lines_per_s
        # A token bucket holding one second's worth of lines: a burst (a main thread reporting
        # many dead workers at once) passes, a sustained flood does not.
        self._tokens = max_lines_per_s
        self._refilled = time.monotonic()
        self._buf = bytearray()
        self._skipping = False  # inside an over-long line, until its newline
        self._own_end_seen = False
        self._eof = False
        self._on_close = on_close
        self._closed = False

    def fileno(self) -> int:
        return self._sock.fileno()

    @property
    def eof(self) -> bool:
        return self._eof

    def read(self) -> tuple[list[Message], bool]:
        """Messages available now, and whether the peer has gone (then ``close()`` this)."""
        out: list[Message] = []
        if self._eof or self._closed:
            return out, True
        budget = _READ_BUDGET_BYTES
        while budget > 0:
            try:
                data = self._sock.recv(_RECV_BYTES)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                data = b""  # ECONNRESET and friends: the thread is gone all the same
            if not data:
                self._end(out)
                break
            budget -= len(data)
            self._feed(data, out)
        return out, self._eof

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._sock.close()
        finally:
            self._on_close(self)

    def _end(self, out: list[Message]) -> None:
        # A partial last line is a thread killed mid-write: nothing in it can be trusted.
        self._eof = True
        self._buf.clear()
        if self.hello is not None and not self._own_end_seen:
            self._own_end_seen = True
            out.append(ThreadEnded(self.pid, self.hello.thread_id, None, None))

    def _feed(self, data: bytes, out: list[Message]) -> None:
        start = 0
        while True:
            nl = data.find(b"\n", start)
            if nl < 0:
                break
            if self._skipping:
                self._skipping = False
            elif len(self._buf) + nl - start > self._max_line:
                self.lines_too_long += 1
                self._buf.clear()
            elif self._buf:
                self._buf += data[start:nl]
                self._line(bytes(self._buf), out)
                self._buf.clear()
            else:
                self._line(data[start:nl], out)
            start = nl + 1
        rest = len(data) - start
        if rest and not self._skipping:
            if len(self._buf) + rest > self._max_line:
                self.lines_too_long += 1
                self._buf.clear()
                self._skipping = True
            else:
                self._buf += data[start:]

    def _take_token(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._rate, self._tokens + (now - self._refilled) * self._rate)
        self._refilled = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def _line(self, line: bytes, out: list[Message]) -> None:
        if not line.strip():
            return
        if not self._take_token():
            self.lines_over_rate += 1
            return
        obj = decode_line(line)
        if obj is None:
            self.lines_invalid += 1
            return
        msg: Message | None
        if self.hello is None:
            msg = self.hello = hello_from(obj, self.pid)
        elif obj.get("type") == "heap":
            msg = report_from(obj, self.hello)
        else:
            msg = ended_from(obj, self.pid)
            if isinstance(msg, ThreadEnded) and msg.thread_id == self.hello.thread_id:
                if self._own_end_seen:
                    return
                self._own_end_seen = True
        if msg is None:
            self.lines_invalid += 1
        else:
            out.append(msg)


class HeapServer:
    """The listening socket, in a fresh private directory; ``close()`` removes both."""

    def __init__(self, *, is_allowed: Callable[[int, int], bool], directory: str | None = None,
                 max_line_bytes: int = 65536, max_lines_per_s: float = 200.0,
                 max_connections: int = 1024) -> None:
        if max_line_bytes <= 0 or max_lines_per_s <= 0 or max_connections <= 0:
            raise ValueError("max_line_bytes, max_lines_per_s and max_connections must be positive")
        self._is_allowed = is_allowed
        self._max_line = max_line_bytes
        self._rate = max_lines_per_s
        self._max_connections = max_connections
        self.connections: set[Connection] = set()
        self.refused_total = 0
        self._refused: collections.deque[RefusedPeer] = collections.deque(maxlen=_REFUSED_KEPT)
        try:
            # The PID in the name lets the next oomscope remove it if this one dies uncleanly.
            self.directory = tempfile.mkdtemp(prefix=f"oomscope-heap-{os.getpid()}-", dir=directory)
        except OSError as e:
            raise HeapSocketError(
                f"cannot create a private directory for the heap socket in "
                f"{directory or tempfile.gettempdir()!r}: {e.strerror}; choose a writable directory"
            ) from None
        self.socket_path = os.path.join(self.directory, SOCKET_NAME)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        try:
            # On Linux bind() creates the file with the socket inode's mode: set it before, so
            # the socket is never reachable with a looser mode, whatever the umask.
            os.fchmod(sock.fileno(), 0o600)
            sock.bind(self.socket_path)
            os.chmod(self.socket_path, 0o600)
            sock.listen(128)
        except OSError as e:
            sock.close()
            shutil.rmtree(self.directory, ignore_errors=True)
            hint = " (the path is too long for a Unix socket: choose a shorter directory)" \
                if len(self.socket_path.encode()) > 107 else ""
            raise HeapSocketError(f"cannot listen on {self.socket_path!r}: {e.strerror or e}{hint}") from None
        self._sock: socket.socket | None = sock

    def fileno(self) -> int:
        if self._sock is None:
            raise ValueError("the heap server is closed")
        return self._sock.fileno()

    def accept(self) -> list[Connection]:
        """Every connection pending now that passes ``is_allowed``; the others are closed."""
        accepted: list[Connection] = []
        if self._sock is None:
            return accepted
        while True:
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                if e.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue  # the peer gave up before we got to it
                # EMFILE/ENFILE/ENOBUFS: out of resources; the peer stays queued for next time.
                break
            try:
                pid, uid, _gid = _PEERCRED.unpack(
                    conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
            except OSError:
                conn.close()
                self._refuse(0, -1, "no peer credentials")
                continue
            reason = self._refusal(pid, uid)
            if reason is not None:
                conn.close()
                self._refuse(pid, uid, reason)
                continue
            conn.setblocking(False)
            c = Connection(conn, pid, uid, max_line_bytes=self._max_line,
                           max_lines_per_s=self._rate, on_close=self.connections.discard)
            self.connections.add(c)
            accepted.append(c)
        return accepted

    def take_refused(self) -> list[RefusedPeer]:
        """Peers refused since the last call (at most the last 256; ``refused_total`` counts all)."""
        out = list(self._refused)
        self._refused.clear()
        return out

    def close(self) -> None:
        for c in list(self.connections):
            c.close()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> HeapServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _refusal(self, pid: int, uid: int) -> str | None:
        if len(self.connections) >= self._max_connections:
            return f"too many connections ({self._max_connections})"
        try:
            allowed = self._is_allowed(pid, uid)
        except Exception as e:  # noqa: BLE001 - a peer that vanished mid-check is refused, not fatal
            return f"is_allowed failed: {e!r}"
        return None if allowed else "not a watched worker, or another user"

    def _refuse(self, pid: int, uid: int, reason: str) -> None:
        self.refused_total += 1
        self._refused.append(RefusedPeer(pid, uid, reason))


__all__ = ["Connection", "HeapReport", "HeapServer", "HeapSocketError", "RefusedPeer",
           "SOCKET_NAME", "ThreadEnded", "ThreadHello"]
