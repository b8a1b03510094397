"""Warning and critical levels on one memory metric, and the level a worker is at.

This is the basic form: a level is entered as soon as a sample is at or above it and left
as soon as one is below it. (Sustain time and hysteresis come with the policy work.)
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import BadInput
from .sizes import Level

METRICS = ("rss", "anon", "heap")
ON_CRIT_ACTIONS = ("none", "terminate")
NORMAL, WARNING, CRITICAL = "normal", "warning", "critical"


@dataclass(frozen=True, slots=True)
class ThresholdConfig:
    warn: Level | None = None
    crit: Level | None = None
    metric: str = "rss"
    on_crit: str = "none"

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise BadInput(f"unknown metric {self.metric!r}: choose one of {', '.join(METRICS)}")
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


def level_of(value: int, warn_bytes: int | None, crit_bytes: int | None) -> str:
    if crit_bytes is not None and value >= crit_bytes:
        return CRITICAL
    if warn_bytes is not None and value >= warn_bytes:
        return WARNING
    return NORMAL


def heap_level(
    config: ThresholdConfig, used: int, old_used: int | None, warn_bytes: int | None, crit_bytes: int | None
) -> tuple[str, int]:
    """Level and compared value on the heap metric.

    A percent level compares old-space used with the old-generation limit (V8's
    ``heap_size_limit`` also counts the young generation, about 48 MiB more, which would make
    percents read low); an absolute size compares the heap used by all threads.
    """

    def value(level: Level | None) -> int:
        if level is not None and level.fraction is not None and old_used is not None:
            return old_used
        return used

    if crit_bytes is not None and value(config.crit) >= crit_bytes:
        return CRITICAL, value(config.crit)
    if warn_bytes is not None and value(config.warn) >= warn_bytes:
        return WARNING, value(config.warn)
    return NORMAL, value(config.warn or config.crit)
