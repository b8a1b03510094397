"""The live window's levels: changes go to the engine, and are shown as in force once it has them."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Protocol

from oomscope.core.thresholds import ThresholdConfig

from .bridge import EngineBridge
from .levels_memory import LevelMemory
from .qt import QObject, QSettings, Signal
from .session_view import SessionView, alert_metric_label


class LevelCommands(Protocol):
    """What of the engine the levels need."""

    @property
    def thresholds(self) -> ThresholdConfig: ...

    def set_thresholds(self, config: ThresholdConfig) -> Future[None]: ...

    def set_worker_thresholds(self, worker_id: str, config: ThresholdConfig | None) -> Future[None]: ...


class EngineLevels(QObject):
    answered = Signal()  # the engine took (or refused) a change of ours: the levels can settle

    def __init__(self, engine: LevelCommands, bridge: EngineBridge, view: SessionView, settings: QSettings,
                 persist: bool) -> None:
        super().__init__(view)
        self.engine = engine
        self.bridge = bridge
        self.view = view
        self.settings = settings
        self.persist = persist
        # What of the levels is remembered: oomscope's app replaces it for a run given levels.
        self.memory = LevelMemory(settings)
        # Global levels sent to the engine and not answered yet (see settled).
        self.in_flight = 0

    def apply(self, config: ThresholdConfig) -> bool:
        self.in_flight += 1

        def answered(_: object) -> None:
            self.in_flight -= 1
            self.answered.emit()  # its echo may have come and gone while it was on the way

        def failed(error: BaseException) -> None:
            self.view.message_bar.show_message(f"Thresholds not applied: {error}")
            answered(error)

        self.bridge.call(self.engine.set_thresholds(config), on_result=answered, on_error=failed)
        if self.persist:
            self.memory.remember(config)  # gui/levels_memory.py: never a command line's levels
        self.view.say(f"thresholds: warning {config.warn or 'none'}, critical "
                      f"{config.crit or 'none'} on {alert_metric_label(config.metric)}", 6000)
        return True

    def settled(self, announced: ThresholdConfig | None) -> ThresholdConfig | None:
        """The window shows its own changes before the engine has them, and takes the engine's
        value (an immutable one, safe to read here) only when none of its changes is on the way:
        an echo of an earlier change must not move a line back or rewrite a level field being
        typed in, and a change made elsewhere (another caller of the engine) is shown once it
        settles."""
        return None if self.in_flight else self.engine.thresholds

    def apply_worker(self, worker_id: str, config: ThresholdConfig | None) -> None:
        """Give one worker its own levels (None: the global ones again); shown once the engine
        has them, so the table never claims levels the engine does not apply."""
        view = self.view
        w = view.roster.by_id.get(worker_id)
        if w is None:
            return

        def done(_: object) -> None:
            w.override = config
            view.model.worker_changed(w)
            view.show_plot_levels()
            view.plot.request_redraw()
            if view.detail.worker is w:
                view.detail.refresh()
            what = f"own thresholds: {w.levels_text()}" if config is not None else "global thresholds again"
            view.say(f"{w.ref.name} ({w.id}): {what}", 6000)

        def failed(error: BaseException) -> None:
            view.message_bar.show_message(f"Thresholds for {w.ref.name} ({w.id}) not applied: {error}")
            view.show_plot_levels()  # a dragged line goes back to what the engine has

        self.bridge.call(self.engine.set_worker_thresholds(worker_id, config), on_result=done, on_error=failed)
