"""Memory cgroups with a hard limit for launched workers (reading any process's cgroup is
core/cgroup/read.py's, re-exported here).

Limiting (:func:`create_limited_cgroup`) tries, in order, cgroup v2, ``systemd-run --user
--scope`` and cgroup v1 (docs/DESIGN.md "Memory limits for launched workers"). The worker enters its
cgroup through a ``/bin/sh`` wrapper that writes its own PID and then ``exec``s the real command,
so the PID the engine holds is the worker's PID and the worker never runs a single instruction
outside the limit. A ``preexec_fn`` would do the same without the shell, but the engine spawns
from a thread, where ``preexec_fn`` is unsafe.
"""

from __future__ import annotations

import errno
import functools
import itertools
import os
import re
import shlex
import time
from collections.abc import Iterator

from .read import (
    MemoryCgroup,
    _hierarchy_path,
    _parse_keyed,
    _parse_limit,
    _v1_memory_mounts,
    _v2_mounts,
    cgroup_of,
)
from .systemd import PROBE_LIMIT_BYTES, scope_command, systemd_run_refusal
from ..errors import BadInput, CgroupUnavailable, Error, NotPermitted
from .high import memory_high_bytes, v1_has_no_high
from ..sizes import Level

__all__ = [
    "LimitedCgroup",
    "MemoryCgroup",
    "cgroup_of",
    "create_limited_cgroup",
    "describe_cgroup_support",
]

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

# Bounded wait for the kernel to finish detaching a reaped task from its cgroup: rmdir answers
# EBUSY until then, and the kernel offers no event to wait for.
_RMDIR_RETRY_S = 1.0


# Distinguishes cgroups created by one oomscope process; the PID distinguishes processes.
_serial = itertools.count(1)


# --------------------------------------------------------------------------------------------
# Making a limited cgroup


_BACKENDS = ("cgroup2", "systemd-run", "cgroup1")


class LimitedCgroup:
    """A memory cgroup oomscope creates for one launched worker, with a hard limit.

    ``limit_bytes`` is the limit the kernel applies: the request rounded down to whole pages.
    ``high_bytes`` is the ``memory.high`` throttle set (v2 and systemd-run only), and
    ``high_refused`` why one asked for was not set (cgroup v1 has none), for the user to be told.
    For ``systemd-run``, ``path`` is ``None`` until :meth:`reader` has seen the worker in its scope.
    """

    backend: str
    limit_bytes: int
    path: str | None
    high_bytes: int | None
    high_refused: str | None

    def __init__(
        self,
        backend: str,
        limit_bytes: int,
        path: str | None,
        *,
        directory: str | None = None,
        unit: str | None = None,
        mount_point: str | None = None,
        high_bytes: int | None = None,
    ) -> None:
        if backend not in _BACKENDS:
            raise ValueError(f"unknown cgroup backend {backend!r}")
        if backend == "systemd-run" and unit is None:
            raise ValueError("a systemd-run cgroup needs its unit name")
        if backend != "systemd-run" and directory is None:
            raise ValueError(f"a {backend} cgroup needs its directory")
        self.backend = backend
        self.limit_bytes = limit_bytes
        self.path = path
        self.directory = directory
        self.unit = unit
        self._mount_point = mount_point
        self.high_bytes = high_bytes
        self.high_refused: str | None = None
        self._removed = False

    def __repr__(self) -> str:
        where = self.unit if self.backend == "systemd-run" else self.directory
        return f"LimitedCgroup({self.backend}, {self.limit_bytes} bytes, {where})"

    def wrap_command(self, argv: list[str]) -> list[str]:
        """An argv that runs ``argv`` inside this cgroup under the same PID.

        The wrapper enters the cgroup first and only then ``exec``s; if it cannot enter, the
        command does not run at all (exit status 125) rather than run without its limit.
        """
        if not argv:
            raise BadInput("empty command: nothing to run under a memory limit")
        if self.backend == "systemd-run":
            assert self.unit is not None
            return scope_command(self.unit, self.limit_bytes, self.high_bytes, argv)
        assert self.directory is not None
        procs = shlex.quote(os.path.join(self.directory, "cgroup.procs"))
        script = f'echo $$ > {procs} || exit 125; exec "$@"'
        return ["/bin/sh", "-c", script, "oomscope-cgroup", *argv]

    def reader(
        self,
        pid: int | None = None,
        *,
        proc_root: str = "/proc",
        v2_root: str | None = None,
    ) -> MemoryCgroup | None:
        """Open the cgroup for sampling; ``None`` if it is gone (or, for systemd-run, not there yet).

        systemd-run needs the worker's ``pid`` (without it: ``None``). The scope exists only once
        systemd-run has registered it, just before it execs the command, so a ``None`` right
        after the spawn means "ask again next tick"; a cgroup that is not the scope is never
        returned in its place. ``proc_root`` and ``v2_root`` as for :func:`cgroup_of`.
        """
        if self._removed:
            return None
        if self.backend != "systemd-run":
            assert self.directory is not None and self.path is not None
            version = 2 if self.backend == "cgroup2" else 1
            try:
                return MemoryCgroup(self.directory, version, self.path, mount_point=self._mount_point)
            except OSError:
                return None
        if pid is None:
            return None
        found = cgroup_of(pid, proc_root=proc_root, v2_root=v2_root)
        if found is None:
            return None
        # Until systemd-run has moved itself into the scope, the pid is still in oomscope's cgroup.
        if found.path.rsplit("/", 1)[-1] != f"{self.unit}.scope":
            found.close()
            return None
        self.path = found.path
        self.directory = found.directory
        return found

    def remove(self) -> None:
        """Remove the cgroup once its worker is gone; idempotent.

        Raises :class:`~oomscope.core.errors.Error` only if processes still hold the cgroup (a
        worker's daemonised child, say), and :class:`NotPermitted` if the system refuses.
        systemd removes a scope by itself when its last process exits.
        """
        if self._removed:
            return
        if self.backend == "systemd-run":
            self._removed = True
            return
        assert self.directory is not None
        _rmdir_cgroup(self.directory)
        self._removed = True
        # The parent is shared with other workers, and with other oomscope processes; rmdir is
        # atomic and refuses a cgroup with children, so trying is safe.
        parent = os.path.dirname(self.directory)
        try:
            os.rmdir(parent)
        except OSError:
            pass


