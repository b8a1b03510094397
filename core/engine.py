"""The engine: one thread, one ``selectors`` loop, events out on a queue.

The loop waits on the pidfd of every worker (an exit is seen the moment it happens, no
polling; where the machine has no pidfd, each sampling tick looks instead), on launched
workers' output pipes, on a wake-up pipe for commands from other threads, and on a deadline
for the next sampling tick or timer. Everything it learns becomes an immutable event on
``Engine.events``. Only the engine thread touches worker state; other threads call the public
methods, which run as commands on the engine thread and answer through a
:class:`concurrent.futures.Future`.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import os
import queue
import re
import selectors
import signal
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from . import procfs
from .causes import EXIT, OOM_KILL, SIGNAL, UNKNOWN, classify
from .cgroups import MemoryCgroup, cgroup_of, create_limited_cgroup
from .correlate import ExitNote, RecentExits, RecentRecords, comm_matches
from .errors import BadInput, Error, Refused, WorkerGone
from .events import (
    CauseUpdated,
    CrashLoop,
    Event,
    KernelLineRead,
    KernelOom,
    LevelsChanged,
    Notice,
    Output,
    RestartCancelled,
    Sample,
    Samples,
    SourceChanged,
    Stopped,
    Terminate,
    Threshold,
    WorkerAttached,
    WorkerExited,
    WorkerRef,
    WorkerStarted,
)
from .forecast import GROWING_MIN_BYTES_PER_S, Trend
from .heap.inject import inject_node, inject_python
from .heap.inspector import node_executable
from .heapdesk import HeapDesk
from .kernelfeed import KernelFeed
from .launch import LaunchSpec, spawn
from .oomlog import KillRecord
from .oomlog import SourceState as SourceState_
from .pidfd import ProcessHandle, unavailable_reason
from .restart import RestartPolicy, Slot
from .procfs import PAGE_SIZE
from .sizes import format_size
from .thresholds import CRITICAL, LEVEL_RANK, NORMAL, ThresholdConfig, heap_values
from .worker import Worker

T = TypeVar("T")
MIN_INTERVAL_S = 0.05
_PF_KTHREAD = 0x00200000
_SLOW_PERIOD_S = 1.0


@dataclass(frozen=True, slots=True)
class EngineConfig:
    interval_s: float = 1.0
    thresholds: ThresholdConfig = field(default_factory=ThresholdConfig)
    # For a terminate by hand and at stop; a level's "terminate" uses its own thresholds.grace_s
    # (the front ends set both from --grace / the settings file).
    grace_s: float = 3.0
    rescan_s: float = 0.5
    output_lines: int = 200
    emit_output: bool = True
    terminate_launched_on_stop: bool = True
    kernel_log: bool = True
    heap_reports: bool = True
    heap_interval_s: float = 1.0
    inspect_heap: bool = False
    trend_window_s: float = 60.0
    # Per-worker thresholds from the settings file: (regex on name or command line, thresholds);
    # the first that matches a new worker is its override.
    worker_overrides: tuple[tuple[str, ThresholdConfig], ...] = ()
    trend_bucket_s: float = 5.0
    # The settings file's [restart]: the delays and the guard a launch with a restart count
    # follows where the caller gives only the count (the GUI's launch dialog).
    restart: RestartPolicy = field(default_factory=RestartPolicy)

    def override_for(self, ref: WorkerRef) -> ThresholdConfig | None:
        """The settings file's thresholds for this worker: the first pattern that matches its
        name or command line."""
        line = " ".join(ref.cmd)
        for pattern, override in self.worker_overrides:
            if re.search(pattern, ref.name) or re.search(pattern, line):
                return override
        return None

    def __post_init__(self) -> None:
        if not (self.interval_s >= MIN_INTERVAL_S):
            raise BadInput(
                f"interval {self.interval_s:g} s is too short: the minimum is {MIN_INTERVAL_S} s"
            )
        if not (self.grace_s >= 0):
            raise BadInput(f"grace period {self.grace_s:g} s must not be negative")
        if not (self.heap_interval_s >= MIN_INTERVAL_S):
            raise BadInput(f"heap interval {self.heap_interval_s:g} s is too short: the minimum is "
                           f"{MIN_INTERVAL_S} s")


class Engine:
    """Launch, attach, sample, terminate; report everything as events."""

    def __init__(
        self,
        config: EngineConfig | None = None,
        *,
        kernel_feed: Callable[[], tuple[KernelFeed | None, list[SourceState_]]] | None = None,
    ) -> None:
        """``kernel_feed`` opens the kernel log (default: the first live source that works)."""
        self.config = config or EngineConfig()
        self._kernel_feed_factory = kernel_feed or KernelFeed.open
        self.events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._commands: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._selector.register(self._wake_r, selectors.EVENT_READ, self._on_wake)
        self._workers: dict[str, Worker] = {}
        self._by_identity: dict[tuple[int, int], Worker] = {}
        self._ids = itertools.count(1)
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_seq = itertools.count()
        self._parents: dict[int, ProcessHandle] = {}
        self._patterns: list[re.Pattern[str]] = []
        self._thresholds = self.config.thresholds
        self._swap_enabled = procfs.swap_total_bytes() > 0
        self._next_slow = 0.0
        self._live: list[Worker] = []
        self._cgroups: dict[str, tuple[MemoryCgroup, int]] = {}
        self._kernel: KernelFeed | None = None
        self._heap = HeapDesk(selector=self._selector, emit=self._emit, at=self._at,
                              call_soon=self._call_soon, owner_of=self._owner_of,
                              thresholds=lambda: self._thresholds,
                              interval_s=self.config.heap_interval_s)
        self._live_by_pid: dict[int, Worker] = {}
        self._kernel_dirty = False
        self._records = RecentRecords()
        self._exits = RecentExits()
        self._slots: dict[int, Slot] = {}
        self._slot_numbers = itertools.count(1)
        self._free_child_slots: dict[int, list[Slot]] = {}
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._stopped = threading.Event()
        # Read once: every handle of this engine takes the same path, and the notice is true.
        problem = unavailable_reason()
        self._use_pidfd = problem is None
        self._suspects: list[Worker] = []  # read as gone or empty by this tick's sampling pass
        self._next_full_look = 0.0
        self.pidfd_fallback: str | None = None if problem is None else (
            f"pidfd is not available ({problem}): oomscope checks each process's start time "
            "just before signalling it; a PID reused in that instant could still be hit (an "
            "attached process's: a launched worker's PID stays reserved until oomscope collects "
            f"its exit). Exits are seen at the next sampling tick, up to {self.config.interval_s:g} s "
            "late, not at once"
        )
        self.sampling_cpu_s = 0.0
        self.worker_samples = 0

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> Engine:
        self._thread = threading.Thread(target=self._run, name="oomscope-engine", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop the loop; launched workers get SIGTERM, a grace period, then SIGKILL."""
        if self._thread is None or self._stopped.is_set():
            return
        self._call_soon(self._begin_stop)
        wait = timeout_s if timeout_s is not None else self.config.grace_s + 5.0
        self._thread.join(wait)

    def __enter__(self) -> Engine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    # ----------------------------------------------------- commands (any thread)

    def launch(self, spec: LaunchSpec, restart: RestartPolicy | None = None) -> Future[WorkerRef]:
        """Start a worker; with a ``restart`` policy it is restarted in the same slot."""
        return self._submit(lambda: self._launch(spec, self._new_slot(spec, restart or RestartPolicy())))

    def attach(self, pid: int, *, parent_pid: int | None = None) -> Future[WorkerRef]:
        return self._submit(lambda: self._attach(pid, parent_pid=parent_pid))

    def watch_children(self, pid: int) -> Future[list[WorkerRef]]:
        return self._submit(lambda: self._watch_children(pid))

    def watch_matching(self, pattern: str) -> Future[list[WorkerRef]]:
        try:
            compiled = re.compile(pattern)
        except re.error as e:
            raise BadInput(f"invalid regular expression {pattern!r}: {e}") from None
        return self._submit(lambda: self._watch_matching(compiled))

    def terminate(
        self,
        worker_id: str,
        *,
        by: str = "user",
        kill_now: bool = False,
        grace_s: float | None = None,
        reason: str | None = None,
    ) -> Future[None]:
        return self._submit(
            lambda: self._terminate(self._get(worker_id), by, kill_now, grace_s, reason)
        )

    def inspect_heap(self, worker_id: str) -> Future[None]:
        """Open the inspector of an attached Node.js worker for per-thread heaps (opt-in:
        while it is open any local user can run code in that process; see INSPECTOR_WARNING)."""
        return self._submit(lambda: self._heap.inspect(self._get(worker_id)))

    def set_thresholds(self, config: ThresholdConfig) -> Future[None]:
        return self._submit(lambda: self._set_thresholds(config))

    def set_worker_thresholds(self, worker_id: str, config: ThresholdConfig | None) -> Future[None]:
        """Override warning, critical and the critical action for one worker (None: back to the
        global ones). The metric stays the global one: one plot, one meaning per curve."""
        return self._submit(lambda: self._set_worker_thresholds(self._get(worker_id), config))

    def worker_thresholds(self, worker_id: str) -> Future[ThresholdConfig | None]:
        return self._submit(lambda: self._get(worker_id).override)

    def workers(self) -> Future[list[WorkerRef]]:
        return self._submit(lambda: [w.ref for w in self._workers.values() if not w.exited])

    # ------------------------------------------------------------ loop internals

    def _submit(self, fn: Callable[[], T]) -> Future[T]:
        fut: Future[T] = Future()

        def run() -> None:
            if not fut.set_running_or_notify_cancel():
                return
            try:
                fut.set_result(fn())
            except Error as e:
                fut.set_exception(e)
            except Exception as e:  # a bug: keep the engine alive and tell the caller
                self._emit(Notice(time.time(), "error", "internal error: " + traceback.format_exc()))
                fut.set_exception(e)

        if self._stopped.is_set() or self._stopping:
            fut.set_exception(Error("the engine has stopped"))
            return fut
        self._call_soon(run)
        return fut

    def _call_soon(self, fn: Callable[[], None]) -> None:
        self._commands.put(fn)
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already: the loop will drain the commands

    def _on_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                fn = self._commands.get_nowait()
            except queue.Empty:
                return
            fn()

    def _emit(self, event: Event) -> None:
        self.events.put(event)

    def _at(self, when: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (when, next(self._timer_seq), fn))

    def _run(self) -> None:
        if self.pidfd_fallback is not None:
            self._emit(Notice(time.time(), "warning", self.pidfd_fallback))
        if self.config.kernel_log:
            self._guard(self._open_kernel)
        if self.config.heap_reports:
            self._guard(self._heap.open)
        interval = self.config.interval_s
        next_sample = time.monotonic()
        next_rescan = next_sample + self.config.rescan_s
        try:
            while True:
                now = time.monotonic()
                deadline = min(next_sample, next_rescan)
                if self._timers:
                    deadline = min(deadline, self._timers[0][0])
                for key, _mask in self._selector.select(max(0.0, deadline - now)):
                    self._guard(key.data)
                if self._stopping and not self._launched_alive():
                    break
                now = time.monotonic()
                while self._timers and self._timers[0][0] <= now:
                    _, _, fn = heapq.heappop(self._timers)
                    self._guard(fn)
                if now >= next_sample:
                    self._guard(self._sample)
                    if not self._use_pidfd:
                        self._guard(self._poll_exits)
                    self._suspects.clear()
                    next_sample += interval
                    if next_sample <= now:  # fell behind (suspend, overload): skip, don't burst
                        next_sample = now + interval
                if now >= next_rescan:
                    self._guard(self._rescan)
                    next_rescan = now + self.config.rescan_s
        finally:
            self._shutdown()

    def _guard(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:
            self._emit(Notice(time.time(), "error", "internal error: " + traceback.format_exc()))

    def _launched_alive(self) -> bool:
        return any(w.launched and not w.exited for w in self._workers.values())

    def _begin_stop(self) -> None:
        self._stopping = True
        if not self.config.terminate_launched_on_stop:
            return
        for w in list(self._workers.values()):
            if w.launched and not w.exited and w.terminating_by is None:
                try:
                    self._terminate(w, "oomscope-exit", False, None, "oomscope is stopping")
                except Error:
                    pass

    def _shutdown(self) -> None:
        for w in list(self._workers.values()):
            if not w.exited:
                w.close()
        for h in self._parents.values():
            h.close()
        self._parents.clear()
        if self._kernel is not None:
            self._kernel.close()
            self._kernel = None
        self._heap.close()
        self._selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        self._stopped.set()
        self._emit(Stopped(time.time()))
        # Commands that raced with the stop must not leave their callers waiting forever.
        while True:
            try:
                fn = self._commands.get_nowait()
            except queue.Empty:
                break
            fn()

    # ------------------------------------------------------------ kernel log

    @property
    def thresholds(self) -> ThresholdConfig:
        """The thresholds in force (an immutable value: safe to read from any thread)."""
        return self._thresholds

    @property
    def kernel_log_ok(self) -> bool:
        return self._kernel is not None

    def _open_kernel(self) -> None:
        feed, states = self._kernel_feed_factory()
        now = time.time()
        for st in states:
            self._emit(SourceChanged(now, st))
        if feed is not None:
            self._kernel = feed
            self._selector.register(feed.fileno(), selectors.EVENT_READ, self._read_kernel)
            self._read_kernel()

    def _read_kernel(self) -> None:
        feed = self._kernel
        if feed is None:
            return
        lines, records, ended = feed.read()
        now = time.time()
        for fl in lines:
            self._emit(KernelLineRead(now, fl.line, fl.oom))
        if lines:
            self._kernel_dirty = True
        for rec in records:
            self._on_record(rec)
        if ended:
            self._selector.unregister(feed.fileno())
            feed.close()
            self._kernel = None
            self._emit(SourceChanged(now, SourceState_(
                feed.source.name, False, "the kernel log source ended; OOM kills are now told by cgroup counters only")))

    def _flush_kernel(self) -> None:
        """A report cut short (summary line, no kill line) is complete once the log goes quiet."""
        if self._kernel is not None and self._kernel_dirty:
            self._kernel_dirty = False
            for rec in self._kernel.flush():
                self._on_record(rec)

    def _on_record(self, rec: KillRecord) -> None:
        if rec.history:
            if rec.revision == 0:
                self._emit(KernelOom(time.time(), rec, history=True))
            return
        arrival = time.monotonic()
        self._records.add(rec, arrival)
        if rec.revision > 0:
            return  # a later line of a kill already handled (reaper, unit result)
        w = self._live_by_pid.get(rec.pid) if rec.pid is not None else None
        if w is not None:
            # A launched worker may have exec'd its program since we last read its comm (the
            # cgroup wrapper shell); it is not reaped yet, so its comm is still readable.
            w.comm = procfs.comm(w.ref.pid) or w.comm
            if comm_matches(rec.comm, w.comm, w.ref.name):
                w.oom_record = rec  # the exit, a moment away, will carry it
                return
        note = self._exits.match(rec, arrival)
        if note is not None:
            w = self._workers[note.worker_id]
            self._emit(CauseUpdated(time.time(), w.ref, OOM_KILL, note.cause, rec,
                                    ("kernel: " + kill_line(rec),)))
            if w.slot is not None:
                # The guard counts what the worker died of, also when that was learnt late.
                loop = w.slot.cause_changed(note.cause, OOM_KILL, note.exit_mono)
                if loop is not None:
                    self._emit(w.slot.crash_loop(time.time(), w.ref, loop))
            return
        self._emit(KernelOom(time.time(), rec))

    # ------------------------------------------------------------ heap reports

    def _owner_of(self, pid: int) -> Worker | None:
        """The live worker that is PID or its nearest ancestor (a shell worker's node)."""
        for _ in range(32):
            w = self._live_by_pid.get(pid)
            if w is not None:
                return w
            fields = procfs.stat_fields(pid)
            if fields is None:
                return None
            pid = int(fields[1])
            if pid <= 1:
                return None
        return None

    # ---------------------------------------------------------------- workers

    def _get(self, worker_id: str) -> Worker:
        w = self._workers.get(worker_id)
        if w is None:
            raise BadInput(f"no worker with id {worker_id!r}")
        return w

    def _acquire_cgroup(self, pid: int) -> MemoryCgroup | None:
        """The memory cgroup of PID, one reader shared by every worker in that cgroup."""
        cg = cgroup_of(pid)
        if cg is None:
            return None
        shared = self._cgroups.get(cg.directory)
        if shared is not None:
            cg.close()
            self._cgroups[cg.directory] = (shared[0], shared[1] + 1)
            return shared[0]
        self._cgroups[cg.directory] = (cg, 1)
        return cg

    def _adopt_cgroup(self, cg: MemoryCgroup) -> MemoryCgroup:
        """Register a reader made elsewhere (a launched worker's own cgroup)."""
        self._cgroups[cg.directory] = (cg, 1)
        return cg

    def _release_cgroup(self, cg: MemoryCgroup) -> None:
        entry = self._cgroups.get(cg.directory)
        if entry is None or entry[0] is not cg:
            cg.close()
            return
        if entry[1] <= 1:
            del self._cgroups[cg.directory]
            cg.close()
        else:
            self._cgroups[cg.directory] = (cg, entry[1] - 1)

    def _new_id(self) -> str:
        return f"w{next(self._ids)}"

    def _register(self, w: Worker) -> None:
        self._workers[w.ref.id] = w
        self._live.append(w)
        w.trend = Trend(self.config.trend_window_s, self.config.trend_bucket_s)
        w.override = self.config.override_for(w.ref)
        self._live_by_pid[w.ref.pid] = w
        if not self._swap_enabled:
            w.swap = 0  # no swap configured: nothing can be swapped out
        self._by_identity[(w.ref.pid, w.handle.start_ticks)] = w
        if w.handle.has_pidfd:
            self._selector.register(w.handle.fd, selectors.EVENT_READ, lambda: self._on_exit(w))
        for fd, stream in w.output_fds():
            self._selector.register(
                fd, selectors.EVENT_READ, lambda fd=fd, s=stream: self._on_output(w, fd, s)
            )
        w.refresh_levels(self._thresholds)

    def _child_slot(self, parent_pid: int) -> Slot:
        """The slot of a child the parent replaced (oldest first), else a new one."""
        free = self._free_child_slots.setdefault(parent_pid, [])
        if free:
            return free.pop(0)
        slot = Slot(next(self._slot_numbers), None, RestartPolicy())
        self._slots[slot.number] = slot
        return slot

    def _new_slot(self, spec: LaunchSpec, policy: RestartPolicy) -> Slot:
        spec.argv()  # a bad command is refused before it takes a slot
        slot = Slot(next(self._slot_numbers), spec, policy)
        self._slots[slot.number] = slot
        return slot

    def _launch(self, spec: LaunchSpec, slot: Slot | None = None) -> WorkerRef:
        argv = spec.argv()
        wid = self._new_id()
        env = dict(os.environ)
        env.update(spec.env)
        socket_path = self._heap.socket_path
        if socket_path is not None and spec.heap_reports:
            argv, env = inject_node(argv, env, socket_path, self.config.heap_interval_s)
            env = inject_python(env, socket_path, self.config.heap_interval_s)
        limited = None
        if spec.mem_limit_bytes is not None:
            limited = create_limited_cgroup(spec.mem_limit_bytes, wid)
            argv = limited.wrap_command(argv)
        try:
            popen = spawn(spec, argv, env)
        except Exception:
            if limited is not None:
                limited.remove()
            raise
        handle = ProcessHandle.for_child(popen.pid, use_pidfd=self._use_pidfd)
        ticks = handle.start_ticks
        ref = WorkerRef(
            id=wid,
            pid=popen.pid,
            start_time=procfs.ticks_to_wall(ticks),
            name=spec.display_name(),
            cmd=spec.display_cmd(),
            launched=True,
            slot=slot.number if slot is not None else None,
            life=slot.lives + 1 if slot is not None else 1,
        )
        w = Worker(ref, handle, popen=popen, limited=limited, output_lines=self.config.output_lines)
        w.slot = slot
        if slot is not None:
            slot.lives += 1
        w.node_options = " ".join(filter(None, (os.environ.get("NODE_OPTIONS"), spec.env.get("NODE_OPTIONS"))))
        if limited is not None:
            # systemd-run moves the worker into its scope a moment after the spawn: until the
            # scope is there, the reader is None and the slow tick asks again (never falling
            # back to oomscope's own cgroup, which would mislabel its usage and limit).
            own = limited.reader(popen.pid)
            w.open_readers(lambda _pid: self._adopt_cgroup(own) if own is not None else None)
        else:
            w.open_readers(self._acquire_cgroup)
        self._register(w)
        self._emit(
            WorkerStarted(
                time.time(),
                ref,
                cgroup=w.cgroup.path if w.cgroup is not None else None,
                cgroup_limit=w.cgroup_limit,
            )
        )
        self._announce_own_levels(w)
        return ref

    def _attach(self, pid: int, *, parent_pid: int | None = None) -> WorkerRef:
        if pid == 1:
            raise Refused(
                "PID 1 is the init process: oomscope never attaches to it (terminating it "
                "would take the whole machine or container down)"
            )
        if pid == os.getpid():
            raise Refused(f"PID {pid} is oomscope itself: attach to the workers instead")
        fields = procfs.stat_fields(pid)
        if fields is None:
            raise WorkerGone(f"no process with PID {pid}: check the number (ps -p {pid})")
        if fields[0] in ("Z", "X"):
            raise Refused(
                f"PID {pid} is a zombie: it has already exited and waits for its parent "
                f"(PID {fields[1]}) to collect its status; there is nothing left to watch"
            )
        if int(fields[6]) & _PF_KTHREAD:
            raise Refused(f"PID {pid} is a kernel thread: it has no user memory to watch")
        existing = self._by_identity.get((pid, int(fields[19])))
        if existing is not None and not existing.exited:
            return existing.ref
        handle = ProcessHandle.open(pid, int(fields[19]), use_pidfd=self._use_pidfd)
        try:
            handle.send_signal(0)  # NotPermitted names the owner and what to do
            name = procfs.comm(pid) or "?"
            cmd = procfs.cmdline(pid) or ()
            ref = WorkerRef(
                id=self._new_id(),
                pid=pid,
                start_time=procfs.ticks_to_wall(handle.start_ticks),
                name=name,
                cmd=cmd,
                launched=False,
            )
            if parent_pid is not None:
                slot = self._child_slot(parent_pid)
                ref = replace(ref, slot=slot.number, life=slot.lives + 1)
            w = Worker(ref, handle, parent_pid=parent_pid, output_lines=self.config.output_lines)
            if parent_pid is not None:
                w.slot = slot
                slot.lives += 1
            w.open_readers(self._acquire_cgroup)
        except BaseException:
            handle.close()
            raise
        self._register(w)
        self._emit(
            WorkerAttached(
                time.time(),
                ref,
                parent_pid=parent_pid,
                cgroup=w.cgroup.path if w.cgroup is not None else None,
                cgroup_limit=w.cgroup_limit,
            )
        )
        self._announce_own_levels(w)
        if self.config.inspect_heap:
            if _is_node(pid):
                self._heap.inspect(w)
            else:
                self._emit(Notice(time.time(), "info",
                                  f"PID {pid} is not node: its heap is not inspected (anon RSS stands in)", ref))
        return ref

    def _watch_children(self, pid: int) -> list[WorkerRef]:
        if pid in self._parents:
            return []
        if pid == os.getpid():
            raise Refused(f"PID {pid} is oomscope itself: its children are launched workers already")
        handle = ProcessHandle.open(pid, use_pidfd=self._use_pidfd)
        self._parents[pid] = handle
        if handle.has_pidfd:
            self._selector.register(handle.fd, selectors.EVENT_READ, lambda: self._on_parent_exit(pid))
        return self._attach_children(pid)

    def _attach_children(self, pid: int) -> list[WorkerRef]:
        refs = []
        known = {w.ref.pid for w in self._workers.values() if not w.exited}
        for child in sorted(procfs.children(pid) - known):
            ref = self._try_attach(child, parent_pid=pid)
            if ref is not None:
                refs.append(ref)
        return refs

    def _try_attach(self, pid: int, *, parent_pid: int | None = None) -> WorkerRef | None:
        """Attach found processes; short-lived ones vanishing first are ordinary."""
        try:
            return self._attach(pid, parent_pid=parent_pid)
        except (WorkerGone, Refused):
            return None
        except Error as e:
            self._emit(Notice(time.time(), "warning", f"cannot watch PID {pid}: {e}"))
            return None

    def _on_parent_exit(self, pid: int) -> None:
        handle = self._parents.pop(pid, None)
        if handle is None:
            return
        if handle.has_pidfd:
            self._selector.unregister(handle.fd)
        handle.close()
        self._emit(
            Notice(time.time(), "warning", f"parent PID {pid} has exited: no new children will be picked up")
        )

    def _watch_matching(self, pattern: re.Pattern[str]) -> list[WorkerRef]:
        self._patterns.append(pattern)
        return self._attach_matching()

    def _attach_matching(self) -> list[WorkerRef]:
        refs: list[WorkerRef] = []
        if not self._patterns:
            return refs
        me = os.getpid()
        known = {w.ref.pid for w in self._workers.values() if not w.exited}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            if pid in known or pid == me or pid == 1:
                continue
            name = procfs.comm(pid)
            if name is None:
                continue
            # The command line is read only when the name did not match already: this scan
            # runs over every process twice a second.
            if not any(p.search(name) for p in self._patterns):
                line = " ".join(procfs.cmdline(pid) or ())
                if not any(p.search(line) for p in self._patterns):
                    continue
            fields = procfs.stat_fields(pid)  # one read for state and flags
            if fields is None or fields[0] in ("Z", "X") or int(fields[6]) & _PF_KTHREAD:
                continue
            ref = self._try_attach(pid)
            if ref is not None:
                refs.append(ref)
        return refs

    def _rescan(self) -> None:
        for pid, handle in list(self._parents.items()):
            if not handle.has_pidfd and handle.exited():
                self._on_parent_exit(pid)  # no pidfd to say so at once: a look every rescan
                continue
            self._attach_children(pid)
        self._attach_matching()

    # ----------------------------------------------------------------- output

    def _on_output(self, w: Worker, fd: int, stream: str) -> None:
        lines, eof = w.read_output(fd, stream)
        if eof:
            self._selector.unregister(fd)
            w.close_output(fd)
        if self.config.emit_output:
            now = time.time()
            for line in lines:
                self._emit(Output(now, w.ref, stream, line))

    # --------------------------------------------------------------- sampling

    def _sample(self) -> None:
        cpu0 = time.thread_time()
        now = time.time()
        mono = time.monotonic()
        slow_tick = mono >= self._next_slow
        if slow_tick:
            # Swap (from the costlier status file) and cgroup limits (which rarely change)
            # are read at most once a second; statm and cgroup usage every tick.
            self._next_slow = mono + _SLOW_PERIOD_S
            self._refresh_cgroup_limits()
            self._refresh_comms()
            self._heap.check_stale(self._live, mono)
            self._forecast()
            self._flush_kernel()
            self._records.prune(mono)
            self._exits.prune(mono)
        read_swap = slow_tick and self._swap_enabled
        usage_now: dict[MemoryCgroup, int | None] = {}
        samples: list[Sample] = []
        append = samples.append
        hits: list[tuple[Worker, str, int, int | None]] = []  # level entries that may act
        metric_is_rss = self._thresholds.metric == "rss"
        metric_is_heap = self._thresholds.metric == "heap"
        pread = os.pread
        for w in self._live:
            # The statm read is inlined (see procfs.StatmReader.read): this loop is the
            # engine's hot path, and a method call per worker costs a third of it.
            try:
                fields = pread(w.statm_fd, 96, 0).split(b" ", 3)
                resident = int(fields[1])
            except (OSError, IndexError, ValueError):
                self._suspects.append(w)  # exiting: its pidfd (or _poll_exits) tells the loop
                continue
            if not resident:
                # Dead and not yet reaped (a zombie's statm is all zeros): not a sample of its
                # memory, and a curve must not plunge to 0 at every death. Its pidfd fires next.
                self._suspects.append(w)
                continue
            rss = resident * PAGE_SIZE
            anon = (resident - int(fields[2])) * PAGE_SIZE
            if read_swap and w.statm is not None:
                w.swap = w.statm.read_swap()
            cg = w.cgroup
            ht = w.heap.totals
            # The trend follows the metric the levels use (heap: the reported heap, else anon).
            w.last_value = rss if metric_is_rss else (ht.used if metric_is_heap and ht is not None else anon)
            w.trend.add(mono, w.last_value)
            if cg is None and ht is None and w.rate is None:
                append(Sample(w.ref, rss, anon, w.swap))
            else:
                usage = None
                if cg is not None:
                    # Workers sharing a cgroup (a pool, a container) share one read per tick.
                    if cg in usage_now:
                        usage = usage_now[cg]
                    else:
                        usage = usage_now[cg] = cg.usage_bytes()
                if ht is None:
                    append(Sample(w.ref, rss, anon, w.swap, usage, w.cgroup_limit, None, None, None,
                                  w.rate, w.eta_limit_s, w.eta_crit_s))
                else:
                    append(Sample(w.ref, rss, anon, w.swap, usage, w.cgroup_limit,
                                  ht.used, ht.total, ht.limit, w.rate, w.eta_limit_s, w.eta_crit_s))
            if w.warn_bytes is not None or w.crit_bytes is not None or w.level != NORMAL:
                if metric_is_heap and ht is not None:
                    warn_v, crit_v = heap_values(w.thresholds, ht.used, ht.old_used)
                else:  # without a heap reporter anonymous RSS stands in for the heap
                    warn_v = crit_v = rss if metric_is_rss else anon
                cfg = w.thresholds
                level = w.tracker.update(warn_v, crit_v, w.warn_bytes, w.crit_bytes, mono,
                                         cfg.sustain_s, cfg.hysteresis)
                value = crit_v if level == CRITICAL else warn_v
                if level != w.level:
                    limit_b = w.crit_bytes if level == CRITICAL else w.warn_bytes
                    self._emit(
                        Threshold(now, w.ref, level, self._thresholds.metric, value,
                                  limit_b if level != NORMAL else None, previous=w.level)
                    )
                    if level != NORMAL and LEVEL_RANK[level] > LEVEL_RANK[w.level]:
                        hits.append((w, level, value, limit_b))
                    w.level = level
        if samples:
            self._emit(Samples(now, tuple(samples)))
        self.worker_samples += len(samples)
        self.sampling_cpu_s += time.thread_time() - cpu0
        for w, level, value, limit_b in hits:
            action = w.thresholds.on_crit if level == CRITICAL else w.thresholds.on_warn
            if action == "terminate":
                self._policy_terminate(w, level, value, limit_b)

    def _forecast(self) -> None:
        """Growth rate and time to the critical level and to the cgroup limit, once a second."""
        for w in self._live:
            rate = w.trend.rate_bytes_per_s()
            w.rate = rate
            if rate is None or rate < GROWING_MIN_BYTES_PER_S:
                w.eta_limit_s = w.eta_crit_s = None  # not growing: no time to anything
                continue
            limit = w.cgroup_limit if self._thresholds.metric != "heap" else (
                w.heap.totals.limit if w.heap.totals is not None else w.cgroup_limit)
            w.eta_limit_s = w.trend.eta_s(limit, w.last_value)
            w.eta_crit_s = w.trend.eta_s(w.crit_bytes, w.last_value)

    def _refresh_comms(self) -> None:
        """A launched worker's comm changes when its wrapper execs the program: follow it for
        its first seconds, so a kernel record's comm can be checked against it."""
        for w in self._live:
            if w.comm_checks_left > 0:
                w.comm_checks_left -= 1
                w.comm = procfs.comm(w.ref.pid) or w.comm

    def _refresh_cgroup_limits(self) -> None:
        limits: dict[MemoryCgroup, int | None] = {}
        for w in self._live:
            cg = w.cgroup
            if cg is None and w.limited is not None:
                own = w.limited.reader(w.ref.pid)
                if own is not None:
                    cg = w.cgroup = self._adopt_cgroup(own)
                    w.oom_kills_at_start = cg.oom_kill_count()
            if cg is None:
                continue
            if cg not in limits:
                limits[cg] = cg.effective_limit_bytes()
            if limits[cg] != w.cgroup_limit:
                w.cgroup_limit = limits[cg]
                w.refresh_levels(self._thresholds)

    def _policy_terminate(self, w: Worker, level: str, value: int, limit_b: int | None) -> None:
        if w.terminating_by is not None:
            return
        setting = w.thresholds.crit if level == CRITICAL else w.thresholds.warn
        reason = (
            f"{w.thresholds.metric} {format_size(value)} at or above {level} "
            f"{setting} ({format_size(limit_b)})"
        )
        try:
            self._terminate(w, "policy", False, w.thresholds.grace_s, reason)
        except Error as e:
            self._emit(Notice(time.time(), "warning",
                              f"policy could not terminate {w.ref.name} (PID {w.ref.pid}): {e}", w.ref))

    def _announce_own_levels(self, w: Worker) -> None:
        """A new worker that the settings file gives levels of its own: told like any change,
        right after the worker itself, so the window and a recording know them."""
        if w.override is not None:
            self._emit(LevelsChanged(time.time(), w.ref, w.thresholds))

    def _set_worker_thresholds(self, w: Worker, config: ThresholdConfig | None) -> None:
        if w.exited:
            raise WorkerGone(f"worker {w.ref.id} ({w.ref.name}, PID {w.ref.pid}) has already exited")
        before = w.thresholds if w.override is not None else None
        w.override = config
        w.refresh_levels(self._thresholds)
        # The event says what is in force: an override is compared on the global metric.
        after = w.thresholds if config is not None else None
        if after != before:
            self._emit(LevelsChanged(time.time(), w.ref, after))

    def _set_thresholds(self, config: ThresholdConfig) -> None:
        changed = config != self._thresholds
        self._thresholds = config
        for w in self._workers.values():
            w.refresh_levels(config)
        if changed:
            self._emit(LevelsChanged(time.time(), None, config))

    # ------------------------------------------------------------ terminating

    def _terminate(
        self, w: Worker, by: str, kill_now: bool, grace_s: float | None, reason: str | None
    ) -> None:
        if w.exited:
            raise WorkerGone(
                f"worker {w.ref.id} ({w.ref.name}, PID {w.ref.pid}) has already exited; "
                "nothing was signalled"
            )
        if w.ref.pid in (1, os.getpid()):  # attach refuses these; a second line of defence
            raise Refused(f"oomscope never signals PID {w.ref.pid}")
        sig = signal.SIGKILL if kill_now else signal.SIGTERM
        if w.terminating_by is not None and not kill_now:
            return  # already on its way: a second click must not restart the grace period
        w.handle.send_signal(sig)
        w.terminating_by = w.terminating_by or by
        w.last_signal = sig
        self._emit(Terminate(time.time(), w.ref, by, sig.name, reason))
        if not kill_now:
            grace = self.config.grace_s if grace_s is None else grace_s
            self._at(time.monotonic() + grace, lambda: self._escalate(w, by))

    def _escalate(self, w: Worker, by: str) -> None:
        if w.exited:
            return
        try:
            w.handle.send_signal(signal.SIGKILL)
        except WorkerGone:
            return
        w.last_signal = signal.SIGKILL
        self._emit(Terminate(time.time(), w.ref, by, "SIGKILL", "still running after the grace period"))

    # ------------------------------------------------------------------ exits

    def _poll_exits(self) -> None:
        """Without pidfds nothing wakes the loop when a worker exits: look after each tick.

        A worker whose statm the tick just read as resident is alive (that descriptor, too,
        stops answering once its process is gone), so only the others are looked at; all of
        them once a second all the same, as the statm descriptor is opened by path a moment
        after the handle, not through it.
        """
        mono = time.monotonic()
        if mono >= self._next_full_look:
            self._next_full_look = mono + _SLOW_PERIOD_S
            suspects = self._live
        else:
            suspects = self._suspects
        for w in [w for w in suspects if w.handle.exited()]:
            self._guard(functools.partial(self._on_exit, w))

    def _on_exit(self, w: Worker) -> None:
        if w.handle.has_pidfd:
            self._selector.unregister(w.handle.fd)
        exit_mono = time.monotonic()
        # The kernel logs a kill before the victim is gone: read what it has said so far.
        self._read_kernel()
        returncode = None
        if w.popen is not None:
            w.comm = procfs.comm(w.ref.pid) or w.comm  # a zombie's comm, before the reap below
            # The pidfd (or waitid) said it exited: this wait does not block.
            returncode = w.popen.wait()
            for fd, stream in list(w.output_fds()):
                lines, _ = w.read_output(fd, stream, final=True)
                if self.config.emit_output:
                    now = time.time()
                    for line in lines:
                        self._emit(Output(now, w.ref, stream, line))
                self._selector.unregister(fd)
                w.close_output(fd)
        oom_rose = w.cgroup_oom_kills_rose()
        record = w.oom_record
        shell_137 = returncode == 137
        own_cgroup = w.cgroup.path if (w.limited is not None and w.cgroup is not None) else None
        if record is None and shell_137 and own_cgroup is not None:
            record = self._records.for_cgroup(own_cgroup, exit_mono)
        verdict = classify(
            returncode=returncode,
            terminated_by=w.terminating_by,
            last_signal_sent=w.last_signal,
            kernel_record_line=kill_line(record) if record is not None else None,
            cgroup_oom_kills_rose=oom_rose,
            kernel_log_ok=self.kernel_log_ok,
            # V8 prints "JavaScript heap out of memory" before its stack dump: search all kept lines.
            stderr_tail=w.stderr_lines,
        )
        oom = record if record is not None and verdict.cause == OOM_KILL else None
        # An exit a kernel record could still explain (a SIGKILL, or no status at all, or a
        # shell's 137) stays open for a late record.
        if self.kernel_log_ok and verdict.cause in (SIGNAL, UNKNOWN, EXIT) and \
                (returncode is None or returncode == -signal.SIGKILL or shell_137):
            self._exits.add(ExitNote(w.ref.id, w.ref.pid, w.comm, w.ref.name, own_cgroup,
                                     exit_mono, verdict.cause, shell_137))
        w.exited = True
        tail = tuple(list(w.stderr_lines)[-20:])
        # Decided before the exit is told, so the exit event can say a new life is coming.
        restart_in_s, restart_note = None, None
        if w.slot is not None and w.parent_pid is not None:
            # A pool child's slot waits for the child its parent starts in its place.
            w.slot.deaths[verdict.cause] = w.slot.deaths.get(verdict.cause, 0) + 1
            self._free_child_slots.setdefault(w.parent_pid, []).append(w.slot)
        if w.slot is not None and w.slot.policy.max > 0 and not self._stopping:
            restart_in_s, restart_note = self._consider_restart(w, verdict.cause, verdict.by,
                                                                verdict.exit_code, exit_mono)
        self._emit(
            WorkerExited(
                time.time(),
                w.ref,
                cause=verdict.cause,
                exit_code=verdict.exit_code,
                signal=verdict.signal,
                by=verdict.by,
                oom=oom,
                evidence=verdict.evidence,
                stderr_tail=tail,
                restart_in_s=restart_in_s,
            )
        )
        if restart_note is not None:
            self._emit(restart_note)
        self._heap.worker_exited(w)
        w.close()
        self._live.remove(w)
        if self._live_by_pid.get(w.ref.pid) is w:
            del self._live_by_pid[w.ref.pid]
        self._by_identity.pop((w.ref.pid, w.handle.start_ticks), None)
        if w.cgroup is not None:
            self._release_cgroup(w.cgroup)
            w.cgroup = None
        problem = w.remove_cgroup()
        if problem:
            self._emit(Notice(time.time(), "warning", problem, w.ref))

    def _consider_restart(self, w: Worker, cause: str, by: str | None, exit_code: int | None,
                          exit_mono: float) -> tuple[float | None, Notice | CrashLoop]:
        slot = w.slot
        assert slot is not None
        delay, why = slot.died(cause, by, exit_code, exit_mono - w.started_mono, exit_mono)
        if delay is None and why == slot.stopped_reason:
            return None, slot.crash_loop(time.time(), w.ref, why)
        level = "warning" if slot.stopped_reason is not None else "info"
        note = Notice(time.time(), level, f"{slot.summary()}: {why}", w.ref)
        if delay is None:
            return None, note

        def relaunch() -> None:
            if self._stopping or slot.spec is None:
                return
            if slot.stopped_reason is not None:
                # A late kernel record made the last death part of a crash loop.
                self._emit(RestartCancelled(time.time(), "warning",
                                            f"slot {slot.number}: restart cancelled: {slot.stopped_reason}", w.ref))
                return
            try:
                self._launch(slot.spec, slot)
            except Error as e:
                self._emit(RestartCancelled(time.time(), "error",
                                            f"slot {slot.number}: restart failed: {e}", w.ref))
        self._at(time.monotonic() + delay, relaunch)
        return delay, note

    # ------------------------------------------------------------ introspection

    def stats(self) -> dict[str, Any]:
        """Counters for benchmarks and the status bar (read from any thread; approximate)."""
        return {"worker_samples": self.worker_samples, "sampling_cpu_s": self.sampling_cpu_s}


def kill_line(record: KillRecord) -> str:
    """The line of a record that says who was killed (for evidence and one-line displays)."""
    return record.kill_line()


def _is_node(pid: int) -> bool:
    try:
        node_executable(pid)
    except Error:
        return False
    return True
