"""How workers end inside the engine: terminating (a grace period, then SIGKILL), seeing an
exit (a pidfd, or a look each tick without one), deciding its cause with the kernel's records,
and restarting a launched worker in its slot.

It runs on the engine thread only and reaches the engine through what it is given: the loop's
selector, the event queue, timers, the worker table, the kernel and heap desks, the cgroup pool.
"""

from __future__ import annotations

import functools
import os
import selectors
import signal
import time
from collections.abc import Callable

from . import procfs
from .causes import EXIT, OOM_KILL, SIGNAL, UNKNOWN, Verdict, classify, command_not_found
from .cgroup.pool import CgroupPool
from .oomlog.correlate import ExitNote
from .engine_config import EngineConfig
from .errors import Error, Refused, WorkerGone
from .events import CrashLoop, Event, Notice, Output, RestartCancelled, Terminate, WorkerExited
from .heap.desk import HeapDesk
from .oomlog.desk import KernelDesk, kill_line
from .launch import LaunchSpec
from .restart import Slot, Slots
from .sampler import SLOW_PERIOD_S, drop_watch
from .pidfd import ExitStatus
from .worker import Worker, WorkerTable

# How long an attached process's exit waits for its parent to collect it (only then does the
# kernel hand its status to pidfd holders), and how often it looks meanwhile.
REAP_WAIT_S = 1.0
_REAP_LOOK_S = 0.01


