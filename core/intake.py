"""Taking workers in: launching a command, attaching to a PID, and the watches that attach
for themselves (a parent's children, processes matching a pattern) at each rescan.

It runs on the engine thread only and reaches the engine through what it is given: the loop's
selector, the event queue, the worker table, the desks and the pool a new worker joins.
"""

from __future__ import annotations

import os
import re
import selectors
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from . import procfs, processes
from .cgroup.pool import CgroupPool
from .errors import Error, Refused, WorkerGone
from .events import Event, Notice, Output, WorkerAttached, WorkerRef, WorkerStarted
from .forecast import Trend
from .heap.inject import inject_node, inject_python
from .heap.inspector import node_executable
from .heap.desk import HeapDesk
from .launch import LaunchSpec, spawn
from .cgroup.limited import create_limited_cgroup
from .pidfd import ProcessHandle
from .restart import Slot, Slots
from .sampler import Sampler
from .worker import Worker, WorkerTable

if TYPE_CHECKING:
    from .engine import EngineConfig


class Intake:
    def __init__(
        self,
        *,
        config: EngineConfig,
        selector: selectors.BaseSelector,
        emit: Callable[[Event], None],
        table: WorkerTable,
        heap: HeapDesk,
        cgroups: CgroupPool,
        slots: Slots,
        sampler: Sampler,
        use_pidfd: bool,
        on_exit: Callable[[Worker], None],
    ) -> None:
        self.config = config
        self._selector = selector
        self._emit = emit
        self._table = table
        self._heap = heap
        self._cgroups = cgroups
        self._slots = slots
        self._sampler = sampler
        self._use_pidfd = use_pidfd
        self._on_exit = on_exit
        self._parents: dict[int, ProcessHandle] = {}
        self._patterns: list[re.Pattern[str]] = []
        self._high_refusal_told = False
        self._refusals_told: set[int] = set()  # PIDs whose "cannot watch" was said: once each
        self._ancestors: frozenset[int] = frozenset()

    def close(self) -> None:
        for h in self._parents.values():
            h.close()
        self._parents.clear()

    def register(self, w: Worker) -> None:
        self._table.add(w)
        w.trend = Trend(self.config.trend_window_s, self.config.trend_bucket_s,
                        process_start_mono=_start_mono(w.handle.start_ticks),
                        start_up_s=self.config.trend_start_up_s)
        w.override = self.config.override_for(w.ref)
        if not self._sampler.swap_enabled:
            w.swap = 0  # no swap configured: nothing can be swapped out
        if w.handle.has_pidfd:
            self._selector.register(w.handle.fd, selectors.EVENT_READ, lambda: self._on_exit(w))
        for fd, stream in w.output_fds():
            self._selector.register(
                fd, selectors.EVENT_READ, lambda fd=fd, s=stream: self.on_output(w, fd, s)
            )
        w.refresh_levels(self._sampler.thresholds)
        self._sampler.watch_own_cgroup(w)

    def launch(self, spec: LaunchSpec, slot: Slot | None = None) -> WorkerRef:
        argv = spec.argv()
        wid = self._table.new_id()
        env = dict(os.environ)
        env.update(spec.env)
        socket_path = self._heap.socket_path
        if socket_path is not None and spec.heap_reports:
            argv, env = inject_node(argv, env, socket_path, self.config.heap_interval_s)
            env = inject_python(env, socket_path, self.config.heap_interval_s)
        limited = None
        if spec.mem_limit_bytes is not None:
            limited = create_limited_cgroup(spec.mem_limit_bytes, wid, high=self.config.mem_high)
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
            w.open_readers(lambda _pid: self._cgroups.adopt(own) if own is not None else None)
        else:
            w.open_readers(self._cgroups.acquire)
        self.register(w)
        self._emit(
            WorkerStarted(
                time.time(),
                ref,
                cgroup=w.cgroup.path if w.cgroup is not None else None,
                cgroup_limit=w.cgroup_limit,
            )
        )
        self._sampler.announce_own_levels(w)
        if limited is not None and limited.high_refused is not None and not self._high_refusal_told:
            self._high_refusal_told = True  # once: every launch (and restart) would repeat it
            self._emit(Notice(time.time(), "warning", limited.high_refused, ref))
        return ref

    def attach(self, pid: int, *, parent_pid: int | None = None) -> WorkerRef:
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
        if processes.is_gone(fields):
            raise Refused(
                f"PID {pid} is a zombie: it has already exited and waits for its parent "
                f"(PID {fields[1]}) to collect its status; there is nothing left to watch"
            )
        if processes.is_kernel_thread(fields):
            raise Refused(f"PID {pid} is a kernel thread: it has no user memory to watch")
        existing = self._table.by_identity.get((pid, int(fields[19])))
        if existing is not None and not existing.exited:
            return existing.ref
        handle = ProcessHandle.open(pid, int(fields[19]), use_pidfd=self._use_pidfd)
        try:
            handle.send_signal(0)  # NotPermitted names the owner and what to do
            name = procfs.comm(pid) or "?"
            cmd = procfs.cmdline(pid) or ()
            ref = WorkerRef(
                id=self._table.new_id(),
                pid=pid,
                start_time=procfs.ticks_to_wall(handle.start_ticks),
                name=name,
                cmd=cmd,
                launched=False,
            )
            if parent_pid is not None:
                slot = self._slots.child_slot(parent_pid)
                ref = replace(ref, slot=slot.number, life=slot.lives + 1)
            w = Worker(ref, handle, parent_pid=parent_pid, output_lines=self.config.output_lines)
            if parent_pid is not None:
                w.slot = slot
                slot.lives += 1
            w.open_readers(self._cgroups.acquire)
        except BaseException:
            handle.close()
            raise
        self.register(w)
        self._emit(
            WorkerAttached(
                time.time(),
                ref,
                parent_pid=parent_pid,
                cgroup=w.cgroup.path if w.cgroup is not None else None,
                cgroup_limit=w.cgroup_limit,
            )
        )
        self._sampler.announce_own_levels(w)
        if self.config.inspect_heap:
            if _is_node(pid):
                self._heap.inspect(w)
            else:
                self._emit(Notice(time.time(), "info",
                                  f"PID {pid} is not node: its heap is not inspected (anon RSS stands in)", ref))
        return ref

    def watch_children(self, pid: int) -> list[WorkerRef]:
        if pid in self._parents:
            return []
        if pid == os.getpid():
            raise Refused(f"PID {pid} is oomscope itself: its children are launched workers already")
        handle = ProcessHandle.open(pid, use_pidfd=self._use_pidfd)
        self._parents[pid] = handle
        if handle.has_pidfd:
            self._selector.register(handle.fd, selectors.EVENT_READ, lambda: self._on_parent_exit(pid))
        return self.attach_children(pid)

    def attach_children(self, pid: int) -> list[WorkerRef]:
        refs = []
        for child in processes.children_of(pid, self._table.known_pids()):
            ref = self._try_attach(child, parent_pid=pid)
            if ref is not None:
                refs.append(ref)
        return refs

    def _try_attach(self, pid: int, *, parent_pid: int | None = None) -> WorkerRef | None:
        """Attach found processes; short-lived ones vanishing first are ordinary."""
        try:
            return self.attach(pid, parent_pid=parent_pid)
        except (WorkerGone, Refused):
            return None
        except Error as e:
            if pid not in self._refusals_told:  # every rescan finds it again: say it once
                self._refusals_told.add(pid)
                self._emit(Notice(time.time(), "warning", f"cannot watch PID {pid}: {e}"))
            return None

    def watched_parents(self) -> list[int]:
        return list(self._parents)

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

    def watch_matching(self, pattern: re.Pattern[str]) -> list[WorkerRef]:
        if not self._patterns:
            # The shell and terminal oomscope runs in carry its own command line: a pattern
            # would match them, and terminating them would take oomscope down with them.
            self._ancestors = frozenset(_ancestors(os.getpid()))
        self._patterns.append(pattern)
        return self.attach_matching()

    def attach_matching(self) -> list[WorkerRef]:
        refs: list[WorkerRef] = []
        if not self._patterns:
            return refs
        for pid in processes.matching(self._patterns, self._ancestors.union(self._table.known_pids())):
            ref = self._try_attach(pid)
            if ref is not None:
                refs.append(ref)
        return refs

    def rescan(self) -> None:
        for pid, handle in list(self._parents.items()):
            if not handle.has_pidfd and handle.exited():
                self._on_parent_exit(pid)  # no pidfd to say so at once: a look every rescan
                continue
            self.attach_children(pid)
        self.attach_matching()

    # ----------------------------------------------------------------- output

    def on_output(self, w: Worker, fd: int, stream: str) -> None:
        if not w.reads(fd):
            return  # its exit has read the rest and closed the pipe already
        lines, eof = w.read_output(fd, stream)
        if eof:
            self._selector.unregister(fd)
            w.close_output(fd)
        if self.config.emit_output:
            now = time.time()
            for line in lines:
                self._emit(Output(now, w.ref, stream, line))


def _ancestors(pid: int) -> list[int]:
    """``pid`` and its parent, grandparent, … up to init (which is left out)."""
    found: list[int] = []
    while pid > 1 and pid not in found:
        found.append(pid)
        fields = procfs.stat_fields(pid)
        if fields is None:
            break
        pid = int(fields[1])
    return found


def _is_node(pid: int) -> bool:
    try:
        node_executable(pid)
    except Error:
        return False
    return True


def _start_mono(start_ticks: int) -> float | None:
    """When the worker's process started, on the monotonic clock; None when unknown (0: its
    stat could not be read as it was opened)."""
    return procfs.start_mono(start_ticks) if start_ticks else None
