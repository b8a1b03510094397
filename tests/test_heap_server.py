"""The heap socket against hostile and unwelcome peers: other users, strangers, floods, garbage."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from conftest import is_root
from test_heap_support import Collector

from oomscope.core.heap.messages import HeapReport, ThreadEnded, ThreadHello
from oomscope.core.heap.server import HeapServer, HeapSocketError

HELLO = {"type": "hello", "v": 1, "kind": "node", "pid": 1, "threadId": 3, "isMainThread": False,
         "resourceLimits": {"maxOldGenerationSizeMb": 16}, "node": "v20.0.0"}
REPORT = {"type": "heap", "t": 1.5, "used": 100, "total": 200, "limit": 300, "oldUsed": 50,
          "oldLimit": 250, "external": 7, "arrayBuffers": 8, "rss": 999, "dropped": 0}


def line(obj: object) -> bytes:
    return json.dumps(obj).encode() + b"\n"


@pytest.fixture
def served() -> Iterator[Collector]:
    c = Collector(HeapServer(is_allowed=lambda pid, uid: True, max_line_bytes=1024,
                             max_lines_per_s=50.0))
    yield c
    c.close()


_OPEN: list[socket.socket] = []


def client(server: HeapServer) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    _OPEN.append(s)
    s.connect(server.socket_path)
    return s


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def test_private_directory_and_socket_modes_and_cleanup() -> None:
    server = HeapServer(is_allowed=lambda pid, uid: True)
    d = os.path.dirname(server.socket_path)
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    st = os.stat(server.socket_path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert os.get_blocking(server.fileno()) is False
    server.close()
    assert not os.path.exists(d)
    server.close()  # twice is fine


def test_messages_in_order_with_peer_credentials(served: Collector) -> None:
    s = client(served.server)
    s.sendall(line(HELLO) + line(REPORT) + line({"type": "end", "threadId": 7, "cause": "heap-oom",
                                                  "message": "Worker terminated"}))
    served.wait_for(lambda c: len(c.messages) >= 3)
    hello, report, ended = served.messages[:3]
    me = os.getpid()
    # The pid is the kernel's (SO_PEERCRED), not the one the peer wrote.
    assert hello == ThreadHello(me, 3, False, hello.resource_limits, "v20.0.0", "node")
    assert dict(hello.resource_limits or {}) == {"maxOldGenerationSizeMb": 16.0}
    assert report == HeapReport(me, 3, 1.5, 100, 200, 300, 50, 250, 7, 8, None)  # rss: main only
    assert ended == ThreadEnded(me, 7, "heap-oom", "Worker terminated")
    (conn,) = served.connections
    assert (conn.pid, conn.uid) == (me, os.geteuid())
    s.close()
    served.wait_for(lambda c: c.closed)
    assert served.messages[3:] == [ThreadEnded(me, 3, None, None)]


def test_eof_after_own_end_adds_nothing_and_no_hello_means_no_end(served: Collector) -> None:
    a = client(served.server)
    a.sendall(line(HELLO) + line({"type": "end", "threadId": 3, "cause": None}))
    a.close()
    b = client(served.server)
    b.sendall(b'{"type": "heap"')  # a partial line, then gone
    b.close()
    served.wait_for(lambda c: len(c.closed) == 2)
    ends = served.ended()
    assert ends == [ThreadEnded(os.getpid(), 3, None, None)]


def test_over_long_lines_are_dropped_and_counted(served: Collector) -> None:
    s = client(served.server)
    s.sendall(b"x" * 5000 + b"\n")                 # whole over-long line
    s.sendall(b"{" + b"y" * 3000)                  # over-long, still open...
    s.sendall(b"z" * 3000 + b"\n" + line(HELLO))   # ...ends here; the hello after it counts
    s.sendall(line(REPORT))
    served.wait_for(lambda c: c.reports())
    (conn,) = served.connections
    assert conn.lines_too_long == 2
    assert [type(m) for m in served.messages] == [ThreadHello, HeapReport]


def test_rate_cap_drops_a_flood(served: Collector) -> None:
    s = client(served.server)
    # More than the socket buffers: sent from a thread while the server reads.
    sender = threading.Thread(target=s.sendall, args=(line(HELLO) + line(REPORT) * 2000,))
    t0 = time.monotonic()
    sender.start()
    (conn,) = served.wait_for(lambda c: c.connections)
    served.wait_for(lambda c: conn.lines_over_rate + len(c.reports()) >= 2000)
    elapsed = time.monotonic() - t0
    sender.join(5)
    # One second's burst (50 lines, the hello among them) passes, then 50 lines a second.
    assert len(served.reports()) <= 50 + 50 * elapsed
    assert conn.lines_over_rate >= 2000 - 50 - 50 * elapsed


def test_garbage_is_ignored_and_never_raises(served: Collector) -> None:
    s = client(served.server)
    junk = [b"not json", b"[1, 2]", b"\xff\xfe\x00", b"[" * 500 + b"]" * 500, b"[" * 1020, b"1" * 900,
            b'{"type": "heap", "used": 1}',  # before any hello
            line({**HELLO, "threadId": -1}).strip(), line({**HELLO, "kind": "ruby"}).strip(),
            line({**HELLO, "isMainThread": 1}).strip()]
    s.sendall(b"\n".join(junk) + b"\n" + line(HELLO))
    bad_reports = [{**REPORT, "used": -5}, {**REPORT, "used": True}, {**REPORT, "t": "now"},
                   {**REPORT, "used": 1e300}, {**REPORT, "used": 1.5}, {"type": "mystery"},
                   {"type": "end", "threadId": "x"}]
    s.sendall(b"".join(line(o) for o in bad_reports) + line({**REPORT, "external": None,
                                                            "oldUsed": "many"}))
    served.wait_for(lambda c: c.reports())
    (conn,) = served.connections
    assert conn.lines_invalid == len(junk) + len(bad_reports)
    (r,) = served.reports()
    assert r.external is None and r.old_space_used is None and r.heap_used == 100


def test_refused_by_peer_credentials_is_closed_and_counted() -> None:
    me = os.getpid()
    c = Collector(HeapServer(is_allowed=lambda pid, uid: pid != me))
    try:
        s = client(c.server)
        c.pump(5.0)
        assert c.connections == [] and c.server.refused_total == 1
        (refused,) = c.server.take_refused()
        assert (refused.pid, refused.uid) == (me, os.geteuid())
        assert c.server.take_refused() == []
        s.settimeout(5.0)
        assert s.recv(10) == b""  # closed on the peer
    finally:
        c.close()


def test_is_allowed_raising_refuses_and_max_connections_caps() -> None:
    def explode(pid: int, uid: int) -> bool:
        raise ProcessLookupError(pid)

    c = Collector(HeapServer(is_allowed=explode))
    try:
        client(c.server)
        c.pump(5.0)
        (refused,) = c.server.take_refused()
        assert "is_allowed failed" in refused.reason
    finally:
        c.close()
    c = Collector(HeapServer(is_allowed=lambda pid, uid: True, max_connections=2))
    try:
        socks = [client(c.server) for _ in range(3)]
        c.wait_for(lambda x: len(x.connections) + x.server.refused_total == 3)
        assert len(c.connections) == 2 and c.server.refused_total == 1
        del socks
    finally:
        c.close()


@pytest.mark.skipif(not is_root(), reason="needs root to run a client as another uid")
def test_another_uid_cannot_even_connect() -> None:
    c = Collector(HeapServer(is_allowed=lambda pid, uid: True))
    try:
        code = ("import socket, sys\n"
                "s = socket.socket(socket.AF_UNIX)\n"
                "try:\n    s.connect(sys.argv[1]); print('connected')\n"
                "except OSError as e:\n    print(type(e).__name__)\n")
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            sys.executable, "-c", code, c.server.socket_path],
                           capture_output=True, text=True, timeout=30)
        assert r.stdout.strip() == "PermissionError", r.stderr
        c.pump(0.05)
        assert c.connections == [] and c.server.refused_total == 0
    finally:
        c.close()


def test_unusable_directory_is_a_clear_error(tmp_path: os.PathLike[str]) -> None:
    with pytest.raises(HeapSocketError, match="private directory"):
        HeapServer(is_allowed=lambda pid, uid: True, directory=os.path.join(tmp_path, "nope"))
    deep = os.path.join(tmp_path, "d" * 100)
    os.mkdir(deep)
    with pytest.raises(HeapSocketError, match="too long"):
        HeapServer(is_allowed=lambda pid, uid: True, directory=deep)
    assert os.listdir(deep) == []
