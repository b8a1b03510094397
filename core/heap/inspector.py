"""Per-thread V8 heaps of a running Node.js process, read through its inspector (opt-in).

For a process oomscope did not launch there is no reporter inside; node's inspector is the only
way in. :meth:`NodeInspector.open` checks that ``/proc/PID/exe`` is node (SIGUSR1 kills most other
programs), sends SIGUSR1 through the pidfd, finds the port the process itself opened among its own
listening sockets, and speaks the DevTools protocol over a minimal WebSocket client (RFC 6455,
stdlib only). ``NodeWorker.enable`` reaches every ``worker_threads`` Worker, also those started
later; :meth:`NodeInspector.query` sends ``Runtime.getHeapUsage`` to every thread at once and
returns one :class:`HeapReport` per thread that answered.

Thread ids are node's own ``threadId`` (main thread 0), read once per worker by evaluating
``require('worker_threads').threadId`` in that worker's session, so they match what the launched
reporter (resources/node/reporter.js) says. The protocol's ``workerId`` is only the session's key.
A worker whose ``threadId`` has not come back yet is left out of that query rather than guessed.

``heap_used``/``heap_total`` are V8's ``usedSize``/``totalSize`` from ``Runtime.getHeapUsage``;
``heap_limit`` is ``v8.getHeapStatistics().heap_size_limit``, read once per thread (it does not
change while the thread lives). Old space, external, array buffers and RSS are None: the probe
asks only what the protocol answers without running code on every sample.

While the inspector is open any local user can run code in the process (:data:`INSPECTOR_WARNING`).
The engine calls :meth:`NodeInspector.close` on detach, on oomscope's exit and on Ctrl-C (also a
context manager); it evaluates ``require('inspector').close()`` in the process, which closes the
port, and then checks in /proc that the process no longer listens there. An inspector that was
already open before ``open()`` (node started with ``--inspect``) is left open: it is the user's.

What the process notices: node prints "Debugger listening on ws://…" and "Debugger attached." on
its own stderr (node does that for every SIGUSR1 and connection; nothing can suppress it). And
node does not exit while a client is connected ("Waiting for the debugger to disconnect..."): the
probe lets go as soon as node says it is waiting, which it reads at the next :meth:`query` or, if
the engine selects on :meth:`NodeInspector.fileno`, at once through
:meth:`NodeInspector.handle_events`. A process killed by a signal is not held at all.

Not thread-safe: one thread (the engine's) opens, queries and closes an inspector.

Run ``python -m oomscope.core.heap.inspector [PID]`` for the per-thread heaps of PID, or with no
PID for a latency figure on a node with two worker threads that the program starts itself::

    main + 2 workers, 200 queries each
      TCP_QUICKACK on : median 0.23 ms, p90 0.31 ms per query()
      TCP_QUICKACK off: median 44.00 ms, p90 44.08 ms per query()
"""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from .. import procfs
from ..errors import Error, NotPermitted, Refused, WorkerGone
from ..pidfd import ProcessHandle
from .messages import HeapReport

INSPECTOR_WARNING: Final = (
    "While the inspector is open, any local user can run code inside this Node.js process "
    "(it listens on a TCP port on 127.0.0.1 with no password). oomscope keeps it open only "
    "while attached and closes it on detach, on exit and on Ctrl-C."
)

DEFAULT_PORT: Final = 9229
NODE_NAMES: Final = frozenset({"node", "nodejs"})

