"""The inspector probe on real node processes: real SIGUSR1, real ports, real worker threads.

Every node here opens its inspector on 127.0.0.1:9229 (or a port it picks), so the tests of this
module run one at a time, and each one ends with the port closed again.
"""

from __future__ import annotations

import errno
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import ready_child
from pid_reuse import has_pending
from test_heap_support import NODE, needs_node

from oomscope.core.errors import Refused, WorkerGone
from oomscope.core.heap import devtools, inspector, listeners
from oomscope.core.heap.inspector import (
    DEFAULT_PORT,
    INSPECTOR_WARNING,
    NodeInspector,
    PortTaken,
    own_listeners,
)
from oomscope.core.pidfd import ProcessHandle

pytestmark = needs_node
MiB = 1 << 20
Start = Callable[..., subprocess.Popen[bytes]]

# The app takes commands on stdin, one per line, and answers each with one JSON line:
# "worker MB" starts a worker holding MB MiB (answered once the worker holds it), "ping",
# "exit CODE".
APP = r"""
const { Worker } = require('worker_threads');
const path = require('path');
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
function startWorker(mb) {
  const w = new Worker(path.join(__dirname, 'worker.js'), { workerData: mb });
  w.on('message', () => out({ worker: w.threadId, mb }));
}
require('readline').createInterface({ input: process.stdin }).on('line', (line) => {
  const [cmd, arg] = line.split(' ');
  if (cmd === 'worker') startWorker(Number(arg));
  else if (cmd === 'ping') out({ pong: true });
  else if (cmd === 'exit') process.exit(Number(arg));
});
out({ ready: process.pid });
"""
WORKER = r"""
const { parentPort, workerData } = require('worker_threads');
// Doubles, 8 bytes each: workerData MiB that stay alive for the thread's life.
globalThis.keep = Array.from({ length: workerData * 131072 }, (_, i) => i + 0.5);
parentPort.postMessage('holding');
setInterval(() => {}, 1000);
"""