class Exits:
    def __init__(
        self,
        *,
        config: EngineConfig,
        selector: selectors.BaseSelector,
        emit: Callable[[Event], None],
        at: Callable[[float, Callable[[], None]], None],
        guard: Callable[[Callable[[], None]], None],
        table: WorkerTable,
        kernel: KernelDesk,
        heap: HeapDesk,
        cgroups: CgroupPool,
        slots: Slots,
        stopping: Callable[[], bool],
        launch: Callable[[LaunchSpec, Slot], object],
    ) -> None:
        self.config = config
        self._selector = selector
        self._emit = emit
        self._at = at
        self._guard = guard
        self._table = table
        self._kernel = kernel
        self._heap = heap
        self._cgroups = cgroups
        self._slots = slots
        self._stopping = stopping
        self._launch = launch
        self._next_full_look = 0.0

    # ------------------------------------------------------------ terminating

    def terminate(
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

    def terminate_launched(self) -> None:
        """At stop: every launched worker still running gets its SIGTERM and grace period."""
        for w in list(self._table.by_id.values()):
            if w.launched and not w.exited and w.terminating_by is None:
                try:
                    self.terminate(w, "oomscope-exit", False, None, "oomscope is stopping")
                except Error:
                    pass

    # ------------------------------------------------------------------ exits

    def poll(self, suspects: list[Worker]) -> None:
        """Without pidfds nothing wakes the loop when a worker exits: look after each tick.

        A worker whose statm the tick just read as resident is alive (that descriptor, too,
        stops answering once its process is gone), so only the others are looked at; all of
        them once a second all the same, as the statm descriptor is opened by path a moment
        after the handle, not through it.
        """
        mono = time.monotonic()
        if mono >= self._next_full_look:
            self._next_full_look = mono + SLOW_PERIOD_S
            suspects = self._table.live
        for w in [w for w in suspects if w.handle.exited()]:
            self._guard(functools.partial(self.on_exit, w))

    def on_exit(self, w: Worker) -> None:
        if w.handle.has_pidfd:
            self._selector.unregister(w.handle.fd)
        drop_watch(self._selector, w)
        exit_mono = time.monotonic()
        self._conclude(w, exit_mono, exit_mono + REAP_WAIT_S)

    def _attached_status(self, w: Worker, exit_mono: float, reap_by: float) -> ExitStatus | None:
        """An attached process's exit status where the kernel gives it; None: look again soon
        (its parent has not collected it yet)."""
        if not w.handle.has_pidfd:
            return ExitStatus(None, reason="without a pidfd only its real parent can read its exit status")
        status = w.handle.exit_status()
        if not status.waiting:
            return status
        mono = time.monotonic()
        # A kernel kill record names it already: that decides, the status would add nothing.
        if mono < reap_by and w.oom_record is None:
            self._at(mono + _REAP_LOOK_S, lambda: self._conclude(w, exit_mono, reap_by))
            return None
        fields = procfs.stat_fields(w.ref.pid)  # a zombie: its PID is still its own
        parent = f" (PID {fields[1]})" if fields is not None else ""
        return ExitStatus(None, reason=f"its parent{parent} has not collected its exit status yet "
                                       "(the kernel tells others only then)")

    def _conclude(self, w: Worker, exit_mono: float, reap_by: float) -> None:
        """Decide and tell the cause of an ended worker."""
        if w.exited:
            return
        # The kernel logs a kill before the victim is gone: read what it has said so far.
        self._kernel.read()
        returncode = None
        no_status = None
        if w.popen is None:
            status = self._attached_status(w, exit_mono, reap_by)
            if status is None:
                return
            returncode, no_status = status.returncode, status.reason
        else:
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
            record = self._kernel.records.for_cgroup(own_cgroup, exit_mono)
        kernel_log_ok = self._kernel.ok
        verdict = classify(
            returncode=returncode,
            terminated_by=w.terminating_by,
            last_signal_sent=w.last_signal,
            kernel_record_line=kill_line(record) if record is not None else None,
            cgroup_oom_kills_rose=oom_rose,
            kernel_log_ok=kernel_log_ok,
            # V8 prints "JavaScript heap out of memory" before its stack dump: search all kept lines.
            stderr_tail=w.stderr_lines,
            no_status=no_status,
        )
        oom = record if record is not None and verdict.cause == OOM_KILL else None
        # An exit a kernel record could still explain (a SIGKILL, or no status at all, or a
        # shell's 137) stays open for a late record.
        if kernel_log_ok and verdict.cause in (SIGNAL, UNKNOWN, EXIT) and \
                (returncode is None or returncode == -signal.SIGKILL or shell_137):
            self._kernel.exits.add(ExitNote(w.ref, w.slot, w.comm, own_cgroup,
                                            exit_mono, verdict.cause, shell_137))
        w.exited = True
        tail = tuple(list(w.stderr_lines)[-20:])
        # Decided before the exit is told, so the exit event can say a new life is coming.
        restart_in_s, restart_note = None, None
        if w.slot is not None and w.parent_pid is not None:
            self._slots.child_died(w.parent_pid, w.slot, verdict.cause)
        if w.slot is not None and w.slot.policy.max > 0 and not self._stopping():
            restart_in_s, restart_note = self._consider_restart(w, verdict, exit_mono)
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
        self._table.gone(w)
        if w.cgroup is not None:
            self._cgroups.release(w.cgroup)
            w.cgroup = None
        problem = w.remove_cgroup()
        if problem:
            self._emit(Notice(time.time(), "warning", problem, w.ref))

    # ---------------------------------------------------------------- restarts

    def _consider_restart(self, w: Worker, verdict: Verdict,
                          exit_mono: float) -> tuple[float | None, Notice | CrashLoop]:
        slot = w.slot
        assert slot is not None
        delay, why = slot.died(verdict.cause, verdict.by, verdict.exit_code, exit_mono - w.started_mono,
                               exit_mono, not_found=command_not_found(verdict.evidence))
        if delay is None and why == slot.stopped_reason:
            return None, slot.crash_loop(time.time(), w.ref, why)
        level = "warning" if slot.stopped_reason is not None else "info"
        note = Notice(time.time(), level, f"{slot.summary()}: {why}", w.ref)
        if delay is None:
            return None, note

        def relaunch() -> None:
            if self._stopping() or slot.spec is None:
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


class MissingCommands:
    """Passes every event on, and keeps the launched commands whose first life ended with
    "command not found": ``watch`` exits 2 when that is every command it launched."""

    def __init__(self, printer: Callable[[Event], None]) -> None:
        self._printer = printer
        self.slots: dict[int | None, str] = {}  # slot: the evidence that said so

    def __call__(self, event: Event) -> None:
        if isinstance(event, WorkerExited) and event.worker.launched and event.worker.life == 1:
            said = [line for line in event.evidence if command_not_found((line,))]
            if said:
                self.slots[event.worker.slot] = said[0]
        self._printer(event)

    def none_started(self, launched: int) -> str | None:
        """What to tell when none of the ``launched`` commands could start; None otherwise."""
        if launched == 0 or len(self.slots) < launched:
            return None
        return "no worker could be started: " + "; ".join(self.slots.values())
