"""Issue #15 point 14: levels given on the command line are for that run only; the window
remembers the levels the user set in it. Real windows (offscreen), real engines, a real settings
file (OOMSCOPE_SETTINGS), each window closed before the next starts, as a user relaunches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from oomscope.core.cli import build_parser
from oomscope.core.sizes import parse_level
from gui_helpers import GUI_MARKS
from oomscope.gui.app import SETTINGS_ENV, open_window, window_config

pytestmark = GUI_MARKS


@pytest.fixture
def launch(qtbot: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv(SETTINGS_ENV, str(tmp_path / "settings.ini"))
    empty = tmp_path / "config.toml"  # no settings file of the user's own
    empty.write_text("")
    running: list[tuple[Any, Any]] = []

    def start(*argv: str) -> Any:
        for window, engine in running:  # the previous run has ended
            window.close()
            window.bridge.stop()
            engine.stop()
        running.clear()
        args = build_parser().parse_args(["--config", str(empty), *argv])
        args.subcommand = "gui"
        config, typed = window_config(args, [])
        window, engine, _scratch = open_window(args, config, typed)
        running.append((window, engine))
        qtbot.addWidget(window)
        window.show()
        qtbot.waitExposed(window)
        return window

    yield start
    for window, engine in running:
        window.close()
        window.bridge.stop()
        engine.stop()


def levels(window: Any) -> tuple[Any, Any]:
    return window.thresholds.warn, window.thresholds.crit


def test_command_line_levels_are_for_that_run_only(launch: Any) -> None:
    defaults = levels(launch())
    assert defaults != (parse_level("260MiB"), parse_level("300MiB"))

    cli = launch("--warn", "260MiB", "--crit", "300MiB")
    assert levels(cli) == (parse_level("260MiB"), parse_level("300MiB"))
    # A choice the user makes in the window (the Alerts on box) is remembered; the command
    # line's levels that were in force meanwhile are not.
    cli.set_alert_metric("anon")
    assert cli.thresholds.metric == "anon"

    plain = launch()
    assert levels(plain) == defaults
    assert plain.thresholds.metric == "anon"
    assert plain.set_levels(parse_level("200MiB"), parse_level("280MiB"))  # typed or dragged

    again = launch()
    assert levels(again) == (parse_level("200MiB"), parse_level("280MiB"))

    # Given levels again; the user moves only the critical line: that one is theirs now.
    cli = launch("--warn", "260MiB", "--crit", "300MiB")
    assert levels(cli) == (parse_level("260MiB"), parse_level("300MiB"))
    assert cli.set_levels(parse_level("260MiB"), parse_level("290MiB"))

    plain = launch()
    assert levels(plain) == (parse_level("200MiB"), parse_level("290MiB"))


def test_a_level_never_set_in_the_window_keeps_its_default(launch: Any) -> None:
    defaults = levels(launch())
    cli = launch("--warn", "100MiB", "--crit", "1GiB")
    assert cli.set_levels(parse_level("120MiB"), parse_level("1GiB"))  # only the warning moved
    plain = launch()
    assert levels(plain) == (parse_level("120MiB"), defaults[1])
