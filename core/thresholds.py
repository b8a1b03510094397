"""Warning and critical levels on one memory metric, and the level a worker is at.

A level is entered when the value has stayed at or above it for ``sustain_s`` (a sampling spike
does not trip it, a steady climb does) and left only when the value falls below the level minus
``hysteresis`` (a fraction of the level), so a value hovering at a line does not flap.
With both at 0 a level follows each sample.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import BadInput
from .sizes import Level

METRICS = ("rss", "anon", "heap")
ON_CRIT_ACTIONS = ("none", "terminate")
NORMAL, WARNING, CRITICAL = "normal", "warning", "critical"
LEVEL_RANK = {NORMAL: 0, WARNING: 1, CRITICAL: 2}


@dataclass(frozen=True, slots=True)
class ThresholdConfig:
    warn: Level | None = None
    crit: Level | None = None
    metric: str = "rss"
    on_crit: str = "none"
    sustain_s: float = 0.0
    hysteresis: float = 0.0
    on_warn: str = "none"

    def __post_init__(self) -> None:
        if not (self.sustain_s >= 0):
            raise BadInput(f"sustain time {self.sustain_s:g} s must not be negative")
        if not (0 <= self.hysteresis <= 0.5):
            raise BadInput(f"hysteresis {self.hysteresis * 100:g}% must be between 0% and 50% of the level")
        if self.metric not in METRICS:
            raise BadInput(f"unknown metric {self.metric!r}: choose one of {', '.join(METRICS)}")
        if self.on_warn not in ON_CRIT_ACTIONS:
            raise BadInput(
                f"unknown --on-warn action {self.on_warn!r}: choose one of {', '.join(ON_CRIT_ACTIONS)}"
            )
        if self.on_crit not in ON_CRIT_ACTIONS:
            raise BadInput(
                f"unknown --on-crit action {self.on_crit!r}: choose one of "
                f"{', '.join(ON_CRIT_ACTIONS)}"
            )
        warn, crit = self.warn, self.crit
        if warn is not None and crit is not None:
            # Only levels of the same kind compare: a size against a percent depends on the limit.
            for a, b in ((warn.bytes, crit.bytes), (warn.fraction, crit.fraction)):
                if a is not None and b is not None and a >= b:
                    raise BadInput(f"warning level {warn} must be below critical level {crit}")

    def levels_for(self, limit_bytes: int | None) -> tuple[int | None, int | None]:
        """Warning and critical in bytes for a worker with this limit (None where inactive)."""
        warn = self.warn.resolve(limit_bytes) if self.warn else None
        crit = self.crit.resolve(limit_bytes) if self.crit else None
        return warn, crit

    @property
    def needs_limit(self) -> bool:
        return any(lv is not None and lv.fraction is not None for lv in (self.warn, self.crit))


def heap_values(config: ThresholdConfig, used: int, old_used: int | None) -> tuple[int, int]:
    """The values the warning and the critical level compare on the heap metric.

    A percent level compares old-space used with the old-generation limit (V8's
    ``heap_size_limit`` also counts the young generation, about 48 MiB more, which would make
    percents read low); an absolute size compares the heap used by all threads.
    """

    def value(level: Level | None) -> int:
        if level is not None and level.fraction is not None and old_used is not None:
            return old_used
        return used

    return value(config.warn), value(config.crit)


class LevelTracker:
    """The level one worker is at, with sustain on the way up and hysteresis on the way down."""

    __slots__ = ("level", "_warn_since", "_crit_since")

    def __init__(self) -> None:
        self.level = NORMAL
        self._warn_since: float | None = None
        self._crit_since: float | None = None

    def update(self, warn_value: int, crit_value: int, warn_bytes: int | None, crit_bytes: int | None,
               now: float, sustain_s: float, hysteresis: float) -> str:
        # Since when the value has been above each level without a break: one sample below
        # restarts the clock, so a spike never adds up to a sustained crossing.
        above_warn = warn_bytes is not None and warn_value >= warn_bytes
        above_crit = crit_bytes is not None and crit_value >= crit_bytes
        self._warn_since = (self._warn_since if self._warn_since is not None else now) if above_warn else None
        self._crit_since = (self._crit_since if self._crit_since is not None else now) if above_crit else None
        level = self.level
        if level == CRITICAL and (crit_bytes is None or crit_value < crit_bytes * (1 - hysteresis)):
            level = WARNING
        if level == WARNING and (warn_bytes is None or warn_value < warn_bytes * (1 - hysteresis)):
            level = NORMAL
        if self._crit_since is not None and now - self._crit_since >= sustain_s:
            level = CRITICAL
        elif level == NORMAL and self._warn_since is not None and now - self._warn_since >= sustain_s:
            level = WARNING
        self.level = level
        return level
