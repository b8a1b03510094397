"""Reading a process's memory cgroup: usage, limits and OOM counters, on every sampling tick.

The files are opened once and read with ``os.pread`` at offset 0: cgroupfs regenerates the text
on every read from offset 0, and a removed cgroup answers ``ENODEV`` instead of stale numbers.
Making cgroups with a limit is core/cgroup/limited.py's business.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from types import TracebackType

__all__ = ["MemoryCgroup", "cgroup_of", "memory_cgroup_paths"]

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

# cgroup v1 spells "no limit" as PAGE_COUNTER_MAX pages, i.e. LONG_MAX rounded down to the page
# size (9223372036854771712 with 4 KiB pages, less with 64 KiB pages). No real limit is this big.
_V1_UNLIMITED_FROM = 1 << 62

# Files are a few hundred bytes; memory.stat is the largest we read (a few KiB on big NUMA boxes).
_READ_SIZE = 1 << 16


# --------------------------------------------------------------------------------------------
# Reading


class MemoryCgroup:
    """A memory cgroup opened for reading; values through fds kept open and ``os.pread`` at 0.

    Every reader returns ``None`` once the cgroup is gone (or the value is not there), never
    raises: a cgroup that vanishes with its worker is an ordinary case on the sampling path.
    """

    version: int
    path: str
    directory: str

    def __init__(self, directory: str, version: int, path: str, *, mount_point: str | None = None) -> None:
        """Open the cgroup at ``directory``; raises ``OSError`` if it is not a readable memory cgroup.

        ``mount_point`` bounds the walk over ancestors for :meth:`effective_limit_bytes` (v2).
        """
        if version not in (1, 2):
            raise ValueError(f"cgroup version must be 1 or 2, not {version!r}")
        self.version = version
        self.path = path
        self.directory = directory
        self._fds: list[int] = []
        self._ancestor_max_fds: list[int] = []
        self._usage_fd: int | None = None
        self._limit_fd: int | None = None
        self._oom_fd: int | None = None
        self._stat_fd: int | None = None
        try:
            if version == 1:
                self._usage_fd = self._open("memory.usage_in_bytes")
                self._limit_fd = self._open("memory.limit_in_bytes")
                self._oom_fd = self._open_optional("memory.oom_control")
                self._stat_fd = self._open_optional("memory.stat")
            else:
                self._usage_fd = self._open("memory.current")
                # The root cgroup has memory.current but no memory.max.
                self._limit_fd = self._open_optional("memory.max")
                self._oom_fd = self._open_optional("memory.events")
                self._open_v2_ancestors(mount_point)
        except BaseException:
            self.close()
            raise

    def _open(self, name: str) -> int:
        fd = os.open(os.path.join(self.directory, name), os.O_RDONLY | os.O_CLOEXEC)
        self._fds.append(fd)
        return fd

    def _open_optional(self, name: str) -> int | None:
        try:
            return self._open(name)
        except FileNotFoundError:
            return None

    def _open_v2_ancestors(self, mount_point: str | None) -> None:
        # A container's limit often sits on a parent (the pod), not on the leaf the process is in.
        if mount_point is None:
            return
        top = os.path.normpath(mount_point)
        here = os.path.normpath(self.directory)
        while here != top and here.startswith(top + os.sep):
            here = os.path.dirname(here)
            try:
                fd = os.open(os.path.join(here, "memory.max"), os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            self._fds.append(fd)
            self._ancestor_max_fds.append(fd)

    def __repr__(self) -> str:
        return f"MemoryCgroup(version={self.version}, path={self.path!r}, directory={self.directory!r})"

    def __enter__(self) -> MemoryCgroup:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # Safety net only: the engine closes readers explicitly, but a leaked fd on a removed
        # cgroup would pin kernel memory for as long as oomscope runs.
        fds = getattr(self, "_fds", None)
        if fds:
            self.close()

    @staticmethod
    def _read(fd: int | None) -> str | None:
        if fd is None:
            return None
        try:
            return os.pread(fd, _READ_SIZE, 0).decode("ascii", "replace")
        except OSError:
            # ENODEV after rmdir, EBADF after close: both mean "no value any more".
            return None

    def usage_bytes(self) -> int | None:
        """Memory charged to the cgroup now (v1 ``memory.usage_in_bytes``, v2 ``memory.current``)."""
        return _parse_int(self._read(self._usage_fd))

    def limit_bytes(self) -> int | None:
        """The cgroup's own hard limit; ``None`` when unlimited or gone."""
        return _parse_limit(self._read(self._limit_fd))

    def effective_limit_bytes(self) -> int | None:
        """The smallest hard limit on the cgroup or its ancestors: what the kernel enforces.

        v1 reports it in ``memory.stat`` (``hierarchical_memory_limit``); on v2 the ancestors'
        ``memory.max`` up to the mount point are read. ``None`` when nothing limits it.
        """
        if self.version == 1:
            stat = self._read(self._stat_fd)
            if stat is not None:
                value = _parse_keyed(stat, "hierarchical_memory_limit")
                if value is not None:
                    return None if value >= _V1_UNLIMITED_FROM else value
            return self.limit_bytes()
        limits = [self.limit_bytes()]
        limits.extend(_parse_limit(self._read(fd)) for fd in self._ancestor_max_fds)
        present = [value for value in limits if value is not None]
        return min(present) if present else None

    def oom_kill_count(self) -> int | None:
        """How many processes the OOM killer has killed in this cgroup (``oom_kill`` counter).

        ``None`` when the cgroup is gone, or on v1 kernels older than 4.13, which lack the line.
        """
        text = self._read(self._oom_fd)
        if text is None:
            return None
        return _parse_keyed(text, "oom_kill")

    def close(self) -> None:
        """Close the file descriptors; idempotent. Readers return ``None`` afterwards."""
        fds, self._fds = self._fds, []
        self._ancestor_max_fds = []
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._usage_fd = None
        self._limit_fd = None
        self._oom_fd = None
        self._stat_fd = None


