"""Warning and critical levels on one memory metric, what entering each does, and the level a
worker is at.

:class:`ThresholdConfig` is the one shape of the concept: the settings file's ``[thresholds]``
(and, as a :class:`ThresholdOverride`, a ``[workers."regex"]`` table), the command line, the
engine, the window and a recording all hold this type, and encode it with the codec at the end.

A level is entered when the value has stayed at or above it for ``sustain_s`` (a sampling spike
does not trip it, a steady climb does) and left only when the value falls below the level minus
``hysteresis`` (a fraction of the level), so a value hovering at a line does not flap.
With both at 0 a level follows each sample.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any, Final, cast

from .errors import BadInput
from .sizes import Level, parse_level

METRICS: Final = ("rss", "anon", "heap")
# "notify" is the front end's: the engine does nothing for it, the window shows a desktop
# notification and `watch` has its event anyway; "terminate" is SIGTERM, grace_s, SIGKILL.
ACTIONS: Final = ("none", "notify", "terminate")
MAX_HYSTERESIS: Final = 0.5
NORMAL, WARNING, CRITICAL = "normal", "warning", "critical"
LEVEL_RANK = {NORMAL: 0, WARNING: 1, CRITICAL: 2}


# --- checks shared with the settings file's reader (same words in both places) ---------------


def check_choice(value: object, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        shown = json.dumps(value) if isinstance(value, str) else str(value)
        raise BadInput(f"{shown} is not {what}: choose one of {', '.join(json.dumps(a) for a in allowed)}")


# The longest duration any setting takes (a week): beyond it a value is a typo (1e308), and
# timers given such a number overflow instead of waiting.
MAX_SECONDS: Final = 7 * 24 * 3600.0


def check_seconds(value: float, minimum: float, *, above: bool = False,
                  maximum: float = MAX_SECONDS) -> None:
    if not (math.isfinite(value) and (value > minimum if above else value >= minimum)
            and value <= maximum):
        bound = f"above {minimum:g}" if above else f"at least {minimum:g}"
        raise BadInput(f"{value:g} is not allowed: write a number of seconds {bound} and at most "
                       f"{maximum:g}{' (a week)' if maximum == MAX_SECONDS else ''}")


def check_hysteresis(value: float) -> None:
    if not (math.isfinite(value) and 0 <= value <= MAX_HYSTERESIS):
        raise BadInput(
            f"{value * 100:g}% is not allowed: hysteresis is a percent of the level from "
            f'"0%" to "{MAX_HYSTERESIS * 100:g}%", e.g. "5%"'
        )


def check_levels(warn: Level | None, crit: Level | None) -> None:
    # Only levels of the same kind compare: a size against a percent depends on the limit.
    if warn is not None and crit is not None and _not_below(warn, crit):
        raise BadInput(f"warning level {warn} must be below critical level {crit}")


def _not_below(warn: Level, crit: Level) -> bool:
    return any(a is not None and b is not None and a >= b
               for a, b in ((warn.bytes, crit.bytes), (warn.fraction, crit.fraction)))


def named(key: str, check: Any) -> None:
    """Run ``check``; its complaint is prefixed with the key it is about."""
    try:
        check()
    except BadInput as e:
        raise BadInput(f"{key}: {e}") from None


@dataclass(frozen=True, slots=True)
class ThresholdConfig:
    """Levels on one metric, how long a level must hold, and what entering each level does.

    The field defaults do nothing (no levels, no actions); :data:`DEFAULT_THRESHOLDS` holds the
    defaults a user gets when neither the command line nor the settings file says otherwise.
    """

    warn: Level | None = None
    crit: Level | None = None
    metric: str = "rss"
    on_crit: str = "none"
    sustain_s: float = 0.0
    hysteresis: float = 0.0  # fraction of the level: left only below level * (1 - hysteresis)
    on_warn: str = "none"
    grace_s: float = 3.0  # a "terminate" action's time between SIGTERM and SIGKILL

    def __post_init__(self) -> None:
        named("metric", lambda: check_choice(self.metric, METRICS, "a metric"))
        named("on_warn", lambda: check_choice(self.on_warn, ACTIONS, "an action"))
        named("on_crit", lambda: check_choice(self.on_crit, ACTIONS, "an action"))
        named("sustain_s", lambda: check_seconds(self.sustain_s, 0))
        named("grace_s", lambda: check_seconds(self.grace_s, 0))
        named("hysteresis", lambda: check_hysteresis(self.hysteresis))
        check_levels(self.warn, self.crit)

    def action(self, level: str) -> str:
        """What entering ``level`` (warning or critical) does."""
        return self.on_crit if level == CRITICAL else self.on_warn if level == WARNING else "none"

    def levels_for(self, limit_bytes: int | None) -> tuple[int | None, int | None]:
        """Warning and critical in bytes for a worker with this limit (None where inactive)."""
        warn = self.warn.resolve(limit_bytes) if self.warn else None
        crit = self.crit.resolve(limit_bytes) if self.crit else None
        return warn, crit

    @property
    def needs_limit(self) -> bool:
        return any(lv is not None and lv.fraction is not None for lv in (self.warn, self.crit))


FIELDS: Final = tuple(ThresholdConfig.__dataclass_fields__)
DEFAULT_THRESHOLDS: Final = ThresholdConfig(
    warn=Level(fraction=0.75), crit=Level(fraction=0.90), sustain_s=2.0, hysteresis=0.05,
    on_crit="notify",
)
_WARN_UNDER_CRIT: Final = Fraction(75, 90)  # the defaults' proportion, exact for sizes in bytes


@dataclass(frozen=True, slots=True)
class ThresholdOverride:
    """Some of :class:`ThresholdConfig`'s fields (a ``[workers."regex"]`` table); the others
    come from the levels it is applied to."""

    changes: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        unknown = [k for k, _ in self.changes if k not in FIELDS]
        if unknown:
            raise BadInput(f"unknown threshold keys {', '.join(unknown)}: choose from {', '.join(FIELDS)}")

    @property
    def keys(self) -> tuple[str, ...]:
        """The keys this override sets, in field order."""
        mine = dict(self.changes)
        return tuple(k for k in FIELDS if k in mine)

    def apply(self, base: ThresholdConfig) -> ThresholdConfig:
        """``base`` with this override's keys replaced; BadInput if the result is invalid (a
        worker's warn at or above the global crit). A critical level given without a warning
        level takes the warning level down with it where it must (:func:`crit_with_following_warn`),
        as ``--crit`` alone does on the command line."""
        changes = dict(self.changes)
        if "crit" in changes and "warn" not in changes:
            base, _moved = crit_with_following_warn(base, cast("Level | None", changes.pop("crit")))
        return replace(base, **changes)


def crit_with_following_warn(base: ThresholdConfig, crit: Level | None) -> tuple[ThresholdConfig, bool]:
    """``base`` with critical level ``crit``, where the user gave no warning level of their own,
    and whether the warning level had to move.

    A warning level that would no longer be below ``crit`` follows it down, in the defaults'
    proportion (75% under 90%: five sixths of it): a user who gives only a critical level of
    60% means a lower critical level, not a conflict with a warning level they never chose.
    """
    warn = base.warn
    if crit is None or warn is None or not _not_below(warn, crit):
        return replace(base, crit=crit), False
    follow = (Level(bytes=int(crit.bytes * _WARN_UNDER_CRIT)) if crit.bytes is not None
              else Level(fraction=round(float((crit.fraction or 0.0) * _WARN_UNDER_CRIT), 4)))
    return replace(base, warn=follow, crit=crit), True


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


def limit_values(config: ThresholdConfig, usage: int, warn_value: int, crit_value: int) -> tuple[int, int]:
    """The values a worker alone in its cgroup compares: ``usage`` for a percent level (a percent
    of the cgroup's limit means of what that limit counts: the cgroup's usage, page cache and
    kernel memory included), the metric's own value for an absolute size."""
    warn = usage if config.warn is not None and config.warn.fraction is not None else warn_value
    crit = usage if config.crit is not None and config.crit.fraction is not None else crit_value
    return warn, crit


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

    def pending(self) -> tuple[str, float] | None:
        """The level the value is above but has not held for the sustain time yet, and since
        when (monotonic): ``("critical", t)``; None when nothing is pending."""
        if self._crit_since is not None and self.level != CRITICAL:
            return CRITICAL, self._crit_since
        if self._warn_since is not None and self.level == NORMAL:
            return WARNING, self._warn_since
        return None


