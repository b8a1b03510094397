"""The parse benchmark script runs, and finds every kill it plants; the package stays Qt-free."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_parse.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_parse", BENCH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_runs_small_and_counts_every_planted_kill() -> None:
    result = _load().run(n_lines=30_000, repeats=1)
    assert result["lines"] == 30_000
    assert result["kills"] == result["expected_kills"] > 5
    assert result["lines_per_s"] > 0 and result["from_bytes_lines_per_s"] > 0


def test_oomlog_imports_no_qt() -> None:
    code = "import sys, oomscope.core.oomlog, oomscope.core.oomlog.cli; print(any(m.startswith(('PySide6', 'pyqtgraph')) for m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "False"
