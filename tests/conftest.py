"""Shared fixtures: real engines, real child processes, and waiting on events (not on time)."""

from __future__ import annotations

import gc
import fcntl
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

# Before any test module makes a QApplication: without a display Qt aborts the whole run (and
# a module's Prometheus or agents would be left behind). `make test` sets it too.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from oomscope.core.cgroup.limited import LimitedCgroup, create_limited_cgroup
from oomscope.core.engine import Engine, EngineConfig
from oomscope.core.events import Event, Samples

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


@pytest.fixture(autouse=True)
def _collect_garbage_on_the_main_thread(request: pytest.FixtureRequest) -> Iterator[None]:
    """What the app does (gui/collector.py), for tests with Qt objects: no automatic collection
    during the test, so an engine thread never destroys a window's reference cycle (a deadlock
    inside PySide6); everything collected here, on the main thread, when the test ends."""
    uses_qt = request.node.get_closest_marker("gui") is not None or bool(
        {"qapp", "qtbot", "make_window"} & set(request.fixturenames))
    if not uses_qt:
        yield
        return
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.collect()
        if was_enabled:
            gc.enable()


class EventLog:
    """Everything an engine emitted, and a way to wait for the event a test needs."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.events: list[Event] = []

    def wait_for(self, pred: Callable[[Event], bool], timeout: float = 15.0) -> Event:
        for ev in self.events:
            if pred(ev):
                return ev
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                kinds = [e.kind for e in self.events[-30:]]
                raise AssertionError(f"event not seen within {timeout} s; last events: {kinds}")
            try:
                ev = self.engine.events.get(timeout=left)
            except queue.Empty:
                continue
            self.events.append(ev)
            if pred(ev):
                return ev

    def of(self, kind: str, worker_id: str | None = None) -> list[Any]:
        out = [e for e in self.events if e.kind == kind]
        if worker_id is not None:
            out = [e for e in out if getattr(e, "worker", None) and e.worker.id == worker_id]
        return out

    def samples_of(self, worker_id: str) -> list[Any]:
        return [s for e in self.events if isinstance(e, Samples) for s in e.samples
                if s.worker.id == worker_id]

    def wait_exit(self, worker_id: str, timeout: float = 15.0) -> Any:
        return self.wait_for(lambda e: e.kind == "worker_exited" and e.worker.id == worker_id, timeout)

    def wait_samples(self, worker_id: str, n: int = 1, timeout: float = 15.0) -> list[Any]:
        self.wait_for(lambda e: len(self.samples_of(worker_id)) >= n, timeout)
        return self.samples_of(worker_id)


@pytest.fixture
def make_engine() -> Iterator[Callable[..., tuple[Engine, EventLog]]]:
    engines: list[Engine] = []

    def make(**kw: Any) -> tuple[Engine, EventLog]:
        kw.setdefault("interval_s", 0.1)
        eng = Engine(EngineConfig(**kw)).start()
        engines.append(eng)
        return eng, EventLog(eng)

    yield make
    for eng in engines:
        eng.stop()


@pytest.fixture
def children() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Processes the test starts itself; killed and reaped at teardown, also on failure."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(args: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(args, **kw)
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGKILL)
            except ProcessLookupError:
                pass
        p.wait(timeout=10)
        for pipe in (p.stdin, p.stdout, p.stderr):
            if pipe is not None:
                pipe.close()


def sleeper_code(seconds: float = 60) -> list[str]:
    return [PY, "-c", f"import time; time.sleep({seconds})"]


def ready_child(start: Callable[..., subprocess.Popen[bytes]], code: str) -> subprocess.Popen[bytes]:
    """A python child that prints 'ready' once its set-up is done; returns after that line."""
    p = start([PY, "-u", "-c", code], stdout=subprocess.PIPE)
    assert p.stdout is not None
    line = p.stdout.readline()
    assert line.strip() == b"ready", line
    return p


def is_root() -> bool:
    return os.geteuid() == 0


def v1_memory_writable() -> bool:
    return is_root() and os.access("/sys/fs/cgroup/memory", os.W_OK)


@contextmanager
def small_cgroup(limit_bytes: int, name: str) -> Iterator[LimitedCgroup]:
    """A small memory cgroup of the test's own; whatever is left in it is killed (only the
    test's processes are in there) and the cgroup removed, also when the test fails."""
    cg = create_limited_cgroup(limit_bytes, name)
    try:
        yield cg
    finally:
        procs = os.path.join(cg.directory or "", "cgroup.procs")
        if os.path.exists(procs):
            with open(procs) as f:
                pids = f.read().split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        cg.remove()


class Gate:
    """A lock the test holds and a child waits on: the child goes on only once the test lets it.

    For children the test does not start itself (launched by an engine, by `oomscope watch`, by
    the window), whose stdin is not the test's. The test takes the lock before the child exists,
    so the child can never pass early; the lock goes with the test's descriptor, so a failed test
    never leaves a child waiting for ever. The child's side is Python source without single
    quotes, to sit inside a shell command too.
    """

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    @property
    def wait_code(self) -> str:
        """One statement: blocks until the test opens the gate."""
        return f'import fcntl; fcntl.flock(open("{self.path}"), fcntl.LOCK_SH)'

    @property
    def poll_code(self) -> str:
        """Defines ``gate_open()``, true once the test has opened the gate (never blocks)."""
        return (
            "import fcntl\n"
            f'_gate = open("{self.path}")\n'
            "def gate_open():\n"
            "    try:\n"
            "        fcntl.flock(_gate, fcntl.LOCK_SH | fcntl.LOCK_NB)\n"
            "    except BlockingIOError:\n"
            "        return False\n"
            "    return True\n"
        )

    def open(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Callable[[], Gate]]:
    """Makes closed gates; every one is opened at teardown."""
    made: list[Gate] = []

    def make() -> Gate:
        g = Gate(tmp_path / f"gate-{len(made)}")
        made.append(g)
        return g

    yield make
    for g in made:
        g.open()


def run_until(argv: list[str], until: Callable[[str], bool], then: Callable[[], None], *,
              timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
    """Runs ``argv`` reading its stdout as it comes; at the first line ``until`` accepts (it may
    keep state across lines), calls ``then`` (which lets a held child go), and collects the rest.

    Fails when the output ends without such a line. ``timeout`` only bounds a hung run.
    """
    with tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True, **kw)
        assert p.stdout is not None
        timer = threading.Timer(timeout, p.kill)
        timer.start()
        lines: list[str] = []
        seen = False
        try:
            for line in p.stdout:
                lines.append(line)
                if not seen and until(line):
                    seen = True
                    then()
            p.wait()
        finally:
            timer.cancel()
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stdout.close()
        err.seek(0)
        result = subprocess.CompletedProcess(argv, p.returncode, "".join(lines), err.read())
    assert seen, f"the awaited line never came (exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result
