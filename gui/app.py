"""``oomscope`` (the window), ``oomscope demo``, ``oomscope open``; and ``--screenshot``."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from oomscope.core.config import load_config
from oomscope.core.engine import Engine, EngineConfig
from oomscope.core.options import engine_config_from
from oomscope.core.errors import BadInput
from oomscope.core.launch import LaunchSpec
from oomscope.core.sizes import parse_size

SETTINGS_ENV = "OOMSCOPE_SETTINGS"  # an .ini path: tests and screenshots keep the user's settings clean

HEADLESS_HELP = """\
oomscope: no display to open the window on (neither DISPLAY nor WAYLAND_DISPLAY is set).
  - Without a window: oomscope watch --run 'node app.js' (add --json for machine-readable events)
  - Render offscreen, e.g. for a screenshot: QT_QPA_PLATFORM=offscreen oomscope demo --screenshot demo.png
"""


def display_available(env: os._Environ[str] | dict[str, str] = os.environ) -> bool:
    return bool(env.get("QT_QPA_PLATFORM") or env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


def run(args: argparse.Namespace) -> int:
    screenshot = getattr(args, "screenshot", None)
    if args.subcommand == "open":
        # The file first: a wrong path is the user's first problem, display or not.
        failure = _check_session_file(Path(args.file))
        if failure is not None:
            print(f"oomscope open: {failure}", file=sys.stderr)
            return 2
    if screenshot and not os.environ.get("QT_QPA_PLATFORM") and not display_available():
        os.environ["QT_QPA_PLATFORM"] = "offscreen"  # a screenshot needs no screen
    if not display_available():
        print(HEADLESS_HELP, end="", file=sys.stderr)
        return 2
    if args.subcommand == "open":
        return _run_replay(Path(args.file), screenshot, float(getattr(args, "after", 0.0) or 0.0))
    notices: list[str] = []
    try:
        config, typed = window_config(args, notices)
        mem_limit = parse_size(args.mem_limit) if getattr(args, "mem_limit", None) else None
    except BadInput as e:
        print(f"oomscope: {e}", file=sys.stderr)
        return 2
    return _run_window(args, config, typed, mem_limit, args.subcommand == "demo", screenshot, notices)


def window_config(args: argparse.Namespace, notices: list[str]) -> tuple[EngineConfig, bool]:
    """The engine's settings for the window, and whether the command line gave levels (which
    then beat the ones the window remembers from last time). BadInput says what is wrong."""
    # The settings file (the same one `watch` reads) under the command line, as in `watch`.
    file = load_config(Path(args.config) if getattr(args, "config", None) else None)
    config = engine_config_from(args, file, notices.append)
    if args.subcommand == "demo":
        from .demo import DEMO_INTERVAL_S, DEMO_THRESHOLDS
        return replace(config, thresholds=DEMO_THRESHOLDS, interval_s=DEMO_INTERVAL_S), True
    return config, getattr(args, "warn", None) is not None or getattr(args, "crit", None) is not None


def open_window(args: argparse.Namespace, config: EngineConfig, typed: bool, *, demo: bool = False,
                screenshot: str | None = None) -> tuple[Any, Engine, tempfile.TemporaryDirectory[str] | None]:
    """The window and its started engine, on the levels in force: the command line's for this
    run only (see levels_memory.py), else those the user set in the window last time."""
    from .levels_memory import LevelMemory, given_levels, saved_alert_metric, saved_thresholds
    from .window import MainWindow

    _application()
    settings, scratch = _settings(screenshot)
    if not typed:
        saved = saved_thresholds(settings, config.thresholds)
        if saved is not None:
            config = replace(config, thresholds=saved)
    metric_typed = getattr(args, "metric", None) is not None
    if not demo and not metric_typed:
        # The Alerts on box's last choice, made on purpose; --metric outranks it.
        config = replace(config, thresholds=saved_alert_metric(settings, config.thresholds))
    engine = Engine(config).start()
    window = MainWindow(engine, settings, thresholds=config.thresholds,
                        persist_thresholds=not demo and screenshot is None)
    window.level_memory = LevelMemory(settings, given_levels(config.thresholds, levels_typed=typed,
                                                             metric_typed=metric_typed))
    return window, engine, scratch


def _run_window(args: argparse.Namespace, config: EngineConfig, typed: bool, mem_limit: int | None,
                demo: bool, screenshot: str | None, notices: list[str]) -> int:
    app = _application()
    window, engine, scratch = open_window(args, config, typed, demo=demo, screenshot=screenshot)
    window.show()
    for message in notices:
        window.message_bar.show_message(message, "warning")
    if screenshot:
        window.resize(1400, 900)  # the offscreen screen is 800x800: geometry would be clamped to it
    for command in getattr(args, "run", []) or []:
        window.launch(LaunchSpec(command, mem_limit_bytes=mem_limit))
    for pid in getattr(args, "attach", []) or []:
        window.attach(pid)
    for pid in getattr(args, "children_of", []) or []:
        window.attach_children(pid)
    from .demo import DemoDirector, offer_demo
    if demo:
        DemoDirector(window).start()
    else:
        offer_demo(window)
    result = {"rc": 0}
    if screenshot:
        _schedule_screenshot(app, window, screenshot, args.after, result)
    from .quit_signals import QuitOnSignals
    quit_signals = QuitOnSignals(app)
    try:
        app.exec()
    finally:
        quit_signals.close()
        if screenshot is None:
            window.save_settings()
        window.end_session()  # also when the app quits without closing the window
        window.bridge.stop()
        engine.stop()
        if scratch is not None:
            scratch.cleanup()
    return result["rc"]


def _application() -> Any:
    from .collector import MainThreadCollector
    from .qt import QtWidgets

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(["oomscope"])
    app.setApplicationName("oomscope")
    app.setOrganizationName("oomscope")
    if app.findChild(MainThreadCollector) is None:
        MainThreadCollector(app)  # garbage collection on the GUI thread only (gui/collector.py)
    return app


def _settings(screenshot: str | None) -> tuple[Any, tempfile.TemporaryDirectory[str] | None]:
    from .qt import QSettings

    path = os.environ.get(SETTINGS_ENV)
    scratch = None
    if path is None and screenshot:
        # A screenshot shows the default layout and leaves the user's settings alone.
        scratch = tempfile.TemporaryDirectory(prefix="oomscope-shot-")
        path = os.path.join(scratch.name, "settings.ini")
    settings = QSettings(path, QSettings.Format.IniFormat) if path else QSettings("oomscope", "oomscope")
    return settings, scratch


def _schedule_screenshot(app: Any, window: Any, screenshot: str, after_s: float, result: dict[str, int]) -> None:
    from .qt import QTimer

    def shoot() -> None:
        window.plot.redraw()
        app.processEvents()
        if not window.grab().save(screenshot):
            print(f"oomscope: cannot write the screenshot to {screenshot}", file=sys.stderr)
            result["rc"] = 1
        window.persist_thresholds = False
        app.quit()
    timer = QTimer(window)
    timer.setObjectName("screenshot")
    timer.setSingleShot(True)
    timer.timeout.connect(shoot)
    timer.start(int(max(0.0, after_s) * 1000))


def _check_session_file(path: Path) -> str | None:
    """Why ``path`` cannot be replayed, or None: checked before any window exists."""
    from oomscope.core.errors import Error
    from oomscope.core.recording import SessionFile

    try:
        file = SessionFile.open(path)
    except Error as e:
        return str(e)
    try:
        if not file.sessions():
            return f"{path} holds no recorded session yet; record one with File → Record to… or " \
                   "`oomscope watch --record FILE.db`"
    except Error as e:
        return str(e)
    finally:
        file.close()
    return None


def _run_replay(path: Path, screenshot: str | None, after_s: float) -> int:
    """``oomscope open FILE.db``: a replay window, no engine (nothing in the file is ever run)."""
    from oomscope.core.errors import Error

    from .replay import open_replay

    app = _application()
    settings, scratch = _settings(screenshot)
    try:
        try:
            window = open_replay(path, settings)
        except Error as e:
            print(f"oomscope open: {e}", file=sys.stderr)
            return 2
        if window is None:
            return 0  # the user cancelled the choice of session
        window.show()
        if screenshot:
            window.resize(1400, 900)
        result = {"rc": 0}
        if screenshot:
            _schedule_screenshot(app, window, screenshot, after_s, result)
        from .quit_signals import QuitOnSignals
        quit_signals = QuitOnSignals(app)
        try:
            app.exec()
        finally:
            quit_signals.close()
        return result["rc"]
    finally:
        if scratch is not None:
            scratch.cleanup()
