"""The engine's memory cgroup readers: one per cgroup, shared by every worker in it.

Workers of a pool or a container share a cgroup; one reader each would read the same files
once per worker per tick. The pool counts who holds a reader and closes it with the last one.
Engine thread only.
"""

from __future__ import annotations

from collections.abc import Iterable

from .limited import MemoryCgroup, cgroup_of
from ..thresholds import ThresholdConfig
from ..worker import Worker


class CgroupPool:
    def __init__(self) -> None:
        self._cgroups: dict[str, tuple[MemoryCgroup, int]] = {}

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
        is taken up here once systemd-run has moved it there."""
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
