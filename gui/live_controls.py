"""What starts or signals a process: Launch, Attach, Terminate, Kill now, Terminate all critical,
a worker's own levels; over a narrow protocol of engine commands. A replay has none of it."""

from __future__ import annotations

import functools
import time
from concurrent.futures import Future
from typing import Protocol

from oomscope.core.engine import EngineConfig
from oomscope.core.errors import Error
from oomscope.core.events import WorkerRef
from oomscope.core.launch import LaunchSpec
from oomscope.core.restart import RestartPolicy
from oomscope.core.thresholds import CRITICAL

from .actions import make_action
from .bridge import EngineBridge
from .dialogs import AttachDialog, ConfirmFn, LaunchDialog, WorkerThresholdsDialog
from .levels_bar import LevelsTarget
from .qt import QObject, QSettings, QtWidgets
from .roster import WorkerState
from .session_view import SessionView


class EngineCommands(Protocol):
    """The engine's commands the live window sends, and what it reads for its status bar."""

    config: EngineConfig
    pidfd_fallback: str | None

    @property
    def sampling_cpu_s(self) -> float: ...

    def launch(self, spec: LaunchSpec, restart: RestartPolicy | None = None) -> Future[WorkerRef]: ...

    def attach(self, pid: int, *, parent_pid: int | None = None) -> Future[WorkerRef]: ...

    def watch_children(self, pid: int) -> Future[list[WorkerRef]]: ...

    def inspect_heap(self, worker_id: str) -> Future[None]: ...

    def terminate(self, worker_id: str, *, by: str = "user", kill_now: bool = False,
                  grace_s: float | None = None, reason: str | None = None) -> Future[None]: ...


