"""A minimal RFC 6455 WebSocket client for node's inspector, stdlib only: masked text frames
out; text, continuation, ping and close in. The HTTP upgrade is in :mod:`.httpclient`."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import time
from collections.abc import Iterable
from typing import Final

from ..errors import Error
from ..sizes import format_size
from .httpclient import MAX_MESSAGE_BYTES, host_header, parse_head, read_head, tcp

_WS_GUID: Final = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class WebSocket:
    """One WebSocket connection to the inspector of PID, opened with :meth:`connect`."""

    def __init__(self, sock: socket.socket, pid: int, quickack: bool, timeout_s: float) -> None:
        self.sock = sock
        self.pid = pid
        self.quickack = quickack
        self.timeout_s = timeout_s
        self.buf = bytearray()
        self.fragments: list[bytes] = []
        self.closed = False
        self._arm()

    @classmethod
    def connect(cls, host: str, port: int, path: str, pid: int, *, timeout_s: float,
                quickack: bool) -> WebSocket:
        sock = tcp(host, port, timeout_s)
        try:
            # Each query is one small write; Nagle would hold it until node ACKs the last one.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            key = base64.b64encode(os.urandom(16)).decode("ascii")
            sock.sendall(
                f"GET {path} HTTP/1.1\r\nHost: {host_header(host, port)}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode("ascii")
            )
            head, rest = read_head(sock)
            status, headers = parse_head(head)
            accept = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode("ascii")).digest())
            if status != 101 or headers.get("sec-websocket-accept", "").encode("ascii") != accept:
                raise Error(f"the inspector of PID {pid} refused the WebSocket upgrade "
                            f"(HTTP {status})")
        except OSError as e:
            sock.close()
            raise Error(f"the WebSocket handshake with the inspector of PID {pid} failed: "
                        f"{e.strerror or e}") from None
        except BaseException:
            sock.close()
            raise
        conn = cls(sock, pid, quickack, timeout_s)
        conn.buf += rest
        return conn

    def _arm(self) -> None:
        # Linux clears TCP_QUICKACK after it acts; without it our delayed ACK holds node's next
        # small write back (Nagle on node's side) for ~40 ms per round trip.
        if self.quickack:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)

    def send_texts(self, texts: Iterable[str]) -> None:
        """All messages in one write: one round trip for a whole query, whatever the threads."""
        self._send(b"".join(frame(0x1, t.encode("utf-8")) for t in texts))

    def _send(self, data: bytes) -> None:
        try:
            # receive() may have left the socket non-blocking; a send must not stop half-way.
            self.sock.settimeout(self.timeout_s)
            self.sock.sendall(data)
        except OSError as e:
            raise self._lost(e) from None

    def receive(self, deadline: float) -> str | None:
        """The next text message, or None once ``deadline`` (monotonic) has passed."""
        while True:
            msg = self._parse()
            if msg is not None:
                return msg
            # A deadline already passed still reads what has arrived (non-blocking), so callers
            # can drain pending events with ``receive(time.monotonic())``.
            self.sock.settimeout(max(0.0, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except (TimeoutError, BlockingIOError):
                return None
            except OSError as e:
                raise self._lost(e) from None
            if not chunk:
                raise self._lost(None)
            self.buf += chunk
            self._arm()

    def _parse(self) -> str | None:
        """One frame out of the buffer; the buffer is cut only after a whole frame is there, so
        an interrupt (Ctrl-C) between two reads leaves it consistent for close()."""
        while True:
            b = self.buf
            if len(b) < 2:
                return None
            fin, opcode = b[0] & 0x80, b[0] & 0x0F
            if b[1] & 0x80:
                raise Error(f"the inspector of PID {self.pid} sent a masked frame "
                            "(RFC 6455 forbids it)")
            length, pos = b[1] & 0x7F, 2
            if length == 126:
                if len(b) < 4:
                    return None
                length, pos = int.from_bytes(b[2:4], "big"), 4
            elif length == 127:
                if len(b) < 10:
                    return None
                length, pos = int.from_bytes(b[2:10], "big"), 10
            if length + sum(map(len, self.fragments)) > MAX_MESSAGE_BYTES:
                raise Error(f"the inspector of PID {self.pid} sent a message over "
                            f"{format_size(MAX_MESSAGE_BYTES)}")
            if len(b) < pos + length:
                return None
            payload = bytes(b[pos:pos + length])
            del b[:pos + length]
            if opcode == 0x9:
                self._send(frame(0xA, payload))
            elif opcode == 0x8:
                self.closed = True
                # Echo the close as RFC 6455 asks; the peer may already be gone.
                try:
                    self.sock.settimeout(self.timeout_s)
                    self.sock.sendall(frame(0x8, payload[:2]))
                except OSError:
                    pass
                raise self._lost(None)
            elif opcode in (0x1, 0x2, 0x0):
                self.fragments.append(payload)
                if fin:
                    data = b"".join(self.fragments)
                    self.fragments.clear()
                    return data.decode("utf-8", "replace")
            # 0xA (pong) and reserved opcodes carry nothing for us.

    def _lost(self, e: OSError | None) -> Error:
        self.closed = True
        return ConnectionLost(f"connection to the inspector of PID {self.pid} lost"
                               + (f": {e.strerror or e}" if e else ""))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.sock.settimeout(self.timeout_s)
                self.sock.sendall(frame(0x8, (1000).to_bytes(2, "big")))
            except OSError:
                pass
        self.sock.close()


class ConnectionLost(Error):
    """The connection ended; the probe turns it into WorkerGone or InspectorClosed once the pidfd
    says which."""


def frame(opcode: int, payload: bytes) -> bytes:
    """One masked client frame (RFC 6455 requires clients to mask)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 1 << 16:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    mask = os.urandom(4)
    # XOR the whole payload as one big integer: no per-byte Python loop.
    key = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
    return head + mask + masked
