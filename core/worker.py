"""The engine's mutable state for one worker. Only the engine thread touches it."""

from __future__ import annotations

import errno
import os
import time
import subprocess
from collections import deque
from dataclasses import replace
from collections.abc import Callable
from typing import IO

from .cgroup.limited import LimitedCgroup, MemoryCgroup
from .errors import BadInput, Error, WorkerGone
from .events import WorkerRef
from .crossings import Velocity
from .forecast import Trend
from .cgroup.notify import CgroupWatch
from .heap.book import HeapBook
from .restart import Slot
from .pidfd import ProcessHandle
from . import procfs
from .oomlog import KillRecord
from .procfs import StatmReader
from .thresholds import NORMAL, LevelTracker, ThresholdConfig

_MAX_LINE_BYTES = 64 * 1024  # a worker printing one endless line must not grow us without bound
# Exited workers the engine keeps (for a late kernel record, for "has already exited" rather than
# "no such worker"): the latest ones. Under churn (a pool forking a child per request) the engine
# would otherwise grow by every worker it ever saw (issue #14: 4 KB a child, 10,000 children).
# Everything about the older ones is in the events: the recording, the window's own roster.
EXITED_KEPT = 500
# What an exited worker's output buffers become: a deque that keeps nothing, shared by all of
# them (its tail went out with the exit event; a new deque each would cost half a KB a worker).
_NO_LINES: deque[str] = deque(maxlen=0)


