"""Finding processes: the one scan of /proc, with one rule for what a kernel thread is.

The engine's discovery (``--children-of``, ``--match``: their rescans, and the look at a
process the kernel's process events announce) and the Attach dialog's list both go through
here; the GUI never reads /proc itself. A process that vanishes while it is being looked at, or
one whose details this user may not read, is an ordinary case: it is left out, or listed with
what could be read.
"""

from __future__ import annotations

import os
import pwd
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from . import procfs
from .oomlog.correlate import COMM_LEN

_PF_KTHREAD = 0x00200000


def is_kernel_thread(fields: Sequence[str]) -> bool:
    """PF_KTHREAD in the flags of /proc/PID/stat (``fields`` from :func:`procfs.stat_fields`):
    kernel threads have no user memory to watch, whoever their parent is."""
    return bool(int(fields[6]) & _PF_KTHREAD)


def is_gone(fields: Sequence[str]) -> bool:
    """A zombie (or dead) process: exited, only its status is left for its parent."""
    return fields[0] in ("Z", "X")


def all_pids() -> Iterator[int]:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            yield int(entry)


def children_of(pid: int, known: Iterable[int] = ()) -> list[int]:
    """PID's children not in ``known``, in PID order."""
    return sorted(procfs.children(pid) - set(known))


def matching(patterns: Sequence[re.Pattern[str]], known: Iterable[int] = ()) -> list[int]:
    """Running user-space processes whose name or command line matches a pattern, other than
    ``known``, oomscope itself and init."""
    found: list[int] = []
    if not patterns:
        return found
    skip = set(known)
    skip.update((os.getpid(), 1))
    for pid in all_pids():
        if pid not in skip and matches(pid, patterns):
            found.append(pid)
    return found


def matches(pid: int, patterns: Sequence[re.Pattern[str]]) -> bool:
    """Whether PID is a running user-space process whose name or command line matches a
    pattern (False once it is gone): the rule of :func:`matching`, for one process (the
    engine's look at a process that has just forked or exec'd)."""
    name = procfs.comm(pid)
    if name is None:
        return False
    # The command line is read only when the name did not match already: this runs over every
    # process twice a second, and on every fork and exec of the machine.
    if not any(p.search(name) for p in patterns):
        line = " ".join(procfs.cmdline(pid) or ())
        if not any(p.search(line) for p in patterns):
            return False
    fields = procfs.stat_fields(pid)  # one read for state and flags
    return fields is not None and not is_gone(fields) and not is_kernel_thread(fields)


# ------------------------------------------------------------- the Attach dialog


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    pid: int
    ppid: int | None
    name: str
    user: str | None
    rss_bytes: int | None
    cmdline: str
    children: int = 0

    def matches(self, text: str) -> bool:
        """Case-insensitive match on name, PID, user or command line (the dialog's search)."""
        needle = text.strip().lower()
        if not needle:
            return True
        return any(needle in field.lower() for field in (self.name, str(self.pid), self.user or "",
                                                         self.cmdline))


def list_processes(*, include_self: bool = False) -> list[ProcessInfo]:
    """Every user-space process, largest RSS first. Kernel threads are left out."""
    me = os.getpid()
    users: dict[int, str | None] = {}
    rows: list[ProcessInfo] = []
    for pid in all_pids():
        if pid == me and not include_self:
            continue
        fields = procfs.stat_fields(pid)
        if fields is None or is_kernel_thread(fields):
            continue
        cmd = procfs.cmdline(pid) or ()
        uid = procfs.owner_uid(pid)
        if uid is not None and uid not in users:
            users[uid] = _user_name(uid)
        rows.append(ProcessInfo(
            pid=pid,
            ppid=int(fields[1]),
            name=_full_name(procfs.comm(pid) or "?", cmd),
            user=users.get(uid) if uid is not None else None,
            rss_bytes=int(fields[21]) * procfs.PAGE_SIZE,
            cmdline=" ".join(cmd),
        ))
    kids: dict[int, int] = {}
    for row in rows:
        if row.ppid is not None:
            kids[row.ppid] = kids.get(row.ppid, 0) + 1
    out = [ProcessInfo(r.pid, r.ppid, r.name, r.user, r.rss_bytes, r.cmdline, kids.get(r.pid, 0))
           for r in rows]
    out.sort(key=lambda r: -(r.rss_bytes or 0))
    return out


def _full_name(comm: str, cmd: Sequence[str]) -> str:
    """comm, or the program's own name where the kernel cut comm short (as ps and psutil do)."""
    if len(comm) >= COMM_LEN and cmd:
        program = os.path.basename(cmd[0])
        if program.startswith(comm):
            return program
    return comm


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)  # a UID with no passwd entry (a container's user): its number
