"""File → Export incident…: one dead worker's story as a folder to attach to a bug report.

``incident-<name>-<pid>-<YYYYmmdd-HHMMSS>/`` (the time is the death's, local) holds:
``samples.csv`` (its samples, the columns of ``oomscope export --csv``), ``kernel.log`` (the
kernel's kill record, raw, and the kernel lines around the death), ``cause.json`` (identity,
cause, exit status, evidence, kill record, slot and life, thresholds), ``plot.png`` (its memory
around the death), ``timeline.png`` (every death around it) and ``README.txt``. A folder rather
than a zip: a user looks into it before attaching it, and any archiver packs it.

The folder is written under a temporary name and renamed when complete, so a failure (a full
disk) leaves no half incident behind.
"""

from __future__ import annotations

import json
import platform
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from oomscope.core.errors import Error
from oomscope.core.events import KernelLineRead
from oomscope.core.oomlog.lines import readable_line
from oomscope.core.jsonable import jsonable
from oomscope.core.thresholds import ThresholdConfig, settings_to_json

from .export_png import framed_picture, save_image, save_png
from .history import METRICS
from .palette import CRITICAL_RGB
from .plot import MemoryPlot
from .qt import Qt, pg
from .roster import Roster, WorkerState, describe_levels
from .timeline import KillTimeline

# The memory plot shows at most this much of the worker's life before its death...
PLOT_BEFORE_S = 300.0
# ...and the kernel.log keeps the kernel's lines from this long before the death to AFTER_S after
# (the OOM report comes just before the kill; a late oom_reaper line a little after).
KERNEL_BEFORE_S = 60.0
KERNEL_AFTER_S = 10.0
PLOT_SIZE_PX = (1200, 600)
TIMELINE_SIZE_PX = (1200, 240)

README = """\
oomscope incident: {who}
{what}

Files:
  cause.json    who the worker was (PID, start time, command line, slot and life), how it ended
                (cause, exit code, signal, the evidence oomscope used), the kernel's kill record
                when there is one, and the memory thresholds in force.
  samples.csv   every memory sample of this worker{samples_note}. Sizes in bytes, t in Unix seconds.
  kernel.log    1. the kernel's kill record for this worker, its lines raw as the kernel log gave
                   them; 2. the kernel log lines from {before} s before the death to {after} s after
                   (about {k0} to {k1}; dmesg format).
  plot.png      the worker's memory (bold) against the warning and critical levels, up to its death
                (the vertical line), other workers thin.
  timeline.png  the kill timeline over the same time as plot.png: every death, by cause.

Exported {exported} by oomscope from {origin}.
"""


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "worker"


def history_columns(w: WorkerState) -> dict[str, Any]:
    """A worker's samples from the window's history, as CSV columns: the history keeps time, RSS,
    anon RSS, heap used and the cgroup's usage (as float32: within a few bytes); the other
    columns stay empty."""
    t = w.series.times()
    return {"worker": w.id, "pid": w.ref.pid, "t": t.copy(),
            **{m: w.series.values(m).astype(np.float64) for m in METRICS}}


@dataclass(frozen=True)
class IncidentSource:
    """What an incident export reads: the session's workers and kernel lines, the levels in
    force, the metrics the plot shows and the levels compare, where the samples come from (a
    live window's history, or a session file's columns) and where the session was."""

    roster: Roster
    thresholds: ThresholdConfig
    kernel_lines: Sequence[KernelLineRead]
    shown_metric: str
    alert_metric: str | None
    samples: Callable[[WorkerState], dict[str, Any]]
    origin: dict[str, Any]


def live_origin() -> dict[str, Any]:
    """Where a live window's incident comes from, for its cause.json and README."""
    host = platform.node()
    return {"kind": "live", "host": host, "text": f"a live session on {host}"}


def incident_name(w: WorkerState, died_at: float) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(died_at))
    return f"incident-{_safe(w.ref.name)}-{w.ref.pid}-{stamp}"


