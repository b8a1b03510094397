"""Helpers shared by the session tests (record, replay, incident): no tests of its own.

Session files are made the way users make them: by a live window's recorder, or by
``oomscope watch --record`` run as a subprocess.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import PY

OOMSCOPE = [PY, "-m", "oomscope"]


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["OOMSCOPE_SETTINGS"] = str(tmp_path / "cli-settings.ini")
    env.update(extra)
    return env


def record_with_watch(path: Path, tmp_path: Path, *commands: str, extra: tuple[str, ...] = (),
                      status: int = 0) -> None:
    """``oomscope watch --record path --run CMD…``: returns once every worker has exited, with
    ``status`` (watch's exit status: one command's own)."""
    args = OOMSCOPE + ["watch", "--record", str(path), "--interval", "0.1", *extra]
    for command in commands:
        args += ["--run", command]
    r = subprocess.run(args, env=cli_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert r.returncode == status, r.stderr
    assert path.stat().st_size > 0


def png_facts(path: Path) -> tuple[int, int, int]:
    """(width, height, number of distinct colours) of a PNG file, as Qt reads it."""
    from oomscope.gui.qt import QtGui, pg

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    image = QtGui.QImage(str(path))
    assert not image.isNull(), f"Qt cannot load {path}"
    rgb = image.convertToFormat(QtGui.QImage.Format.Format_RGB32)
    # A view on the image's memory: copied while ``rgb`` is certainly alive.
    pixels = pg.functions.ndarray_from_qimage(rgb).copy()
    colours = np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)
    return image.width(), image.height(), len(colours)


def assert_plausible_png(path: Path, min_width: int = 600, min_height: int = 150) -> None:
    width, height, colours = png_facts(path)
    assert width >= min_width and height >= min_height, (width, height)
    assert colours > 8, f"{path} looks blank ({colours} colours)"


@pytest.fixture
def close_replays() -> Iterator[list[Any]]:
    """Replay windows a test opened; closed at teardown (they delete themselves on close)."""
    from shiboken6 import isValid

    windows: list[Any] = []
    yield windows
    for w in windows:
        if isValid(w):
            w.close()