class LiveControls(QObject):
    def __init__(self, engine: EngineCommands, bridge: EngineBridge, view: SessionView, levels: LevelsTarget,
                 host: QtWidgets.QMainWindow, settings: QSettings, confirm: ConfirmFn) -> None:
        super().__init__(host)
        self.engine = engine
        self.bridge = bridge
        self.view = view
        self.levels = levels
        self.host = host
        self.settings = settings
        self.confirm = confirm
        self.worker_thresholds_dialog: WorkerThresholdsDialog | None = None
        self.launch_action = make_action(host, "Launch…", "Start a command as a worker, optionally under a "
                                         "memory limit", "Ctrl+L", self.open_launch_dialog, "launch")
        self.attach_action = make_action(host, "Attach…", "Watch running processes, or the children of a pool "
                                         "master", "Ctrl+Shift+A", self.open_attach_dialog, "attach")
        self.terminate_action = make_action(host, "Terminate", "SIGTERM the selected workers, SIGKILL after the "
                                            "grace period", "Delete", lambda: self.terminate_selected(False),
                                            "terminate")
        self.kill_action = make_action(host, "Kill now", "SIGKILL the selected workers at once", "Shift+Delete",
                                       lambda: self.terminate_selected(True), "kill")
        self.terminate_critical_action = make_action(
            host, "Terminate all critical", "Terminate every worker at or above the critical level",
            "Ctrl+Shift+Delete", self.terminate_critical, "terminate-critical")
        self.worker_thresholds_action = make_action(
            host, "Thresholds for this worker…", "Give the selected worker its own warning and critical levels "
            "(or back to the global ones)", "Ctrl+T", self.open_worker_thresholds, "worker-thresholds")
        view.menu_actions = [self.terminate_action, self.kill_action, None, self.terminate_critical_action]
        view.selection_menu_actions.insert(0, self.worker_thresholds_action)
        hint = view.plot.empty_label
        hint.set_buttons({"launch", "attach"})
        hint.launch_clicked.connect(self.open_launch_dialog)
        hint.attach_clicked.connect(self.open_attach_dialog)
        self._cpu_mark = (time.monotonic(), engine.sampling_cpu_s)
        self.pidfd_status: QtWidgets.QLabel | None = None
        if engine.pidfd_fallback is not None:
            # The engine's notice fades from the message bar; the weaker signalling stays.
            self.pidfd_status = QtWidgets.QLabel("no pidfd: start-time checks")
            self.pidfd_status.setObjectName("pidfd-status")
            self.pidfd_status.setToolTip(engine.pidfd_fallback)
        self.update_sampling()

    def update_sampling(self) -> None:
        now = time.monotonic()
        cpu = self.engine.sampling_cpu_s
        t0, c0 = self._cpu_mark
        load = 100.0 * (cpu - c0) / (now - t0) if now > t0 else 0.0
        self._cpu_mark = (now, cpu)
        self.view.sampling_status.setText(f"every {self.engine.config.interval_s:g} s · engine {load:.1f} % CPU")

    def update_actions(self) -> None:
        alive = [w for w in self.view.selected_workers() if w.alive]
        self.terminate_action.setEnabled(bool(alive))
        self.kill_action.setEnabled(bool(alive))
        self.worker_thresholds_action.setEnabled(len(alive) == 1)
        critical = any(w.alive and w.level == CRITICAL for w in self.view.roster.workers)
        self.terminate_critical_action.setEnabled(critical)

    # ---------------------------------------------------------------- starting

    def launch(self, spec: LaunchSpec, restart: RestartPolicy | None = None) -> None:
        """Start a worker; with a ``restart`` policy the engine restarts it in the same slot."""
        self.bridge.call(self.engine.launch(spec, restart=restart), on_error=lambda e: self.view.message_bar.show_message(
            f"Cannot launch {spec.display_name()}: {e}"))

    def attach(self, pid: int, inspect_heap: bool = False) -> None:
        engine = self.engine
        say = self.view.message_bar.show_message

        def attached(ref: WorkerRef) -> None:
            if inspect_heap:
                self.bridge.call(engine.inspect_heap(ref.id), on_error=lambda e: say(
                    f"No heap inspection for {ref.name} (PID {ref.pid}): {e}"))
        self.bridge.call(engine.attach(pid), on_result=attached, on_error=lambda e: say(
            f"Cannot attach to PID {pid}: {e}"))

    def attach_children(self, pid: int) -> None:
        def done(refs: list[WorkerRef]) -> None:
            if not refs:
                self.view.say(f"PID {pid} has no children yet; new ones will be picked up", 8000)
        self.bridge.call(self.engine.watch_children(pid), on_result=done, on_error=lambda e: (
            self.view.message_bar.show_message(f"Cannot watch the children of PID {pid}: {e}")))

    def open_launch_dialog(self) -> None:
        dialog = LaunchDialog(self.settings, self.host, restart=self.engine.config.restart)
        if dialog.exec() == QtWidgets.QDialog.DialogCode.Accepted and dialog.spec is not None:
            self.launch(dialog.spec, restart=dialog.restart_policy())

    def open_attach_dialog(self) -> None:
        dialog = AttachDialog(self.settings, self.host)
        if dialog.exec() == QtWidgets.QDialog.DialogCode.Accepted and dialog.choice is not None:
            for pid in dialog.choice.pids:
                if dialog.choice.children_of:
                    self.attach_children(pid)
                else:
                    self.attach(pid, inspect_heap=dialog.choice.inspect_heap)

    def open_worker_thresholds(self, *_: object) -> WorkerThresholdsDialog | None:
        """The selected worker's own levels, in a dialog that does not block the window (samples
        keep arriving while the user types)."""
        alive = [w for w in self.view.selected_workers() if w.alive]
        if len(alive) != 1:
            self.view.say("select one running worker to give it its own thresholds", 5000)
            return None
        dialog = WorkerThresholdsDialog(alive[0], self.view.thresholds, self.host)
        dialog.accepted.connect(lambda: self.levels.apply_worker(dialog.worker_id, dialog.config))
        dialog.finished.connect(dialog.deleteLater)
        self.worker_thresholds_dialog = dialog
        dialog.open()
        return dialog

    # ------------------------------------------------------------ terminating

    def terminate_selected(self, kill_now: bool) -> None:
        self.terminate([w for w in self.view.selected_workers() if w.alive], kill_now)

    def terminate_critical(self) -> None:
        targets = [w for w in self.view.roster.workers if w.alive and w.level == CRITICAL]
        if not targets:
            self.view.say("no worker is at or above the critical level", 5000)
            return
        self.terminate(targets, False)

    def terminate(self, workers: list[WorkerState], kill_now: bool) -> None:
        if not workers:
            return
        answer = self.confirm(self.host, workers, kill_now)
        if answer is None:
            return
        kill = answer == "kill"
        for w in workers:
            w.requested = True
            self.view.model.worker_changed(w)
            self.bridge.call(self.engine.terminate(w.id, by="user", kill_now=kill),
                             on_error=functools.partial(self._on_terminate_failed, w))

    def _on_terminate_failed(self, w: WorkerState, error: BaseException) -> None:
        w.requested = False
        self.view.model.worker_changed(w)
        text = str(error) if isinstance(error, Error) else f"internal error: {error!r}"
        self.view.message_bar.show_message(f"Cannot terminate {w.ref.name} ({w.id}, PID {w.ref.pid}): {text}")