def export_incident(source: IncidentSource, w: WorkerState, parent_dir: Path) -> Path:
    """Write ``w``'s incident folder into ``parent_dir``; its path. Raises ``Error``."""
    if w.exit is None:
        raise Error(f"worker {w.id} ({w.ref.name}) has not exited: there is no incident to export")
    if not parent_dir.is_dir():
        raise Error(f"the folder {parent_dir} does not exist")
    died_at = w.exit.t
    name = incident_name(w, died_at)
    target = parent_dir / name
    n = 2
    while target.exists():
        target = parent_dir / f"{name}-{n}"
        n += 1
    partial = parent_dir / f".{target.name}.partial"
    try:
        if partial.exists():
            shutil.rmtree(partial)
        partial.mkdir()
        columns = source.samples(w)
        _write_samples(partial / "samples.csv", columns)
        _write_kernel_log(partial / "kernel.log", w, died_at, source.kernel_lines)
        origin = source.origin
        _write_json(partial / "cause.json", cause_json(source, w, origin))
        _render_pictures(source, w, died_at, partial)
        full = "t" in columns and any(k in columns for k in ("swap", "cgroup_usage"))
        (partial / "README.txt").write_text(README.format(
            who=f"{w.ref.name} (worker {w.id}, PID {w.ref.pid})",
            what=f"{_iso(died_at)}: {w.state_text()}",
            samples_note="" if full else " that the window's history held (time, RSS, anon RSS, heap "
            "used; stored as float32, so within a few bytes; the other columns are empty — a "
            "recorded session has them all)",
            before=f"{KERNEL_BEFORE_S:g}", after=f"{KERNEL_AFTER_S:g}",
            k0=_clock(died_at - KERNEL_BEFORE_S), k1=_clock(died_at + KERNEL_AFTER_S),
            exported=_iso(time.time()), origin=origin["text"]))
        partial.rename(target)
    except OSError as e:
        shutil.rmtree(partial, ignore_errors=True)
        raise Error(f"cannot write the incident into {parent_dir}: {e.strerror or e}") from e
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return target


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).astimezone().isoformat(timespec="milliseconds")


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


def _write_samples(path: Path, columns: dict[str, Any]) -> None:
    from oomscope.core.recording.export import write_samples_csv

    with path.open("w", newline="", encoding="utf-8") as out:
        write_samples_csv(columns, out)


def _write_kernel_log(path: Path, w: WorkerState, died_at: float, lines: Sequence[KernelLineRead]) -> None:
    record = w.oom
    out = [f"# oomscope incident: kernel lines for {w.ref.name} (worker {w.id}, PID {w.ref.pid}), "
           f"{w.state_text()} at {_iso(died_at)}", ""]
    raw = list(record.lines) if record is not None else []
    if raw:
        out.append(f"# 1. The kernel's kill record for this worker: {len(raw)} lines, raw as read")
        out.extend(raw)
    else:
        out.append("# 1. No kernel OOM kill record names this worker"
                   + (f" (cause: {w.cause})" if w.cause else ""))
    t0, t1 = died_at - KERNEL_BEFORE_S, died_at + KERNEL_AFTER_S
    killed_at = record.kernel_time_s if record is not None else None
    if killed_at is not None:
        # By the kernel's own clock: lines replayed from its buffer at start carry the time they
        # were read, not the time they were logged; their kernel time is exact.
        k0, k1 = killed_at - KERNEL_BEFORE_S, killed_at + KERNEL_AFTER_S
        around = [ev.line for ev in lines if ev.line.kernel_time_s is not None and k0 <= ev.line.kernel_time_s <= k1]
        clock = f"kernel time {k0:.3f} to {k1:.3f} s"
    else:
        around = [ev.line for ev in lines if not ev.line.history and t0 <= ev.t <= t1]
        clock = f"{_clock(t0)} to {_clock(t1)}"
    out.append("")
    out.append(f"# 2. Kernel log lines from {clock} ({KERNEL_BEFORE_S:g} s before the death to "
               f"{KERNEL_AFTER_S:g} s after), as dmesg shows them: {len(around)} lines")
    if not around:
        out.append("# (none were read in that time: the kernel log may have been unreadable, or quiet)")
    out.extend(readable_line(line.text) for line in around)
    path.write_text("\n".join(out) + "\n", encoding="utf-8")


def thresholds_json(config: ThresholdConfig | None) -> dict[str, Any] | None:
    if config is None:
        return None
    return {**settings_to_json(config), "text": describe_levels(config)}


