"""Every benchmark script runs, small, and gives figures of the right shape (`make bench` runs
them full size). bench_gui and bench_parse have their own smoke tests (test_gui_bench.py,
test_oomlog_bench.py); a test below fails when a bench script has none at all."""

from __future__ import annotations

import importlib.util
import math
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from conftest import REPO, v1_memory_writable

BENCH = REPO / "bench"
SMOKED_ELSEWHERE = {"bench_gui": "test_gui_bench.py", "bench_parse": "test_oomlog_bench.py"}
node_missing = shutil.which("node") is None


def _load(name: str) -> ModuleType:
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


def _finite(*values: Any) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 for v in values)


def test_every_bench_script_has_a_smoke_test() -> None:
    scripts = {p.stem for p in BENCH.glob("bench_*.py")}
    here = Path(__file__).read_text()
    for name in scripts:
        where = SMOKED_ELSEWHERE.get(name)
        if where is not None:
            assert name in (REPO / "tests" / where).read_text(), name
        else:
            assert f'_load("{name}")' in here, f"{name} has no smoke test"
    assert "bench_policy_race" in (BENCH / "run.py").read_text()


def test_bench_engine_small() -> None:
    bench = _load("bench_engine")
    s = bench.sampling(n_workers=5, interval_s=0.1, duration_s=1.0)
    assert s["worker_samples"] >= 5 * 5
    assert _finite(s["engine_thread_us_per_worker_sample"], s["psutil_memory_info_us_per_call"])
    e = bench.exit_latency(trials=3)
    assert e["trials"] == 3 and _finite(e["exit_event_median_ms"], e["exit_event_p99_ms"])


@pytest.mark.skipif(node_missing, reason="node is not installed")
def test_bench_heap_small() -> None:
    bench = _load("bench_heap")
    node = shutil.which("node")
    assert node is not None
    r = bench.overhead(node, 0.1, 1.0)
    assert r["reports"] > 0 and _finite(r["with_pct"], r["without_pct"])


@pytest.mark.skipif(node_missing, reason="node is not installed")
def test_bench_inspect_small() -> None:
    from oomscope.core.heap import inspector

    _load("bench_inspect")
    assert inspector._demo(3) == 0


def test_bench_metrics_runs(capsys: pytest.CaptureFixture[str]) -> None:
    _load("bench_metrics").main()
    out = capsys.readouterr().out
    assert "one tick of 200 workers taken in" in out and "a scrape of 200 workers" in out


@pytest.mark.skipif(not v1_memory_writable(), reason="needs a writable cgroup v1 memory controller (root)")
def test_bench_oom_latency_small() -> None:
    r = _load("bench_oom_latency").run(kills=2)
    assert r["kills"] == 2 and _finite(r["median_ms"], r["p99_ms"], r["max_ms"])


def test_bench_record_small(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _load("bench_record").main(["--workers", "4", "--duration", "1.5", "--dir", str(tmp_path)])
    assert "record: 4 workers" in capsys.readouterr().out


@pytest.mark.gui
@pytest.mark.qt_log_ignore("propagateSizeHints")  # the offscreen platform's, for a shown window
def test_bench_replay_small(capsys: pytest.CaptureFixture[str], qapp: Any) -> None:
    _load("bench_replay").main(["--workers", "3", "--minutes", "0.2"])
    assert "replay" in capsys.readouterr().out


@pytest.mark.skipif(not v1_memory_writable(), reason="needs a writable cgroup v1 memory controller (root)")
def test_bench_policy_race_quick() -> None:
    r = _load("bench_policy_race").main(["--quick"])
    assert r is not None
    assert sum(r["python_160MBps"].values()) == 2
    assert r["latency"]["runs"] == 2 and _finite(r["latency"]["p99_ms"])


def test_bench_trend_short() -> None:
    r = _load("bench_trend").main(["--seconds", "4"])
    assert len(r["steady_growing_verdicts"]) in (3, 6)  # python, and node where installed
    assert all(set(v) == {"rss", "anon"} for v in r["steady_growing_verdicts"].values())
    assert _finite(r["cost"]["add_us"], r["cost"]["refit_us"])
