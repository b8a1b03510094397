"""Can the policy beat the kernel in the window? bench_policy_race's fast leaks, launched in the app.

The desktop app as a user sets it up (issue #13: "the same in the GUI with 'terminate at
critical'"): the settings file the app reads (``--config FILE``, the same TOML as ``watch``)
says ``crit = "60%"`` and ``on_crit = "terminate"`` (and ``warn = "50%"``: the file refuses the
default warning of 75 % above a critical of 60 %, where ``watch --crit 60%`` lets it follow), the
window is the app's own (its engine config from ``window_config``, Python's garbage collection
on the GUI thread as in the app), rendered offscreen. Each run fills the Launch dialog (command,
memory limit 256MiB, restart never), accepts it and launches what it built, exactly as
*Launch…* does, then waits for the window's ``worker_exited`` and reads how the worker ended
from its row in the table ("exited: terminated (SIGTERM, by policy)" is a win, "exited:
oom-kill" a loss). Defaults otherwise: 1 s interval, 2 s sustain. Target: 20 of 20 each.

Usage: ``python bench/bench_gui_race.py [--runs N] [--quick]``. Needs a memory cgroup (root
with cgroup v1 or a writable v2); otherwise it says so and measures nothing.
"""

from __future__ import annotations

import os
import shlex
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from bench_policy_race import leakers, runs_asked  # noqa: E402

SETTINGS = """\
[thresholds]
warn = "50%"
crit = "60%"
on_crit = "terminate"
"""
LIMIT = "256MiB"
EXIT_TIMEOUT_S = 60.0
# An exit by a SIGKILL reads "signal" until the kernel's record of the OOM kill is tied to it
# (a cause_updated, usually within milliseconds of the exit): wait this long for it.
CAUSE_SETTLE_S = 3.0


class Window:
    """The app's window on a live engine, configured from a settings file as the app does."""

    def __init__(self, config_file: Path, qsettings_file: Path) -> None:
        from oomscope.core.cli import build_parser
        from oomscope.core.engine import Engine
        from oomscope.gui.app import window_config
        from oomscope.gui.collector import MainThreadCollector
        from oomscope.gui.qt import QSettings, QtWidgets
        from oomscope.gui.window import MainWindow

        self.app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(["oomscope-bench"])
        if self.app.findChild(MainThreadCollector) is None:
            # PySide6 and a collection on the engine's thread can deadlock (gui/collector.py).
            MainThreadCollector(self.app)
        args = build_parser().parse_args(["--config", str(config_file)])
        args.subcommand = "gui"
        notices: list[str] = []
        config, _typed = window_config(args, notices)
        self.engine = Engine(config).start()
        settings = QSettings(str(qsettings_file), QSettings.Format.IniFormat)
        self.window = MainWindow(self.engine, settings, thresholds=config.thresholds, persist_thresholds=False)
        self.window.resize(1400, 900)
        self.window.show()
        self.exits: list[Any] = []
        self.window.worker_exited.connect(self.exits.append)
        self.app.processEvents()

    def wait(self, until: Any, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not until():
            if time.monotonic() > deadline:
                return False
            self.app.processEvents()
            time.sleep(0.005)
        return True

    def launch_as_dialog(self, command: str) -> None:
        """What *Launch…* does: the dialog filled in, its Launch button pressed, and what it built
        launched (``open_launch_dialog`` minus the modal ``exec``)."""
        from oomscope.gui.dialogs import LaunchDialog
        from oomscope.gui.qt import QtWidgets

        w = self.window
        dialog = LaunchDialog(w.settings, w, restart=self.engine.config.restart)
        dialog.command.setText(command)
        dialog.mem_limit.setText(LIMIT)
        dialog.restart.setValue(0)
        dialog.open()
        # The dialog disables its limit field if its cgroup probe finds no memory cgroup.
        self.wait(lambda: not dialog.cgroup_note.text().startswith("checking"), 10.0)
        if not dialog.mem_limit.isEnabled():
            raise RuntimeError(f"the Launch dialog says: {dialog.cgroup_note.text()}")
        buttons = dialog.findChild(QtWidgets.QDialogButtonBox)
        buttons.button(QtWidgets.QDialogButtonBox.StandardButton.Ok).click()  # "Launch"
        if dialog.spec is None:
            raise RuntimeError(f"the Launch dialog refused the command: {dialog.error.text()}")
        w.launch(dialog.spec, restart=dialog.restart_policy())
        dialog.deleteLater()

    def race_once(self, command: str) -> str:
        """How one launch of ``command`` ended, as its row's State column says."""
        before = len(self.exits)
        self.launch_as_dialog(command)
        if not self.wait(lambda: len(self.exits) > before, EXIT_TIMEOUT_S):
            raise RuntimeError(f"no worker_exited within {EXIT_TIMEOUT_S:.0f} s for {command!r}")
        worker_id = self.exits[before].worker.id
        state = self.window.roster.by_id[worker_id]
        self.wait(lambda: state.cause != "signal", CAUSE_SETTLE_S)
        self.app.processEvents()
        return _row_state(self.window, worker_id)

    def close(self) -> None:
        self.window.close()
        self.window.bridge.stop()
        self.engine.stop()
        self.app.processEvents()


def _row_state(window: Any, worker_id: str) -> str:
    """The text of the worker's State column, as the table shows it."""
    from oomscope.gui.models import COLUMNS

    index = window.model.row_of(worker_id)
    return str(window.model.data(index.siblingAtColumn(COLUMNS.index("State"))))


def _outcome(state_text: str) -> str:
    if state_text.startswith("exited: terminated") and "by policy" in state_text:
        return "terminated"
    return state_text.removeprefix("exited: ")


def run(runs: int) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="oomscope-bench-") as tmp:
        config = Path(tmp) / "config.toml"
        config.write_text(SETTINGS)
        window = Window(config, Path(tmp) / "settings.ini")
        try:
            for name, argv in leakers().items():
                command = shlex.join(argv)  # typed into the dialog as a shell command line
                t0 = time.monotonic()
                outcomes: dict[str, int] = {}
                for _ in range(runs):
                    outcome = _outcome(window.race_once(command))
                    outcomes[outcome] = outcomes.get(outcome, 0) + 1
                result[name] = {"outcomes": outcomes, "seconds": time.monotonic() - t0}
        finally:
            window.close()
    return result


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]] | None:
    runs = runs_asked(argv, __doc__, "gui policy race")
    if runs is None:
        return None
    r = run(runs)
    for name, race in r.items():
        outcomes = race["outcomes"]
        wins = outcomes.get("terminated", 0)
        print(f"gui policy race, {name}, launched in the window with limit {LIMIT}, settings crit 60% "
              f"on_crit terminate: {wins}/{sum(outcomes.values())} terminated by policy; outcomes {outcomes} "
              f"({race['seconds']:.0f} s)")
    return r


if __name__ == "__main__":
    main()