def cause_json(source: IncidentSource, w: WorkerState, origin: dict[str, Any]) -> dict[str, Any]:
    ev = w.exit
    assert ev is not None
    worker = w.ref.to_json()
    worker.update(cgroup=w.cgroup, cgroup_limit=w.cgroup_limit, parent_pid=w.parent_pid,
                  start_time_iso=_iso(w.ref.start_time) if w.ref.start_time > 1e9 else None)
    last = w.last
    return {
        "oomscope_incident": 1,
        "exported_at": _iso(time.time()),
        "source": {k: v for k, v in origin.items() if k != "text"},
        "host": origin.get("host") or platform.node(),
        "worker": worker,
        # The cause as it stands now: a late kernel record may have changed what the exit said.
        "cause": w.cause,
        "exit_code": ev.exit_code,
        "signal": ev.signal,
        "by": ev.by,
        "died_at": ev.t,
        "died_at_iso": _iso(ev.t),
        "evidence": list(w.evidence),
        "oom": w.oom.to_json() if w.oom is not None else None,
        "slot": w.ref.slot,
        "life": w.ref.life if w.ref.slot is not None else None,
        "slot_deaths": source.roster.slot_deaths.get(w.ref.slot, {}) if w.ref.slot is not None else None,
        "restart_in_s": ev.restart_in_s,
        "level_at_death": w.level,
        "thresholds": thresholds_json(source.thresholds),
        "worker_thresholds": thresholds_json(w.override),
        "last_sample": None if last is None else {
            key: getattr(last, key) for key in ("rss", "anon", "swap", "cgroup_usage", "cgroup_limit",
                                                "heap_used", "heap_total", "heap_limit")},
        "stderr_tail": list(w.stderr)[-50:],
        "thread_deaths": [{"t": d.t, "thread_id": d.thread_id, "cause": d.cause, "message": d.message}
                          for d in w.thread_deaths],
        "advice": [{"advice": a.advice, "reason": a.reason, "suggested": a.suggested} for a in w.advice],
        "notices": list(w.notices),
        "exit_event": ev.to_json(),  # the engine's worker_exited, as `watch --json` prints it
    }


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, default=jsonable) + "\n", encoding="utf-8")


def _render_pictures(source: IncidentSource, w: WorkerState, died_at: float, folder: Path) -> None:
    """``plot.png`` and ``timeline.png``, drawn by a plot and a timeline of their own, offscreen
    and of a fixed size: the user's window (its size, zoom, selection) is neither used nor
    disturbed. ``w`` is bold among the workers alive then; a dashed line marks its death."""
    times = w.series.times()
    first = float(times[0]) if len(times) else died_at - 60.0
    start = max(first, died_at - PLOT_BEFORE_S)
    span = max(died_at - start, 1.0)
    x0, x1 = start - 0.05 * span, died_at + 0.15 * span
    plot = MemoryPlot(source.roster)
    timeline = KillTimeline(source.roster)
    try:
        for widget, (width, height) in ((plot, PLOT_SIZE_PX), (timeline, TIMELINE_SIZE_PX)):
            widget.setAttribute(Qt.WidgetAttribute.WA_DontShowOnScreen, True)
            widget.resize(width, height)
            widget.show()
        plot.set_metric(source.shown_metric)
        # The picture draws its own legend under the curves: the widget's would narrow the curves.
        plot.show_legend = False
        plot.trend_metric = None  # a forecast drawn from the last sample would point past the death
        plot.alert_metric = source.alert_metric  # the levels are drawn where they apply
        owner = w.override
        plot.set_thresholds(owner.warn if owner else source.thresholds.warn,
                            owner.crit if owner else source.thresholds.crit)
        plot.selected = {w.id}
        plot.set_follow(False)
        plot.view_box.setXRange(x0, x1, padding=0.0)
        plot.plot_item.addItem(pg.InfiniteLine(
            pos=died_at, angle=90, movable=False, pen=pg.mkPen(*CRITICAL_RGB, width=2, style=Qt.PenStyle.DashLine),
            label=f"{w.ref.name} (PID {w.ref.pid}): {w.cause}",
            labelOpts={"position": 0.95, "color": CRITICAL_RGB, "fill": (255, 255, 255, 220),
                       "anchors": [(1, 0), (1, 0)]}), ignoreBounds=True)
        # The time axis of a short life shows only seconds: the titles say which day and hour.
        title = f"{w.ref.name} (worker {w.id}, PID {w.ref.pid}) — {w.state_text()} at {_iso(died_at)}"
        timeline.plot_item.setTitle(f"Deaths from {_clock(x0)} to {_clock(x1)}", color=(40, 40, 40))
        plot.redraw()
        timeline.refresh()
        timeline.plot_item.setXRange(x0, x1, padding=0.0)
        # Framed: the title (a plot item's title was cut off), the span, the levels, the legend.
        save_image(framed_picture(plot, title), folder / "plot.png")
        save_png(timeline.plot_item, folder / "timeline.png", TIMELINE_SIZE_PX[0])
    finally:
        for widget in (plot, timeline):
            widget.close()
            widget.deleteLater()