# There is no event for "a process opened a port" (inotify does not fire on /proc, sock_diag does
# not notify), so open() polls /proc with a deadline. 10 ms keeps the attach quick (node binds
# within a few ms of SIGUSR1) and costs three small /proc reads per round.
_POLL_INTERVAL_S: Final = 0.01
# A closed connection with a live process may just be the process in the middle of exiting; the
# pidfd tells which within this time.
_EXIT_GRACE_S: Final = 1.0
# Nothing the probe asks for comes near this; a larger message is a broken or hostile peer.
_MAX_MESSAGE_BYTES: Final = 16 << 20
_WS_GUID: Final = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_LISTEN: Final = "0A"
# Addresses a listener on node's 127.0.0.1:PORT would collide with (``::`` is dual-stack unless
# IPV6_V6ONLY, which /proc does not show; assume the collision).
_CLASHING_HOSTS: Final = frozenset(
    {"127.0.0.1", "0.0.0.0", "::", "::ffff:127.0.0.1", "::ffff:0.0.0.0"}
)
_PORT_FLAGS: Final = (
    "--inspect-port", "--debug-port", "--inspect", "--inspect-brk", "--inspect-wait"
)

# getBuiltinModule (node >= 20.16) works in every context; older nodes get ``require`` from the
# command-line API, which is why every evaluate asks for includeCommandLineAPI.
_REQUIRE: Final = "(globalThis.process?.getBuiltinModule ?? require)"
_THREAD_INFO_JS: Final = (
    f"(() => {{ const r = {_REQUIRE}; "
    "return [r('worker_threads').threadId, r('v8').getHeapStatistics().heap_size_limit]; })()"
)
_CLOSE_JS: Final = f"{_REQUIRE}('inspector').close()"


class PortTaken(Error):
    """Node cannot open its inspector: another process listens on the port it would use."""


class InspectorClosed(Error):
    """The inspector connection ended while the process lives on (it closed its inspector)."""


@dataclass(frozen=True, slots=True)
class Listener:
    """One listening TCP socket of the target, from /proc/PID/net/tcp{,6}."""

    inode: int
    host: str
    port: int


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


# --------------------------------------------------------------------------------------- /proc


def _gone_or_denied(pid: int, what: str, e: OSError) -> Error:
    if isinstance(e, (FileNotFoundError, ProcessLookupError)) or e.errno == errno.ESRCH:
        return WorkerGone(f"process {pid} exited")
    if isinstance(e, PermissionError):
        return NotPermitted(f"not permitted to read {what} of PID {pid}: "
                            "run oomscope as its user or as root")
    return Error(f"cannot read {what} of PID {pid}: {e.strerror or e}")


def node_executable(pid: int) -> str:
    """The target's executable if it is node; :class:`Refused` for anything else."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError as e:
        raise _gone_or_denied(pid, "/proc/PID/exe", e) from None
    # An upgraded binary still runs as the old, deleted file.
    path = exe.removesuffix(" (deleted)")
    if os.path.basename(path) not in NODE_NAMES:
        raise Refused(
            f"PID {pid} is not node (it runs {path}): SIGUSR1 would kill most programs, "
            "so oomscope does not send it"
        )
    return path


def _socket_inodes(pid: int) -> set[int]:
    base = f"/proc/{pid}/fd"
    try:
        names = os.listdir(base)
    except OSError as e:
        raise _gone_or_denied(pid, "/proc/PID/fd", e) from None
    inodes = set()
    for name in names:
        try:
            target = os.readlink(f"{base}/{name}")
        except OSError:
            continue  # closed between listdir and readlink
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _hex_address(text: str) -> tuple[str, int]:
    addr, port = text.split(":")
    raw = bytes.fromhex(addr)
    # The kernel prints each 32-bit word of the address in host (little-endian) order.
    packed = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    family = socket.AF_INET if len(packed) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, packed), int(port, 16)


def _listen_table(pid: int) -> list[Listener]:
    """Every LISTEN socket in the target's network namespace (the target's and others')."""
    out = []
    for name in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{name}", encoding="ascii") as f:
                lines = f.read().splitlines()[1:]
        except FileNotFoundError:
            if name == "tcp6":
                continue  # a kernel without IPv6
            raise WorkerGone(f"process {pid} exited") from None
        except OSError as e:
            raise _gone_or_denied(pid, f"/proc/PID/net/{name}", e) from None
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[3] == _LISTEN:
                host, port = _hex_address(cols[1])
                out.append(Listener(int(cols[9]), host, port))
    return out


