"""The levels the window remembers for its next launch (QSettings ``thresholds/warn``, ``…/crit``,
``…/metric``): the ones the user set in the window, never the ones a command line gave.

``oomscope --warn 260MiB --crit 300MiB`` applies those levels to that run only. They become the
user's, and are remembered, once the user changes them in the window (a field, a dragged line,
the Alerts on box): each level on its own, so dragging the warning line of such a run remembers
that warning and leaves the remembered critical level as it was.
"""

from __future__ import annotations

from dataclasses import replace

from oomscope.core.errors import BadInput
from oomscope.core.sizes import Level, parse_level
from oomscope.core.thresholds import ThresholdConfig

from .dialogs import level_text
from .qt import QSettings

_KEYS = ("warn", "crit", "metric")


class LevelMemory:
    """Writes the window's global levels to the settings, except what this run was given.

    ``given`` holds the values that came from the command line (or a settings file a command
    line named) for this run only: ``warn``, ``crit``, ``metric``. A value still equal to its given
    one is not the user's and is not written; once changed in the window it is the user's.
    """

    def __init__(self, settings: QSettings, given: dict[str, object] | None = None) -> None:
        self._settings = settings
        self._given = dict(given or {})

    def remember(self, config: ThresholdConfig) -> None:
        texts = {"warn": level_text(config.warn), "crit": level_text(config.crit), "metric": config.metric}
        values: dict[str, object] = {"warn": config.warn, "crit": config.crit, "metric": config.metric}
        for key in _KEYS:
            if key in self._given:
                if values[key] == self._given[key]:
                    continue  # still the command line's, for this run only
                del self._given[key]  # set in the window: the user's from now on
            self._settings.setValue(f"thresholds/{key}", texts[key])


def given_levels(config: ThresholdConfig, *, levels_typed: bool, metric_typed: bool) -> dict[str, object]:
    """What a run was given rather than remembered: its starting warn and crit when the command
    line gave any level (the remembered ones were not read then), its metric when it gave one."""
    given: dict[str, object] = {}
    if levels_typed:
        given.update(warn=config.warn, crit=config.crit)
    if metric_typed:
        given["metric"] = config.metric
    return given


def saved_thresholds(settings: QSettings, base: ThresholdConfig) -> ThresholdConfig | None:
    """``base`` with the remembered levels, or None when none are remembered (or they are junk)."""
    texts = {key: str(settings.value(f"thresholds/{key}", "") or "") for key in ("warn", "crit")}
    if not any(texts.values()):
        return None

    def level(key: str, default: Level | None) -> Level | None:
        # A level never set in the window keeps the default; one cleared there stays off.
        if not settings.contains(f"thresholds/{key}"):
            return default
        return parse_level(texts[key]) if texts[key] else None

    try:
        return replace(base, warn=level("warn", base.warn), crit=level("crit", base.crit))
    except BadInput:
        return None  # a hand-edited settings file must not stop the app from starting


def saved_alert_metric(settings: QSettings, base: ThresholdConfig) -> ThresholdConfig:
    """``base`` on the metric the Alerts on box last chose, on purpose."""
    metric = settings.value("thresholds/metric", "")
    if not metric or metric == base.metric:
        return base
    try:
        return replace(base, metric=str(metric))
    except BadInput:
        return base  # a hand-edited settings file must not stop the app from starting
