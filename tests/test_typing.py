"""core/ and gui/ are typed strictly (pyproject's [tool.mypy]: strict, no exemptions).

mypy must see the modules under their installed names (``oomscope.core``, ``oomscope.gui``): gui
imports ``oomscope.core…`` absolutely, and the repository root is the ``oomscope`` package
whatever its folder is called. The editable install maps the name with an import hook mypy does
not follow, so the test points MYPYPATH at a temporary folder holding an ``oomscope`` link to the
checkout. ``make typecheck`` runs this test.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import PY, REPO


def test_mypy_strict_on_core_and_gui(tmp_path: Path) -> None:
    (tmp_path / "oomscope").symlink_to(REPO, target_is_directory=True)
    env = {**os.environ, "MYPYPATH": str(tmp_path)}
    r = subprocess.run(
        [PY, "-m", "mypy", "--cache-dir", str(REPO / ".mypy_cache"), "-p", "oomscope.core", "-p", "oomscope.gui"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Success" in r.stdout
