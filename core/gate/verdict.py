"""The gate's decision: which workers failed and why, and the one exit status ``watch`` returns.

The statuses (docs/watch.md "Exit statuses") stay clear of 1 (a failed worker among several), 2 (bad
input), 126/127 (a shell's "cannot run"/"not found") and 128+N (a signal): a CI step can tell a
memory death from its tests failing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..causes import EXIT, HEAP_OOM, OOM_KILL, TERMINATED, UNKNOWN
from ..errors import BadInput
from ..sizes import Level, format_size
from .summary import CRITICAL, WARNING, WorkerSummary, where

OK = 0
FAILED = 1          # several workers watched, one of them failed by itself (no gate cause)
BAD_INPUT = 2
MEMORY_DEATH = 100  # a worker died of oom-kill or heap-oom
TERMINATED_BY_POLICY = 101
LEVEL_REACHED = 102  # --fail-on critical / warning
OVER_BUDGET = 103
GREW = 104           # --compare-with: a peak grew more than --max-growth

FAIL_ON_CHOICES = (OOM_KILL, HEAP_OOM, TERMINATED, CRITICAL, WARNING)
DEFAULT_FAIL_ON = (OOM_KILL, HEAP_OOM, TERMINATED)
_STATUS = {OOM_KILL: MEMORY_DEATH, HEAP_OOM: MEMORY_DEATH, TERMINATED: TERMINATED_BY_POLICY,
           CRITICAL: LEVEL_REACHED, WARNING: LEVEL_REACHED, "budget": OVER_BUDGET, "growth": GREW}
STATUS_TEXT = {
    OK: "passed",
    FAILED: "a worker failed",
    MEMORY_DEATH: "a worker died of oom-kill or heap-oom",
    TERMINATED_BY_POLICY: "a policy terminated a worker",
    LEVEL_REACHED: "a worker reached a --fail-on level",
    OVER_BUDGET: "a worker's peak passed --budget",
    GREW: "a worker's peak grew more than --max-growth over the baseline",
}


def parse_fail_on(text: str) -> tuple[str, ...]:
    words = [w.strip().lower() for w in text.split(",") if w.strip()]
    if words == ["none"]:
        return ()
    unknown = [w for w in words if w not in FAIL_ON_CHOICES]
    if unknown or not words:
        raise BadInput(f"--fail-on {text!r}: give a comma-separated list of {', '.join(FAIL_ON_CHOICES)} "
                       "(or none)")
    return tuple(dict.fromkeys(words))


@dataclass(frozen=True, slots=True)
class Failure:
    """Why one worker fails the gate; ``kind`` is a cause, a level, ``budget``, ``growth`` or
    ``exit`` (a death of its own that no --fail-on cause names); ``text``: the kernel's lines."""

    kind: str
    message: str
    text: tuple[str, ...] = ()

    @property
    def status(self) -> int | None:
        return _STATUS.get(self.kind)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "status": self.status, "message": self.message, "text": list(self.text)}


def budget_bytes(budget: Level, w: WorkerSummary, metric: str) -> int | None:
    """A percent budget is of the limit the metric is held to: the heap limit for ``heap``, else
    the worker's memory cgroup limit."""
    return budget.resolve(w.heap_limit if metric == "heap" else w.cgroup_limit)


def budget_peak(budget: Level, w: WorkerSummary, metric: str) -> tuple[str, int | None]:
    """What a budget compares, as the levels do: a percent of a cgroup limit is of what that
    limit counts, the cgroup's usage (a shell's children included); a size, the metric."""
    if budget.fraction is not None:
        key, peak = w.limit_peak(metric)
        return ("cgroup usage" if key == "cgroup" else key), peak
    return metric, w.alert_peak


def worker_failures(w: WorkerSummary, fail_on: Sequence[str], budget: Level | None, metric: str,
                    ) -> list[Failure]:
    out: list[Failure] = []
    d = w.death
    if d is not None and not d.by_oomscope_exit:
        message = f"{w.ref.name} (PID {w.ref.pid}) died: {d.how()}"
        text = d.kernel_lines or d.evidence
        if d.cause in fail_on:
            out.append(Failure(d.cause, message, text + _tail(d.stderr_tail)))
        elif d.cause not in (UNKNOWN, EXIT) or d.exit_code not in (0, None):
            # An attached process's end is ``unknown`` (no status to read): not a failure.
            out.append(Failure("exit", message, text + _tail(d.stderr_tail)))
    if OOM_KILL in fail_on:
        # Only a kill in the worker's own cgroup is certain to be seen (a child elsewhere is
        # recognised only while its parent has not reaped it): only that one decides the verdict.
        for k in (k for k in w.cgroup_kills if k["relation"] == "cgroup"):
            out.append(Failure(OOM_KILL, f"{w.ref.name} (PID {w.ref.pid}): PID {k['pid']} ({k['comm']}) {where(k)} "
                               "was OOM-killed", tuple(k["kernel_lines"])))
    if HEAP_OOM in fail_on:
        for t in w.thread_deaths:
            if t["cause"] == HEAP_OOM:
                out.append(Failure(HEAP_OOM, f"{w.ref.name} (PID {t['pid']}) worker thread {t['thread_id']} "
                                   "ran out of heap", (t["message"],) if t["message"] else ()))
    for level in (CRITICAL, WARNING):
        if level in fail_on and level in w.reached:
            out.append(Failure(level, f"{w.ref.name} (PID {w.ref.pid}) reached {level} "
                               f"({w.above_s[level]:.1f} s above it)"))
            break
    if budget is not None:
        measure, peak = budget_peak(budget, w, metric)
        limit = budget_bytes(budget, w, metric)
        if limit is not None and peak is not None and peak > limit:
            out.append(Failure("budget", f"{w.ref.name} (PID {w.ref.pid}) peak {measure} "
                               f"{format_size(peak)} passed the budget {format_size(limit)}"
                               + ("" if budget.bytes is not None else f" ({budget})")))
    return out


def _tail(lines: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"stderr: {line}" for line in lines[-10:])


def exit_status(failures: Sequence[Failure], own: int | None) -> int:
    """The gate's status wins (the lowest of them: a memory death first); without one, the one
    launched command's own status (``own``), else 1 when any worker failed by itself."""
    statuses = [f.status for f in failures if f.status is not None]
    if statuses:
        return min(statuses)
    if own is not None:
        return own
    return FAILED if failures else OK
