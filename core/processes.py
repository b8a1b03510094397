"""Processes a user may attach to: the Attach dialog's list (name, PID, user, RSS, command).

psutil serves discovery (DESIGN.md "Sampling"); the GUI never reads /proc itself. A process
that vanishes while it is being listed, or one whose details this user may not read, is an
ordinary case: it is left out, or listed with what could be read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import psutil  # type: ignore[import-untyped]

_KTHREADD_PID = 2


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
    rows: list[ProcessInfo] = []
    attrs = ["pid", "ppid", "name", "username", "memory_info", "cmdline"]
    for proc in psutil.process_iter(attrs, ad_value=None):
        info: dict[str, Any] = proc.info
        pid = int(info["pid"])
        ppid = info.get("ppid")
        if pid == _KTHREADD_PID or ppid == _KTHREADD_PID or (pid == me and not include_self):
            continue
        mem = info.get("memory_info")
        cmd = info.get("cmdline")
        rows.append(ProcessInfo(
            pid=pid,
            ppid=int(ppid) if ppid is not None else None,
            name=str(info.get("name") or "?"),
            user=str(info["username"]) if info.get("username") is not None else None,
            rss_bytes=int(mem.rss) if mem is not None else None,
            cmdline=" ".join(str(c) for c in cmd) if cmd else "",
        ))
    kids: dict[int, int] = {}
    for row in rows:
        if row.ppid is not None:
            kids[row.ppid] = kids.get(row.ppid, 0) + 1
    out = [ProcessInfo(r.pid, r.ppid, r.name, r.user, r.rss_bytes, r.cmdline, kids.get(r.pid, 0))
           for r in rows]
    out.sort(key=lambda r: -(r.rss_bytes or 0))
    return out
