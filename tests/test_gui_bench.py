"""The GUI benchmark script runs (small), and its redraws really draw every worker."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from gui_helpers import GUI_MARKS

pytestmark = GUI_MARKS

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_gui.py"


def test_bench_builds_history_and_times_redraws(qapp) -> None:
    spec = importlib.util.spec_from_file_location("bench_gui", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    _app, window, last_t = bench.build(workers=12, seconds=120, rate_hz=10)
    assert all(len(w.series) == 1200 for w in window.roster.workers)
    times = bench.redraws(window, last_t, frames=15)
    assert len(times) == 5 and all(t > 0 for t in times)
    assert len(window.plot.curves._thin) == 12
    window.close()
