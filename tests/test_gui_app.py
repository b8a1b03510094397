"""The ``oomscope`` command's window modes, run as a user runs them: real subprocesses."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest

from conftest import PY
from test_gui_record_support import cli_env

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