def own_listeners(pid: int) -> list[Listener]:
    """The TCP sockets the process itself listens on (its fds matched against the tables)."""
    mine = _socket_inodes(pid)
    return [s for s in _listen_table(pid) if s.inode in mine]


def _socket_owner(inode: int) -> int | None:
    """A PID holding the socket, for the message only (processes we may not read are skipped)."""
    needle = f"socket:[{inode}]"
    with os.scandir("/proc") as procs:
        for proc in procs:
            if not proc.name.isdigit():
                continue
            try:
                with os.scandir(f"{proc.path}/fd") as fds:
                    if any(_readlink(fd.path) == needle for fd in fds):
                        return int(proc.name)
            except OSError:
                continue  # gone, or not ours to read
    return None


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None  # the fd was closed meanwhile


def _port_holder(pid: int, port: int) -> int | None:
    """Inode of another process's listener that would make node's bind on PORT fail, if any."""
    # The table first, node's own sockets after: node may bind the port between the two reads
    # (its inspector opening), and a socket it holds in the table is then among its fds too.
    # The other order once read node's brand-new listener as another process's.
    table = _listen_table(pid)
    mine = _socket_inodes(pid)
    for s in table:
        if s.port == port and s.host in _CLASHING_HOSTS and s.inode not in mine:
            return s.inode
    return None


def _port_in(value: str) -> int | None:
    # --inspect-port=9230, --inspect=0.0.0.0:9230, --inspect=[::1]:9230
    m = re.search(r"(?:^|:)(\d+)$", value)
    return int(m.group(1)) if m else None


def configured_port(pid: int) -> int:
    """The port node's inspector opens on SIGUSR1 (or opened at start with ``--inspect``).

    Read from the command line and ``NODE_OPTIONS``; the later flag wins, as in node.
    """
    args: list[str] = []
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        for var in env:
            if var.startswith(b"NODE_OPTIONS="):
                args += var[13:].decode("utf-8", "replace").split()
        args += Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace").split("\0")
    except OSError as e:
        raise _gone_or_denied(pid, "the command line", e) from None
    port = DEFAULT_PORT
    it = iter(args)
    for arg in it:
        if arg == "--":
            break  # what follows belongs to the script
        flag, eq, value = arg.partition("=")
        if flag not in _PORT_FLAGS:
            continue
        if not eq and flag in ("--inspect-port", "--debug-port"):
            value = next(it, "")
        p = _port_in(value) if value else None
        if p is not None:
            port = p
    return port


def _same_netns(pid: int) -> None:
    try:
        theirs, ours = os.readlink(f"/proc/{pid}/ns/net"), os.readlink("/proc/self/ns/net")
    except OSError as e:
        raise _gone_or_denied(pid, "the network namespace", e) from None
    if theirs != ours:
        raise Refused(
            f"PID {pid} is in another network namespace (a container?): its inspector port would "
            "not be reachable from here, so oomscope does not open it; run oomscope inside that "
            "container"
        )


# ----------------------------------------------------------------------------------- WebSocket


