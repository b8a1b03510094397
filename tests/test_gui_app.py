"""The ``oomscope`` command's window modes, run as a user runs them: real subprocesses."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import PY
from oomscope.core.cli import build_parser, join_negative_values
from oomscope.core.sizes import Level
from oomscope.gui.app import window_config
from test_gui_record_support import cli_env
from test_watch_cli import OPTION_CASES, engine_value, precedence_files

OOMSCOPE = [PY, "-m", "oomscope"]


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_no_display_says_how_to_run_headless(tmp_path: Path) -> None:
    r = subprocess.run(OOMSCOPE, env=cli_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "oomscope watch" in r.stderr and "QT_QPA_PLATFORM=offscreen" in r.stderr
    assert "Aborted" not in r.stderr and "could not connect to display" not in r.stderr


def test_bad_level_is_refused_before_any_window(tmp_path: Path) -> None:
    r = subprocess.run(OOMSCOPE + ["--crit", "150%"], env=cli_env(tmp_path, QT_QPA_PLATFORM="offscreen"),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "150%" in r.stderr


@pytest.mark.gui
@pytest.mark.parametrize("args", [
    ["demo"],
    ["--run", f"{PY} -c 'import time; b = bytearray(30 << 20); time.sleep(60)'", "--warn", "20MiB", "--crit", "1GiB"],
], ids=["demo", "run"])
def test_screenshot_renders_the_real_window(tmp_path: Path, args: list[str]) -> None:
    shot = tmp_path / "shot.png"
    # No QT_QPA_PLATFORM and no display: --screenshot renders offscreen by itself.
    r = subprocess.run(OOMSCOPE + args + ["--screenshot", str(shot), "--after", "4"], env=cli_env(tmp_path),
                       capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stderr
    assert _png_size(shot) == (1400, 900)
    assert shot.stat().st_size > 40_000  # a rendered window, not a blank image



# ------------------------------------------------------------------ command line over settings file


@pytest.mark.parametrize("option, typed, table, key, value, from_cli, from_file, default", OPTION_CASES)
def test_window_option_beats_the_file_which_beats_the_default(
        tmp_path: Path, option: str, typed: str, table: str, key: str, value: str,
        from_cli: Any, from_file: Any, default: Any) -> None:
    """`oomscope --interval 0.2` (or any shared option) and the file's interval_s reach the
    engine the window starts, as in `watch`: the same options, the same merge."""
    with_key, empty = precedence_files(tmp_path, table, key, value)

    def config(*argv: str) -> Any:
        args = build_parser().parse_args(join_negative_values([*argv, "--run", "true"]))
        assert args.subcommand is None  # the window's own options, not watch's
        args.subcommand = "gui"
        engine_config, _typed = window_config(args, [])
        return engine_config

    assert engine_value(config("--config", str(with_key), option, typed), option) == from_cli
    assert engine_value(config("--config", str(with_key)), option) == from_file
    assert engine_value(config("--config", str(empty)), option) == default


def test_window_takes_crit_alone_below_the_default_warning(tmp_path: Path) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    notices: list[str] = []
    args = build_parser().parse_args(["--config", str(empty), "--crit", "60%"])
    args.subcommand = "gui"
    config, typed = window_config(args, notices)
    assert (config.thresholds.warn, config.thresholds.crit) == (Level(fraction=0.5), Level(fraction=0.6))
    assert typed and len(notices) == 1 and "--warn" in notices[0]


def test_both_levels_wrong_is_refused_before_any_window(tmp_path: Path) -> None:
    r = subprocess.run(OOMSCOPE + ["--warn", "75%", "--crit", "60%"],
                       env=cli_env(tmp_path, QT_QPA_PLATFORM="offscreen"), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "warning level 75% must be below critical level 60%" in r.stderr
    assert "Traceback" not in r.stderr
