"""``--compare-with FILE.json``: an earlier ``--summary`` as the baseline. A worker whose peak grew
more than ``--max-growth`` over the same worker's peak there — the same name, command line and
slot — fails the gate; a memory regression fails the pull request. The peak is what a limit
judges (:meth:`WorkerSummary.limit_peak`): the cgroup's usage for a worker under ``--mem-limit``,
else the alert metric."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BadInput
from ..sizes import format_size
from .summary import PEAK_KEYS, WorkerSummary
from .verdict import Failure


@dataclass(frozen=True, slots=True)
class Baseline:
    path: str
    metric: str
    peaks: dict[str, dict[str, int | None]]  # worker key -> peak per metric (max over lives)


def load_baseline(path: Path) -> Baseline:
    """Read before anything starts: a missing or foreign file is bad input (exit 2)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"--compare-with {path}: no such file (give a --summary file of an earlier run)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadInput(f"--compare-with {path}: cannot read it as a JSON summary ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != "oomscope-watch-summary" \
            or not isinstance(doc.get("workers"), list):
        raise BadInput(f"--compare-with {path}: not an oomscope watch --summary file")
    peaks: dict[str, dict[str, int | None]] = {}
    for w in doc["workers"]:
        if not isinstance(w, dict) or not isinstance(w.get("key"), str) or not isinstance(w.get("peak"), dict):
            raise BadInput(f"--compare-with {path}: a worker entry without key and peak")
        mine = peaks.setdefault(w["key"], {})
        for k in PEAK_KEYS:
            v = w["peak"].get(k)
            if isinstance(v, int) and not isinstance(v, bool) and (mine.get(k) or -1) < v:
                mine[k] = v
    return Baseline(str(path), str(doc.get("metric", "rss")), peaks)


def _row(key: str, measure: str, now: int, baseline: Baseline, max_growth: float,
         ) -> tuple[dict[str, Any], Failure | None]:
    before = baseline.peaks.get(key, {}).get(measure)
    row: dict[str, Any] = {"key": key, "measure": measure, "peak": now, "baseline": before,
                           "growth": None, "failed": False}
    if before is None or before <= 0:
        return row, None
    growth = (now - before) / before
    row["growth"] = round(growth, 4)
    if growth <= max_growth:
        return row, None
    row["failed"] = True
    return row, Failure("growth", (
        f"{key}: peak {measure} {format_size(now)} grew {growth:.1%} over the baseline "
        f"{format_size(before)} (allowed {max_growth:.0%})"))


def grew(w: WorkerSummary, baseline: Baseline, metric: str, max_growth: float) -> bool:
    """Whether this one life's own peak grew too much: such a life is never added up with the
    passing ones (its key's failure needs it listed)."""
    measure, v = w.limit_peak(metric)
    return v is not None and _row(w.key, measure, v, baseline, max_growth)[1] is not None


def compare(peak_by_key: dict[str, tuple[str, int]], baseline: Baseline, max_growth: float,
            ) -> tuple[list[dict[str, Any]], dict[str, Failure]]:
    """Per worker key (its highest peak, ``SummaryBuilder.peak_by_key``): the comparison (for
    the summary) and, where it grew too much, the failure.

    Lives of one slot compare as one (their highest peak): a restart is not a new worker."""
    rows: list[dict[str, Any]] = []
    failures: dict[str, Failure] = {}
    for key, (measure, now) in peak_by_key.items():
        row, failure = _row(key, measure, now, baseline, max_growth)
        rows.append(row)
        if failure is not None:
            failures[key] = failure
    return rows, failures