class Worker:
    __slots__ = (
        "ref", "handle", "popen", "limited", "parent_pid", "statm", "statm_fd", "cgroup", "cgroup_limit",
        "oom_kills_at_start", "swap", "level", "warn_bytes", "crit_bytes", "terminating_by",
        "last_signal", "exited", "comm", "comm_checks_left", "oom_record", "heap", "node_options", "thresholds", "override", "tracker", "trend", "rate", "eta_limit_s",
        "eta_crit_s", "last_value", "pending", "velocity", "fast_until", "burst_until", "watch", "slot", "started_mono", "stdout_lines", "stderr_lines", "_partial", "_out_fds", "_out_files",
        "high_told",
    )

    def __init__(
        self,
        ref: WorkerRef,
        handle: ProcessHandle,
        *,
        popen: subprocess.Popen[bytes] | None = None,
        limited: LimitedCgroup | None = None,
        parent_pid: int | None = None,
        output_lines: int = 200,
    ) -> None:
        self.ref = ref
        self.handle = handle
        self.popen = popen
        self.limited = limited
        self.parent_pid = parent_pid
        self.statm: StatmReader | None = None
        self.statm_fd = -1
        self.cgroup: MemoryCgroup | None = None
        self.cgroup_limit: int | None = None
        self.oom_kills_at_start: int | None = None
        self.swap: int | None = None
        self.level = NORMAL
        self.warn_bytes: int | None = None
        self.crit_bytes: int | None = None
        self.terminating_by: str | None = None
        self.last_signal: int | None = None
        self.exited = False
        self.comm: str | None = None
        # Launched workers may still be a wrapper shell: check their comm for a few seconds.
        self.comm_checks_left = 5 if popen is not None else 0
        self.oom_record: KillRecord | None = None
        self.heap = HeapBook()
        self.thresholds = ThresholdConfig()
        self.override: ThresholdConfig | None = None
        self.tracker = LevelTracker()
        self.trend = Trend()
        self.rate: float | None = None
        self.eta_limit_s: float | None = None
        self.eta_crit_s: float | None = None
        self.last_value = 0
        self.velocity = Velocity()
        self.pending: str | None = None  # the level announced as pending (LevelPending)
        self.fast_until = 0.0  # monotonic time until which the loop samples it fast
        self.burst_until = 0.0  # ... and faster still, just after a kernel wake-up
        self.watch: CgroupWatch | None = None  # the kernel's notifications for its own cgroup
        self.slot: Slot | None = None
        self.started_mono = time.monotonic()
        self.node_options: str | None = None
        self.high_told = False  # its memory.high notice was given: once a worker
        self.stdout_lines: deque[str] = deque(maxlen=output_lines)
        self.stderr_lines: deque[str] = deque(maxlen=output_lines)
        self._partial: dict[int, bytes] = {}
        self._out_fds: dict[int, str] = {}
        # The pipes stay owned by their file objects (closing the raw fd behind Popen's back
        # would let a later close hit a reused descriptor).
        self._out_files: dict[int, IO[bytes]] = {}
        if popen is not None:
            for pipe, stream in ((popen.stdout, "stdout"), (popen.stderr, "stderr")):
                if pipe is not None:
                    fd = pipe.fileno()
                    os.set_blocking(fd, False)
                    self._out_fds[fd] = stream
                    self._out_files[fd] = pipe
                    self._partial[fd] = b""

    @property
    def launched(self) -> bool:
        return self.ref.launched

    def open_readers(self, acquire_cgroup: Callable[[int], MemoryCgroup | None]) -> None:
        """Open the kept descriptors sampling reads from; a worker that already exited is fine.

        ``acquire_cgroup`` gives the (shared) reader of the cgroup the process is in; for a
        launched worker with a limit that is its own cgroup.
        """
        self.comm = procfs.comm(self.ref.pid)
        try:
            self.statm = StatmReader(self.ref.pid)
            self.statm_fd = self.statm.fd
        except WorkerGone:
            self.statm = None
        self.cgroup = acquire_cgroup(self.ref.pid)
        if self.cgroup is not None:
            self.cgroup_limit = self.cgroup.effective_limit_bytes()
            self.oom_kills_at_start = self.cgroup.oom_kill_count()

    def refresh_levels(self, config: ThresholdConfig) -> None:
        """Take the global thresholds (or this worker's override, on the global metric) and
        resolve percent levels against this worker's limit: the cgroup's for RSS and anon, the
        old-generation limit (all threads) for the heap metric."""
        if self.override is not None:
            config = replace(self.override, metric=config.metric)
        self.thresholds = config
        limit: int | None
        if config.metric == "heap" and self.heap.totals is not None:
            t = self.heap.totals
            limit = t.old_limit if t.old_limit is not None else t.limit
        else:  # RSS, anon, and heap where no reporter speaks (anon stands in)
            limit = self.cgroup_limit
        self.warn_bytes, self.crit_bytes = config.levels_for(limit)

    def cgroup_oom_kills_rose(self) -> bool:
        """The cgroup's oom_kill counter went up while we watched: corroborates an OOM kill."""
        if self.cgroup is None or self.oom_kills_at_start is None:
            return False
        now = self.cgroup.oom_kill_count()
        return now is not None and now > self.oom_kills_at_start

    # ------------------------------------------------------------------ output

    def output_fds(self) -> list[tuple[int, str]]:
        return list(self._out_fds.items())

    def reads(self, fd: int) -> bool:
        """Whether fd is one of this worker's output pipes, still open."""
        return fd in self._out_fds

    def read_output(self, fd: int, stream: str, final: bool = False) -> tuple[list[str], bool]:
        """Whole lines now available on fd, and whether the pipe reached EOF.

        ``final``: the worker has exited; everything in the pipe is read (a pipe holds at most
        its buffer once nobody writes), and a last line without its newline counts.
        """
        chunks: list[bytes] = []
        eof = False
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.EBADF:
                    eof = True
                    break
                raise
            if not data:
                eof = True
                break
            chunks.append(data)
            if len(chunks) >= (256 if final else 16):  # let the loop breathe when a worker floods its output
                break
        buf = self._partial.get(fd, b"") + b"".join(chunks)
        parts = buf.split(b"\n")
        rest = parts.pop()
        if len(rest) > _MAX_LINE_BYTES or ((eof or final) and rest):
            parts.append(rest)
            rest = b""
        self._partial[fd] = rest
        lines = [p.rstrip(b"\r").decode("utf-8", "replace") for p in parts]
        target = self.stdout_lines if stream == "stdout" else self.stderr_lines
        target.extend(lines)
        return lines, eof

    def close_output(self, fd: int) -> None:
        if self._out_fds.pop(fd, None) is not None:
            self._partial.pop(fd, None)
            self._out_files.pop(fd).close()

    # ------------------------------------------------------------------- close

    def close(self) -> None:
        if self.watch is not None:
            self.watch.close()
            self.watch = None
        if self.statm is not None:
            self.statm_fd = -1
            self.statm.close()
            self.statm = None
        self.handle.close()
        for fd in list(self._out_fds):
            self.close_output(fd)

    def retire(self) -> None:
        """Its exit is told and its descriptors closed: let go of what only a live worker needs
        (output, trend, heap reports, the reaped Popen); the summary (ref, slot, cause inputs)
        stays while the table keeps it."""
        self.stdout_lines = self.stderr_lines = _NO_LINES
        self.trend = Trend()
        self.heap = HeapBook()
        self.popen = None
        self.oom_record = None

    def remove_cgroup(self) -> str | None:
        """Remove the worker's own cgroup; a message when it could not be removed."""
        if self.limited is None:
            return None
        try:
            self.limited.remove()
        except (OSError, Error) as e:
            return f"could not remove cgroup {self.limited.path}: {e} (remove it by hand: rmdir)"
        return None


