"""What each OOM-related message looks like, written from the printk/log format strings.

Kernel (mm/oom_kill.c, mm/memcontrol.c; tests/data/oom-corpus/FORMATS.md section 2), by version:

* ``"%s invoked oom-killer: gfp_mask=0x%x, order=%d, oom_score_adj=%hd"`` (3.10; 2.6.32 adds
  ``oom_adj=%d``), ``gfp_mask=%#x(%pGg), nodemask=%*pbl, order=%d, ...`` (4.x), ``gfp_mask=%#x(%pGg),
  order=%d, oom_score_adj=%hd`` (5.0+).
* ``"%s: Kill process %d (%s) score %d or sacrifice child"`` (<= 5.0; ``%s`` is the message:
  ``Out of memory``, ``Memory cgroup out of memory``, ``Out of memory (oom_kill_allocating_task)``),
  2.6.3x ``kill process %d (%s) score %li or a child``.
* ``"Killed process %d (%s) total-vm:%lukB, anon-rss:%lukB, file-rss:%lukB"`` (3.10),
  ``..., shmem-rss:%lukB`` (4.5-5.0), ``"%s: Killed process ..."`` (5.1-5.3),
  ``..., UID:%u pgtables:%lukB oom_score_adj:%hd`` (5.4+; early 5.4 printed pgtables in bytes);
  RHEL 6 ``Killed process %d, UID %d, (%s) total-vm:...``, RHEL 7 ``Killed process %d (%s), UID %d,
  total-vm:...``; 2.6.3x ``vsz:`` for ``total-vm:``.
* ``"Kill process %d (%s) sharing same memory"`` (another process using the victim's mm; also killed).
* ``oom-kill:constraint=%s,nodemask=%*pbl,cpuset=%s,mems_allowed=%*pbl,oom_memcg=%s|global_oom,
  task_memcg=%s,task=%s,pid=%d,uid=%d`` (5.0+, built from pr_cont pieces; ``task=`` is an
  unescaped comm, so pid/uid are read from the end).
* ``%s: usage %llukB, limit %llukB, failcnt %lu`` (mm/memcontrol.c, memcg reports: ``memory``
  on v1 and v2, then ``memory+swap`` and ``kmem`` on v1 or ``swap`` on v2).
* ``Task in %s killed as a result of limit of %s`` (memcg, <= 4.20),
  ``Tasks in %s are going to be killed due to memory.oom.group set``,
  ``oom_reaper: reaped process %d (%s), now anon-rss:%lukB, file-rss:%lukB, shmem-rss:%lukB``,
  ``oom_reaper: unable to reap pid:%d (%s)``.
* Task table header ``[ pid ]   uid  tgid total_vm      rss ... oom_score_adj name`` (columns
  differ per version; the header names them) and rows ``[%5d] %5d %5d ... %5hd %s``.

User space (tests/data/oom-corpus/FORMATS.md section 3): systemd-oomd ``Killed %s due to memory pressure for %s being
%lu.%02lu%% > %lu.%02lu%% for > %s with reclaim activity``, ``Marked %s for killing due to ...``,
the swap wordings, ``oomd attempting to kill %d with %s``; earlyoom ``sending %s to process %d uid %d
"%s": badness %d, VmRSS %lld MiB`` (1.6+), without ``uid`` (1.3), ``killing process %d "%s" with
signal %d: badness %d, VmRSS %d MiB`` (~1.2), ``Killing process '%s' with signal %d, pid: %d,
badness: %d, VmRSS: %d MiB`` (2018), ``Killing process %d %s`` (very old); systemd's unit lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

# --- kernel -----------------------------------------------------------------------------------
KILL_PREFIXES: Final = (
    "Out of memory (oom_kill_allocating_task)",
    "Memory cgroup out of memory",
    "Out of memory",
)
_PREFIX = r"(Out of memory(?: \(oom_kill_allocating_task\))?|Memory cgroup out of memory)"

RE_INVOKED: Final = re.compile(
    r"(.*?) invoked oom-killer: gfp_mask=(0x[0-9a-fA-F]+)(?:\(([^)]*)\))?,\s*"
    r"(?:nodemask=([^,]*),\s*)?order=(-?\d+)(?:,\s*oom_adj=(-?\d+))?(?:,\s*oom_score_adj=(-?\d+))?"
)
RE_STACK_HEADER: Final = re.compile(r"CPU: (\d+) (?:UID: (\d+) )?PID: (\d+) Comm: (.*?) (?:Not tainted|Tainted: )")
RE_STACK_HEADER_OLD: Final = re.compile(r"Pid: (\d+), comm: (.*?) (?:Not tainted|Tainted: )")
RE_KERNEL_VERSION: Final = re.compile(r"(\S+) #\S+")
RE_CPUSET: Final = re.compile(r"(.*) cpuset=(\S*) mems_allowed=(\S+)\s*\Z")
#: The memcg's page counters at the OOM; ``memory`` is the one whose limit was hit.
USAGE_PREFIXES: Final = ("memory: usage ", "memory+swap: usage ", "kmem: usage ", "swap: usage ")
RE_USAGE: Final = re.compile(r"(memory|memory\+swap|kmem|swap): usage (\d+)kB, limit (\d+)kB, failcnt (\d+)")
RE_TASK_IN: Final = re.compile(r"Task in (.+?) killed as a result of limit of (.+?)\s*\Z")
RE_OOM_GROUP: Final = re.compile(r"Tasks in (.+?) are going to be killed due to memory\.oom\.group set")
RE_TABLE_HEADER: Final = re.compile(r"\[\s*pid\s*\]\s+uid\s+tgid\s+(.*?)\s*\bname\s*\Z")
RE_ROW: Final = re.compile(r"\[\s*(\d+)\]\s+(-?\d+)\s+(\d+)\s+(.*)\Z")
RE_ROW_TAIL: Final = re.compile(r"((?:-?\d+\s+)*)(-?\d+) (.*)\Z")
RE_CHOSEN: Final = re.compile(
    _PREFIX + r": [Kk]ill process (\d+) \((.*)\) score (-?\d+) or (?:sacrifice child|a child)"
)
RE_SHARING: Final = re.compile(r"Kill process (\d+) \((.*)\) sharing same memory")
RE_KILLED_HEAD: Final = re.compile(r"(?:" + _PREFIX + r": )?Killed process (\d+)")
RE_KILLED_TAIL: Final = re.compile(r"(?:, UID (\d+),)? \((.*?)\)(?:, UID (\d+),)?(?= (?:total-vm|vsz):)")
RE_KILLED_KV: Final = re.compile(r"(total-vm|vsz|anon-rss|file-rss|shmem-rss|pgtables):(\d+)kB")
RE_KILLED_UID: Final = re.compile(r"\bUID:(\d+)")
RE_KILLED_ADJ: Final = re.compile(r"\boom_score_adj:(-?\d+)")
RE_REAPED: Final = re.compile(
    r"oom_reaper: reaped process (\d+) \((.*)\), now anon-rss:(\d+)kB, file-rss:(\d+)kB(?:, shmem-rss:(\d+)kB)?"
)
RE_UNABLE_TO_REAP: Final = re.compile(r"oom_reaper: unable to reap pid:(\d+) \((.*)\)")
RE_SUMMARY_END: Final = re.compile(r",pid=(-?\d+),uid=(\d+)\s*\Z")


@dataclass(frozen=True, slots=True)
class KilledLine:
    """Fields of a ``Killed process`` line; ``complete`` is False when the line was cut short."""

    prefix: str | None
    pid: int
    comm: str | None
    uid: int | None
    total_vm_kb: int | None
    anon_rss_kb: int | None
    file_rss_kb: int | None
    shmem_rss_kb: int | None
    pgtables_kb: int | None
    pgtables_in_bytes: bool
    oom_score_adj: int | None
    complete: bool


def parse_killed(msg: str) -> KilledLine | None:
    """Parse any ``Killed process`` variant; None when the line is not one."""
    head = RE_KILLED_HEAD.match(msg)
    if head is None:
        return None
    tail = msg[head.end():]
    if tail[:1].isdigit():
        return None  # "Killed process 12" followed by more digits cannot happen; a mangled pid
    comm: str | None = None
    uid: int | None = None
    m = RE_KILLED_TAIL.match(tail)
    if m is not None:
        comm = m.group(2)
        uid_text = m.group(1) or m.group(3)
        uid = int(uid_text) if uid_text else None
        rest = tail[m.end():]
    else:
        rest = tail
    kv = dict(RE_KILLED_KV.findall(rest)) if m is not None else {}
    um = RE_KILLED_UID.search(rest) if m is not None else None
    if um is not None:
        uid = int(um.group(1))
    am = RE_KILLED_ADJ.search(rest) if m is not None else None
    total_vm = _opt_int(kv.get("total-vm") or kv.get("vsz"))
    pgtables = _opt_int(kv.get("pgtables"))
    in_bytes = False
    if pgtables is not None and total_vm and pgtables * 16 > total_vm:
        # Early 5.4 printed the byte count with a kB suffix (fixed by "Fixes: 70cb6d267790");
        # page tables are ~0.2% of the mapped size, so a value above ~6% of total-vm is bytes.
        pgtables //= 1024
        in_bytes = True
    return KilledLine(
        prefix=head.group(1),
        pid=int(head.group(2)),
        comm=comm,
        uid=uid,
        total_vm_kb=total_vm,
        anon_rss_kb=_opt_int(kv.get("anon-rss")),
        file_rss_kb=_opt_int(kv.get("file-rss")),
        shmem_rss_kb=_opt_int(kv.get("shmem-rss")),
        pgtables_kb=pgtables,
        pgtables_in_bytes=in_bytes,
        oom_score_adj=int(am.group(1)) if am is not None else None,
        complete=m is not None and "anon-rss" in kv,
    )


@dataclass(frozen=True, slots=True)
class Summary:
    """The 5.0+ ``oom-kill:`` line."""

    constraint: str | None
    nodemask: str | None
    cpuset: str | None
    mems_allowed: str | None
    oom_memcg: str | None
    global_oom: bool
    task_memcg: str | None
    comm: str | None
    pid: int
    uid: int


_SCOPE_KEYS: Final = (",nodemask=", ",cpuset=", ",mems_allowed=", ",oom_memcg=", ",global_oom")


def _scope_fields(scope: str) -> dict[str, str]:
    """Split ``constraint=..,nodemask=..,cpuset=..,mems_allowed=..,oom_memcg=..`` by its keys in
    order: bitmap lists (``0,2-3``) contain commas, so splitting on "," would cut them."""
    found: list[tuple[int, str]] = []
    pos = 0
    for key in _SCOPE_KEYS:
        i = scope.find(key, pos)
        if i >= 0:
            found.append((i, key))
            pos = i + len(key)
    out: dict[str, str] = {}
    first = found[0][0] if found else len(scope)
    if scope.startswith("constraint="):
        out["constraint"] = scope[len("constraint="):first]
    for n, (i, key) in enumerate(found):
        stop = found[n + 1][0] if n + 1 < len(found) else len(scope)
        out[key.strip(",=")] = scope[i + len(key):stop]
    return out


def parse_summary(msg: str) -> Summary | None:
    if not msg.startswith("oom-kill:"):
        return None
    end = RE_SUMMARY_END.search(msg)
    if end is None:
        return None  # cut before pid/uid: it names nobody for sure
    head = msg[len("oom-kill:"):end.start()]
    i_tm = head.find(",task_memcg=")
    # comm is user-controlled and may contain ",task=": look for it after task_memcg, not from the end.
    i_task = head.find(",task=", i_tm + 1 if i_tm >= 0 else 0)
    comm: str | None
    if i_task >= 0:
        comm, before = head[i_task + len(",task="):], head[:i_task]
    elif head.startswith("task="):
        comm, before = head[len("task="):], ""
    else:
        comm, before = None, head
    if i_tm >= 0 and i_tm < len(before):
        scope, task_memcg = before[:i_tm], before[i_tm + len(",task_memcg="):]
    else:
        scope, task_memcg = before, None
    f = _scope_fields(scope)
    return Summary(
        constraint=f.get("constraint") or None,
        nodemask=f.get("nodemask"),
        cpuset=f.get("cpuset"),
        mems_allowed=f.get("mems_allowed"),
        oom_memcg=f.get("oom_memcg"),
        global_oom="global_oom" in f,
        task_memcg=task_memcg,
        comm=comm,
        pid=int(end.group(1)),
        uid=int(end.group(2)),
    )


@dataclass(frozen=True, slots=True)
class TaskRow:
    pid: int
    uid: int | None
    tgid: int | None
    oom_score_adj: int | None
    name: str | None
    raw: str


def parse_row(msg: str, raw: str, numeric_columns: int | None) -> TaskRow | None:
    """A task-table row; ``numeric_columns`` (from the header) makes the name split exact."""
    m = RE_ROW.match(msg)
    if m is None:
        return None
    pid, uid, tgid = int(m.group(1)), int(m.group(2)), int(m.group(3))
    rest = m.group(4)
    adj: int | None = None
    name: str | None = None
    if numeric_columns is not None and numeric_columns > 0:
        parts = rest.split(None, numeric_columns)
        if len(parts) == numeric_columns + 1 and all(_is_int(p) for p in parts[:numeric_columns]):
            adj = int(parts[numeric_columns - 1])
            name = parts[numeric_columns]
    if name is None:
        # No header seen (an excerpt) or a row that does not fit it: the last number before the
        # name is oom_score_adj ("%5hd %s": exactly one space before the comm).
        t = RE_ROW_TAIL.match(rest)
        if t is None:
            return TaskRow(pid, uid, tgid, None, None, raw)
        adj = int(t.group(2))
        name = t.group(3)
    return TaskRow(pid, uid, tgid, adj, name, raw)


def header_numeric_columns(msg: str) -> int | None:
    """How many numeric columns follow ``uid tgid`` in a task-table header, or None."""
    m = RE_TABLE_HEADER.match(msg)
    if m is None:
        return None
    return len(m.group(1).split())


# --- systemd-oomd -------------------------------------------------------------------------------
RE_OOMD_ATTEMPT: Final = re.compile(r"oomd attempting to kill (\d+) with (\w+)")
RE_OOMD_KILL: Final = re.compile(r"(?:Killed (\S+) due to|Marked (\S+) for killing due to)(?: (.*))?\Z")
RE_OOMD_PRESSURE: Final = re.compile(
    r"memory pressure for (\S+) being ([\d.]+)% > ([\d.]+)% for > (.+?) with reclaim activity"
)
RE_OOMD_SWAP: Final = re.compile(
    r"memory used \((\d+)\) / total \((\d+)\) and swap used \((\d+)\) / total \((\d+)\) "
    r"being more than ([\d.]+)%"
)
RE_OOMD_SWAP_OLD: Final = re.compile(r"swap used \((\d+)\) / total \((\d+)\) being more than ([\d.]+)%")
RE_OOMD_CONTEXT: Final = re.compile(
    r"Memory pressure for (\S+) is ([\d.]+)% > ([\d.]+)% for > (.+?) with reclaim activity"
)

# --- earlyoom ----------------------------------------------------------------------------------
RE_EO_SENDING: Final = re.compile(
    r"sending (SIG\w+|\d+) to process (\d+)(?: uid (-?\d+))? \"(.*)\": (?:badness|oom_score) (-?\d+), "
    r"VmRSS (\d+) MiB"
)
RE_EO_SENDING_LOOSE: Final = re.compile(r"sending (SIG\w+|\d+) to process (\d+)\b")
RE_EO_KILLING_12: Final = re.compile(
    r"killing process (\d+) \"(.*)\" with signal (\d+): badness (-?\d+), VmRSS (\d+) MiB"
)
RE_EO_KILLING_2018: Final = re.compile(
    r"Killing process '(.*)' with signal (\d+), pid: (\d+), badness: (-?\d+), VmRSS: (\d+) MiB"
)
RE_EO_KILLING_OLD: Final = re.compile(r"Killing process (\d+) (.+)\Z")
RE_EO_ESCALATE: Final = re.compile(r"escalating to (SIG\w+) after ([\d.]+) seconds")
RE_EO_EXITED: Final = re.compile(r"process (?:(\d+) )?exited after ([\d.]+) seconds")
RE_EO_KILL_FAILED: Final = re.compile(r"kill failed: (.*)")

# --- systemd service manager -------------------------------------------------------------------
RE_UNIT_LINE: Final = re.compile(
    r"([^\s:]+\.(?:service|scope|slice|socket|mount|swap|target|timer|path|device|automount)): (.*)\Z"
)
RE_UNIT_OOMD: Final = re.compile(r"systemd-oomd killed (\d+) process\(es\) in this unit")
RE_UNIT_RESULT: Final = re.compile(r"Failed with result '([\w-]+)'")
UNIT_OOM_KILLED: Final = "A process of this unit has been killed by the OOM killer"


def _opt_int(text: str | None) -> int | None:
    return int(text) if text is not None else None


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


def to_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