class _Connection:
    """A minimal RFC 6455 client: masked text frames out; text, continuation, ping, close in."""

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
                quickack: bool) -> _Connection:
        sock = _tcp(host, port, timeout_s)
        try:
            # Each query is one small write; Nagle would hold it until node ACKs the last one.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            key = base64.b64encode(os.urandom(16)).decode("ascii")
            sock.sendall(
                f"GET {path} HTTP/1.1\r\nHost: {_host_header(host, port)}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode("ascii")
            )
            head, rest = _read_head(sock)
            status, headers = _parse_head(head)
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
        self._send(b"".join(_frame(0x1, t.encode("utf-8")) for t in texts))

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
            if length + sum(map(len, self.fragments)) > _MAX_MESSAGE_BYTES:
                raise Error(f"the inspector of PID {self.pid} sent a message over "
                            f"{_MAX_MESSAGE_BYTES >> 20} MiB")
            if len(b) < pos + length:
                return None
            payload = bytes(b[pos:pos + length])
            del b[:pos + length]
            if opcode == 0x9:
                self._send(_frame(0xA, payload))
            elif opcode == 0x8:
                self.closed = True
                # Echo the close as RFC 6455 asks; the peer may already be gone.
                try:
                    self.sock.settimeout(self.timeout_s)
                    self.sock.sendall(_frame(0x8, payload[:2]))
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
        return _ConnectionLost(f"connection to the inspector of PID {self.pid} lost"
                               + (f": {e.strerror or e}" if e else ""))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.sock.settimeout(self.timeout_s)
                self.sock.sendall(_frame(0x8, (1000).to_bytes(2, "big")))
            except OSError:
                pass
        self.sock.close()


class _ConnectionLost(Error):
    """Internal: turned into WorkerGone or InspectorClosed once the pidfd says which."""


def _frame(opcode: int, payload: bytes) -> bytes:
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


def _tcp(host: str, port: int, timeout_s: float) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        sock.connect((host, port))
    except OSError as e:
        sock.close()
        raise Error(f"cannot connect to the inspector at {_host_header(host, port)}: "
                    f"{e.strerror or e}") from None
    return sock


def _host_header(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk or len(data) > 65536:
            raise Error("the inspector sent no complete HTTP response")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split()
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers


def _debugger_path(host: str, port: int, pid: int, timeout_s: float) -> str:
    """The WebSocket path of the process's main target, from ``GET /json/list``."""
    sock = _tcp(host, port, timeout_s)
    try:
        sock.sendall(f"GET /json/list HTTP/1.1\r\nHost: {_host_header(host, port)}\r\n"
                     "Connection: close\r\n\r\n".encode("ascii"))
        head, body = _read_head(sock)
        status, headers = _parse_head(head)
        length = headers.get("content-length", "")
        want = int(length) if length.isdigit() else -1
        while len(body) < want or want < 0:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
            if len(body) > _MAX_MESSAGE_BYTES:
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


# ------------------------------------------------------------------------------------ the probe


class NodeInspector:
    """An open DevTools connection to one node process; :meth:`query` for per-thread heaps."""

    def __init__(self, handle: ProcessHandle, listener: Listener, conn: _Connection,
                 opened_by_us: bool, timeout_s: float) -> None:
        self.handle = handle
        self.pid = handle.pid
        self.listener = listener
        self.opened_by_us = opened_by_us
        self.timeout_s = timeout_s
        self._conn: _Connection | None = conn
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
        _same_netns(pid)
        port = configured_port(pid)
        before = own_listeners(pid)
        already = [s for s in before if s.port == port]
        opened_by_us = not already
        if already:
            listener = already[0]
        else:
            _raise_if_taken(pid, port)
            handle.send_signal(signal.SIGUSR1)
            listener = _await_listener(pid, handle, before, port, deadline)
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(listener.host, listener.host)
        try:
            left = max(0.1, deadline - time.monotonic())
            path = _debugger_path(host, listener.port, pid, left)
            conn = _Connection.connect(host, listener.port, path, pid, timeout_s=left,
                                       quickack=quickack)
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

    def _start(self, deadline: float) -> None:
        # A node whose inspector was opened by a signal does not exit while a client is
        # connected ("Waiting for the debugger to disconnect..."): this event is the cue to let
        # go at once, so the process ends as it would have without oomscope.
        self._call("NodeRuntime.notifyWhenWaitingForDisconnect", {"enabled": True}, deadline)
        # Attach events for workers that already run come before enable's answer (node sends
        # them while handling enable), so after this call every existing worker is known.
        self._call("NodeWorker.enable", {"waitForDebuggerOnStart": False}, deadline)
        answer = self._call("Runtime.evaluate", _evaluate(_THREAD_INFO_JS), deadline)
        info = _thread_info(answer)
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
                                f"{_error_text(msg)}")
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
        return self._wrap(thread.session, mid, "Runtime.evaluate", _evaluate(_THREAD_INFO_JS))

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

    def _receive(self, conn: _Connection, deadline: float,
                 answered: dict[int, HeapReport] | None = None) -> dict[str, Any] | None:
        """Read one protocol message and act on it; None when the deadline passed."""
        try:
            text = conn.receive(deadline)
        except _ConnectionLost as e:
            conn.close()
            self._conn = None
            raise self._why_lost(e) from None
        if text is None:
            return None
        msg = _json(text)
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
                self._answer(session, _json(inner), answered)
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
            info = _thread_info(result)
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
                    self._call_on(conn, _CLOSE_JS, deadline)
                except Error:
                    pass
        finally:
            conn.close()
        if not self.opened_by_us or self.handle.closed or not self.handle.is_alive():
            return
        while True:
            try:
                still = [s for s in own_listeners(self.pid) if s.inode == self.listener.inode]
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
            if _wait_exit(self.handle, _POLL_INTERVAL_S):
                return

    def _call_on(self, conn: _Connection, expression: str, deadline: float) -> None:
        mid = self._id()
        conn.send_texts([json.dumps({"id": mid, "method": "Runtime.evaluate",
                                     "params": _evaluate(expression)})])
        while True:
            text = conn.receive(deadline)
            if text is None:
                return
            msg = _json(text)
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

    def _connection(self) -> _Connection:
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