# --- the codec: the one JSON and row form of thresholds ---------------------------------------


def level_to_json(level: Level | None) -> dict[str, Any] | None:
    """A level as the JSON contract writes it: ``{"bytes": n}``, ``{"percent": p}`` or null."""
    if level is None:
        return None
    if level.bytes is not None:
        return {"bytes": level.bytes}
    # Rounded: 0.07 * 100 is 7.000000000000001 in binary floating point.
    return {"percent": round((level.fraction or 0.0) * 100, 6)}


def level_from_json(value: object) -> Level | None:
    """The inverse of :func:`level_to_json`; also reads the forms older session files hold
    (``{"bytes": n, "fraction": null}``, ``{"fraction": 0.75}``) and a level as typed (``"75%"``)."""
    if value is None or value is False or value == "":
        return None
    if isinstance(value, str):
        return parse_level(value)
    if not isinstance(value, Mapping):
        raise BadInput(f"{value!r} is not a level")
    if value.get("bytes") is not None:
        return Level(bytes=int(value["bytes"]))
    if value.get("percent") is not None:
        return Level(fraction=float(value["percent"]) / 100)
    if value.get("fraction") is not None:
        return Level(fraction=float(value["fraction"]))
    return None


def thresholds_to_json(config: ThresholdConfig) -> dict[str, Any]:
    """The fields of a ``levels`` event (``watch --json``): the levels and their actions."""
    return {
        "warn": level_to_json(config.warn), "crit": level_to_json(config.crit), "metric": config.metric,
        "on_warn": config.on_warn, "on_crit": config.on_crit, "sustain_s": config.sustain_s,
        "hysteresis_percent": round(config.hysteresis * 100, 6),
    }


