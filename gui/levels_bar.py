"""The toolbar's levels: the metric the alerts compare, the warning and the critical level, and
the plot's draggable level lines. Where a change goes is the ``LevelsTarget``'s business: the
live engine (``EngineLevels``, gui/engine_levels.py) or nowhere, in a replay that shows the
recorded levels (``RecordedLevels``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

from oomscope.core.errors import BadInput
from oomscope.core.sizes import Level, parse_level
from oomscope.core.thresholds import ThresholdConfig

from .dialogs import level_text
from .history import METRIC_LABELS
from .qt import QtWidgets
from .session_view import ENGINE_METRIC, PLOT_METRIC, SessionView


class LevelsTarget(Protocol):
    def apply(self, config: ThresholdConfig) -> bool:
        """Put the global levels in force; False: they stay as they are (a replay's)."""
        ...

    def apply_worker(self, worker_id: str, config: ThresholdConfig | None) -> None:
        """Give one worker its own levels (None: the global ones again)."""
        ...

    def settled(self, announced: ThresholdConfig | None) -> ThresholdConfig | None:
        """The global levels to show once ``announced`` came (None: leave them)."""
        ...


class RecordedLevels:
    """A replay's levels: the recording's, changed by its ``levels`` events only."""

    def apply(self, config: ThresholdConfig) -> bool:
        return False

    def apply_worker(self, worker_id: str, config: ThresholdConfig | None) -> None:
        pass

    def settled(self, announced: ThresholdConfig | None) -> ThresholdConfig | None:
        return announced


class LevelsBar:
    """The Alerts on box and the Warning and Critical fields, added to ``bar``."""

    def __init__(self, view: SessionView, target: LevelsTarget, bar: QtWidgets.QToolBar) -> None:
        self.view = view
        self.target = target
        view.plot.threshold_moved.connect(self._on_threshold_moved)
        # What the levels, and so the alerts and the actions at warning and critical, compare. A
        # control of its own: the plot's Metric box only changes what is drawn, so looking at heap
        # never silently moves a worker over its RSS critical back to "running".
        self.alert_metric_box = QtWidgets.QComboBox()
        self.alert_metric_box.setObjectName("alert-metric")
        self.alert_metric_box.setToolTip("The metric the warning and critical levels compare: what the alerts, "
                                         "the actions at critical, the trend and its forecasts use (--metric). "
                                         "The plot's Metric box does not change it")
        for plot_metric in ENGINE_METRIC:
            self.alert_metric_box.addItem(METRIC_LABELS[plot_metric], ENGINE_METRIC[plot_metric])
        self.alert_metric_box.activated.connect(self._on_alert_metric_chosen)
        bar.addWidget(QtWidgets.QLabel(" Alerts on: "))
        bar.addWidget(self.alert_metric_box)
        self.warn_edit = self._level_edit("warning", "Warning level: a size (400MiB, 1.5G) or a percent of "
                                          "the worker's limit (75%); empty: none. Enter applies; or drag the "
                                          "amber line")
        self.crit_edit = self._level_edit("critical", "Critical level: a size (600MiB) or a percent of the "
                                          "worker's limit (90%); empty: none. Enter applies; or drag the red line")
        bar.addWidget(QtWidgets.QLabel(" Warning: "))
        bar.addWidget(self.warn_edit)
        bar.addWidget(QtWidgets.QLabel("  Critical: "))
        bar.addWidget(self.crit_edit)

    def _level_edit(self, name: str, tip: str) -> QtWidgets.QLineEdit:
        edit = QtWidgets.QLineEdit()
        edit.setObjectName(f"{name}-level")
        edit.setToolTip(tip)
        edit.setPlaceholderText("none")
        edit.setFixedWidth(90)
        edit.editingFinished.connect(self._on_level_edited)
        return edit

    def display_only(self) -> None:
        """Shown, not edited: a replay's recorded levels."""
        for edit in (self.warn_edit, self.crit_edit):
            edit.setReadOnly(True)
            edit.setEnabled(False)
        self.alert_metric_box.setEnabled(False)
        for line in self.view.plot.lines.values():
            line.setMovable(False)

    def show_thresholds(self) -> None:
        # Every change of the global thresholds passes here: the plot draws its level lines and
        # its forecasts only on the metric the engine's levels, rate and ETAs are of.
        thresholds = self.view.thresholds
        plot_metric = PLOT_METRIC.get(thresholds.metric)
        self.view.plot.trend_metric = plot_metric
        self.view.plot.set_alert_metric(plot_metric)
        index = self.alert_metric_box.findData(thresholds.metric)
        if index >= 0 and index != self.alert_metric_box.currentIndex():
            self.alert_metric_box.setCurrentIndex(index)
        self.warn_edit.setText(level_text(thresholds.warn))
        self.crit_edit.setText(level_text(thresholds.crit))
        for edit in (self.warn_edit, self.crit_edit):
            edit.setStyleSheet("")
        self.view.show_plot_levels()

    def on_announced(self, announced: ThresholdConfig | None) -> None:
        """Levels in force were announced (or a change of ours answered): show them once settled."""
        settled = self.target.settled(announced)
        if settled is None or settled == self.view.thresholds:
            return
        self.view.thresholds = settled
        self.show_thresholds()

    def _parse_edit(self, edit: QtWidgets.QLineEdit) -> Level | None:
        text = edit.text().strip()
        return parse_level(text) if text else None

    def _on_level_edited(self) -> None:
        try:
            warn, crit = self._parse_edit(self.warn_edit), self._parse_edit(self.crit_edit)
        except BadInput as e:
            self.reject(str(e))
            return
        if (warn, crit) != (self.view.thresholds.warn, self.view.thresholds.crit):
            self.set_levels(warn, crit)

    def set_levels(self, warn: Level | None, crit: Level | None) -> bool:
        """New global levels (same metric and action); False, and says why, if invalid."""
        try:
            # Only the levels change: metric, actions, sustain and hysteresis stay as they are.
            config = replace(self.view.thresholds, warn=warn, crit=crit)
        except BadInput as e:
            self.reject(str(e))
            return False
        self.apply(config)
        return True

    def apply(self, config: ThresholdConfig) -> None:
        if self.target.apply(config):
            self.view.thresholds = config
        self.show_thresholds()

    def reject(self, why: str) -> None:
        self.view.message_bar.show_message(why)
        self.show_thresholds()

    def _on_threshold_moved(self, level: str, value_bytes: int) -> None:
        view = self.view
        owner = view.roster.by_id.get(view.plot.levels_owner or "")
        config = owner.override if owner is not None and owner.override is not None else view.thresholds
        current = config.warn if level == "warning" else config.crit
        if current is not None and current.fraction is not None:
            limit = view.plot.reference_limit
            if not limit:
                self.show_thresholds()
                return
            fraction = round(min(1.0, max(0.01, value_bytes / limit)), 3)
            new = Level(fraction=fraction)
        else:
            new = Level(bytes=value_bytes)
        warn, crit = (new, config.crit) if level == "warning" else (config.warn, new)
        if owner is None or owner.override is None:
            self.set_levels(warn, crit)
            return
        # The lines showed this worker's own levels: the drag changes those, not the global ones.
        try:
            changed = replace(config, warn=warn, crit=crit)
        except BadInput as e:
            self.reject(str(e))
            return
        self.target.apply_worker(owner.id, changed)

    def _on_alert_metric_chosen(self, index: int) -> None:
        self.set_alert_metric(str(self.alert_metric_box.itemData(index)))

    def set_alert_metric(self, metric: str) -> None:
        """Compare the levels on ``metric`` (the engine's name: rss, anon, heap) from now on."""
        if metric == self.view.thresholds.metric:
            self.show_thresholds()
            return
        self.apply(replace(self.view.thresholds, metric=metric))
