"""What an engine is told at its start: the sampling interval, the levels, what to keep.

Its own module, below the engine and its parts: the parts (intake, exits) read the config and
the engine puts them together, so nothing here may import the engine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from .errors import BadInput
from .events import WorkerRef
from .forecast import START_UP_S
from .restart import RestartPolicy
from .sizes import Level
from .thresholds import ThresholdConfig
from .worker import EXITED_KEPT

__all__ = ["MIN_INTERVAL_S", "EngineConfig"]

# The shortest sampling (and heap report) interval: below it, reading /proc for a pool of
# workers is most of what the machine does.
MIN_INTERVAL_S: Final = 0.05


@dataclass(frozen=True, slots=True)
class EngineConfig:
    interval_s: float = 1.0
    thresholds: ThresholdConfig = field(default_factory=ThresholdConfig)
    # For a terminate by hand and at stop; a level's "terminate" uses its own thresholds.grace_s
    # (the front ends set both from --grace / the settings file).
    grace_s: float = 3.0
    rescan_s: float = 0.5
    output_lines: int = 200
    emit_output: bool = True
    terminate_launched_on_stop: bool = True
    kernel_log: bool = True
    heap_reports: bool = True
    heap_interval_s: float = 1.0
    inspect_heap: bool = False
    trend_window_s: float = 60.0
    # Per-worker thresholds from the settings file: (regex on name or command line, thresholds);
    # the first that matches a new worker is its override.
    worker_overrides: tuple[tuple[str, ThresholdConfig], ...] = ()
    trend_bucket_s: float = 5.0
    # A process's first seconds are its runtime sizing itself, not a trend (core/forecast.py).
    trend_start_up_s: float = START_UP_S
    # Exited workers kept in the engine (core/worker.py EXITED_KEPT says why there is a cap).
    exited_kept: int = EXITED_KEPT
    # The settings file's [restart]: the delays and the guard a launch with a restart count
    # follows where the caller gives only the count (the GUI's launch dialog).
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    # --mem-high / [launch] mem_high: the memory.high throttle of each launched worker's own
    # cgroup, a size or a fraction of its limit (core/cgroup/high.py); None: no throttle.
    mem_high: Level | None = None

    def override_for(self, ref: WorkerRef) -> ThresholdConfig | None:
        """The settings file's thresholds for this worker: the first pattern that matches its
        name or command line."""
        line = " ".join(ref.cmd)
        for pattern, override in self.worker_overrides:
            if re.search(pattern, ref.name) or re.search(pattern, line):
                return override
        return None

    def __post_init__(self) -> None:
        if not (self.interval_s >= MIN_INTERVAL_S):
            raise BadInput(
                f"interval {self.interval_s:g} s is too short: the minimum is {MIN_INTERVAL_S} s"
            )
        if self.exited_kept < 0:
            raise BadInput(f"exited workers kept: {self.exited_kept} must not be negative")
        if not (self.grace_s >= 0):
            raise BadInput(f"grace period {self.grace_s:g} s must not be negative")
        if not (self.heap_interval_s >= MIN_INTERVAL_S):
            raise BadInput(f"heap interval {self.heap_interval_s:g} s is too short: the minimum is "
                           f"{MIN_INTERVAL_S} s")
