"""The kill record: one OOM kill (kernel, systemd-oomd or earlyoom), as the ``oom-log`` contract has it.

Where things live
-----------------
* The contract fields (docs/DESIGN.md, ``oomscope oom-log --json``) are dataclass fields with the
  contract's names; ``to_json()`` returns exactly those, ``None`` for what the log does not hold.
* Time, beyond the contract's ``kernel_time_s`` and ``wall_time`` (ISO-8601), is kept as
  attributes because the corpus compares them and the correlator needs numbers:
  ``wall_time_text`` (the stamp exactly as printed: ``Sun Nov 29 06:20:22 2026``,
  ``May 15 23:09:30``), ``wall_time_source`` (what that stamp really measures: dmesg -T's
  computed time, a journald/syslog receive time, the live clock mapping...), ``wall_time_usec``
  (journal JSON ``__REALTIME_TIMESTAMP``, the receive time), ``monotonic_time_s`` (a CLOCK_MONOTONIC
  stamp that is not a printk stamp: journald's for daemon lines) and ``wall_time_unix`` (Unix
  seconds of ``wall_time``; naive local stamps are read in this machine's time zone).
* ``extra`` holds what the contract has no field for: ``oom_score_adj``, ``pgtables_kb``,
  ``invoker_comm``, ``oom_reaper`` (``{anon_rss_kb, file_rss_kb, shmem_rss_kb,
  kernel_time_s_reaper}`` or ``{unable_to_reap: True, ...}``), ``chosen_pid``/``chosen_comm``/
  ``chosen_score`` (<= 5.0: the process picked before a child was sacrificed), ``oom_group``,
  ``printk_caller``, ``cpuset``, ``memory_usage_kb``/``memory_limit_kb``/``memory_failcnt`` (the
  memcg's ``memory: usage … limit … failcnt …`` line, whose raw text is in ``lines`` with its
  ``memory+swap:``/``kmem:``/``swap:`` siblings), ``systemd_unit``/``unit_result``, daemon details
  (``signal``, ``badness``, ``vmrss_mib``, ``killed_cgroup``, ``pressure_pct``...), and
  provenance notes (``uid_source``, ``comm_source``, ``truncated_killed_line``...).
* ``task_rows`` are the raw task-table rows of the victim pid (the GUI shows them next to the
  ``oom-kill:`` and ``Killed process`` lines); they are also part of ``lines``.

Revisions
---------
A record is emitted as soon as its kill line is read, so a live reader does not wait. Lines that
come later and belong to the same kill (``oom_reaper: reaped process``, ``Tasks in ... memory.oom.group``,
systemd's unit lines, earlyoom's ``process exited after``) produce a new record with the same
``record_id`` and ``revision + 1``; it supersedes the earlier one. Consumers that only care about
the kill itself can ignore records with ``revision > 0``. ``parse_*`` return only the last
revision of each record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from .lines import readable_line

Killer = Literal["kernel-global", "kernel-memcg", "systemd-oomd", "earlyoom"]
KILLERS: Final = ("kernel-global", "kernel-memcg", "systemd-oomd", "earlyoom")

#: The ``oom-log --json`` contract, in its order.
CONTRACT_FIELDS: Final = (
    "killer",
    "pid",
    "comm",
    "uid",
    "total_vm_kb",
    "anon_rss_kb",
    "file_rss_kb",
    "shmem_rss_kb",
    "constraint",
    "oom_memcg",
    "task_memcg",
    "kernel_time_s",
    "wall_time",
    "lines",
)


@dataclass(frozen=True, slots=True)
class KillRecord:
    """One kill decision. Immutable; see the module docstring for revisions and ``extra``."""

    killer: Killer
    pid: int | None = None
    comm: str | None = None
    uid: int | None = None
    total_vm_kb: int | None = None
    anon_rss_kb: int | None = None
    file_rss_kb: int | None = None
    shmem_rss_kb: int | None = None
    constraint: str | None = None
    oom_memcg: str | None = None
    task_memcg: str | None = None
    kernel_time_s: float | None = None
    wall_time: str | None = None
    lines: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)
    history: bool = False
    task_rows: tuple[str, ...] = ()
    wall_time_text: str | None = None
    wall_time_source: str | None = None
    wall_time_usec: int | None = None
    wall_time_unix: float | None = None
    monotonic_time_s: float | None = None
    record_id: int = 0
    revision: int = 0

    def to_json(self) -> dict[str, Any]:
        """The contract object (docs/DESIGN.md ``oomscope oom-log --json``); ``None`` for missing fields."""
        return {
            "killer": self.killer,
            "pid": self.pid,
            "comm": self.comm,
            "uid": self.uid,
            "total_vm_kb": self.total_vm_kb,
            "anon_rss_kb": self.anon_rss_kb,
            "file_rss_kb": self.file_rss_kb,
            "shmem_rss_kb": self.shmem_rss_kb,
            "constraint": self.constraint,
            "oom_memcg": self.oom_memcg,
            "task_memcg": self.task_memcg,
            "kernel_time_s": self.kernel_time_s,
            "wall_time": self.wall_time,
            "lines": list(self.lines),
        }

    def kill_line(self) -> str:
        """The line that says who was killed (for evidence and one-line displays)."""
        for marker in _KILL_MARKERS:
            for line in self.lines:
                if marker in line:
                    return readable_line(line.strip())
        return readable_line(self.lines[-1].strip()) if self.lines else f"{self.killer} killed PID {self.pid}"

    def key_lines(self) -> list[str]:
        """The lines that say what happened: the trigger, the cgroup's ``memory:`` usage against
        its limit (its ``memory+swap:``/``kmem:``/``swap:`` siblings stay in ``lines`` only),
        ``oom-kill:``, ``Killed process``, the reaper, and the victim's task-table rows; raw, in
        the record's order."""
        rows = set(self.task_rows)
        return [line for line in self.lines if line in rows or any(m in line for m in _KEY_MARKERS)]


#: What a kill record holds beyond the contract (``to_json``), by attribute name: what a session
#: file keeps next to the contract columns so that a replay rebuilds the same record.
DETAIL_FIELDS: Final = ("extra", "history", "task_rows", "wall_time_text", "wall_time_source",
                        "wall_time_usec", "wall_time_unix", "monotonic_time_s", "record_id", "revision")

_KILL_MARKERS: Final = ("Killed process", "oom-kill:", "sending SIG", "Killing process", "Killed ", "killing")
_KEY_MARKERS: Final = ("oom-kill:", "Killed process", "invoked oom-killer", "Memory cgroup out of memory",
                       "Out of memory", "oom_reaper", "memory: usage")


def latest_revisions(records: list[KillRecord]) -> list[KillRecord]:
    """Keep the last revision of each record, in the order the records were first emitted."""
    last: dict[int, KillRecord] = {}
    for rec in records:
        prev = last.get(rec.record_id)
        if prev is None or rec.revision >= prev.revision:
            last[rec.record_id] = rec
    return sorted(last.values(), key=lambda r: r.record_id)
