"""oomscope heap reporter for Python workers (loaded by this directory's sitecustomize).

One connection per process to ``$OOMSCOPE_HEAP_SOCKET``, a ``hello`` line, then every
``$OOMSCOPE_HEAP_INTERVAL_MS`` one ``heap`` line (schema: core/heap/messages.py):
``used`` = RssAnon (anonymous resident memory, what the OOM killer counts), ``total`` = RssAnon +
VmSwap, ``limit`` = the soft RLIMIT_AS/RLIMIT_DATA or 0, ``blocks`` = ``sys.getallocatedblocks()``,
``gc`` = ``gc.get_count()``. No tracemalloc: it slows every allocation several times over.

The worker must behave as without oomscope: no output, no exceptions, nothing that keeps it
alive. Hence a raw ``_thread`` (not in ``threading.enumerate()``, never joined at exit), the C
``_socket`` module and a ``time.sleep`` taken at import (gevent and friends patch the public ones
later, and their versions must not run in this thread), and a fresh reporter after ``os.fork()``.
"""

import _socket
import _thread
import gc
import os
import sys
import time

_sleep = time.sleep
_monotonic = time.monotonic
_wall = time.time
_RLIM_INFINITY = -1
_MAX_PENDING_BYTES = 16384

_generation = 0  # bumped at fork: a reporter of an older generation is the parent's, and stops
_started = False
_current = None  # this process's reporter
# Held while the reporter creates its socket, and across os.fork(): a child must know every
# socket of the parent's reporter to close it, also one created a moment before the fork.
_fork_lock = _thread.allocate_lock()


def _interval_s() -> float:
    try:
        ms = float(os.environ.get("OOMSCOPE_HEAP_INTERVAL_MS", "1000"))
    except ValueError:
        ms = 1000.0
    if not ms > 0:
        ms = 1000.0
    return min(max(ms, 50.0), 60000.0) / 1000.0


def _limit_bytes() -> int:
    try:
        import resource
    except ImportError:
        return 0
    best = 0
    for which in (resource.RLIMIT_AS, resource.RLIMIT_DATA):
        soft = resource.getrlimit(which)[0]
        if soft not in (_RLIM_INFINITY, resource.RLIM_INFINITY) and soft > 0:
            best = soft if best == 0 else min(best, soft)
    return best


class _Reporter:
    def __init__(self, path: str, interval_s: float, generation: int, first_delay_s: float) -> None:
        self.path = path
        self.interval_s = interval_s
        self.generation = generation
        self.first_delay_s = first_delay_s
        self.sock = None
        self.pending = b""
        self.dropped = 0
        self.status_fd = -1
        self.limit = _limit_bytes()

    def run(self) -> None:
        try:
            self._run()
        except BaseException:  # noqa: BLE001 - a reporter failure must stay inside the reporter
            pass
        finally:
            self._disconnect()
            if self.status_fd >= 0:
                try:
                    os.close(self.status_fd)
                except OSError:
                    pass

    def _run(self) -> None:
        # /proc/self is resolved at open: opened here, in the thread of this very process.
        self.status_fd = os.open("/proc/self/status", os.O_RDONLY | os.O_CLOEXEC)
        backoff_s = 0.25
        next_connect = _monotonic() + self.first_delay_s
        while self.generation == _generation:
            now = _monotonic()
            if self.sock is None and now >= next_connect:
                if self._connect():
                    backoff_s = 0.25
                else:
                    next_connect = now + backoff_s
                    backoff_s = min(backoff_s * 2, 30.0)
            if self.sock is not None:
                self._sample()
            _sleep(self.interval_s)

    def _connect(self) -> bool:
        with _fork_lock:
            s = self.sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            s.settimeout(1.0)
            s.connect(self.path)
            s.setblocking(False)
        except OSError:
            self._disconnect()
            return False
        hello = ('{"type":"hello","v":1,"kind":"python","pid":%d,"threadId":0,'
                 '"isMainThread":true,"resourceLimits":null,"node":null,"python":"%d.%d.%d"}\n'
                 % (os.getpid(), *sys.version_info[:3]))
        self.pending = b""
        return self._send(hello.encode())

    def _disconnect(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    def _send(self, data: bytes) -> bool:
        # Never block and never buffer much: a socket that backs up costs samples, not the app.
        s = self.sock
        if s is None:
            return False
        try:
            if self.pending:
                n = s.send(self.pending, _socket.MSG_NOSIGNAL)
                self.pending = self.pending[n:]
                if self.pending:
                    return False
            n = s.send(data, _socket.MSG_NOSIGNAL)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            self._disconnect()
            return False
        if n < len(data):
            self.pending = data[n:][:_MAX_PENDING_BYTES]
        return True

    def _status(self) -> tuple[int, int]:
        text = os.pread(self.status_fd, 8192, 0)
        anon = swap = 0
        for line in text.split(b"\n"):
            if line.startswith(b"RssAnon:"):
                anon = int(line.split()[1]) * 1024
            elif line.startswith(b"VmSwap:"):
                swap = int(line.split()[1]) * 1024
        return anon, swap

    def _sample(self) -> None:
        try:
            anon, swap = self._status()
            a, b, c = gc.get_count()
            line = ('{"type":"heap","t":%.3f,"used":%d,"total":%d,"limit":%d,"rss":null,'
                    '"blocks":%d,"gc":[%d,%d,%d],"dropped":%d}\n'
                    % (_wall(), anon, anon + swap, self.limit, sys.getallocatedblocks(),
                       a, b, c, self.dropped))
        except Exception:  # noqa: BLE001
            self.dropped += 1
            return
        if self._send(line.encode()):
            self.dropped = 0
        else:
            self.dropped += 1


def _spawn(first_delay_s: float) -> None:
    path = os.environ.get("OOMSCOPE_HEAP_SOCKET")
    if not path:
        return
    global _current
    reporter = _Reporter(path, _interval_s(), _generation, first_delay_s)
    _current = reporter
    _thread.start_new_thread(reporter.run, ())


def _after_fork_in_child() -> None:
    global _generation
    _generation += 1
    _fork_lock.release()
    # The parent's reporter thread does not exist here, but its socket does: kept open, the
    # parent's end would not reach oomscope until this child ended too.
    inherited = _current
    if inherited is not None:
        inherited._disconnect()
        if inherited.status_fd >= 0:
            try:
                os.close(inherited.status_fd)
            except OSError:
                pass
            inherited.status_fd = -1
    try:
        # The first report waits one interval: a fork that is about to exec (subprocess with
        # preexec_fn) never connects.
        _spawn(_interval_s())
    except Exception:  # noqa: BLE001
        pass


def start() -> None:
    global _started
    if _started:
        return
    _started = True
    if not os.environ.get("OOMSCOPE_HEAP_SOCKET"):
        return
    _spawn(0.0)
    os.register_at_fork(before=_fork_lock.acquire, after_in_parent=_fork_lock.release,
                        after_in_child=_after_fork_in_child)