def _parse_int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def _parse_limit(text: str | None) -> int | None:
    if text is None:
        return None
    text = text.strip()
    if text == "max":
        return None
    value = _parse_int(text)
    if value is None or value >= _V1_UNLIMITED_FROM:
        return None
    return value


def _parse_keyed(text: str, key: str) -> int | None:
    """The value of ``key N`` in a flat-keyed cgroup file (memory.events, memory.oom_control, memory.stat)."""
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return _parse_int(value)
    return None


# --------------------------------------------------------------------------------------------
# Where the hierarchies are mounted


@dataclass(frozen=True)
class _Mount:
    root: str  # the cgroup path that appears at mount_point (not "/" inside a container)
    mount_point: str
    fstype: str
    super_options: frozenset[str]


_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape_mountinfo(field: str) -> str:
    # The kernel escapes space, tab, newline and backslash in mountinfo as \ooo.
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def _cgroup_mounts(proc_root: str) -> list[_Mount]:
    try:
        with open(os.path.join(proc_root, "self", "mountinfo"), encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    mounts: list[_Mount] = []
    for line in lines:
        # id parent major:minor root mount-point options [optional fields...] - fstype source super-options
        fields = line.split(" ")
        try:
            sep = fields.index("-", 6)
        except ValueError:
            continue
        if len(fields) < sep + 4 or len(fields) < 5:
            continue
        fstype = fields[sep + 1]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        mounts.append(
            _Mount(
                root=_unescape_mountinfo(fields[3]),
                mount_point=_unescape_mountinfo(fields[4]),
                fstype=fstype,
                super_options=frozenset(fields[sep + 3].split(",")),
            )
        )
    return mounts


def _v1_memory_mounts(proc_root: str, v1_root: str | None) -> list[_Mount]:
    if v1_root is not None:
        return [_Mount("/", v1_root, "cgroup", frozenset({"memory"}))]
    return [m for m in _cgroup_mounts(proc_root) if m.fstype == "cgroup" and "memory" in m.super_options]


def _v2_mounts(proc_root: str, v2_root: str | None) -> list[_Mount]:
    if v2_root is not None:
        return [_Mount("/", v2_root, "cgroup2", frozenset())]
    return [m for m in _cgroup_mounts(proc_root) if m.fstype == "cgroup2"]


def _directory_in(mount: _Mount, cgroup_path: str) -> str | None:
    """Where ``cgroup_path`` (as /proc/PID/cgroup names it) lives under ``mount``, if visible there."""
    parts = [p for p in cgroup_path.split("/") if p]
    if ".." in parts:
        # Outside our cgroup namespace: the kernel shows the way up, and nothing of it is mounted.
        return None
    root_parts = [p for p in mount.root.split("/") if p]
    if parts[: len(root_parts)] != root_parts:
        return None
    return os.path.join(mount.mount_point, *parts[len(root_parts) :])


def _hierarchy_path(mount: _Mount, *relative: str) -> str:
    return "/" + "/".join([p for p in mount.root.split("/") if p] + list(relative))


# --------------------------------------------------------------------------------------------
# Which cgroup a process is in


def _read_proc_cgroup(pid: int, proc_root: str) -> list[tuple[str, list[str], str]] | None:
    try:
        with open(os.path.join(proc_root, str(pid), "cgroup"), encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
    except OSError:
        # ENOENT/ESRCH: the process is gone; EACCES: not ours to read. Both mean "no cgroup".
        return None
    entries: list[tuple[str, list[str], str]] = []
    for line in text.splitlines():
        hierarchy_id, sep1, rest = line.partition(":")
        controllers, sep2, path = rest.partition(":")
        if not sep1 or not sep2:
            continue
        entries.append((hierarchy_id, controllers.split(",") if controllers else [], path))
    return entries


def memory_cgroup_paths(pid: int, *, proc_root: str = "/proc") -> tuple[str | None, str | None] | None:
    """Where PID is: its unified (v2) path and its v1 memory controller's path, from one small
    read of /proc/PID/cgroup; ``None`` once it is gone. Cheap enough for every worker every
    second: the engine compares them with the cgroup it reads, to follow a process moved to
    another cgroup, and opens that one (:func:`cgroup_of`) only then."""
    entries = _read_proc_cgroup(pid, proc_root)
    if entries is None:
        return None
    unified = next((path for hid, controllers, path in entries if hid == "0" and not controllers), None)
    memory = next((path for _hid, controllers, path in entries if "memory" in controllers), None)
    return unified, memory


def cgroup_of(
    pid: int,
    *,
    proc_root: str = "/proc",
    v1_root: str | None = None,
    v2_root: str | None = None,
) -> MemoryCgroup | None:
    """The memory cgroup a running process is in, opened for reading; ``None`` if it has none we can read.

    ``/proc/PID/cgroup`` names the cgroup (``N:memory:/path`` on v1, ``0::/path`` on v2); the mount
    points come from ``/proc/self/mountinfo`` unless ``v1_root``/``v2_root`` name them (then taken
    as mounts of the hierarchy's root). v2 is used only when that cgroup has ``memory.current``:
    on a hybrid machine the unified hierarchy exists without the memory controller.
    """
    entries = _read_proc_cgroup(pid, proc_root)
    if not entries:
        return None
    for hierarchy_id, controllers, path in entries:
        if hierarchy_id == "0" and not controllers:
            for mount in _v2_mounts(proc_root, v2_root):
                directory = _directory_in(mount, path)
                if directory is None or not os.path.exists(os.path.join(directory, "memory.current")):
                    continue
                try:
                    return MemoryCgroup(directory, 2, path, mount_point=mount.mount_point)
                except OSError:
                    continue
    for hierarchy_id, controllers, path in entries:
        if "memory" in controllers:
            for mount in _v1_memory_mounts(proc_root, v1_root):
                directory = _directory_in(mount, path)
                if directory is None:
                    continue
                try:
                    return MemoryCgroup(directory, 1, path)
                except OSError:
                    continue
    return None
