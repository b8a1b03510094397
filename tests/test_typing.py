"""core/ is typed strictly (pyproject's [tool.mypy]: strict on core/, no exemptions)."""

from __future__ import annotations

import subprocess

from conftest import PY, REPO


def test_mypy_strict_on_core() -> None:
    r = subprocess.run([PY, "-m", "mypy"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Success" in r.stdout