def _evaluate(expression: str) -> dict[str, Any]:
    return {"expression": expression, "includeCommandLineAPI": True, "returnByValue": True,
            "silent": True}


def _thread_info(result: dict[str, Any] | None) -> tuple[int, int] | None:
    value = ((result or {}).get("result") or {}).get("value")
    if (isinstance(value, list) and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        return int(value[0]), int(value[1])
    return None


def _json(text: str) -> dict[str, Any]:
    try:
        obj = json.loads(text)
    except ValueError:
        return {}
    return obj if isinstance(obj, dict) else {}


def _error_text(msg: dict[str, Any]) -> str:
    err = msg.get("error")
    return str(err.get("message", err))[:200] if isinstance(err, dict) else str(err)[:200]


def _wait_exit(handle: ProcessHandle, timeout_s: float) -> bool:
    """Whether the process exited within ``timeout_s``."""
    return handle.wait_exited(timeout_s)


def _raise_if_taken(pid: int, port: int) -> None:
    inode = _port_holder(pid, port)
    if inode is None:
        return
    owner = _socket_owner(inode)
    if owner == pid:
        return  # node's own listener after all (opened as we looked): not taken
    who = f"another process (PID {owner})" if owner is not None else "another process"
    raise PortTaken(
        f"port {port} is taken by {who}: node PID {pid} cannot open its inspector there "
        "(it would open nothing); the node process is unharmed; free the port and try again"
    )


def _await_listener(pid: int, handle: ProcessHandle, before: list[Listener], port: int,
                    deadline: float) -> Listener:
    known = {s.inode for s in before}
    while True:
        new = [s for s in own_listeners(pid) if s.inode not in known]
        if new:
            return next((s for s in new if s.port == port), new[0])
        # Another process took the port after our check: node failed to bind ("address
        # already in use" on its stderr) and opens nothing.
        _raise_if_taken(pid, port)
        left = deadline - time.monotonic()
        if left <= 0:
            raise Error(f"node PID {pid} opened no inspector port within the time allowed after "
                        "SIGUSR1 (was it built without the inspector, or does it handle SIGUSR1 "
                        "itself?); the process was not otherwise touched")
        if _wait_exit(handle, min(_POLL_INTERVAL_S, left)):
            raise WorkerGone(f"node process {pid} exited while its inspector was being opened")


# ------------------------------------------------------------------------------------- program

_DEMO_MAIN: Final = r"""
const { Worker } = require('worker_threads');
let online = 0;
for (const mb of [8, 32]) {
  new Worker(require('path').join(__dirname, 'worker.js'), { workerData: mb })
    .on('message', () => { if (++online === 2) console.log('ready'); });
}
process.stdin.on('end', () => process.exit(0)).resume();
"""
_DEMO_WORKER: Final = r"""
const { parentPort, workerData } = require('worker_threads');
// Doubles, 8 bytes each: workerData MiB that stay alive for the thread's life.
globalThis.keep = Array.from({ length: workerData * 131072 }, (_, i) => i + 0.5);
parentPort.postMessage('ready');
setInterval(() => {}, 1000);
"""


def _timed(probe: NodeInspector, n: int) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.monotonic()
        probe.query()
        times.append(time.monotonic() - t0)
    return times


def _print_latency(label: str, times: list[float]) -> None:
    p90 = statistics.quantiles(times, n=10)[-1] if len(times) > 1 else times[0]
    print(f"  TCP_QUICKACK {label}: median {statistics.median(times) * 1e3:.2f} ms, "
          f"p90 {p90 * 1e3:.2f} ms per query()")


def _demo(n: int) -> int:
    """Latency of query() for main + 2 workers, with and without TCP_QUICKACK."""
    with tempfile.TemporaryDirectory(prefix="oomscope-inspector-") as tmp:
        Path(tmp, "main.js").write_text(_DEMO_MAIN)
        Path(tmp, "worker.js").write_text(_DEMO_WORKER)
        env = {k: v for k, v in os.environ.items() if k != "NODE_OPTIONS"}
        with subprocess.Popen(["node", str(Path(tmp, "main.js"))], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env) as node:
            assert node.stdin is not None and node.stdout is not None
            try:
                if node.stdout.readline().strip() != b"ready":
                    print("the demo node did not start", file=sys.stderr)
                    return 1
                handle = ProcessHandle.open(node.pid)
                try:
                    print(f"main + 2 workers, {n} queries each")
                    for quickack, label in ((True, "on "), (False, "off")):
                        with NodeInspector.open(node.pid, handle, quickack=quickack) as probe:
                            if len(probe.query()) != 3:
                                print("the demo node did not report 3 threads", file=sys.stderr)
                                return 1
                            _print_latency(label, _timed(probe, n))
                finally:
                    handle.close()
            finally:
                # End of stdin is the demo's cue to exit: no signal needed.
                node.stdin.close()
                node.wait(timeout=10)
    return 0


def _show(pid: int) -> int:
    print(INSPECTOR_WARNING, file=sys.stderr)
    handle = ProcessHandle.open(pid)
    try:
        with NodeInspector.open(pid, handle) as probe:
            t0 = time.monotonic()
            reports = probe.query()
            took = time.monotonic() - t0
            for r in reports:
                limit = f"{r.heap_limit / 2**20:8.1f}" if r.heap_limit else "       ?"
                print(f"thread {r.thread_id:3d}  used {r.heap_used / 2**20:8.1f} MiB  "
                      f"total {r.heap_total / 2**20:8.1f} MiB  limit {limit} MiB")
            print(f"query() took {took * 1e3:.2f} ms for {len(reports)} threads")
    finally:
        handle.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``inspector [PID] [-n N]``: heaps of PID's threads, or the latency demo without a PID."""
    args = list(sys.argv[1:] if argv is None else argv)
    n = 200
    if "-n" in args:
        i = args.index("-n")
        n = int(args[i + 1])
        del args[i:i + 2]
    try:
        return _show(int(args[0])) if args else _demo(n)
    except Error as e:
        print(f"oomscope: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
