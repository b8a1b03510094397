"""The HTTP half of talking to node's inspector: a TCP connection, a response head, and the
WebSocket path of the process's main target from ``GET /json/list``. Stdlib only."""

from __future__ import annotations

import json
import re
import socket
from typing import Final

from ..errors import Error

# Nothing the probe asks for comes near this; a larger message is a broken or hostile peer.
MAX_MESSAGE_BYTES: Final = 16 << 20


def tcp(host: str, port: int, timeout_s: float) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        sock.connect((host, port))
    except OSError as e:
        sock.close()
        raise Error(f"cannot connect to the inspector at {host_header(host, port)}: "
                    f"{e.strerror or e}") from None
    return sock


def host_header(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk or len(data) > 65536:
            raise Error("the inspector sent no complete HTTP response")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split()
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers


def debugger_path(host: str, port: int, pid: int, timeout_s: float) -> str:
    """The WebSocket path of the process's main target, from ``GET /json/list``."""
    sock = tcp(host, port, timeout_s)
    try:
        sock.sendall(f"GET /json/list HTTP/1.1\r\nHost: {host_header(host, port)}\r\n"
                     "Connection: close\r\n\r\n".encode("ascii"))
        head, body = read_head(sock)
        status, headers = parse_head(head)
        length = headers.get("content-length", "")
        want = int(length) if length.isdigit() else -1
        while len(body) < want or want < 0:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
            if len(body) > MAX_MESSAGE_BYTES:
                break
    except OSError as e:
        raise Error(f"cannot read the inspector target list of PID {pid}: "
                    f"{e.strerror or e}") from None
    finally:
        sock.close()
    try:
        targets = json.loads(body)
        url = next(t["webSocketDebuggerUrl"] for t in targets if isinstance(t, dict)
                   and isinstance(t.get("webSocketDebuggerUrl"), str))
    except (ValueError, TypeError, StopIteration):
        raise Error(f"PID {pid} listens on port {port}, but not as a node inspector "
                    f"(HTTP {status}, no debugger URL in /json/list)") from None
    m = re.match(r"wss?://[^/]+(/.*)$", url)
    if m is None:
        raise Error(f"the inspector of PID {pid} gave an unusable debugger URL: {url[:200]}")
    return m.group(1)
