"""What an oomscope that died without cleaning up (``kill -9``, a crash) left behind, found
and cleared by the next one at its start: launched workers' cgroups and heap-socket folders.

A launched worker's cgroup is named ``<worker>-<oomscope's PID>-<serial>`` under the
``oomscope`` parent of the v1 or v2 hierarchy (core/cgroup/limited.py). Its owner is gone when no
process has that PID, or when the process that has it started after the cgroup was made (the
kernel reused the PID). An empty cgroup of a gone owner is removed. One that still holds
processes is only reported: they are someone's workers, and oomscope signals only what the user
chose. Cgroups of a live oomscope are never touched, so two instances can run side by side.
"""

from __future__ import annotations

import os
import re
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass

import shutil
import tempfile

from . import procfs
from .cgroup.read import _v1_memory_mounts, _v2_mounts
from .heap.server import SOCKET_NAME

_OWNED = re.compile(r"^.+-(\d+)-\d+$")
# The heap socket's folder: oomscope-heap-<PID>-<random> (core/heap/server.py); older versions
# wrote no PID, and such a folder is stale when its socket no longer answers.
_HEAP_DIR = re.compile(r"^oomscope-heap-(?:(\d+)-)?[A-Za-z0-9_]+$")
# A folder without a PID is left alone this long: an oomscope may be between mkdir and bind.
_UNNAMED_GRACE_S = 60.0
# A cgroup's directory times come from when it was made; a process started within this much
# after it may still be the one that made it (start times are in clock ticks, 10 ms).
_CLOCK_SLACK_S = 1.0


@dataclass(frozen=True, slots=True)
class Leftover:
    directory: str
    owner_pid: int
    pids: tuple[int, ...]  # processes still in it; empty once removed
    removed: bool


def owner_alive(pid: int, made_at: float) -> bool:
    """Whether the process with ``pid`` may be the one that made something at ``made_at``."""
    ticks = procfs.start_ticks(pid)
    if ticks is None:
        return False
    return procfs.ticks_to_wall(ticks) <= made_at + _CLOCK_SLACK_S


def _pids(directory: str) -> tuple[int, ...] | None:
    try:
        with open(os.path.join(directory, "cgroup.procs"), encoding="ascii") as f:
            return tuple(int(w) for w in f.read().split())
    except (OSError, ValueError):
        return None


def sweep(parent_dirs: Iterable[str]) -> list[Leftover]:
    """Remove the empty cgroups of gone oomscope processes under ``parent_dirs``; report the rest."""
    found: list[Leftover] = []
    for parent in parent_dirs:
        try:
            entries = list(os.scandir(parent))
        except OSError:
            continue
        for entry in entries:
            m = _OWNED.match(entry.name)
            if m is None or not entry.is_dir(follow_symlinks=False):
                continue
            owner = int(m.group(1))
            try:
                made_at = entry.stat(follow_symlinks=False).st_mtime
            except OSError:
                continue
            if owner == os.getpid() or owner_alive(owner, made_at):
                continue
            pids = _pids(entry.path)
            if pids is None:
                continue
            removed = False
            if not pids:
                try:
                    os.rmdir(entry.path)
                    removed = True
                except OSError:
                    continue  # busy for a moment (a task still detaching), or not ours to remove
            found.append(Leftover(entry.path, owner, pids, removed))
    return found


def parent_dirs(parent: str = "oomscope", proc_root: str = "/proc") -> list[str]:
    """Where this machine's oomscope cgroups live: ``parent`` at the top of each hierarchy."""
    out = [os.path.join(m.mount_point, parent) for m in _v2_mounts(proc_root, None)]
    out += [os.path.join(m.mount_point, parent) for m in _v1_memory_mounts(proc_root, None)]
    return [d for d in dict.fromkeys(out) if os.path.isdir(d)]


def _bound_unix_paths() -> set[str] | None:
    """Paths that a live socket is bound to (/proc/net/unix): a socket file whose owner died
    is not among them. Read, not connected to: a connection would make a live oomscope warn
    about a refused peer."""
    try:
        with open("/proc/net/unix", encoding="utf-8", errors="replace") as f:
            next(f, None)
            return {parts[7] for parts in (line.split() for line in f) if len(parts) >= 8}
    except OSError:
        return None


def sweep_heap_dirs(directory: str | None = None) -> list[str]:
    """Remove heap-socket folders of gone oomscope processes (only this user's); their paths."""
    directory = directory or tempfile.gettempdir()
    removed: list[str] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    now = time.time()
    bound: set[str] | None = None
    for entry in entries:
        m = _HEAP_DIR.match(entry.name)
        if m is None:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            continue
        if m.group(1) is not None:
            owner = int(m.group(1))
            if owner == os.getpid() or owner_alive(owner, st.st_mtime):
                continue
        else:
            if now - st.st_mtime < _UNNAMED_GRACE_S:
                continue
            bound = _bound_unix_paths() if bound is None else bound
            if bound is None or os.path.join(entry.path, SOCKET_NAME) in bound:
                continue
        shutil.rmtree(entry.path, ignore_errors=True)
        if not os.path.exists(entry.path):
            removed.append(entry.path)
    return removed
