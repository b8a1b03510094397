"""The engine's memory cgroup readers: one per cgroup, shared by every worker in it.

Workers of a pool or a container share a cgroup; one reader each would read the same files
once per worker per tick. The pool counts who holds a reader and closes it with the last one.
Engine thread only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from .limited import MemoryCgroup, cgroup_of
from .read import memory_cgroup_paths
from .. import procfs
from ..events import Event, Notice
from ..sizes import format_size
from ..thresholds import ThresholdConfig
from ..worker import Worker


class CgroupPool:
    def __init__(self, emit: Callable[[Event], None] | None = None) -> None:
        self._cgroups: dict[str, tuple[MemoryCgroup, int]] = {}
        self._emit = emit
        # Workers with no memory cgroup we could open: where they were when we tried, so a
        # look is tried again only once they have moved. Keyed by (PID, start ticks).
        self._unreadable: dict[tuple[int, int], tuple[str | None, str | None]] = {}

    def acquire(self, pid: int) -> MemoryCgroup | None:
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

    def adopt(self, cg: MemoryCgroup) -> MemoryCgroup:
        """Register a reader made elsewhere (a launched worker's own cgroup)."""
        self._cgroups[cg.directory] = (cg, 1)
        return cg

    def release(self, cg: MemoryCgroup) -> None:
        entry = self._cgroups.get(cg.directory)
        if entry is None or entry[0] is not cg:
            cg.close()
            return
        if entry[1] <= 1:
            del self._cgroups[cg.directory]
            cg.close()
        else:
            self._cgroups[cg.directory] = (cg, entry[1] - 1)

    def refresh_limits(self, live: Iterable[Worker], thresholds: ThresholdConfig) -> None:
        """Each live worker's cgroup limit, read once per cgroup; a launched worker's own cgroup
        is taken up here once systemd-run has moved it there, and a worker moved to another
        cgroup (by hand, by a container runtime) is read in its new one."""
        live = list(live)
        self._follow_moves(live, thresholds)
        limits: dict[MemoryCgroup, int | None] = {}
        for w in live:
            cg = w.cgroup
            if cg is None and w.limited is not None:
                own = w.limited.reader(w.ref.pid)
                if own is not None:
                    cg = w.cgroup = self.adopt(own)
                    w.oom_kills_at_start = cg.oom_kill_count()
            if cg is None:
                continue
            if cg not in limits:
                limits[cg] = cg.effective_limit_bytes()
            if limits[cg] != w.cgroup_limit:
                w.cgroup_limit = limits[cg]
                w.refresh_levels(thresholds)

    def _follow_moves(self, live: list[Worker], thresholds: ThresholdConfig) -> None:
        unreadable: dict[tuple[int, int], tuple[str | None, str | None]] = {}
        for w in live:
            if w.limited is not None:
                continue  # its own cgroup, which oomscope made for it (followed above)
            paths = memory_cgroup_paths(w.ref.pid)
            if paths is None:
                continue  # gone: its exit is on its way
            old = w.cgroup
            key = (w.ref.pid, w.handle.start_ticks)
            if old is not None:
                if (paths[0] if old.version == 2 else paths[1]) == old.path:
                    continue
            elif self._unreadable.get(key) == paths:
                unreadable[key] = paths
                continue
            if procfs.exiting(w.ref.pid):
                # Looked at only when it seems to have moved (one stat read, not one a worker a
                # second): an exiting process is taken out of its cgroups early and reads as
                # moved to the root, which told a dying worker's move first.
                continue
            new = self.acquire(w.ref.pid)
            if new is None:
                unreadable[key] = paths
            if new is old:
                if new is not None:
                    self.release(new)  # the same cgroup (another hierarchy moved): one hold is enough
                continue
            if old is not None:
                self.release(old)
            w.cgroup = new
            w.cgroup_limit = new.effective_limit_bytes() if new is not None else None
            w.oom_kills_at_start = new.oom_kill_count() if new is not None else None
            w.refresh_levels(thresholds)
            if self._emit is not None and (old is not None or new is not None):
                self._emit(Notice(time.time(), "info", _moved(old, new, w.cgroup_limit), w.ref))
        self._unreadable = unreadable


def _moved(old: MemoryCgroup | None, new: MemoryCgroup | None, limit: int | None) -> str:
    where = f"cgroup {new.path}" if new is not None else "a cgroup oomscope cannot read"
    was = f" (was {old.path})" if old is not None else ""
    if new is None:
        return f"moved to {where}{was}: its cgroup usage and limit are no longer known"
    return (f"moved to {where}{was}: its cgroup usage and limit "
            f"({format_size(limit) if limit is not None else 'none'}) are now that cgroup's")