def _rmdir_cgroup(directory: str) -> None:
    deadline = time.monotonic() + _RMDIR_RETRY_S
    pause_s = 0.002
    while True:
        try:
            os.rmdir(directory)
            return
        except FileNotFoundError:
            return
        except PermissionError as e:
            raise NotPermitted(f"cannot remove cgroup {directory}: {e.strerror}; run oomscope as root") from e
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise Error(f"cannot remove cgroup {directory}: {e.strerror}") from e
            if time.monotonic() >= deadline:
                pids = _cgroup_pids(directory)
                raise Error(
                    f"cgroup {directory} still holds processes ({', '.join(pids) or 'none listed'}); "
                    "it was left in place. Stop them, then remove it with rmdir."
                ) from e
        time.sleep(pause_s)
        pause_s = min(pause_s * 2, 0.05)


def _cgroup_pids(directory: str) -> list[str]:
    try:
        with open(os.path.join(directory, "cgroup.procs"), encoding="ascii") as f:
            return f.read().split()
    except OSError:
        return []


def _write(path: str, text: str) -> None:
    # The flags of the shell's "echo N > file": cgroupfs takes the whole value in one write(2).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, text.encode("ascii"))
    finally:
        os.close(fd)


def _read_words(path: str) -> set[str] | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return set(f.read().split())
    except OSError:
        return None


_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def _leaf_names(name: str) -> Iterator[str]:
    """A few candidate names: one process rarely meets a leftover with its own PID, but may."""
    safe = _NAME_UNSAFE.sub("_", name).strip("._") or "worker"
    for _ in range(5):
        yield f"{safe}-{os.getpid()}-{next(_serial)}"


def _describe_oserror(e: OSError, what: str) -> str:
    if e.errno in (errno.EACCES, errno.EPERM):
        return f"{what}: permission denied (run oomscope as root)"
    if e.errno == errno.EROFS:
        return f"{what}: the cgroup filesystem is mounted read-only (in a container: give it a writable cgroup)"
    return f"{what}: {e.strerror or e}"


class _Refused(Exception):
    """One backend cannot be used; the message says why and, where one exists, the fix."""


def _page_floor(limit_bytes: int) -> int:
    return limit_bytes - limit_bytes % _PAGE_SIZE


def _make_child(parent_dir: str, name: str) -> tuple[str, str]:
    """mkdir a fresh child under ``parent_dir`` (created if missing); returns (leaf, directory)."""
    last_error: OSError | None = None
    for leaf in _leaf_names(name):
        directory = os.path.join(parent_dir, leaf)
        try:
            os.makedirs(parent_dir, exist_ok=True)
            os.mkdir(directory)
            return leaf, directory
        except FileExistsError as e:
            last_error = e
        except FileNotFoundError as e:
            # Another oomscope removed the shared parent between our two mkdirs: take it again.
            last_error = e
        except OSError as e:
            raise _Refused(_describe_oserror(e, f"cannot create {directory}")) from e
    assert last_error is not None
    raise _Refused(_describe_oserror(last_error, f"cannot create a cgroup under {parent_dir}"))