class NodeApp:
    """A node process from APP, driven over its stdin and stdout."""

    def __init__(self, start: Start, tmp: Path, *node_args: str) -> None:
        (tmp / "app.js").write_text(APP)
        (tmp / "worker.js").write_text(WORKER)
        env = {k: v for k, v in os.environ.items() if not k.startswith("NODE_")}
        assert NODE is not None
        self.p = start([NODE, *node_args, str(tmp / "app.js")], stdin=subprocess.PIPE,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        assert self.answer() == {"ready": self.p.pid}
        self.handle = ProcessHandle.open(self.p.pid)

    def send(self, line: str) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write(line.encode() + b"\n")
        self.p.stdin.flush()

    def answer(self) -> Any:
        assert self.p.stdout is not None
        return json.loads(self.p.stdout.readline())

    def worker(self, mb: int) -> int:
        """Start a worker holding ``mb`` MiB; its threadId, once it holds them."""
        self.send(f"worker {mb}")
        got = self.answer()
        assert got["mb"] == mb
        return int(got["worker"])

    def responds(self) -> bool:
        self.send("ping")
        return bool(self.answer() == {"pong": True})

    def exit(self, code: int) -> int:
        self.send(f"exit {code}")
        return self.p.wait(timeout=10)

    def stderr(self) -> str:
        assert self.p.stderr is not None
        return self.p.stderr.read().decode()


@pytest.fixture
def app(children: Start, tmp_path: Path) -> Iterator[NodeApp]:
    a = NodeApp(children, tmp_path)
    yield a
    a.handle.close()


def port_closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == errno.ECONNREFUSED


def port_free(port: int) -> bool:
    """Whether node could listen there: like node (libuv), ignore connections in TIME_WAIT."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


needs_free_port = pytest.mark.skipif(
    not port_free(DEFAULT_PORT),
    reason=f"port {DEFAULT_PORT} is in use on this machine; these tests need node's default",
)


@needs_free_port
def test_every_thread_is_reported_and_the_port_is_closed_afterwards(app: NodeApp) -> None:
    small, big = app.worker(8), app.worker(64)
    probe = NodeInspector.open(app.p.pid, app.handle)
    # Opened on node's port, then moved to one of its own: the default is free for a sibling.
    assert probe.opened_by_us and probe.listener.port != DEFAULT_PORT
    assert port_free(DEFAULT_PORT)
    assert probe.address == f"127.0.0.1:{probe.listener.port}"

    reports = probe.query()

    by_thread = {r.thread_id: r for r in reports}
    assert sorted(by_thread) == sorted([0, small, big])
    assert all(r.pid == app.p.pid and r.heap_total >= r.heap_used > 0 for r in reports)
    assert all(r.heap_limit > 0 for r in reports)
    assert by_thread[big].heap_used > 64 * MiB > by_thread[small].heap_used > 8 * MiB
    assert by_thread[0].rss is None and by_thread[0].old_space_used is None
    # A second query reads the same threads again, in the same order.
    assert [r.thread_id for r in probe.query()] == [r.thread_id for r in reports]

    probe.close()

    assert own_listeners(app.p.pid) == []
    assert port_closed(DEFAULT_PORT) and port_closed(probe.listener.port)
    assert app.responds()
    assert app.exit(3) == 3
    assert "Debugger attached." in app.stderr()


@needs_free_port
def test_siblings_on_the_same_default_port_are_each_inspected(children: Start, tmp_path: Path) -> None:
    """A node cluster's workers all have 9229 as their port: opened at once from three threads,
    each gets an inspector of its own (before, the second and third found the port taken by
    oomscope's own inspection of the first)."""
    apps = []
    for k in range(3):
        (tmp_path / str(k)).mkdir()
        apps.append(NodeApp(children, tmp_path / str(k)))
    probes: dict[int, NodeInspector] = {}
    errors: list[BaseException] = []

    def open_one(a: NodeApp) -> None:
        try:
            probes[a.p.pid] = NodeInspector.open(a.p.pid, a.handle)
        except BaseException as e:  # noqa: BLE001 - reported by the assert below
            errors.append(e)

    threads = [threading.Thread(target=open_one, args=(a,)) for a in apps]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors, errors
        ports = {p.listener.port for p in probes.values()}
        assert len(ports) == 3 and DEFAULT_PORT not in ports
        assert all([r.thread_id for r in p.query()] == [0] for p in probes.values())
    finally:
        for p in probes.values():
            p.close()
    for a in apps:
        assert own_listeners(a.p.pid) == [] and a.responds()
        a.handle.close()


@needs_free_port
def test_the_inspector_closes_itself_when_oomscope_is_killed(app: NodeApp, children: Start) -> None:
    """kill -9 of the process that opened the inspector runs none of its clean-up: node's own
    watchdog closes the inspector within a second of seeing that process gone."""
    holder = children([sys.executable, "-u", "-c", (
        "import sys, time\n"
        "from oomscope.core.heap.devtools import NodeInspector\n"
        "from oomscope.core.pidfd import ProcessHandle\n"
        "pid = int(sys.argv[1])\n"
        "probe = NodeInspector.open(pid, ProcessHandle.open(pid))\n"
        "print(probe.listener.port, flush=True)\n"
        "time.sleep(120)\n"), str(app.p.pid)], stdout=subprocess.PIPE)
    assert holder.stdout is not None
    port = int(holder.stdout.readline())
    assert [s.port for s in own_listeners(app.p.pid)] == [port]
    holder.kill()
    holder.wait(10)
    deadline = time.monotonic() + 10
    while own_listeners(app.p.pid) and time.monotonic() < deadline:
        # No event says "node closed a socket": look every 50 ms (the watchdog ticks each 1 s).
        app.handle.wait_exited(0.05)
    assert own_listeners(app.p.pid) == [], "the inspector stayed open after oomscope died"
    assert port_closed(port) and app.responds()


@needs_free_port
def test_a_worker_started_after_open_is_reported(app: NodeApp) -> None:
    first = app.worker(8)
    with NodeInspector.open(app.p.pid, app.handle) as probe:
        assert sorted(r.thread_id for r in probe.query()) == [0, first]
        later = app.worker(16)
        reports = {r.thread_id: r for r in probe.query()}
        assert sorted(reports) == [0, first, later]
        assert reports[later].heap_used > 16 * MiB
    assert port_closed(DEFAULT_PORT)
    assert app.exit(0) == 0


@needs_free_port
def test_an_interrupted_query_still_closes_the_inspector(
        app: NodeApp, monkeypatch: pytest.MonkeyPatch) -> None:
    app.worker(8)
    with pytest.raises(KeyboardInterrupt):
        with NodeInspector.open(app.p.pid, app.handle) as probe:
            real = probe._receive

            def interrupted(conn: Any, deadline: float, answered: Any = None) -> Any:
                # Ctrl-C while the answers of all threads are still in flight.
                if answered is not None:
                    raise KeyboardInterrupt
                return real(conn, deadline, answered)

            monkeypatch.setattr(probe, "_receive", interrupted)
            probe.query()
    assert own_listeners(app.p.pid) == []
    assert port_closed(DEFAULT_PORT)
    assert app.responds()
    assert app.exit(0) == 0


BLOCKS_SIGUSR1 = """
import signal, time
# Blocked, a SIGUSR1 would stay pending (visible in /proc) instead of killing the process.
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
print('ready', flush=True)
time.sleep(60)
"""


def test_a_process_that_is_not_node_is_refused_and_not_signalled(children: Start) -> None:
    p = ready_child(children, BLOCKS_SIGUSR1)
    handle = ProcessHandle.open(p.pid)
    try:
        with pytest.raises(Refused, match=rf"PID {p.pid} is not node \(it runs .*python.*\)"):
            NodeInspector.open(p.pid, handle)
    finally:
        handle.close()
    assert p.poll() is None
    assert not has_pending(p.pid, signal.SIGUSR1)


def test_the_warning_tells_the_user_what_opening_the_inspector_means() -> None:
    assert "any local user can run code" in INSPECTOR_WARNING


@pytest.fixture
def port_9229_held() -> Iterator[socket.socket]:
    if not port_free(DEFAULT_PORT):
        pytest.skip(f"port {DEFAULT_PORT} is already in use: cannot take it for this test")
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", DEFAULT_PORT))
    s.listen()
    yield s
    s.close()


def test_a_taken_port_is_reported_before_anything_is_signalled(
        app: NodeApp, port_9229_held: socket.socket) -> None:
    with pytest.raises(PortTaken, match=rf"port {DEFAULT_PORT} is taken by another process "
                                        rf"\(PID {os.getpid()}\).*unharmed.*free the port"):
        NodeInspector.open(app.p.pid, app.handle)
    assert app.responds()
    assert own_listeners(app.p.pid) == []
    assert app.exit(0) == 0
    assert "Debugger" not in app.stderr()


def test_a_port_taken_between_check_and_signal_is_reported_and_harms_nothing(
        app: NodeApp, port_9229_held: socket.socket, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def misses(pid: int, port: int) -> None:
        # As if the port was taken just after the check: node gets the signal and fails to bind.
        calls.append(port)

    monkeypatch.setattr(devtools, "raise_if_taken", misses)
    with pytest.raises(PortTaken, match=rf"port {DEFAULT_PORT} is taken"):
        NodeInspector.open(app.p.pid, app.handle)
    assert calls == [DEFAULT_PORT]
    assert app.responds()
    assert own_listeners(app.p.pid) == []
    assert app.exit(0) == 0
    assert "address already in use" in app.stderr()


@needs_free_port
@pytest.mark.parametrize("how", ["exits", "is killed"])
def test_a_process_that_ends_while_attached_is_worker_gone(app: NodeApp, how: str) -> None:
    app.worker(8)
    probe = NodeInspector.open(app.p.pid, app.handle)
    assert len(probe.query()) == 2
    if how == "exits":
        app.send("exit 4")
        # Node holds its exit until clients disconnect and says so on the connection: that
        # message is what wakes the selector, and query() lets go at once.
        readable, _, _ = select.select([probe.fileno()], [], [], 10)
        assert readable
    else:
        app.handle.send_signal(signal.SIGKILL)
    with pytest.raises(WorkerGone, match=rf"node process {app.p.pid} (exited|is exiting)"):
        probe.query()
    assert app.p.wait(timeout=10) == (4 if how == "exits" else -signal.SIGKILL)
    probe.close()
    assert port_closed(DEFAULT_PORT)


@needs_free_port
def test_an_exit_between_queries_is_let_go_through_the_selector(app: NodeApp) -> None:
    probe = NodeInspector.open(app.p.pid, app.handle)
    app.send("exit 6")
    readable, _, _ = select.select([probe.fileno()], [], [], 10)
    assert readable
    with pytest.raises(WorkerGone):
        probe.handle_events()
    assert app.p.wait(timeout=10) == 6
    probe.close()


def test_the_port_node_really_opened_is_found(children: Start, tmp_path: Path) -> None:
    # --inspect-port=0: node picks a free port; only its own listening sockets tell which.
    a = NodeApp(children, tmp_path, "--inspect-port=0")
    try:
        with NodeInspector.open(a.p.pid, a.handle) as probe:
            port = probe.listener.port
            assert port not in (0, DEFAULT_PORT)
            assert [r.thread_id for r in probe.query()] == [0]
        assert port_closed(port)
        assert a.exit(0) == 0
    finally:
        a.handle.close()


def test_an_inspector_the_user_opened_is_used_and_left_open(children: Start, tmp_path: Path) -> None:
    port = 9231
    if not port_free(port):
        pytest.skip(f"port {port} is in use on this machine")
    a = NodeApp(children, tmp_path, f"--inspect=127.0.0.1:{port}")
    try:
        with NodeInspector.open(a.p.pid, a.handle) as probe:
            assert not probe.opened_by_us and probe.listener.port == port
            assert [r.thread_id for r in probe.query()] == [0]
        assert [s.port for s in own_listeners(a.p.pid)] == [port]
        assert a.exit(0) == 0
    finally:
        a.handle.close()


@needs_free_port
def test_latency_program_reports_both_figures(capsys: pytest.CaptureFixture[str]) -> None:
    assert inspector.main(["-n", "5"]) == 0
    out = capsys.readouterr().out
    assert "TCP_QUICKACK on : median" in out and "TCP_QUICKACK off: median" in out


@needs_free_port
def test_the_program_shows_the_heap_of_every_thread(
        app: NodeApp, capsys: pytest.CaptureFixture[str]) -> None:
    worker = app.worker(64)
    assert inspector.main([str(app.p.pid)]) == 0
    out = capsys.readouterr().out
    lines = {int(m.group(1)): m for m in re.finditer(
        r"^thread +(\d+)  used +([\d.]+) (MiB|KiB)  total +[\d.]+ [KMG]iB  limit +[\d.]+ [MG]iB$",
        out, re.M)}
    assert sorted(lines) == [0, worker], out
    assert lines[worker].group(3) == "MiB" and float(lines[worker].group(2)) > 64
    assert "query() took" in out
    assert port_closed(DEFAULT_PORT)
    assert app.exit(0) == 0


def test_the_program_refuses_a_process_that_is_not_node(
        children: Start, capsys: pytest.CaptureFixture[str]) -> None:
    p = ready_child(children, BLOCKS_SIGUSR1)
    assert inspector.main([str(p.pid)]) == 1
    assert "is not node" in capsys.readouterr().err
    assert p.poll() is None
    assert not has_pending(p.pid, signal.SIGUSR1)


def test_the_addresses_of_listeners_are_read_for_both_families() -> None:
    with socket.socket() as v4, socket.socket(socket.AF_INET6) as v6, socket.socket() as peer:
        v4.bind(("127.0.0.1", 0))
        v4.listen()
        v6.bind(("::1", 0))
        v6.listen()
        # A connected (not listening) socket is no listener.
        peer.connect(v4.getsockname())
        got = own_listeners(os.getpid())
        assert {(s.host, s.port, s.fd) for s in got} >= {
            ("127.0.0.1", v4.getsockname()[1], v4.fileno()),
            ("::1", v6.getsockname()[1], v6.fileno()),
        }
        assert all(s.port != peer.getsockname()[1] for s in got)


def test_the_listeners_of_a_process_that_exited_are_worker_gone(children: Start) -> None:
    p = ready_child(children, BLOCKS_SIGUSR1)
    pid = p.pid
    p.kill()
    p.wait(timeout=10)
    with pytest.raises(WorkerGone, match=rf"process {pid} exited"):
        own_listeners(pid)


def opens_its_port_after_the_first_read(app: NodeApp, monkeypatch: pytest.MonkeyPatch,
                                        reads: list[tuple[Any, str]]) -> list[str]:
    """Make node open its inspector right after whichever of ``reads`` (the check's reads of
    node's own sockets and of everyone's listening sockets, as module and name) is called first:
    node binding between the two reads, deterministically. Returns the names in call order."""
    calls: list[str] = []

    def hooked(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def read(*args: Any, **kwargs: Any) -> Any:
            result = real(*args, **kwargs)
            calls.append(name)
            if len(calls) == 1:
                app.handle.send_signal(signal.SIGUSR1)
                assert app.p.stderr is not None
                # Node prints this once it listens: the event that its socket is in the tables.
                assert app.p.stderr.readline().startswith(b"Debugger listening on ws://")
            return result
        return read

    for module, name in reads:
        monkeypatch.setattr(module, name, hooked(name, getattr(module, name)))
    return calls


def owners_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    """psutil's listeners without their owners' PIDs, as psutil gives them for a socket opened
    between its walk of every process's fds and its read of the tables (node binding during the
    check, under load), and for an owner whose fds we may not read."""
    real = psutil.net_connections

    def unowned(*args: Any, **kwargs: Any) -> Any:
        return [c._replace(pid=None) for c in real(*args, **kwargs)]

    monkeypatch.setattr(psutil, "net_connections", unowned)


@needs_free_port
@pytest.mark.parametrize("owner", ["known", "unknown"])
def test_node_opening_its_port_during_the_check_is_not_taken_for_another_process(
        app: NodeApp, monkeypatch: pytest.MonkeyPatch, owner: str) -> None:
    # With the owner unknown only the order of the reads tells node's socket from someone
    # else's: reading node's own sockets first, a socket node opened after that read is taken
    # for another process's (issue #12).
    if owner == "unknown":
        owners_unknown(monkeypatch)
    calls = opens_its_port_after_the_first_read(
        app, monkeypatch, [(listeners, "own_listeners"), (psutil, "net_connections")])

    listeners.raise_if_taken(app.p.pid, DEFAULT_PORT)

    # Node bound right after the check's first read (a second read may not be needed).
    assert calls[:1] in (["own_listeners"], ["net_connections"])
    assert [s.port for s in own_listeners(app.p.pid)] == [DEFAULT_PORT]
    assert app.exit(0) == 0
    assert port_closed(DEFAULT_PORT)


def test_a_taken_port_whose_owner_is_unknown_is_still_taken(
        app: NodeApp, port_9229_held: socket.socket, monkeypatch: pytest.MonkeyPatch) -> None:
    owners_unknown(monkeypatch)
    with pytest.raises(PortTaken, match=rf"port {DEFAULT_PORT} is taken by another process: "
                                        rf"node PID {app.p.pid} cannot open"):
        listeners.raise_if_taken(app.p.pid, DEFAULT_PORT)
    assert own_listeners(app.p.pid) == []
    assert app.exit(0) == 0