class WorkerTable:
    """The live workers and the latest ``exited_kept`` exited ones, by id; the live ones by PID
    and by (PID, start time)."""

    def __init__(self, exited_kept: int = EXITED_KEPT) -> None:
        self.by_id: dict[str, Worker] = {}
        self.live: list[Worker] = []
        self.live_by_pid: dict[int, Worker] = {}
        self.by_identity: dict[tuple[int, int], Worker] = {}
        self.exited: deque[Worker] = deque()  # oldest first
        self.exited_kept = exited_kept
        self.forgotten = 0  # exited workers let go of
        self._last_id = 0

    def new_id(self) -> str:
        self._last_id += 1
        return f"w{self._last_id}"

    def get(self, worker_id: str) -> Worker:
        w = self.by_id.get(worker_id)
        if w is None:
            number = worker_id[1:] if worker_id.startswith("w") else ""
            if number.isdigit() and 0 < int(number) <= self._last_id:
                # Ids are never reused: one we gave out and no longer hold has exited.
                raise WorkerGone(f"worker {worker_id} has exited; nothing was signalled (oomscope "
                                 f"keeps the latest {self.exited_kept} exited workers)")
            raise BadInput(f"no worker with id {worker_id!r}")
        return w

    def add(self, w: Worker) -> None:
        self.by_id[w.ref.id] = w
        self.live.append(w)
        self.live_by_pid[w.ref.pid] = w
        self.by_identity[(w.ref.pid, w.handle.start_ticks)] = w

    def gone(self, w: Worker) -> None:
        """An exited worker leaves the live views; its id stays among the latest exited."""
        self.live.remove(w)
        if self.live_by_pid.get(w.ref.pid) is w:
            del self.live_by_pid[w.ref.pid]
        self.by_identity.pop((w.ref.pid, w.handle.start_ticks), None)
        w.retire()
        self.exited.append(w)
        while len(self.exited) > self.exited_kept:
            old = self.exited.popleft()
            del self.by_id[old.ref.id]
            self.forgotten += 1

    def known_pids(self) -> set[int]:
        return set(self.live_by_pid)

    def launched_alive(self) -> bool:
        return any(w.launched for w in self.live)

    def owner_of(self, pid: int) -> Worker | None:
        """The live worker that is PID or its nearest ancestor (a shell worker's node)."""
        for _ in range(32):
            w = self.live_by_pid.get(pid)
            if w is not None:
                return w
            fields = procfs.stat_fields(pid)
            if fields is None:
                return None
            pid = int(fields[1])
            if pid <= 1:
                return None
        return None
