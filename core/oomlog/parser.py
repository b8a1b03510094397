"""Report assembly: ``KernelLine`` objects in, ``KillRecord`` objects out, one line at a time.

Longer than the project's ~500 lines on purpose: it is one state machine over one report, and
its states share the record being built; split, each part would need all of it.

The same code serves live streams and files. A record leaves ``feed()`` as soon as its kill line
has been read (the ``Killed process`` line, an earlyoom ``sending SIGTERM``/``Killing process``
line, a systemd-oomd ``Killed``/``Marked`` line), never later, so live latency is one line.
Two cases wait, briefly:

* an ``oom-kill:`` summary is followed by its ``Killed process`` line in the same report; if that
  line never comes (a cut log), the summary alone becomes the record when the next report
  starts, another summary or another kill line arrives, 10 s of kernel time or 5000 lines pass,
  or on ``flush()``;
* systemd-oomd's ``oomd attempting to kill <pid>`` lines are completed by the ``Killed ...`` /
  ``Marked ...`` line that follows them at once; without it they are emitted on the next other
  oomd line or on ``flush()``.

What arrives after a record was emitted and belongs to it (reaper lines, memory.oom.group,
systemd unit lines, earlyoom's escalation/exit/dry-run lines) produces a *revision* of it: a new
record with the same ``record_id`` and ``revision + 1`` (see ``records.py``).

The kernel report is followed as a small state machine (tests/data/oom-corpus/FORMATS.md section 1): ``invoked
oom-killer`` (or the first line of a report seen without it: memcg usage, the task-table header)
opens it; the task-table rows are kept by pid until the kill line, which closes the table; the
report's context (invoker, memcg, oom group) then still applies to kill lines that follow within
10 s (memory.oom.group kills, bursts), until the next report starts.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Final

from .clock import KernelClock
from .lines import DAEMON_IDENTS, IDENT_KERNEL, KernelLine
from .messages import (
    RE_CHOSEN,
    RE_CPUSET,
    RE_EO_ESCALATE,
    RE_EO_EXITED,
    RE_EO_KILL_FAILED,
    RE_EO_KILLING_12,
    RE_EO_KILLING_2018,
    RE_EO_KILLING_OLD,
    RE_EO_SENDING,
    RE_EO_SENDING_LOOSE,
    RE_INVOKED,
    RE_KERNEL_VERSION,
    RE_OOM_GROUP,
    RE_OOMD_ATTEMPT,
    RE_OOMD_CONTEXT,
    RE_OOMD_KILL,
    RE_OOMD_PRESSURE,
    RE_OOMD_SWAP,
    RE_OOMD_SWAP_OLD,
    RE_REAPED,
    RE_SHARING,
    RE_STACK_HEADER,
    RE_STACK_HEADER_OLD,
    RE_TASK_IN,
    RE_UNABLE_TO_REAP,
    RE_UNIT_LINE,
    RE_UNIT_OOMD,
    RE_UNIT_RESULT,
    RE_USAGE,
    UNIT_OOM_KILLED,
    USAGE_PREFIXES,
    KilledLine,
    Summary,
    TaskRow,
    header_numeric_columns,
    parse_killed,
    parse_row,
    parse_summary,
    to_float,
)
from .records import Killer, KillRecord

REPORT_GAP_S: Final = 10.0  # a report is printed within ms; 10 s of silence ends it
REPORT_GAP_LINES: Final = 5000  # the same for logs without kernel times
REVISION_WINDOW_S: Final = 60.0  # reaper lines come ms (4.x/5.x) to ~2 s (6.x) after the kill
REVISION_WINDOW_LINES: Final = 5000
_RECENT: Final = 256  # records that may still receive a revision

_KERNELISH: Final = (None, IDENT_KERNEL)


@dataclass(slots=True)
class _Report:
    """One kernel OOM report being read."""

    start_n: int
    last_n: int
    last_t: float | None
    table_open: bool = True
    numeric_columns: int | None = None
    rows: dict[int, TaskRow] = field(default_factory=dict)
    memcg_hint: bool | None = None
    task_in: tuple[str, str] | None = None
    task_in_used: bool = False
    oom_group: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    key_lines: list[tuple[int, str]] = field(default_factory=list)
    chosen: tuple[str, int, str, int, int, str] | None = None  # prefix, pid, comm, score, n, raw
    summary: tuple[Summary, KernelLine, int] | None = None
    kills: int = 0


@dataclass(slots=True)
class _OomdState:
    attempts: list[tuple[int, str, KernelLine, int]] = field(default_factory=list)
    pressure: tuple[str, float | None, float | None, str] | None = None
    pressure_raw: str | None = None


@dataclass(slots=True)
class _EarlyoomState:
    dry_run: bool = False
    attempts: dict[int, int] = field(default_factory=dict)
    last_record_id: int | None = None


class OomParser:
    """Incremental OOM-report parser. ``feed()`` never raises on any line content.

    ``clock`` converts kernel times to wall time for lines that carry no wall time of their own;
    give it only for lines of *this* boot (live sources).
    """

    def __init__(self, clock: KernelClock | None = None) -> None:
        self._clock = clock
        self._report: _Report | None = None
        self._oomd: dict[int | None, _OomdState] = {}
        self._earlyoom: dict[int | None, _EarlyoomState] = {}
        self._recent: deque[tuple[KillRecord, int]] = deque(maxlen=_RECENT)
        self._next_id = 1
        #: Lines seen, including lines a reader skipped without decoding (it adds them here).
        self.seen = 0
        #: True when a line without OOM wording cannot change anything (no task table being read,
        #: nothing waiting): a reader may then skip such lines without decoding them. Kept as an
        #: attribute, updated after every fed line, because readers test it for every line.
        self.idle = True
        #: Lines that matched an OOM-related message (for telling a log from an unrelated file).
        self.matched = 0

    # --- public -------------------------------------------------------------------------------
    def _compute_idle(self) -> bool:
        rep = self._report
        if rep is not None and (rep.table_open or rep.summary is not None):
            return False
        return not any(s.attempts for s in self._oomd.values())

    def feed(self, line: KernelLine) -> list[KillRecord]:
        self.seen += 1
        out: list[KillRecord] = []
        try:
            self._feed(line, out)
        except (ValueError, IndexError, OverflowError, KeyError):
            # A mangled line that slipped past a pattern (e.g. a number too large for what it
            # feeds): drop the line, keep the parser; never let one bad line stop a live reader.
            pass
        self.idle = self._compute_idle()
        return out

    def flush(self) -> list[KillRecord]:
        """End of input: emit what was waiting (a summary without its kill line, oomd attempts)."""
        out: list[KillRecord] = []
        self._close_report(out)
        for key, state in list(self._oomd.items()):
            self._oomd_emit(key, state, None, out)
        self.idle = True
        return out

    # --- dispatch -----------------------------------------------------------------------------
    def _feed(self, line: KernelLine, out: list[KillRecord]) -> None:
        rep = self._report
        if rep is not None and self._report_expired(rep, line):
            self._close_report(out)
            rep = None
        ident = line.ident
        if ident in _KERNELISH:
            if self._kernel(line, line.message, out):
                self.matched += 1
                return
        if ident is None or ident in DAEMON_IDENTS:
            if self._daemon(line, line.message, ident, out):
                self.matched += 1

    def _report_expired(self, rep: _Report, line: KernelLine) -> bool:
        t = line.kernel_time_s
        if t is not None and rep.last_t is not None:
            return t - rep.last_t > REPORT_GAP_S or t < rep.last_t - 1.0
        return self.seen - rep.last_n > REPORT_GAP_LINES

    def _touch(self, rep: _Report, line: KernelLine) -> None:
        rep.last_n = self.seen
        if line.kernel_time_s is not None:
            rep.last_t = line.kernel_time_s

    def _open_report(self, line: KernelLine, out: list[KillRecord]) -> _Report:
        self._close_report(out)
        rep = _Report(start_n=self.seen, last_n=self.seen, last_t=line.kernel_time_s)
        self._report = rep
        return rep

    def _close_report(self, out: list[KillRecord]) -> None:
        rep = self._report
        if rep is not None:
            self._emit_pending_summary(rep, out)
        self._report = None

    # --- kernel -------------------------------------------------------------------------------
    def _kernel(self, line: KernelLine, msg: str, out: list[KillRecord]) -> bool:
        # Lines whose kind shows at their start come first: a comm (in a summary, a reaper line,
        # a stack header) may contain "Killed process" and must not hide its own line.
        if msg[:1] == "[":
            return self._table_line(line, msg, out)
        if msg.startswith("oom-kill:"):
            return self._summary(line, msg, out)
        if msg.startswith("oom_reaper: "):
            return self._reaper(line, msg, out)
        if msg.startswith("Task in "):
            return self._task_in(line, msg, out)
        if msg.startswith("Tasks in "):
            return self._oom_group(line, msg, out)
        if "Killed process" in msg and self._killed(line, msg, out):
            return True
        if "ill process" in msg and self._chosen_or_sharing(line, msg, out):
            return True
        if "invoked oom-killer" in msg:
            return self._invoked(line, msg, out)
        rep = self._report
        if msg.startswith(USAGE_PREFIXES):
            return self._usage(line, msg, out)
        if msg.startswith("Memory cgroup stats for"):
            if rep is None or not rep.table_open:
                rep = self._open_report(line, out)
            rep.memcg_hint = True
            self._touch(rep, line)
            return True
        if msg.startswith("Tasks state"):
            if rep is None or not rep.table_open:
                rep = self._open_report(line, out)
            self._touch(rep, line)
            return True
        if rep is not None and rep.table_open:
            self._touch(rep, line)
            return self._report_context(rep, line, msg)
        return False

    def _task_in(self, line: KernelLine, msg: str, out: list[KillRecord]) -> bool:
        m = RE_TASK_IN.match(msg)
        if m is None:
            return False
        rep = self._report
        if rep is None or not rep.table_open:
            rep = self._open_report(line, out)
        rep.task_in = (m.group(1), m.group(2))
        rep.memcg_hint = True
        self._key(rep, line)
        return True

    def _usage(self, line: KernelLine, msg: str, out: list[KillRecord]) -> bool:
        """``memory: usage …, limit …, failcnt …`` and its siblings: the cgroup was at its limit.

        The lines are the report's evidence that a limit was hit (and which one), so every kill
        of the report keeps them; the ``memory`` counter's numbers also go into ``extra``.
        """
        rep = self._report
        if rep is None or not rep.table_open:
            if not msg.startswith("memory: "):
                return False  # the counters after ``memory:`` belong to a report already open
            rep = self._open_report(line, out)
        rep.memcg_hint = True
        m = RE_USAGE.match(msg)
        if m is None:
            self._touch(rep, line)
            return True
        if m.group(1) == "memory":
            rep.context.update(memory_usage_kb=int(m.group(2)), memory_limit_kb=int(m.group(3)),
                               memory_failcnt=int(m.group(4)))
        self._key(rep, line)
        return True

    def _report_context(self, rep: _Report, line: KernelLine, msg: str) -> bool:
        """Lines inside an open report that add context but never make a record."""
        if msg.startswith("CPU: ") or msg.startswith("Pid: "):
            m = RE_STACK_HEADER.match(msg)
            if m is not None:
                rep.context["invoker_tid"] = int(m.group(3))
            else:
                m = RE_STACK_HEADER_OLD.match(msg)
                if m is None:
                    return False
                rep.context["invoker_tid"] = int(m.group(1))
            v = RE_KERNEL_VERSION.search(msg, m.end())
            if v is not None:
                rep.context["kernel_version"] = v.group(1)
            return True
        if msg.startswith("Mem-Info"):
            if rep.memcg_hint is None:
                rep.memcg_hint = False
            return True
        if " cpuset=" in msg:
            m = RE_CPUSET.match(msg)
            if m is not None:
                rep.context["cpuset"] = m.group(2)
                return True
        return False

    def _invoked(self, line: KernelLine, msg: str, out: list[KillRecord]) -> bool:
        m = RE_INVOKED.match(msg)
        comm = m.group(1) if m is not None else msg.split(" invoked oom-killer", 1)[0]
        rep = self._open_report(line, out)
        rep.context["invoker_comm"] = comm
        if m is not None:
            flags = f"({m.group(3)})" if m.group(3) is not None else ""
            rep.context["gfp_mask"] = m.group(2) + flags
            rep.context["order"] = int(m.group(5))
        self._key(rep, line)
        return True

    def _table_line(self, line: KernelLine, msg: str, out: list[KillRecord]) -> bool:
        rep = self._report
        if msg.startswith("[ ") and " pid " in msg[:12]:
            cols = header_numeric_columns(msg)
            if cols is None:
                return False
            if rep is None or not rep.table_open:
                rep = self._open_report(line, out)
            rep.numeric_columns = cols
            self._key(rep, line)
            return True
        if rep is None or not rep.table_open:
            return False
        row = parse_row(msg, line.raw, rep.numeric_columns)
        self._touch(rep, line)
        if row is None:
            return False
        rep.rows[row.pid] = row
        return True

    def _summary(self, line: KernelLine, msg: str, out: list[KillRecord]) -> bool:
        s = parse_summary(msg)
        if s is None:
            return False
        rep = self._report
        if rep is None or rep.kills > 0:
            # One summary per report: after a kill it starts the next report (header rate-limited
            # away or cut from the excerpt).
            rep = self._open_report(line, out)
        else:
            self._emit_pending_summary(rep, out)
        rep.summary = (s, line, self.seen)
        rep.memcg_hint = s.oom_memcg is not None or (False if s.global_oom else rep.memcg_hint)
        self._touch(rep, line)
        return True

    def _chosen_or_sharing(self, line: KernelLine, msg: str, out: list[KillRecord]) -> bool:
        m = RE_CHOSEN.match(msg)
        if m is not None:
            rep = self._report
            if rep is None or rep.kills > 0:
                rep = self._open_report(line, out)  # one "Kill process" line per report
            rep.chosen = (m.group(1), int(m.group(2)), m.group(3), int(m.group(4)), self.seen, line.raw)
            rep.memcg_hint = m.group(1).startswith("Memory cgroup")
            self._touch(rep, line)
            return True
        m = RE_SHARING.match(msg)
        if m is None:
            return False
        # 3.10: processes sharing the victim's mm get SIGKILL as well; they are kills too.
        rep = self._report
        victim = self._latest(lambda r: r.killer.startswith("kernel"))
        killer: Killer = victim.killer if victim is not None else "kernel-global"
        extra: dict[str, Any] = {"sharing_mm_with": victim.pid if victim is not None else None}
        if rep is not None:
            extra.update(rep.context)
        rec = self._new_record(
            line, killer=killer, pid=int(m.group(1)), comm=m.group(2), extra=extra,
            lines=(line.raw,), task_rows=(),
        )
        out.append(rec)
        return True

    def _killed(self, line: KernelLine, msg: str, out: list[KillRecord]) -> bool:
        k = parse_killed(msg)
        if k is None:
            return False
        rep = self._report
        if rep is None:
            rep = self._open_report(line, out)
            rep.table_open = False
        pending = rep.summary
        summary: Summary | None = None
        summary_key: tuple[int, str] | None = None
        if pending is not None:
            chosen_pid = rep.chosen[1] if rep.chosen is not None else None
            if pending[0].pid == k.pid or pending[0].pid == chosen_pid:
                # 5.0 printed the summary for the chosen process and could still sacrifice a
                # child: then the summary's memcgs describe this kill, its pid/uid do not.
                summary, summary_key = pending[0], (pending[2], pending[1].raw)
                rep.summary = None
            else:
                self._emit_pending_summary(rep, out)
        rep.table_open = False
        self._touch(rep, line)
        out.append(self._kernel_record(rep, line, k, summary, summary_key))
        return True

    def _kernel_record(
        self, rep: _Report, line: KernelLine, k: KilledLine | None, summary: Summary | None,
        summary_key: tuple[int, str] | None,
    ) -> KillRecord:
        pid = k.pid if k is not None else (summary.pid if summary is not None else None)
        extra: dict[str, Any] = dict(rep.context)
        if rep.kills > 0:
            # A later kill of the same report (memory.oom.group, bursts): the invoker is shared,
            # the stack header's thread is not this victim's business either way.
            extra.pop("invoker_tid", None)
        key_lines = list(rep.key_lines)
        # Which process did the kernel pick (<= 5.0 "Kill process ... or sacrifice child")?
        chosen = rep.chosen
        prefix = k.prefix if k is not None else None
        if chosen is not None:
            extra["chosen_pid"] = chosen[1]
            extra["chosen_comm"] = chosen[2]
            extra["chosen_score"] = chosen[3]
            key_lines.append((chosen[4], chosen[5]))
            if prefix is None:
                prefix = chosen[0]
            rep.chosen = None
        # Killer: the kill line's own prefix (5.1+) or the Kill line's; then the summary line
        # (oom_memcg= vs global_oom: constraint= was wrong for memcg OOMs in 5.0-5.2); then hints.
        killer: Killer
        if prefix is not None:
            killer = "kernel-memcg" if prefix.startswith("Memory cgroup") else "kernel-global"
            if "oom_kill_allocating_task" in prefix:
                extra["oom_kill_allocating_task"] = True
        elif summary is not None and (summary.oom_memcg is not None or summary.global_oom):
            killer = "kernel-memcg" if summary.oom_memcg is not None else "kernel-global"
        elif rep.memcg_hint is not None:
            killer = "kernel-memcg" if rep.memcg_hint else "kernel-global"
        else:
            killer = "kernel-global"
            extra["killer_inferred"] = True
        comm = k.comm if k is not None else None
        uid = k.uid if k is not None else None
        row = rep.rows.get(pid) if pid is not None else None
        if row is None and pid is not None:
            row = next((r for r in rep.rows.values() if r.tgid == pid), None)
        same = summary is not None and summary.pid == pid
        if summary is not None and not same:
            extra["summary_pid"] = summary.pid
        if comm is None:
            if summary is not None and same and summary.comm is not None:
                comm = summary.comm
                extra["comm_source"] = "oom-kill summary line"
            elif row is not None and row.name is not None:
                comm = row.name
                extra["comm_source"] = "task table row (Killed line is cut)"
        if uid is None:
            if summary is not None and same:
                uid = summary.uid
                extra["uid_source"] = "oom-kill summary line"
            elif row is not None and row.uid is not None:
                uid = row.uid
                extra["uid_source"] = "task table row"
        if k is not None:
            if k.oom_score_adj is not None:
                extra["oom_score_adj"] = k.oom_score_adj
            if k.pgtables_kb is not None:
                extra["pgtables_kb"] = k.pgtables_kb
                if k.pgtables_in_bytes:
                    extra["pgtables_printed_in_bytes"] = True
            if not k.complete:
                extra["truncated_killed_line"] = True
        else:
            extra["evidence"] = "oom-kill summary line only"
        if row is not None and (k is None or k.oom_score_adj is None) and row.oom_score_adj is not None:
            extra["oom_score_adj_task_table"] = row.oom_score_adj
        task_memcg: str | None = None
        oom_memcg: str | None = None
        constraint: str | None = None
        if summary is not None:
            task_memcg, oom_memcg, constraint = summary.task_memcg, summary.oom_memcg, summary.constraint
            for key in ("cpuset", "mems_allowed", "nodemask"):
                value = getattr(summary, key)
                if value is not None:
                    extra[key] = value
        elif rep.task_in is not None and not rep.task_in_used:
            task_memcg, oom_memcg = rep.task_in
            rep.task_in_used = True
        elif rep.task_in is not None:
            oom_memcg = rep.task_in[1]
        if rep.oom_group is not None:
            extra["oom_group"] = rep.oom_group
        if line.caller is not None:
            extra["printk_caller"] = line.caller
        task_rows: tuple[str, ...] = ()
        if row is not None:
            task_rows = (row.raw,)
            key_lines.append((-1, row.raw))  # placed by sort below: rows precede the kill lines
        if summary_key is not None:
            key_lines.append(summary_key)
        if k is not None:
            key_lines.append((self.seen, line.raw))
        lines = _ordered(key_lines)
        rep.kills += 1
        return self._new_record(
            line, killer=killer, pid=pid, comm=comm, uid=uid,
            total_vm_kb=k.total_vm_kb if k is not None else None,
            anon_rss_kb=k.anon_rss_kb if k is not None else None,
            file_rss_kb=k.file_rss_kb if k is not None else None,
            shmem_rss_kb=k.shmem_rss_kb if k is not None else None,
            constraint=constraint, oom_memcg=oom_memcg, task_memcg=task_memcg,
            extra=extra, lines=lines, task_rows=task_rows,
        )

    def _emit_pending_summary(self, rep: _Report, out: list[KillRecord]) -> None:
        pending = rep.summary
        if pending is None:
            return
        rep.summary = None
        s, sline, n = pending
        out.append(self._kernel_record(rep, sline, None, s, (n, sline.raw)))

    def _reaper(self, line: KernelLine, msg: str, out: list[KillRecord]) -> bool:
        m = RE_REAPED.match(msg)
        info: dict[str, Any]
        if m is not None:
            pid = int(m.group(1))
            info = {
                "anon_rss_kb": int(m.group(3)),
                "file_rss_kb": int(m.group(4)),
                "shmem_rss_kb": int(m.group(5)) if m.group(5) is not None else None,
                "kernel_time_s_reaper": line.kernel_time_s,
            }
        else:
            m = RE_UNABLE_TO_REAP.match(msg)
            if m is None:
                return False
            pid = int(m.group(1))
            info = {"unable_to_reap": True, "kernel_time_s_reaper": line.kernel_time_s}
        rec = self._latest(lambda r: r.pid == pid and r.killer.startswith("kernel"), line)
        if rec is not None:
            out.append(self._revise(rec, line, {"oom_reaper": info}))
        return True

    def _oom_group(self, line: KernelLine, msg: str, out: list[KillRecord]) -> bool:
        m = RE_OOM_GROUP.match(msg)
        if m is None:
            return False
        rep = self._report
        if rep is None:
            rep = self._open_report(line, out)
            rep.table_open = False
        rep.oom_group = m.group(1)
        rep.memcg_hint = True
        self._touch(rep, line)
        self._key(rep, line)
        # The line follows the first victim's kill line; that record learns it now.
        if rep.kills > 0:
            rec = self._latest(lambda r: r.killer.startswith("kernel"), line)
            if rec is not None and "oom_group" not in rec.extra:
                out.append(self._revise(rec, line, {"oom_group": rep.oom_group}))
        return True

    def _key(self, rep: _Report, line: KernelLine) -> None:
        """Remember a line every kill record of this report shows (invoked, Task in, header...)."""
        self._touch(rep, line)
        if len(rep.key_lines) < 16:
            rep.key_lines.append((self.seen, line.raw))

    # --- user-space killers -------------------------------------------------------------------
    def _daemon(self, line: KernelLine, msg: str, ident: str | None, out: list[KillRecord]) -> bool:
        if ident in (None, "earlyoom") and self._earlyoom_line(line, msg, out):
            return True
        if ident in (None, "systemd-oomd") and self._oomd_line(line, msg, out):
            return True
        if ident in (None, "systemd") and self._unit_line(line, msg, out):
            return True
        return False

    def _earlyoom_line(self, line: KernelLine, msg: str, out: list[KillRecord]) -> bool:
        key = line.ident_pid
        state = self._earlyoom.get(key)
        if state is None:
            state = self._earlyoom[key] = _EarlyoomState()
        c0 = msg[:1]
        pid: int | None = None
        comm: str | None = None
        uid: int | None = None
        extra: dict[str, Any] = {}
        if c0 == "s" and msg.startswith("sending "):
            m = RE_EO_SENDING.match(msg)
            if m is not None:
                pid, comm = int(m.group(2)), m.group(4)
                uid = int(m.group(3)) if m.group(3) is not None else None
                extra = {"signal": _signal(m.group(1)), "badness": int(m.group(5)), "vmrss_mib": int(m.group(6))}
            else:
                m = RE_EO_SENDING_LOOSE.match(msg)
                if m is None:
                    return msg.startswith("sending SIG")  # the "sending SIGTERM when mem <=" banner
                pid = int(m.group(2))
                extra = {"signal": _signal(m.group(1)), "truncated_kill_line": True}
        elif c0 in "kK" and "illing process" in msg:
            m = RE_EO_KILLING_2018.match(msg)
            if m is not None:
                pid, comm = int(m.group(3)), m.group(1)
                extra = {"signal": int(m.group(2)), "badness": int(m.group(4)), "vmrss_mib": int(m.group(5))}
            else:
                m = RE_EO_KILLING_12.match(msg)
                if m is not None:
                    pid, comm = int(m.group(1)), m.group(2)
                    extra = {"signal": int(m.group(3)), "badness": int(m.group(4)), "vmrss_mib": int(m.group(5))}
                else:
                    m = RE_EO_KILLING_OLD.match(msg)
                    if m is None:
                        return False
                    pid, comm = int(m.group(1)), m.group(2)
        else:
            return self._earlyoom_followup(state, line, msg, out)
        if key is not None:
            extra["earlyoom_pid"] = key
        if state.dry_run:
            extra["dry_run"] = True
        state.attempts[pid] = state.attempts.get(pid, 0) + 1
        extra["attempt"] = state.attempts[pid]
        rec = self._new_record(line, killer="earlyoom", pid=pid, comm=comm, uid=uid, extra=extra,
                               lines=(line.raw,), task_rows=())
        state.last_record_id = rec.record_id
        out.append(rec)
        return True

    def _earlyoom_followup(
        self, state: _EarlyoomState, line: KernelLine, msg: str, out: list[KillRecord]
    ) -> bool:
        update: dict[str, Any] = {}
        if msg.startswith("dryrun mode enabled"):
            state.dry_run = True
            return True
        if msg.startswith("dryrun, not actually sending"):
            update = {"dry_run": True}
        elif msg.startswith("escalating to "):
            m = RE_EO_ESCALATE.match(msg)
            if m is None:
                return False
            update = {"escalated_to": m.group(1), "escalated_after_s": to_float(m.group(2))}
        elif msg.startswith("process "):
            m = RE_EO_EXITED.match(msg)
            if m is None:
                return False
            update = {"exited_after_s": to_float(m.group(2))}
        elif msg.startswith("kill failed: "):
            m = RE_EO_KILL_FAILED.match(msg)
            update = {"kill_failed": m.group(1) if m is not None else msg}
        else:
            return False
        rid = state.last_record_id
        rec = self._latest(lambda r: r.record_id == rid, line) if rid is not None else None
        if rec is not None and any(rec.extra.get(k) != v for k, v in update.items()):
            out.append(self._revise(rec, line, update))
        return True

    def _oomd_line(self, line: KernelLine, msg: str, out: list[KillRecord]) -> bool:
        key = line.ident_pid
        state = self._oomd.get(key)
        if msg.startswith("oomd attempting to kill "):
            m = RE_OOMD_ATTEMPT.match(msg)
            if m is None:
                return False
            if state is None:
                state = self._oomd[key] = _OomdState()
            state.attempts.append((int(m.group(1)), m.group(2), line, self.seen))
            return True
        if msg.startswith("Killed ") or msg.startswith("Marked "):
            m = RE_OOMD_KILL.match(msg)
            if m is None:
                return False
            if state is None:
                state = self._oomd[key] = _OomdState()
            cgroup = m.group(1) or m.group(2)
            reason = m.group(3) or ""
            extra: dict[str, Any] = {"killed_cgroup": cgroup}
            p = RE_OOMD_PRESSURE.match(reason)
            if p is not None:
                extra.update(pressure_cgroup=p.group(1), pressure_pct=to_float(p.group(2)),
                             limit_pct=to_float(p.group(3)), duration=p.group(4))
            else:
                s = RE_OOMD_SWAP.match(reason)
                s_old = RE_OOMD_SWAP_OLD.match(reason) if s is None else None
                if s is not None:
                    extra.update(reason="swap", memory_used_bytes=int(s.group(1)),
                                 memory_total_bytes=int(s.group(2)), swap_used_bytes=int(s.group(3)),
                                 swap_total_bytes=int(s.group(4)), limit_pct=to_float(s.group(5)))
                elif s_old is not None:
                    extra.update(reason="swap", swap_used_bytes=int(s_old.group(1)),
                                 swap_total_bytes=int(s_old.group(2)), limit_pct=to_float(s_old.group(3)))
                else:
                    # Cut short (a pager's "be>"): the "Memory pressure for" line before it says the rest.
                    extra["truncated_kill_line"] = True
                    if state.pressure is not None:
                        pc, pct, lim, dur = state.pressure
                        extra.update(pressure_cgroup=pc, pressure_pct=pct, limit_pct=lim, duration=dur)
            self._oomd_emit(key, state, (line, extra), out)
            return True
        if msg.startswith("Memory pressure for "):
            m = RE_OOMD_CONTEXT.match(msg)
            if m is None:
                return False
            if state is None:
                state = self._oomd[key] = _OomdState()
            self._oomd_emit(key, state, None, out)
            state.pressure = (m.group(1), to_float(m.group(2)), to_float(m.group(3)), m.group(4))
            state.pressure_raw = line.raw
            return True
        if state is not None and state.attempts and not msg.startswith(" "):
            self._oomd_emit(key, state, None, out)
        return msg.startswith("Considered ")

    def _oomd_emit(
        self, key: int | None, state: _OomdState, kill: tuple[KernelLine, dict[str, Any]] | None,
        out: list[KillRecord],
    ) -> None:
        if kill is None and not state.attempts:
            return
        base: dict[str, Any] = dict(kill[1]) if kill is not None else {"kill_line_missing": True}
        if key is not None:
            base["oomd_pid"] = key
        context = [state.pressure_raw] if state.pressure_raw is not None else []
        if state.attempts:
            for pid, sig, aline, _n in state.attempts:
                extra = dict(base, signal=sig)
                lines = tuple(context + [aline.raw] + ([kill[0].raw] if kill is not None else []))
                out.append(self._new_record(aline, killer="systemd-oomd", pid=pid, extra=extra,
                                            lines=lines, task_rows=()))
            state.attempts = []
        elif kill is not None:
            out.append(self._new_record(kill[0], killer="systemd-oomd", pid=None, extra=base,
                                        lines=tuple(context + [kill[0].raw]), task_rows=()))

    def _unit_line(self, line: KernelLine, msg: str, out: list[KillRecord]) -> bool:
        if ": " not in msg:
            return False
        m = RE_UNIT_LINE.match(msg)
        if m is None:
            return False
        unit, rest = m.group(1), m.group(2)
        update: dict[str, Any]
        want: tuple[str, ...]
        o = RE_UNIT_OOMD.match(rest)
        if o is not None:
            update = {"systemd_unit": unit, "processes_killed": int(o.group(1))}
            want = ("systemd-oomd",)
        elif rest.startswith(UNIT_OOM_KILLED):
            update = {"systemd_unit": unit}
            want = ("kernel-global", "kernel-memcg")
        else:
            r = RE_UNIT_RESULT.match(rest)
            if r is None:
                return False
            update = {"systemd_unit": unit, "unit_result": r.group(1)}
            want = ("kernel-global", "kernel-memcg", "systemd-oomd")
        matched = False
        for rec in list(self._window(line)):
            if rec.killer not in want or _unit_of(rec) != unit:
                continue
            if all(rec.extra.get(k) == v for k, v in update.items()):
                continue
            out.append(self._revise(rec, line, update))
            matched = True
        return matched or rest.startswith(UNIT_OOM_KILLED) or o is not None

    # --- records ------------------------------------------------------------------------------
    def _new_record(self, line: KernelLine, *, killer: Killer, lines: tuple[str, ...],
                    task_rows: tuple[str, ...], extra: dict[str, Any], **fields: Any) -> KillRecord:
        wall = line.wall_time
        unix = line.wall_time_unix
        source = line.wall_time_source
        if line.extra:
            for k in ("journald_monotonic_usec", "event_wall_time_usec_derived"):
                if k in line.extra:
                    extra[k] = line.extra[k]
        if wall is None and self._clock is not None and line.kernel_time_s is not None:
            w = self._clock.to_wall(line.kernel_time_s)
            wall, unix, source = w.iso, w.unix, self._clock.source
            if line.history and w.max_late_s >= 0.001:
                extra["wall_time_max_late_s"] = round(w.max_late_s, 6)
        rec = KillRecord(
            killer=killer,
            kernel_time_s=line.kernel_time_s,
            wall_time=wall,
            lines=lines,
            extra=extra,
            history=line.history,
            task_rows=task_rows,
            wall_time_text=line.wall_time_text,
            wall_time_source=source,
            wall_time_usec=line.wall_time_usec,
            wall_time_unix=unix,
            monotonic_time_s=line.monotonic_time_s,
            record_id=self._next_id,
            **fields,
        )
        self._next_id += 1
        self._recent.append((rec, self.seen))
        return rec

    def _revise(self, rec: KillRecord, line: KernelLine, update: dict[str, Any]) -> KillRecord:
        new = replace(rec, extra={**rec.extra, **update}, lines=rec.lines + (line.raw,),
                      revision=rec.revision + 1)
        for i, (old, n) in enumerate(self._recent):
            if old.record_id == rec.record_id:
                self._recent[i] = (new, n)
                break
        return new

    def _window(self, line: KernelLine) -> Iterator[KillRecord]:
        """Recent records (newest first) that a late line may still belong to."""
        t = line.kernel_time_s
        for rec, n in reversed(self._recent):
            if t is not None and rec.kernel_time_s is not None:
                if not (-1.0 <= t - rec.kernel_time_s <= REVISION_WINDOW_S):
                    continue
            elif self.seen - n > REVISION_WINDOW_LINES:
                continue
            yield rec

    def _latest(self, pred: Any, line: KernelLine | None = None) -> KillRecord | None:
        if line is None:
            for rec, _n in reversed(self._recent):
                if pred(rec):
                    return rec
            return None
        for rec in self._window(line):
            if pred(rec):
                return rec
        return None


def _ordered(key_lines: list[tuple[int, str]]) -> tuple[str, ...]:
    """Key lines in input order; task rows (n = -1) go right before the first kill-ish line."""
    rows = [raw for n, raw in key_lines if n < 0]
    rest = sorted(((n, raw) for n, raw in key_lines if n >= 0), key=lambda x: x[0])
    out: list[str] = []
    placed = False
    for _n, raw in rest:
        if not placed and ("oom-kill:" in raw or "ill process" in raw):
            out.extend(rows)
            placed = True
        out.append(raw)
    if not placed:
        out.extend(rows)
    return tuple(dict.fromkeys(out))


def _unit_of(rec: KillRecord) -> str | None:
    """The systemd unit a record's cgroup path ends in (``/system.slice/mariadb.service``)."""
    path = rec.task_memcg or rec.extra.get("killed_cgroup")
    if not isinstance(path, str):
        return None
    return path.rstrip("/").rsplit("/", 1)[-1] or None


def _signal(text: str) -> str | int:
    return int(text) if text.isdigit() else text