def _discard(directory: str) -> None:
    try:
        os.rmdir(directory)
    except OSError:
        pass


def _set_high(directory: str, high_bytes: int) -> str | None:
    """Write ``memory.high`` of a v2 cgroup; None, or why it could not (the limit stays)."""
    path = os.path.join(directory, "memory.high")
    try:
        _write(path, str(high_bytes))
        _verify_limit(path, high_bytes)
    except OSError as e:
        return _describe_oserror(e, f"cannot set {path}")
    except _Refused as e:
        return str(e)
    return None


def _try_cgroup2(limit_bytes: int, name: str, parent: str, v2_root: str | None) -> LimitedCgroup:
    mounts = _v2_mounts("/proc", v2_root)
    if not mounts:
        raise _Refused("no cgroup2 filesystem is mounted")
    mount = mounts[0]
    root = mount.mount_point
    if not os.path.isdir(root):
        raise _Refused(f"{root} does not exist")
    controllers = _read_words(os.path.join(root, "cgroup.controllers"))
    if controllers is None:
        raise _Refused(f"{root} is not a cgroup2 hierarchy (no cgroup.controllers)")
    if "memory" not in controllers:
        raise _Refused(
            f"the memory controller is not available in {root} (it is bound to cgroup v1 here, or "
            "disabled: boot with systemd.unified_cgroup_hierarchy=1 to move it to cgroup v2)"
        )
    subtree = _read_words(os.path.join(root, "cgroup.subtree_control")) or set()
    if "memory" not in subtree:
        raise _Refused(
            f"the memory controller is not enabled for children of {root}; "
            f"enable it with: echo +memory > {os.path.join(root, 'cgroup.subtree_control')}"
        )
    parent_dir = os.path.join(root, parent)
    leaf, directory = _make_child(parent_dir, name)
    try:
        try:
            # Our parent holds no processes, so the no-internal-process rule lets it delegate.
            _write(os.path.join(parent_dir, "cgroup.subtree_control"), "+memory")
        except OSError as e:
            raise _Refused(
                _describe_oserror(e, f"cannot enable the memory controller in {parent_dir}/cgroup.subtree_control")
            ) from e
        applied = _page_floor(limit_bytes)
        try:
            _write(os.path.join(directory, "memory.max"), str(applied))
            if os.path.exists(os.path.join(directory, "memory.swap.max")):
                _write(os.path.join(directory, "memory.swap.max"), "0")
        except OSError as e:
            raise _Refused(_describe_oserror(e, f"cannot set the limit in {directory}")) from e
        _verify_limit(os.path.join(directory, "memory.max"), applied)
    except _Refused:
        _discard(directory)
        _discard(parent_dir)
        raise
    return LimitedCgroup(
        "cgroup2",
        applied,
        _hierarchy_path(mount, parent, leaf),
        directory=directory,
        mount_point=mount.mount_point,
    )


def _try_cgroup1(limit_bytes: int, name: str, parent: str, v1_root: str | None) -> LimitedCgroup:
    mounts = _v1_memory_mounts("/proc", v1_root)
    if not mounts:
        raise _Refused("no cgroup v1 memory hierarchy is mounted")
    mount = mounts[0]
    root = mount.mount_point
    if not os.path.isdir(root):
        raise _Refused(f"{root} does not exist")
    if not os.path.exists(os.path.join(root, "memory.limit_in_bytes")):
        raise _Refused(f"{root} is not a cgroup v1 memory hierarchy (no memory.limit_in_bytes)")
    parent_dir = os.path.join(root, parent)
    leaf, directory = _make_child(parent_dir, name)
    applied = _page_floor(limit_bytes)
    try:
        try:
            # memory first: memsw may never be below it, and both start unlimited.
            _write(os.path.join(directory, "memory.limit_in_bytes"), str(applied))
            memsw = os.path.join(directory, "memory.memsw.limit_in_bytes")
            if os.path.exists(memsw):
                # Without this, the worker's pages would go to swap and the limit would never bite.
                _write(memsw, str(applied))
        except OSError as e:
            raise _Refused(_describe_oserror(e, f"cannot set the limit in {directory}")) from e
        _verify_limit(os.path.join(directory, "memory.limit_in_bytes"), applied)
        _enable_v1_oom_killer(directory)
    except _Refused:
        _discard(directory)
        _discard(parent_dir)
        raise
    return LimitedCgroup("cgroup1", applied, _hierarchy_path(mount, parent, leaf), directory=directory)


