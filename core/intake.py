"""Taking workers in: launching a command, attaching to a PID, and the watches that attach
for themselves (a parent's children, processes matching a pattern) at each rescan.

It runs on the engine thread only and reaches the engine through what it is given: the loop's
selector, the event queue, the worker table, the desks and the pool a new worker joins.
"""

from __future__ import annotations

import functools
import os
import re
import selectors
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from . import procfs, processes
from .cgroup.pool import CgroupPool
from .engine_config import EngineConfig
from .errors import Error, Refused, WorkerGone
from .events import Event, Notice, Output, WorkerAttached, WorkerRef, WorkerStarted
from .forecast import Trend
from .heap.inject import inject_node, inject_python
from .heap.inspector import node_executable
from .heap.desk import HeapDesk
from .launch import LaunchSpec, spawn
from .cgroup.limited import create_limited_cgroup
from .pidfd import ProcessHandle
from .procevents import ProcEvent, ProcEvents, Unavailable
from .restart import Slot, Slots
from .sampler import Sampler
from .worker import Worker, WorkerTable

# A child seen at its fork is attached once it has exec'd (so its name and command line are
# its program's, not its parent's copy), or after this long if it never does (a pool's fork).
EXEC_WAIT_S = 0.05
# A child started while all of its parent's slots are held (a gunicorn reload starts the new
# workers, then stops the old) waits this long for a sibling to leave its slot before taking
# a new one. The rescan, which this replaces, attached up to rescan_s late as well.
SLOT_WAIT_S = 0.5
# With process events, the scan of watched parents' children only catches what no event
# announces: a process reparented to a watched parent (a subreaper's orphans).
SAFETY_RESCAN_S = 5.0


