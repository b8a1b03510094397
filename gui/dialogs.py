"""Launch…, Attach…, a worker's own thresholds, and the terminate confirmation.

Dialogs return plain values (a LaunchSpec, PIDs); the window hands them to the engine. Their
last-used values live in QSettings under ``dialogs/…``.
"""

from __future__ import annotations

import html
import shlex
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from oomscope.core.cgroup.limited import describe_cgroup_support
from oomscope.core.errors import BadInput
from oomscope.core.heap.inspector import INSPECTOR_WARNING
from oomscope.core.launch import LaunchSpec
from oomscope.core.processes import ProcessInfo, list_processes
from oomscope.core.restart import RestartPolicy
from oomscope.core.sizes import Level, format_size, parse_level, parse_mem_limit
from oomscope.core.thresholds import ThresholdConfig

from .qt import QAbstractItemModel, QModelIndex, QPersistentModelIndex, QSettings, QSortFilterProxyModel, Qt, \
    QTimer, QtWidgets
from .keys import SearchKeys
from .roster import WorkerState, describe_levels

# describe_cgroup_support makes (and removes) a real cgroup once, possibly through systemd-run
# with a timeout of seconds: never on the GUI thread.
_background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="oomscope-gui-probe")
_cgroup_note: Future[str | None] | None = None


def cgroup_note_future() -> Future[str | None]:
    global _cgroup_note
    if _cgroup_note is None:
        _cgroup_note = _background.submit(describe_cgroup_support)
    return _cgroup_note


def level_text(level: Level | None) -> str:
    """What a level field shows: ``150MiB``, ``1.5GiB``, ``75%`` — what a user would type."""
    if level is None:
        return ""
    if level.bytes is None:
        return str(level)
    return format_size(level.bytes, spec=".4g", sep="")


def _int_setting(value: Any) -> int:
    """An int from QSettings, which hands INI values back as strings; junk reads as 0 (never)."""
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


def parse_env(text: str) -> dict[str, str]:
    """``KEY=value`` lines (blank lines and ``#`` comments ignored); raises BadInput."""
    env: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise BadInput(f"environment line {n} ({line!r}): write it as NAME=value")
        env[key] = value
    return env


def ok_cancel(dialog: QtWidgets.QDialog, ok_text: str, ok_tip: str, cancel_tip: str,
              on_accept: Callable[[], None]) -> QtWidgets.QDialogButtonBox:
    """The dialogs' button row: a named OK that runs ``on_accept``, and Cancel."""
    buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Ok
                                         | QtWidgets.QDialogButtonBox.StandardButton.Cancel)
    ok = buttons.button(QtWidgets.QDialogButtonBox.StandardButton.Ok)
    ok.setText(ok_text)
    ok.setToolTip(ok_tip)
    buttons.button(QtWidgets.QDialogButtonBox.StandardButton.Cancel).setToolTip(cancel_tip)
    buttons.accepted.connect(on_accept)
    buttons.rejected.connect(dialog.reject)
    return buttons