def _enable_v1_oom_killer(directory: str) -> None:
    # v1 children inherit oom_kill_disable; with it set, a worker at its limit hangs forever
    # instead of being killed, which is the very event oomscope is there to show.
    control = os.path.join(directory, "memory.oom_control")
    try:
        with open(control, encoding="ascii") as f:
            disabled = _parse_keyed(f.read(), "oom_kill_disable")
    except OSError:
        return
    if disabled:
        try:
            _write(control, "0")
        except OSError as e:
            raise _Refused(_describe_oserror(e, f"cannot re-enable the OOM killer in {control}")) from e


def _verify_limit(path: str, expected: int) -> None:
    try:
        with open(path, encoding="ascii") as f:
            got = _parse_limit(f.read())
    except OSError as e:
        raise _Refused(_describe_oserror(e, f"cannot read back {path}")) from e
    if got != expected:
        raise _Refused(f"{path} reads {got if got is not None else 'unlimited'} after writing {expected}")


def _systemd_unit_name(name: str) -> str:
    return f"oomscope-{next(_leaf_names(name))}"


def create_limited_cgroup(
    limit_bytes: int,
    name: str,
    *,
    v2_root: str | None = None,
    v1_root: str | None = None,
    allow_systemd_run: bool = True,
    parent: str = "oomscope",
    high: Level | None = None,
) -> LimitedCgroup:
    """A new memory cgroup for one worker, limited to ``limit_bytes`` (rounded down to pages).

    ``high`` asks for a ``memory.high`` throttle below the limit (core/cgroup/high.py; BadInput
    if it is not below). cgroup v1 has none: the cgroup is made with its hard limit
    alone and ``high_refused`` says so, as it says why a v2 cgroup refused the write.

    Tries cgroup v2, then ``systemd-run --user --scope``, then cgroup v1; v1 and v2 cgroups go
    under ``parent`` at the hierarchy's top. ``v2_root``/``v1_root`` name the mount points
    (default: from /proc/self/mountinfo). Raises :class:`CgroupUnavailable` listing every backend
    and why it could not be used.
    """
    if isinstance(limit_bytes, bool) or not isinstance(limit_bytes, int) or limit_bytes < _PAGE_SIZE:
        raise BadInput(f"memory limit must be at least one page ({_PAGE_SIZE} bytes), not {limit_bytes!r}")
    if not parent or "/" in parent or parent in (".", ".."):
        raise BadInput(f"cgroup parent must be a single directory name, not {parent!r}")
    applied = _page_floor(limit_bytes)
    high_bytes = memory_high_bytes(high, applied) if high is not None else None
    reasons: list[str] = []
    try:
        limited = _try_cgroup2(limit_bytes, name, parent, v2_root)
    except _Refused as e:
        reasons.append(f"cgroup v2: {e}")
    else:
        if high_bytes is not None:
            # Right after the limit, before the worker runs: no allocation escapes the throttle.
            assert limited.directory is not None
            limited.high_refused = _set_high(limited.directory, high_bytes)
            limited.high_bytes = high_bytes if limited.high_refused is None else None
        return limited
    if allow_systemd_run:
        refusal = systemd_run_refusal(v2_root)
        if refusal is None:
            return LimitedCgroup("systemd-run", applied, None, unit=_systemd_unit_name(name), high_bytes=high_bytes)
        reasons.append(f"systemd-run: {refusal}")
    else:
        reasons.append("systemd-run: not tried (disabled)")
    try:
        limited = _try_cgroup1(limit_bytes, name, parent, v1_root)
    except _Refused as e:
        reasons.append(f"cgroup v1: {e}")
    else:
        if high is not None:
            limited.high_refused = v1_has_no_high(limited.path, applied)
        return limited
    raise CgroupUnavailable("cannot run the worker under a memory limit:\n" + "\n".join(f"  - {r}" for r in reasons))


@functools.cache
def _support_note(v2_root: str | None, v1_root: str | None, allow_systemd_run: bool) -> str | None:
    try:
        probe = create_limited_cgroup(
            PROBE_LIMIT_BYTES,
            "probe",
            v2_root=v2_root,
            v1_root=v1_root,
            allow_systemd_run=allow_systemd_run,
        )
    except CgroupUnavailable as e:
        return str(e)
    try:
        probe.remove()
    except Error:
        pass
    return None


def describe_cgroup_support(
    *,
    v2_root: str | None = None,
    v1_root: str | None = None,
    allow_systemd_run: bool = True,
) -> str | None:
    """For the launch dialog: ``None`` if a memory limit can be set, else why not and what to do.

    The answer comes from making (and removing) a real cgroup once; later calls reuse it.
    """
    return _support_note(v2_root, v1_root, allow_systemd_run)
