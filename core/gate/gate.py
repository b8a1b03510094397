"""The gate ``watch`` runs: its options (one block), the consumer that sees every event, and at
the end the summary (stderr), the files, the annotations and the exit status."""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ..errors import BadInput
from ..events import Event
from ..options import hysteresis_arg
from ..printable import printable
from ..sizes import Level, format_size, parse_level
from .annotations import workflow_commands
from .compare import Baseline, compare, grew, load_baseline
from .junit import junit_xml
from .summary import CRITICAL, KEPT_PASSING, WARNING, SummaryBuilder, WorkerSummary, where
from .verdict import (
    DEFAULT_FAIL_ON,
    FAIL_ON_CHOICES,
    STATUS_TEXT,
    Failure,
    budget_bytes,
    budget_peak,
    exit_status,
    parse_fail_on,
    worker_failures,
)

SUMMARY_FORMAT = "oomscope-watch-summary"



def add_gate_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("CI gate (exit status, summary, reports)")
    g.add_argument("--fail-on", metavar="CAUSES", default=",".join(DEFAULT_FAIL_ON),
                   help=f"what fails the run with its own exit status: a comma-separated list of "
                   f"{', '.join(FAIL_ON_CHOICES)}, or none (default {','.join(DEFAULT_FAIL_ON)})")
    g.add_argument("--budget", metavar="SIZE",
                   help="fail the run when a worker's peak on the alert metric passed SIZE (or a "
                   "percent of its limit), even if it lived")
    g.add_argument("--summary", metavar="FILE.json", help="write the end-of-run summary as JSON")
    g.add_argument("--junit", metavar="FILE.xml", help="write a JUnit XML report: one test case per worker")
    g.add_argument("--compare-with", metavar="FILE.json",
                   help="an earlier run's --summary: fail when a worker's peak grew more than --max-growth")
    g.add_argument("--max-growth", metavar="P", default="10%",
                   help="with --compare-with: the growth allowed (default 10%%)")
    g.add_argument("--no-summary", action="store_true", help="do not print the summary at the end")


@dataclass(frozen=True, slots=True)
class GateOptions:
    metric: str
    fail_on: tuple[str, ...]
    budget: Level | None
    summary: Path | None
    junit: Path | None
    baseline: Baseline | None
    max_growth: float
    print_summary: bool
    one_command: bool  # exactly one launched command and nothing else: its status is watch's