@dataclass(slots=True)
class _Newborn:
    """A child of a watched parent held from its fork (its pidfd open, so its exit is seen
    however short its life) until it is attached: what it was is kept, for a child whose
    parent has reaped it before then has no /proc left to read."""

    pid: int
    parent: int
    handle: ProcessHandle
    born: float  # monotonic
    name: str
    cmd: tuple[str, ...]
    execd: bool
    timer_at: float = 0.0


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
        at: Callable[[float, Callable[[], None]], None],
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
        self._at = at
        # Discovery: the kernel's process events where they can be had, else the rescan alone;
        # decided (and told, once) at the first --children-of or --match.
        self._events: ProcEvents | None = None
        self._discovery_chosen = False
        self._discovery_told = False
        self._next_children_scan = 0.0
        self._newborns: dict[int, _Newborn] = {}
        slots.on_child_slot_freed = self._slot_freed

    def close(self) -> None:
        for h in self._parents.values():
            h.close()
        self._parents.clear()
        for nb in self._newborns.values():
            nb.handle.close()
        self._newborns.clear()
        if self._events is not None:
            self._events.close()
            self._events = None

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
        if pid in self._newborns:
            self._settle(pid, force=True)  # a child held since its fork: one worker, not two
        existing = self._table.by_identity.get((pid, int(fields[19])))
        if existing is not None and not existing.exited:
            return existing.ref
        handle = ProcessHandle.open(pid, int(fields[19]), use_pidfd=self._use_pidfd)
        try:
            handle.send_signal(0)  # NotPermitted names the owner and what to do
        except BaseException:
            handle.close()
            raise
        return self._take(handle, procfs.comm(pid) or "?", procfs.cmdline(pid) or (), parent_pid)

    def _take(self, handle: ProcessHandle, name: str, cmd: tuple[str, ...],
              parent_pid: int | None) -> WorkerRef:
        """Make a worker of a process whose handle is open (and now the worker's)."""
        pid = handle.pid
        try:
            ref = WorkerRef(
                id=self._table.new_id(),
                pid=pid,
                start_time=procfs.ticks_to_wall(handle.start_ticks),
                name=name,
                cmd=tuple(cmd),
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
        self._choose_discovery()  # before the scan: a child forked after it is an event
        self._parents[pid] = handle
        if handle.has_pidfd:
            self._selector.register(handle.fd, selectors.EVENT_READ, lambda: self._on_parent_exit(pid))
        return self.attach_children(pid)

    def attach_children(self, pid: int) -> list[WorkerRef]:
        refs = []
        for child in processes.children_of(pid, self._table.known_pids() | self._newborns.keys()):
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
            self._cannot_watch(pid, e)
            return None

    def _cannot_watch(self, pid: int, e: Error) -> None:
        if pid not in self._refusals_told:  # every rescan finds it again: say it once
            self._refusals_told.add(pid)
            self._emit(Notice(time.time(), "warning", f"cannot watch PID {pid}: {e}"))

    def watched_parents(self) -> list[int]:
        """Parents new children may still come from, and those of children about to be
        attached (a parent that has just exited may have left one)."""
        return list(self._parents.keys() | {nb.parent for nb in self._newborns.values()})

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
        self._release_discovery_if_idle()

    def watch_matching(self, pattern: re.Pattern[str]) -> list[WorkerRef]:
        if not self._patterns:
            # The shell and terminal oomscope runs in carry its own command line: a pattern
            # would match them, and terminating them would take oomscope down with them.
            self._ancestors = frozenset(_ancestors(os.getpid()))
        self._choose_discovery()
        self._patterns.append(pattern)
        return self.attach_matching()

    def attach_matching(self) -> list[WorkerRef]:
        refs: list[WorkerRef] = []
        if not self._patterns:
            return refs
        for pid in processes.matching(self._patterns, self._ancestors.union(self._table.known_pids(),
                                                                            self._newborns)):
            ref = self._try_attach(pid)
            if ref is not None:
                refs.append(ref)
        return refs

    def rescan(self) -> None:
        for pid, handle in list(self._parents.items()):
            if not handle.has_pidfd and handle.exited():
                self._on_parent_exit(pid)  # no pidfd to say so at once: a look every rescan
        now = time.monotonic()
        if self._events is None or now >= self._next_children_scan:
            self._next_children_scan = now + SAFETY_RESCAN_S
            self._scan_children()
        # Even with process events: a process that rewrites its command line (setproctitle,
        # as gunicorn and postgres do) tells the kernel nothing.
        self.attach_matching()

    def _scan_children(self) -> None:
        """Children of watched parents found by a look at /proc; after the first attach each
        is taken as a fork seen late."""
        known = self._table.known_pids() | self._newborns.keys()
        for parent in list(self._parents):
            for child in processes.children_of(parent, known):
                self._on_fork(child, parent, execd=True)

    # ------------------------------------------------------ the kernel's process events

    def _choose_discovery(self) -> None:
        """Open the kernel's process events at a discovery watch (again after they were let go
        of); say once which way new processes are found."""
        if self._discovery_chosen:
            return
        self._discovery_chosen = True
        try:
            self._events = ProcEvents.open()
        except Unavailable as e:
            if not self._discovery_told:
                self._discovery_told = True
                self._emit(Notice(time.time(), "warning",
                                  f"process events are not available ({e}): new children and matching "
                                  f"processes are found by a rescan every {self.config.rescan_s:g} s, "
                                  "so a process living less than that may be missed"))
            return
        self._selector.register(self._events.fileno(), selectors.EVENT_READ, self._on_proc_events)
        self._next_children_scan = time.monotonic() + SAFETY_RESCAN_S
        if self._discovery_told:
            return
        self._discovery_told = True
        self._emit(Notice(time.time(), "info",
                          "new processes are found through the kernel's process events (proc "
                          "connector): a child is attached at its fork, a --match process when it "
                          "starts or execs"))

    def _release_discovery_if_idle(self) -> None:
        """Close the process events once nothing is left to discover (every parent gone, no
        pattern, no child held): a long-lived engine holds no socket it does not use; the next
        watch opens it again."""
        if self._parents or self._patterns or self._newborns or not self._discovery_chosen:
            return
        self._discovery_chosen = False
        if self._events is not None:
            self._selector.unregister(self._events.fileno())
            self._events.close()
            self._events = None

    def _on_proc_events(self) -> None:
        assert self._events is not None
        try:
            events, lost = self._events.read()
        except OSError as e:
            self._selector.unregister(self._events.fileno())
            self._events.close()
            self._events = None
            self._emit(Notice(time.time(), "warning",
                              f"process events stopped ({e}): new children and matching processes "
                              f"are found by a rescan every {self.config.rescan_s:g} s from now on"))
            return
        for event in events:
            if not event.thread:
                self._on_proc_event(event)
        if lost:
            # The kernel dropped events (a burst overran the socket): one look finds what they
            # would have said.
            self._emit(Notice(time.time(), "info",
                              "process events were lost in a burst: rescanned for new processes"))
            self._scan_children()
            self.attach_matching()

    def _on_proc_event(self, event: ProcEvent) -> None:
        if event.what == "fork" and event.parent in self._parents:
            self._on_fork(event.pid, event.parent, execd=False)
            return
        if event.what == "exec":
            nb = self._newborns.get(event.pid)
            if nb is not None:
                nb.execd = True
                nb.name = procfs.comm(nb.pid) or nb.name
                nb.cmd = tuple(procfs.cmdline(nb.pid) or nb.cmd)
                self._settle(nb.pid)
                return
            w = self._table.live_by_pid.get(event.pid)
            if w is not None:
                # Its program changed after it was attached: the kernel's kill record names
                # the new one.
                w.comm = procfs.comm(event.pid) or w.comm
                return
        if event.what in ("fork", "exec", "comm") and self._patterns:
            pid = event.pid
            if pid in self._ancestors or pid in self._table.live_by_pid or pid in self._newborns \
                    or pid == os.getpid():
                return
            if processes.matches(pid, self._patterns):
                self._try_attach(pid)

    def _on_fork(self, pid: int, parent: int, *, execd: bool) -> None:
        """Hold a new child of a watched parent from now on; attach it when it is settled."""
        if pid in self._newborns or pid in self._table.live_by_pid:
            return
        fields = procfs.stat_fields(pid)
        if fields is None or processes.is_kernel_thread(fields):
            return  # gone before we looked: nothing can be held of it
        if execd and processes.is_gone(fields):
            return  # a scan found it dead: it was never seen alive, there is nothing to watch
        # Read while it may still be there: a child living milliseconds is reaped soon.
        name, cmd = procfs.comm(pid) or "?", tuple(procfs.cmdline(pid) or ())
        try:
            handle = ProcessHandle.open(pid, int(fields[19]), use_pidfd=self._use_pidfd, reaped_ok=True)
        except (WorkerGone, Refused):
            return
        except Error as e:
            self._cannot_watch(pid, e)
            return
        nb = _Newborn(pid, parent, handle, time.monotonic(), name, cmd, execd)
        self._newborns[pid] = nb
        if handle.has_pidfd:
            # Its exit settles it at once: attached then, its exit is the next loop round's.
            self._selector.register(handle.fd, selectors.EVENT_READ, lambda: self._settle(pid, force=True))
        self._settle(pid)

    def _settle(self, pid: int, *, force: bool = False) -> None:
        """Attach a held child once it is what it will be: exec'd (or not going to), and in the
        slot of the sibling it replaces (or none is leaving); at once (``force``) when it has
        ended or the kernel names it in a kill record."""
        nb = self._newborns.get(pid)
        if nb is None:
            return
        now = time.monotonic()
        if not force and not nb.handle.exited():
            wait_until = 0.0
            if not nb.execd:
                wait_until = nb.born + EXEC_WAIT_S
            if not self._slots.has_free_child_slot(nb.parent) and self._has_live_child(nb.parent):
                wait_until = max(wait_until, nb.born + SLOT_WAIT_S)
            if now < wait_until:
                if nb.timer_at != wait_until:
                    nb.timer_at = wait_until
                    self._at(wait_until, lambda: self._settle(pid))
                return
        del self._newborns[pid]
        if nb.handle.has_pidfd:
            self._selector.unregister(nb.handle.fd)
        try:
            self._take(nb.handle, nb.name, nb.cmd, nb.parent)
        except Error as e:
            self._cannot_watch(pid, e)
        self._release_discovery_if_idle()

    def claim(self, pid: int) -> Worker | None:
        """The worker of a child still held, attached now: the kernel desk has a kill record
        naming it, which must be its own and not a stranger's."""
        if pid not in self._newborns:
            return None
        self._settle(pid, force=True)
        return self._table.live_by_pid.get(pid)

    def _has_live_child(self, parent: int) -> bool:
        return any(w.parent_pid == parent for w in self._table.live)

    def _slot_freed(self, parent: int) -> None:
        """A child of ``parent`` left its slot: the one it waited for, for a held sibling. Run
        after the exit is told, so its ``worker_exited`` comes before the successor's attach."""
        for nb in sorted(self._newborns.values(), key=lambda n: n.born):
            if nb.parent == parent:
                self._at(time.monotonic(), functools.partial(self._settle, nb.pid))

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
