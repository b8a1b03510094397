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
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from . import leftovers
from .cgroup.pool import CgroupPool
from .errors import BadInput, Error
from .events import Event, Notice, Stopped, WorkerRef
from .engine_config import MIN_INTERVAL_S, EngineConfig
from .exits import Exits
from .heap.desk import HeapDesk
from .intake import Intake
from .oomlog.feed import KernelFeed
from .oomlog.desk import KernelDesk, kill_line
from .launch import LaunchSpec
from .oomlog import SourceState as SourceState_
from .pidfd import unavailable_reason
from .restart import RestartPolicy, Slots
from .sampler import Sampler
from .thresholds import ThresholdConfig
from .worker import WorkerTable

__all__ = ["MIN_INTERVAL_S", "Engine", "EngineConfig", "kill_line"]

T = TypeVar("T")


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
        self.events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._commands: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._selector.register(self._wake_r, selectors.EVENT_READ, self._on_wake)
        self._table = WorkerTable(self.config.exited_kept)
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._stopped = threading.Event()
        # Read once: every handle of this engine takes the same path, and the notice is true.
        problem = unavailable_reason()
        self._use_pidfd = problem is None
        self.pidfd_fallback: str | None = None if problem is None else (
            f"pidfd is not available ({problem}): oomscope checks each process's start time "
            "just before signalling it; a PID reused in that instant could still be hit (an "
            "attached process's: a launched worker's PID stays reserved until oomscope collects "
            f"its exit). Exits are seen at the next sampling tick, up to {self.config.interval_s:g} s "
            "late, not at once"
        )
        # The desks: each holds one part of the engine's work and reaches the rest through
        # what it is given here (all of them run on the engine thread only).
        self._cgroups = CgroupPool(self._emit)
        self._slots = Slots()
        self._kernel = KernelDesk(selector=self._selector, emit=self._emit, table=self._table,
                                  feed_factory=kernel_feed or KernelFeed.open)
        self._heap = HeapDesk(selector=self._selector, emit=self._emit, at=self._at,
                              call_soon=self._call_soon, owner_of=self._table.owner_of,
                              thresholds=lambda: self._sampler.thresholds,
                              interval_s=self.config.heap_interval_s)
        self._exits = Exits(config=self.config, selector=self._selector, emit=self._emit, at=self._at,
                            guard=self._guard, table=self._table, kernel=self._kernel, heap=self._heap,
                            cgroups=self._cgroups, slots=self._slots, stopping=lambda: self._stopping,
                            launch=lambda spec, slot: self._intake.launch(spec, slot))
        self._sampler = Sampler(emit=self._emit, selector=self._selector, interval_s=self.config.interval_s,
                                table=self._table, thresholds=self.config.thresholds,
                                terminate=self._exits.terminate, slow_tick=self._slow_tick)
        self._intake = Intake(config=self.config, selector=self._selector, emit=self._emit,
                              table=self._table, heap=self._heap, cgroups=self._cgroups,
                              slots=self._slots, sampler=self._sampler, use_pidfd=self._use_pidfd,
                              on_exit=self._exits.on_exit, at=self._at)
        self._kernel.claim = self._intake.claim

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
        return self._submit(lambda: self._intake.launch(spec, self._slots.new_slot(spec, restart or RestartPolicy())))

    def attach(self, pid: int, *, parent_pid: int | None = None) -> Future[WorkerRef]:
        return self._submit(lambda: self._intake.attach(pid, parent_pid=parent_pid))

    def watch_children(self, pid: int) -> Future[list[WorkerRef]]:
        return self._submit(lambda: self._intake.watch_children(pid))

    def watch_matching(self, pattern: str) -> Future[list[WorkerRef]]:
        try:
            compiled = re.compile(pattern)
        except re.error as e:
            raise BadInput(f"invalid regular expression {pattern!r}: {e}") from None
        return self._submit(lambda: self._intake.watch_matching(compiled))

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
            lambda: self._exits.terminate(self._table.get(worker_id), by, kill_now, grace_s, reason)
        )

    def inspect_heap(self, worker_id: str) -> Future[None]:
        """Open the inspector of an attached Node.js worker for per-thread heaps (opt-in:
        while it is open any local user can run code in that process; see INSPECTOR_WARNING)."""
        return self._submit(lambda: self._heap.inspect(self._table.get(worker_id)))

    def set_thresholds(self, config: ThresholdConfig) -> Future[None]:
        return self._submit(lambda: self._sampler.set_thresholds(config))

    def set_worker_thresholds(self, worker_id: str, config: ThresholdConfig | None) -> Future[None]:
        """Override warning, critical and the critical action for one worker (None: back to the
        global ones). The metric stays the global one: one plot, one meaning per curve."""
        return self._submit(lambda: self._sampler.set_worker_thresholds(self._table.get(worker_id), config))

    def worker_thresholds(self, worker_id: str) -> Future[ThresholdConfig | None]:
        return self._submit(lambda: self._table.get(worker_id).override)

    def workers(self) -> Future[list[WorkerRef]]:
        return self._submit(lambda: [w.ref for w in self._table.by_id.values() if not w.exited])

    def watched_parents(self) -> Future[list[int]]:
        """The ``watch_children`` parents still alive: new children can come only from them."""
        return self._submit(self._intake.watched_parents)

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
        self._guard(self._clear_leftovers)
        if self.config.kernel_log:
            self._guard(self._kernel.open)
        if self.config.heap_reports:
            self._guard(self._heap.open)
        interval = self.config.interval_s
        next_sample = time.monotonic()
        next_rescan = next_sample + self.config.rescan_s
        next_fast = next_sample
        try:
            while True:
                now = time.monotonic()
                deadline = min(next_sample, next_rescan)
                fast, fast_interval = self._sampler.fast_workers(now)
                if fast:
                    # Workers climbing toward a line are sampled fast between ticks (a wake-up
                    # may have just shortened the interval: do not wait out the longer one).
                    next_fast = min(next_fast, now + fast_interval)
                    deadline = min(deadline, next_fast)
                if self._timers:
                    deadline = min(deadline, self._timers[0][0])
                ready = self._selector.select(max(0.0, deadline - now))
                registered = self._selector.get_map()
                for key, _mask in ready:
                    # An earlier callback of this round may have unregistered this descriptor
                    # (a worker's exit reads its last output and closes its pipes), and its
                    # number may already serve a new registration: that key is not this one.
                    if registered.get(key.fd) is key:
                        self._guard(key.data)
                if self._stopping and not self._table.launched_alive():
                    break
                now = time.monotonic()
                while self._timers and self._timers[0][0] <= now:
                    _, _, fn = heapq.heappop(self._timers)
                    self._guard(fn)
                if fast and next_fast <= now < next_sample:
                    self._guard(functools.partial(self._sampler.sample, [w for w in fast if not w.exited]))
                    next_fast = now + fast_interval
                if now >= next_sample:
                    self._guard(self._sample)
                    next_fast = now + fast_interval
                    if not self._use_pidfd:
                        self._guard(self._poll_exits)
                    self._sampler.suspects.clear()
                    next_sample += interval
                    if next_sample <= now:  # fell behind (suspend, overload): skip, don't burst
                        next_sample = now + interval
                if now >= next_rescan:
                    self._guard(self._rescan)
                    next_rescan = now + self.config.rescan_s
        finally:
            self._shutdown()

    def _clear_leftovers(self) -> None:
        """What an oomscope that died uncleanly left (core/leftovers.py), said once at start."""
        cgroups = leftovers.sweep(leftovers.parent_dirs())
        folders = leftovers.sweep_heap_dirs()
        removed = [c for c in cgroups if c.removed]
        if removed or folders:
            self._emit(Notice(time.time(), "info",
                              f"removed what oomscope processes that are gone left behind: "
                              f"{len(removed)} empty cgroup(s), {len(folders)} heap-socket folder(s)"))
        for c in cgroups:
            if not c.removed:
                self._emit(Notice(time.time(), "warning",
                                  f"cgroup {c.directory} of oomscope PID {c.owner_pid}, which is gone, "
                                  f"still holds PID {', '.join(map(str, c.pids))}: workers it launched "
                                  "outlived it; oomscope does not signal them (kill them by PID if they "
                                  "are not wanted)"))

    def _guard(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:
            self._emit(Notice(time.time(), "error", "internal error: " + traceback.format_exc()))

    def _begin_stop(self) -> None:
        self._stopping = True
        if not self.config.terminate_launched_on_stop:
            return
        self._exits.terminate_launched()

    def _shutdown(self) -> None:
        for w in list(self._table.by_id.values()):
            if not w.exited:
                w.close()
        self._intake.close()
        self._kernel.close()
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

    # ------------------------------------------------------------ the desks' work

    @property
    def thresholds(self) -> ThresholdConfig:
        """The thresholds in force (an immutable value: safe to read from any thread)."""
        return self._sampler.thresholds

    @property
    def kernel_log_ok(self) -> bool:
        return self._kernel.ok

    def _sample(self) -> None:
        self._sampler.sample()

    def _slow_tick(self, mono: float) -> None:
        """What the sampling tick does at most once a second besides reading swap."""
        self._cgroups.refresh_limits(self._table.live, self._sampler.thresholds)
        self._sampler.rewatch()
        self._sampler.refresh_comms()
        self._heap.check_stale(self._table.live, mono)
        self._sampler.forecast()
        self._kernel.flush()
        self._kernel.prune(mono)

    def _poll_exits(self) -> None:
        self._exits.poll(self._sampler.suspects)

    def _rescan(self) -> None:
        self._intake.rescan()

    # ------------------------------------------------------------ introspection

    @property
    def sampling_cpu_s(self) -> float:
        return self._sampler.sampling_cpu_s

    @property
    def worker_samples(self) -> int:
        return self._sampler.worker_samples

    def stats(self) -> dict[str, Any]:
        """Counters for benchmarks and the status bar (read from any thread; approximate)."""
        return {"worker_samples": self.worker_samples, "sampling_cpu_s": self.sampling_cpu_s,
                "kernel_wakeups": self._sampler.kernel_wakeups,
                # What the engine holds on to (issue #14: bounded under churn).
                "workers_held": len(self._table.by_id), "workers_live": len(self._table.live),
                "exited_held": len(self._table.exited), "exited_forgotten": self._table.forgotten}