def _writable(option: str, text: str | None) -> Path | None:
    if text is None:
        return None
    path = Path(text)
    if path.is_dir():
        raise BadInput(f"{option} {text}: is a directory; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise BadInput(f"{option} {text}: no directory {parent} to write it in")
    if not os.access(parent, os.W_OK):
        raise BadInput(f"{option} {text}: cannot write in {parent}")
    return path


def gate_options(args: argparse.Namespace, metric: str, launched: int) -> GateOptions:
    """Checked before anything starts: bad input is exit status 2."""
    budget = parse_level(args.budget) if args.budget else None
    try:
        growth = hysteresis_arg(args.max_growth)
    except BadInput as e:
        raise BadInput(f"--max-growth: {e}") from None
    others = bool(args.attach or args.children_of or args.match)
    return GateOptions(
        metric=metric, fail_on=parse_fail_on(args.fail_on), budget=budget,
        summary=_writable("--summary", args.summary), junit=_writable("--junit", args.junit),
        baseline=load_baseline(Path(args.compare_with)) if args.compare_with else None,
        max_growth=growth, print_summary=not args.no_summary, one_command=launched == 1 and not others)


class Gate:
    """Sees every event (``gate(event)``); ``finish`` reports and returns the exit status."""

    def __init__(self, options: GateOptions) -> None:
        self.options = options
        self.builder = SummaryBuilder(options.metric, failed=self._fails,
                                      peaks_by_key=options.baseline is not None)
        self.started = time.time()

    def __call__(self, event: Event) -> None:
        self.builder(event)

    def close(self) -> None:
        pass

    def _fails(self, w: WorkerSummary) -> bool:
        """Whether the gate fails this worker: such a one is always listed, never added up."""
        o = self.options
        return bool(worker_failures(w, o.fail_on, o.budget, o.metric)) or (
            o.baseline is not None and grew(w, o.baseline, o.metric, o.max_growth))

    def finish(self, err: TextIO, out: TextIO) -> int:
        """``out`` takes the GitHub annotations (stdout, or stderr with ``--json``)."""
        o = self.options
        ended = time.time()
        workers = self.builder.finish(ended)
        peaks = self.builder.peak_by_key
        rows, growth = (compare(peaks, o.baseline, o.max_growth) if o.baseline is not None and peaks is not None
                        else ([], {}))
        judged: list[tuple[WorkerSummary, list[Failure]]] = []
        for w in workers:
            failures = worker_failures(w, o.fail_on, o.budget, o.metric)
            # The last life listed: the one that grew is never added up, a later one may be.
            if w.key in growth and w is _last_life(workers, w.key):
                failures.append(growth.pop(w.key))
            judged.append((w, failures))
        own = None
        last = self.builder.last_launched
        if o.one_command and last is not None:
            own = 0 if last.by_oomscope_exit else last.shell_status()
        status = exit_status([f for _, fs in judged for f in fs], own)
        lines = {w.ref.id: self._worker_lines(w, fs) for w, fs in judged}
        if o.print_summary:
            # Names, command lines and kernel lines come from outside: no raw control characters.
            err.write("\n".join(printable(line) for line in self._text(judged, lines, status)) + "\n")
            err.flush()
        if os.environ.get("GITHUB_ACTIONS") == "true":
            for line in workflow_commands(judged):
                out.write(line + "\n")
            out.flush()
        problems: list[str] = []
        if o.summary is not None:
            doc = self._json(judged, rows, status, ended)
            problems += _write(o.summary, (json.dumps(doc, indent=2) + "\n").encode(), "--summary")
        if o.junit is not None:
            problems += _write(o.junit, junit_xml(judged, self.started, ended, lines, self.builder.others),
                               "--junit")
        for p in problems:
            err.write(f"oomscope watch: {p}\n")
        return status

    # ------------------------------------------------------------------ forms

    def _worker_lines(self, w: WorkerSummary, failures: Sequence[Failure]) -> list[str]:
        ref = w.ref
        slot = f", slot {ref.slot}, life {ref.life}" if ref.slot is not None else ""
        d = w.death
        if d is None:
            end = "still running when watch ended"
        elif d.by_oomscope_exit:
            end = f"stopped by watch ({d.signal})"
        else:
            end = d.how()
        out = [f"{ref.id} {ref.name}[{ref.pid}]{slot}: {end} — {'FAILED' if failures else 'ok'}",
               f"  command: {' '.join(ref.cmd)}"]
        peaks = []
        for key, limit in (("rss", w.cgroup_limit), ("anon", w.cgroup_limit), ("heap", w.heap_limit),
                           ("cgroup", w.cgroup_limit)):
            v = w.peaks.get(key)
            if v is None:
                continue
            against = f" of {format_size(limit)} ({v / limit:.0%})" if limit else ""
            peaks.append(f"{key} {format_size(v)}{against}")
        out.append("  peak: " + ("; ".join(peaks) if peaks else "no sample taken"))
        if self.options.budget is not None:
            budget = budget_bytes(self.options.budget, w, self.options.metric)
            measure, peak = budget_peak(self.options.budget, w, self.options.metric)
            out.append(f"  budget: {format_size(budget) if budget else 'none (no limit to take a percent of)'} "
                       f"on {measure}, peak {format_size(peak) if peak is not None else 'not measured'}")
        out.append(f"  time above warning {w.above_s[WARNING]:.1f} s, above critical {w.above_s[CRITICAL]:.1f} s")
        if d is not None and not d.by_oomscope_exit:
            if d.kill_line:
                out.append(f"  kernel: {d.kill_line}")
            out.extend(f"  evidence: {e}" for e in d.evidence if not e.startswith("kernel: "))
        out.extend(f"  kernel killed PID {k['pid']} ({k['comm']}) {where(k)}: "
                   f"{k['kill_line']}" for k in w.cgroup_kills)
        out.extend(f"  thread {t['thread_id']} of PID {t['pid']} died: {t['cause']}"
                   + (f" ({t['message']})" if t["message"] else "") for t in w.thread_deaths)
        if w.crash_loop:
            out.append(f"  crash loop: {w.crash_loop}")
        out.extend(f"  doctor: {a['advice']} ({a['reason']})" for a in w.advice)
        out.extend(f"  FAIL {f.kind}: {f.message}" for f in failures)
        return out

    def _text(self, judged: Sequence[tuple[WorkerSummary, Sequence[Failure]]], lines: dict[str, list[str]],
              status: int) -> list[str]:
        failed = sum(1 for _, f in judged if f)
        verdict = STATUS_TEXT.get(status, "the command's own exit status")
        others = self.builder.others
        head = (f"== oomscope watch summary: {len(judged) + others.workers} worker(s), {failed} failed; exit status "
                f"{status} ({verdict}) ==")
        out = ["", head]
        for w, _ in judged:
            out.extend(lines[w.ref.id])
        if others.workers:
            out.append(others.line())
        if self.builder.unwatched_kills:
            n = self.builder.unwatched_kills
            out.append(f"({n} OOM kill{'s' if n > 1 else ''} of other processes on this host, none of them a "
                       "watched worker's, its child or in its cgroup)")
        if self.builder.kernel_source is not None and ":" in self.builder.kernel_source:
            out.append(f"kernel log source {self.builder.kernel_source}")
        return out

    def _json(self, judged: Sequence[tuple[WorkerSummary, Sequence[Failure]]], rows: list[dict[str, Any]],
              status: int, ended: float) -> dict[str, Any]:
        o = self.options
        return {
            "format": SUMMARY_FORMAT,
            "version": 1,
            "started": round(self.started, 6),
            "ended": round(ended, 6),
            "exit_status": status,
            "verdict": STATUS_TEXT.get(status, "the command's own exit status"),
            "metric": o.metric,
            "fail_on": list(o.fail_on),
            "budget": None if o.budget is None else str(o.budget),
            "baseline": None if o.baseline is None else {"file": o.baseline.path, "max_growth": o.max_growth,
                                                         "workers": rows},
            "kernel_source": self.builder.kernel_source,
            "unwatched_kills": self.builder.unwatched_kills,
            "workers_total": len(judged) + self.builder.others.workers,
            "kept_passing": KEPT_PASSING,
            "others": self.builder.others.to_json(),
            "workers": [{**w.to_json(), "failures": [f.to_json() for f in fs]} for w, fs in judged],
        }


def _last_life(workers: Sequence[WorkerSummary], key: str) -> WorkerSummary:
    return [w for w in workers if w.key == key][-1]


def _write(path: Path, data: bytes, option: str) -> list[str]:
    """Written whole or not at all: a half-written report would read as a passing one."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        return [f"{option} {path}: cannot write it ({e.strerror or e})"]
    return []