class LaunchDialog(QtWidgets.QDialog):
    def __init__(self, settings: QSettings, parent: QtWidgets.QWidget | None = None,
                 restart: RestartPolicy | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("launch-dialog")
        self.restart_base = restart if restart is not None else RestartPolicy()
        self.setWindowTitle("Launch a worker")
        self.settings = settings
        self.spec: LaunchSpec | None = None
        form = QtWidgets.QFormLayout()
        self.command = QtWidgets.QLineEdit(str(settings.value("dialogs/launch/command", "")))
        self.command.setPlaceholderText("node worker.js --big   (a shell command line)")
        self.command.setToolTip("The command to run, as you would type it in a shell")
        form.addRow("&Command:", self.command)
        cwd_row = QtWidgets.QHBoxLayout()
        self.cwd = QtWidgets.QLineEdit(str(settings.value("dialogs/launch/cwd", "")))
        self.cwd.setPlaceholderText("(oomscope's working directory)")
        self.cwd.setToolTip("Working directory of the worker; empty: oomscope's own")
        browse = QtWidgets.QPushButton("Browse…")
        browse.setToolTip("Choose the working directory")
        browse.clicked.connect(self._browse)
        cwd_row.addWidget(self.cwd, 1)
        cwd_row.addWidget(browse)
        form.addRow("Working directory:", cwd_row)
        self.env = QtWidgets.QPlainTextEdit(str(settings.value("dialogs/launch/env", "")))
        self.env.setPlaceholderText("NODE_ENV=production\nUV_THREADPOOL_SIZE=8")
        self.env.setToolTip("Environment additions, one NAME=value per line")
        self.env.setFixedHeight(70)
        # Tab leaves the box (a tab character in an environment is never meant): typing on after
        # Tab must reach the next field, not this one.
        self.env.setTabChangesFocus(True)
        form.addRow("&Environment:", self.env)
        self.mem_limit = QtWidgets.QLineEdit(str(settings.value("dialogs/launch/mem_limit", "")))
        self.mem_limit.setPlaceholderText("e.g. 256MiB — empty: no limit")
        self.mem_limit.setToolTip("Run the worker in a memory cgroup of its own with this hard limit, "
                                  "as a container would (K/M/G are powers of 1024)")
        form.addRow("&Memory limit:", self.mem_limit)
        self.cgroup_note = QtWidgets.QLabel("checking whether this machine can set a memory limit…")
        self.cgroup_note.setObjectName("cgroup-note")
        self.cgroup_note.setWordWrap(True)
        self.cgroup_note.setToolTip("Whether oomscope can make a memory cgroup here, and if not, why")
        form.addRow("", self.cgroup_note)
        self.restart = QtWidgets.QSpinBox()
        self.restart.setObjectName("restart-max")
        self.restart.setRange(0, 100)
        self.restart.setPrefix("up to ")
        self.restart.setSuffix(" times")
        # 0 reads as a word: "up to 0 times" would look like a misconfiguration.
        self.restart.setSpecialValueText("never")
        self.restart.setValue(_int_setting(settings.value("dialogs/launch/restart", self.restart_base.max)))
        self.restart.setToolTip(restart_tip(self.restart_base))
        form.addRow("&Restart:", self.restart)
        self.error = QtWidgets.QLabel("")
        self.error.setObjectName("launch-error")
        self.error.setStyleSheet("color: rgb(180, 20, 20)")
        self.error.setWordWrap(True)
        form.addRow("", self.error)
        buttons = ok_cancel(self, "Launch", "Start the worker and watch it", "Close without launching",
                            self._on_accept)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(buttons)
        self.resize(620, 0)
        self._note = cgroup_note_future()
        self._note_timer = QTimer(self)
        self._note_timer.setObjectName("cgroup-note-poll")
        self._note_timer.timeout.connect(self._poll_note)
        self._note_timer.start(100)
        self._poll_note()

    def _poll_note(self) -> None:
        if not self._note.done():
            return
        self._note_timer.stop()
        try:
            note = self._note.result()
        except Exception as e:  # the probe itself failed: say so rather than guess
            note = f"could not check memory cgroup support: {e}"
        if note is None:
            self.cgroup_note.setText("Memory limits are available on this machine.")
        else:
            self.cgroup_note.setText("A memory limit cannot be set here: " + note)
            self.mem_limit.setEnabled(False)

    def _browse(self) -> None:
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Working directory", self.cwd.text())
        if path:
            self.cwd.setText(path)

    def build_spec(self) -> LaunchSpec:
        command = self.command.text().strip()
        if not command:
            raise BadInput("give the command to run, e.g. node worker.js")
        try:
            shlex.split(command)
        except ValueError as e:
            raise BadInput(f"the command does not parse as a shell command line: {e}") from None
        limit_text = self.mem_limit.text().strip()
        limit = parse_mem_limit(limit_text) if limit_text and self.mem_limit.isEnabled() else None
        return LaunchSpec(command, cwd=self.cwd.text().strip() or None,
                          env=parse_env(self.env.toPlainText()), mem_limit_bytes=limit)

    def _on_accept(self) -> None:
        try:
            self.spec = self.build_spec()
        except BadInput as e:
            self.error.setText(str(e))
            return
        s = self.settings
        s.setValue("dialogs/launch/command", self.command.text())
        s.setValue("dialogs/launch/cwd", self.cwd.text())
        s.setValue("dialogs/launch/env", self.env.toPlainText())
        s.setValue("dialogs/launch/mem_limit", self.mem_limit.text())
        s.setValue("dialogs/launch/restart", self.restart.value())
        self.accept()

    def restart_policy(self) -> RestartPolicy:
        """The settings file's [restart] numbers with the count chosen here."""
        return replace(self.restart_base, max=self.restart.value())


def restart_tip(p: RestartPolicy) -> str:
    """The restart rules with the numbers in force (the settings file's [restart])."""
    first = p.backoff_initial_s
    waits = ", ".join(f"{min(p.backoff_cap_s, first * 2 ** i):g} s" for i in range(3))
    return (f"Restart the worker in the same slot when it dies, up to this many times (0: never). "
            f"Waits {waits} … between lives (capped at {p.backoff_cap_s:g} s; reset after a "
            f"{p.healthy_s:g} s healthy run). Never after a clean exit or your own terminate; a worker "
            f"that dies of oom-kill/heap-oom {p.crash_loop_kills} times within "
            f"{p.crash_loop_window_s:g} s is not restarted again (crash-loop guard). "
            "These numbers come from the settings file's [restart] table.")


_PROCESS_COLUMNS = ("Name", "PID", "User", "RSS", "Command line")


class ProcessTableModel(QAbstractItemModel):
    """A flat list of ProcessInfo for the Attach dialog."""

    def __init__(self, rows: Sequence[ProcessInfo] = (), parent: Any = None) -> None:
        super().__init__(parent)
        self.rows = list(rows)

    def set_rows(self, rows: Sequence[ProcessInfo]) -> None:
        self.beginResetModel()
        self.rows = list(rows)
        self.endResetModel()

    def index(self, row: int, column: int, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> QModelIndex:
        if parent.isValid() or not self.hasIndex(row, column, parent):
            return QModelIndex()
        return self.createIndex(row, column, 0)

    def parent(self, child: QModelIndex | QPersistentModelIndex = QModelIndex()) -> QModelIndex:  # type: ignore[override]
        return QModelIndex()

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(_PROCESS_COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return _PROCESS_COLUMNS[section]
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        p = self.rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return (p.name, str(p.pid), p.user or "?", format_size(p.rss_bytes) if p.rss_bytes is not None else "?",
                    " ".join(p.cmdline.split()) or f"[{p.name}]")[col]
        if role == int(Qt.ItemDataRole.UserRole):
            return (p.name.lower(), p.pid, p.user or "", p.rss_bytes or 0, p.cmdline)[col]
        if role == Qt.ItemDataRole.ToolTipRole:
            kids = f"; {p.children} child processes" if p.children else ""
            return f"{p.name} (PID {p.pid}, parent {p.ppid}){kids}\n{p.cmdline}"
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (1, 3):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None


@dataclass(frozen=True, slots=True)
class AttachChoice:
    pids: tuple[int, ...]
    children_of: bool
    inspect_heap: bool = False


class AttachDialog(QtWidgets.QDialog):
    def __init__(self, settings: QSettings, parent: QtWidgets.QWidget | None = None,
                 lister: Callable[[], list[ProcessInfo]] = list_processes) -> None:
        super().__init__(parent)
        self.setObjectName("attach-dialog")
        self.setWindowTitle("Attach to running processes")
        self.settings = settings
        self.lister = lister
        self.choice: AttachChoice | None = None
        layout = QtWidgets.QVBoxLayout(self)
        top = QtWidgets.QHBoxLayout()
        self.search = QtWidgets.QLineEdit(str(settings.value("dialogs/attach/search", "")))
        self.search.setPlaceholderText("Search name, PID, user or command line")
        self.search.setToolTip("Filter the list as you type")
        self.search.setClearButtonEnabled(True)
        top.addWidget(self.search, 1)
        refresh = QtWidgets.QPushButton("Refresh")
        refresh.setToolTip("List the processes again (F5)")
        refresh.setShortcut("F5")
        refresh.clicked.connect(self.reload)
        top.addWidget(refresh)
        layout.addLayout(top)
        self.model = ProcessTableModel()
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setFilterKeyColumn(-1)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.proxy.setSortRole(int(Qt.ItemDataRole.UserRole))
        self.search.textChanged.connect(self.proxy.setFilterFixedString)
        self.table = QtWidgets.QTableView()
        self.table.setObjectName("process-table")
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(3, Qt.SortOrder.DescendingOrder)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setToolTip("Select one or more processes (Ctrl/Shift-click); double-click attaches")
        self.table.doubleClicked.connect(lambda _i: self._on_accept())
        layout.addWidget(self.table, 1)
        SearchKeys(self.search, self.table)
        self.hint = QtWidgets.QLabel("")
        self.hint.setObjectName("attach-hint")
        self.hint.setStyleSheet("color: rgb(180, 0, 0)")
        self.hint.setVisible(False)
        layout.addWidget(self.hint)
        self.children_box = QtWidgets.QCheckBox("Attach to the children of the selected process instead "
                                                "(a pool master: gunicorn, celery, a Node cluster)")
        self.children_box.setChecked(bool(settings.value("dialogs/attach/children", False, type=bool)))
        self.children_box.setToolTip("Watch every child of the selected process, including children it "
                                     "starts later (respawned workers)")
        layout.addWidget(self.children_box)
        # Opt-in and never remembered: the inspector lets any local user run code in the process.
        self.inspect_box = QtWidgets.QCheckBox("Inspect the V8 heap of each thread (Node.js only)")
        self.inspect_box.setObjectName("inspect-heap")
        self.inspect_box.setToolTip(INSPECTOR_WARNING)
        layout.addWidget(self.inspect_box)
        self.inspect_warning = QtWidgets.QLabel(INSPECTOR_WARNING)
        self.inspect_warning.setObjectName("inspect-warning")
        self.inspect_warning.setWordWrap(True)
        self.inspect_warning.setStyleSheet("color: #8a4b00;")
        self.inspect_warning.setVisible(False)
        self.inspect_box.toggled.connect(self.inspect_warning.setVisible)
        layout.addWidget(self.inspect_warning)
        buttons = ok_cancel(self, "Attach", "Watch the selected processes", "Close without attaching",
                            self._on_accept)
        layout.addWidget(buttons)
        self.resize(900, 520)
        self.reload()
        self.proxy.setFilterFixedString(self.search.text())

    def reload(self) -> None:
        self.model.set_rows(self.lister())
        self.table.resizeColumnsToContents()

    def selected_pids(self) -> tuple[int, ...]:
        rows = {self.proxy.mapToSource(i).row() for i in self.table.selectionModel().selectedRows()}
        return tuple(self.model.rows[r].pid for r in sorted(rows))

    def _on_accept(self) -> None:
        pids = self.selected_pids()
        if not pids and self.proxy.rowCount() == 1:
            pids = (self.model.rows[self.proxy.mapToSource(self.proxy.index(0, 0)).row()].pid,)
        if not pids:
            # Enter on the search with several matches: say what is missing, never nothing.
            self.hint.setText("Select a process first: Down moves from the search into the list."
                              if self.proxy.rowCount() else "No process matches the search.")
            self.hint.setVisible(True)
            return
        self.choice = AttachChoice(pids, self.children_box.isChecked(), self.inspect_box.isChecked())
        self.settings.setValue("dialogs/attach/search", self.search.text())
        self.settings.setValue("dialogs/attach/children", self.children_box.isChecked())
        self.accept()


class WorkerThresholdsDialog(QtWidgets.QDialog):
    """One worker's own warning and critical levels and critical action.

    Non-blocking (``open()``): the window applies ``config`` on ``accepted``. ``config`` None
    after acceptance means "Use global". The metric is not offered: the engine keeps one
    metric for every worker, so one plot has one meaning.
    """

    def __init__(self, worker: WorkerState, global_config: ThresholdConfig,
                 parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("worker-thresholds-dialog")
        self.setWindowTitle(f"Thresholds for {worker.ref.name} ({worker.id})")
        self.worker_id = worker.id
        self.global_config = global_config
        self.config: ThresholdConfig | None = None
        start = worker.override or global_config
        layout = QtWidgets.QVBoxLayout(self)
        intro = QtWidgets.QLabel(
            f"Levels for <b>{html.escape(worker.ref.name)}</b> (worker {worker.id}, PID {worker.ref.pid}) only, on the "
            f"alert metric ({global_config.metric}; the toolbar's Alerts on box).<br>"
            f"Global: {describe_levels(global_config)}.")
        intro.setWordWrap(True)
        layout.addWidget(intro)
        form = QtWidgets.QFormLayout()
        self.warn = QtWidgets.QLineEdit(level_text(start.warn))
        self.warn.setObjectName("worker-warning-level")
        self.warn.setPlaceholderText("none")
        self.warn.setToolTip("A size (400MiB, 1.5G) or a percent of this worker's limit (75%); empty: none")
        form.addRow("&Warning:", self.warn)
        self.crit = QtWidgets.QLineEdit(level_text(start.crit))
        self.crit.setObjectName("worker-critical-level")
        self.crit.setPlaceholderText("none")
        self.crit.setToolTip("A size (600MiB) or a percent of this worker's limit (90%); empty: none")
        form.addRow("&Critical:", self.crit)
        self.terminate = QtWidgets.QCheckBox("&Terminate at critical (SIGTERM, then SIGKILL after the grace period)")
        self.terminate.setObjectName("worker-terminate-at-critical")
        self.terminate.setChecked(start.on_crit == "terminate")
        self.terminate.setToolTip("When this worker reaches its critical level, oomscope terminates it")
        form.addRow("", self.terminate)
        layout.addLayout(form)
        self.error = QtWidgets.QLabel("")
        self.error.setObjectName("worker-thresholds-error")
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: rgb(180, 0, 0)")
        self.error.setVisible(False)
        layout.addWidget(self.error)
        buttons = QtWidgets.QDialogButtonBox()
        self.apply_button = buttons.addButton("Apply", QtWidgets.QDialogButtonBox.ButtonRole.AcceptRole)
        self.apply_button.setToolTip("Use these levels for this worker")
        self.global_button = buttons.addButton("Use global", QtWidgets.QDialogButtonBox.ButtonRole.ResetRole)
        self.global_button.setObjectName("use-global")
        self.global_button.setToolTip("Drop this worker's own levels: the toolbar's levels apply again")
        self.global_button.setEnabled(worker.override is not None)
        cancel = buttons.addButton(QtWidgets.QDialogButtonBox.StandardButton.Cancel)
        cancel.setToolTip("Leave this worker's levels as they are")
        self.apply_button.clicked.connect(self._on_apply)
        self.global_button.clicked.connect(self._on_use_global)
        cancel.clicked.connect(self.reject)
        layout.addWidget(buttons)

    def build_config(self) -> ThresholdConfig:
        """The levels as typed; raises BadInput with what is wrong."""
        warn = parse_level(self.warn.text()) if self.warn.text().strip() else None
        crit = parse_level(self.crit.text()) if self.crit.text().strip() else None
        # Unticked, critical does what the global levels make it do, short of terminating.
        fallback = self.global_config.on_crit if self.global_config.on_crit != "terminate" else "notify"
        on_crit = "terminate" if self.terminate.isChecked() else fallback
        if on_crit == "terminate" and crit is None:
            raise BadInput("terminate at critical needs a critical level")
        # Only the levels and the action are the worker's own: sustain, hysteresis and the
        # action at warning stay the global ones (the settings file's), as the engine compares them.
        return replace(self.global_config, warn=warn, crit=crit, on_crit=on_crit)

    def _on_apply(self) -> None:
        try:
            self.config = self.build_config()
        except BadInput as e:
            self.error.setText(str(e))
            self.error.setVisible(True)
            return
        self.accept()

    def _on_use_global(self) -> None:
        self.config = None
        self.accept()


# The answer of a terminate confirmation: "terminate", "kill" or None (cancelled).
ConfirmFn = Callable[[QtWidgets.QWidget, Sequence[WorkerState], bool], str | None]


def confirm_terminate(parent: QtWidgets.QWidget, workers: Sequence[WorkerState], kill_now: bool) -> str | None:
    """Ask before signalling: names every worker with its memory. Returns the chosen action."""
    names = "\n".join(f"• {w.ref.name} ({w.id}, PID {w.ref.pid}) — {w.memory_text()}"
                      + ("" if w.ref.launched else "  [attached, not launched by oomscope]")
                      for w in workers[:20])
    if len(workers) > 20:
        names += f"\n… and {len(workers) - 20} more"
    box = QtWidgets.QMessageBox(parent)
    box.setObjectName("confirm-terminate")
    box.setIcon(QtWidgets.QMessageBox.Icon.Warning)
    box.setWindowTitle("Kill workers" if kill_now else "Terminate workers")
    what = "Kill now (SIGKILL)" if kill_now else "Terminate (SIGTERM, then SIGKILL after the grace period)"
    box.setText(f"{what} {len(workers)} worker{'s' if len(workers) != 1 else ''}?")
    box.setInformativeText(names)
    term = box.addButton("Kill now" if kill_now else "Terminate", QtWidgets.QMessageBox.ButtonRole.AcceptRole)
    kill = None if kill_now else box.addButton("Kill now", QtWidgets.QMessageBox.ButtonRole.DestructiveRole)
    box.addButton(QtWidgets.QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(QtWidgets.QMessageBox.StandardButton.Cancel)
    box.exec()
    clicked = box.clickedButton()
    if clicked is term:
        return "kill" if kill_now else "terminate"
    if kill is not None and clicked is kill:
        return "kill"
    return None