def settings_to_json(config: ThresholdConfig) -> dict[str, Any]:
    """Every field (a session's settings, an incident's cause.json): the event's and ``grace_s``."""
    return {**thresholds_to_json(config), "grace_s": config.grace_s}


def thresholds_from_json(d: Mapping[str, Any]) -> ThresholdConfig:
    """The inverse of :func:`settings_to_json` (and of :func:`thresholds_to_json`: a missing
    field keeps the type's default); reads the dataclass dump older session files hold, whose
    ``hysteresis`` is a fraction. BadInput (or TypeError/ValueError) on damaged data."""
    kw: dict[str, Any] = {"warn": level_from_json(d.get("warn")), "crit": level_from_json(d.get("crit"))}
    for key in ("metric", "on_warn", "on_crit"):
        if d.get(key) is not None:
            kw[key] = str(d[key])
    for key in ("sustain_s", "grace_s"):
        if d.get(key) is not None:
            kw[key] = float(d[key])
    if d.get("hysteresis_percent") is not None:
        kw["hysteresis"] = float(d["hysteresis_percent"]) / 100
    elif d.get("hysteresis") is not None:
        kw["hysteresis"] = float(d["hysteresis"])
    return ThresholdConfig(**kw)


# The session file's ``levels`` columns (schema.LEVELS) between ``worker_id`` and ``back_to_global``:
# a level is a size in bytes or a fraction of the limit, the other column empty.
ROW_COLUMNS: Final = ("warn_bytes", "warn_fraction", "crit_bytes", "crit_fraction", "metric",
                      "on_warn", "on_crit", "sustain_s", "hysteresis")


def thresholds_to_row(config: ThresholdConfig) -> tuple[Any, ...]:
    w, c = config.warn, config.crit
    return (w.bytes if w else None, w.fraction if w else None, c.bytes if c else None,
            c.fraction if c else None, config.metric, config.on_warn, config.on_crit,
            config.sustain_s, config.hysteresis)


def thresholds_from_row(row: Sequence[Any]) -> ThresholdConfig:
    def level(size: int | None, fraction: float | None) -> Level | None:
        return Level(bytes=int(size)) if size is not None else (
            Level(fraction=float(fraction)) if fraction is not None else None)

    return ThresholdConfig(warn=level(row[0], row[1]), crit=level(row[2], row[3]), metric=row[4],
                           on_warn=row[5], on_crit=row[6], sustain_s=row[7], hysteresis=row[8])
