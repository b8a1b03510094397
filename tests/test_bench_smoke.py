"""Every benchmark script runs in its tiny configuration (``--quick``) and prints its figures.

The scripts start all at once (a module fixture) and each test waits for its own: the smoke
tests take about as long as the slowest script, not the sum. The figures of a quick run on a
busy machine mean little; their shape (which numbers, how many, counted right) is checked.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from conftest import PY, REPO, v1_memory_writable

BENCH = REPO / "bench"
SCRIPTS = sorted(p.stem for p in BENCH.glob("bench_*.py"))
NUM = r"(\d+(?:[.,]\d+)*)"
# The policy races' leakers: node's only where it is installed.
RACERS = ("python_160MBps", "node_400MBps") if shutil.which("node") else ("python_160MBps",)
needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
needs_cgroup = pytest.mark.skipif(not v1_memory_writable(), reason="needs root and a writable cgroup v1 memory controller")


class Run:
    def __init__(self, name: str) -> None:
        self.out: IO[str] = tempfile.TemporaryFile("w+")
        env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
        self.proc = subprocess.Popen([PY, str(BENCH / f"{name}.py"), "--quick"], stdout=self.out,
                                     stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)

    def output(self) -> str:
        self.proc.wait(timeout=180)
        self.out.seek(0)
        text = self.out.read()
        assert self.proc.returncode == 0, text
        return text

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # our own script, by its Popen
            self.proc.wait()
        self.out.close()


@pytest.fixture(scope="module")
def runs() -> Iterator[dict[str, Run]]:
    started = {name: Run(name) for name in SCRIPTS}
    yield started
    for run in started.values():
        run.close()


def figures(text: str, pattern: str) -> list[float]:
    """The numbers of the one line matching ``pattern`` (thousands separators dropped)."""
    found = [m for m in (re.search(pattern, line) for line in text.splitlines()) if m]
    assert len(found) == 1, f"{pattern!r} in:\n{text}"
    return [float(g.replace(",", "")) for g in found[0].groups()]


def test_every_script_has_a_smoke_test_and_is_in_make_bench() -> None:
    tested = {name[len("test_"):] for name in globals() if name.startswith("test_bench_")}
    assert set(SCRIPTS) == tested
    calls = {node.func.value.id for node in ast.walk(ast.parse((BENCH / "run.py").read_text()))
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
             and isinstance(node.func.value, ast.Name) and node.func.attr == "main"}
    assert calls == set(SCRIPTS)


def test_bench_engine(runs: dict[str, Run]) -> None:
    out = runs["bench_engine"].output()
    (n,) = figures(out, rf"^sampling: 5 idle processes at 0.1 s for 1.0 s \({NUM} worker-samples\)")
    assert n >= 5
    cpu, alone, warm = figures(out, rf"engine thread CPU per worker-sample: {NUM} µs \(sampling pass alone {NUM} µs; "
                                    rf"back to back, caches warm: {NUM} µs\)")
    assert cpu > 0 and alone > 0 and warm > 0
    med, p99, rmed, rp99 = figures(out, rf"exit latency .*, 5 trials: median {NUM} ms, p99 {NUM} ms "
                                        rf"\(received by the consumer: median {NUM} ms, p99 {NUM} ms\)")
    assert 0 < med <= p99 and 0 < rmed <= rp99


def test_bench_churn(runs: dict[str, Run]) -> None:
    out = runs["bench_churn"].output()
    for what in (r"watch --children-of, 200 workers", r"window, 200 workers"):
        start, peak, end, low, high, _slope, fds0, fds1 = figures(
            out, rf"^churn, {what} .*: RSS start {NUM} MiB, peak {NUM} MiB, end {NUM} MiB, after warm-up "
                 rf"{NUM}-{NUM} MiB, slope ([-+]{NUM[1:-1]}) MiB per 100 workers; fds start {NUM}, end {NUM}")
        assert 0 < start <= peak and end <= peak and low <= high <= peak and fds0 > 0 and fds1 > 0
    for what in ("watch", "window"):
        readings = figures(out, rf"^churn, {what}: RSS MiB at every 100 workers: {NUM} {NUM} {NUM}$")
        assert all(r > 0 for r in readings)  # 0, 100 and 200 workers gone
    live, exited, _older, deaths = figures(out, rf"roster {NUM} live \+ {NUM} exited rows, {NUM} older exits "
                                                rf"not shown, timeline {NUM} deaths")
    assert exited <= 500 and deaths <= 2000


def test_bench_gui(runs: dict[str, Run]) -> None:
    out = runs["bench_gui"].output()
    median, p95 = figures(out, rf"^gui: plot redraw, 5 workers x 60 s at 10 Hz .*: median {NUM} ms, p95 {NUM} ms")
    assert 0 < median <= p95
    (rss,) = figures(out, rf"^gui: app RSS with that history: {NUM} MB")
    assert rss > 0


@needs_node
def test_bench_heap(runs: dict[str, Run]) -> None:
    out = runs["bench_heap"].output()
    for hz in (1, 10):
        pct, with_, without, reports, _us, fine = figures(
            out, rf"^\s+{hz} Hz: reporter {NUM} % .*; with {NUM} %, without {NUM} %; {NUM} reports, {NUM} us per "
                 rf"report; schedstat \(ns\) says (-?{NUM[1:-1]}) %")
        assert reports >= hz  # a second of reports at that rate, at the least


@needs_node
def test_bench_node_worker_oom(runs: dict[str, Run]) -> None:
    out = runs["bench_node_worker_oom"].output()
    counts = figures(out, rf"^\s+chunks\s+without: {NUM} thread-error, {NUM} abort, {NUM} other \({NUM} s a run\); "
                          rf"with: {NUM} thread-error, {NUM} abort, {NUM} other \({NUM} s a run\)$")
    assert counts[0] + counts[1] + counts[2] == 2 and counts[4] + counts[5] + counts[6] == 2
    reached, of = figures(out, rf"heap-oom reached oomscope: {NUM} of {NUM} thread-error runs")
    assert of == counts[4] and reached <= of


@needs_node
def test_bench_inspect(runs: dict[str, Run]) -> None:
    out = runs["bench_inspect"].output()
    assert "main + 2 workers, 10 queries each" in out, out
    for mode in ("on ", "off"):
        median, p90 = figures(out, rf"TCP_QUICKACK {mode}: median {NUM} ms, p90 {NUM} ms per query\(\)")
        assert 0 < median <= p90


def test_bench_metrics(runs: dict[str, Run]) -> None:
    out = runs["bench_metrics"].output()
    tick, per_worker = figures(out, rf"^exporter: one tick of 10 workers taken in: {NUM} µs \({NUM} ns per worker\)")
    assert per_worker > 0
    samples, kb, ms = figures(out, rf"^exporter: a scrape of 10 workers \({NUM} samples, {NUM} kB\): {NUM} ms")
    assert samples >= 10 and ms > 0


@needs_cgroup
def test_bench_oom_latency(runs: dict[str, Run]) -> None:
    out = runs["bench_oom_latency"].output()
    median, p99, top = figures(out, rf"^kernel kill line -> worker_exited\(oom-kill\), 2 (?:node|python) kills "
                                    rf"under 64 MiB: median {NUM} ms, p99 {NUM} ms, max {NUM} ms")
    assert 0 < median <= p99 <= top


def test_bench_parse(runs: dict[str, Run]) -> None:
    out = runs["bench_parse"].output()
    kills, expected, rate, raw = figures(out, rf"^oom-log parse: 30,000 synthetic dmesg lines, {NUM} of {NUM} kills "
                                              rf"found: {NUM} lines/s \(from raw bytes, decoding included: {NUM} lines/s\)")
    assert kills == expected > 0 and rate > 0 and raw > 0


@needs_cgroup
def test_bench_policy_race(runs: dict[str, Run]) -> None:
    out = runs["bench_policy_race"].output()
    for name in RACERS:
        wins, total = figures(out, rf"^policy race, {name} under .*: {NUM}/{NUM} terminated by policy")
        assert total == 1 and 0 <= wins <= total
    median, p99, top, n, _s = figures(out, rf"^crossing -> threshold event, .*: median {NUM} ms, p99 {NUM} ms, "
                                           rf"max {NUM} ms \({NUM} runs, {NUM} s\)")
    assert n == 1 and median <= p99 <= top


@needs_cgroup
def test_bench_gui_race(runs: dict[str, Run]) -> None:
    out = runs["bench_gui_race"].output()
    for name in RACERS:
        wins, total, _s = figures(out, rf"^gui policy race, {name}, launched in the window with limit 256MiB, "
                                       rf".*: {NUM}/{NUM} terminated by policy; outcomes .* \({NUM} s\)$")
        assert total == 1 and 0 <= wins <= total


def test_bench_record(runs: dict[str, Run]) -> None:
    out = runs["bench_record"].output()
    _node, samples, heaps, commits = figures(
        out, rf"^record: 5 workers at 10 Hz for 2 s, {NUM} of them .*\({NUM} samples, {NUM} heap reports, {NUM} commits\)")
    assert samples >= 5 and commits >= 1
    (hour,) = figures(out, rf"an hour of this fleet: {NUM} MB")
    assert hour > 0
    replayed, bulk = figures(out, rf"reading it back: {NUM} µs per sample replayed as events, {NUM} µs per sample")
    assert replayed > 0 and bulk > 0


def test_bench_replay(runs: dict[str, Run]) -> None:
    out = runs["bench_replay"].output()
    (samples,) = figures(out, rf"^replay: 5 workers at 10 Hz for 0.5 min \({NUM} samples")
    assert samples == 5 * 10 * 30
    (opened,) = figures(out, rf"open \(read the file, show the end\): {NUM} s")
    assert opened > 0
    for frac in ("50%", "95%", "10%"):
        (ms,) = figures(out, rf"scrub to {frac}: {NUM} ms")
        assert ms >= 0


def test_bench_proctree(runs: dict[str, Run]) -> None:
    out = runs["bench_proctree"].output()
    seen, forked, pct, exits = figures(out, rf"^children-of, .*: {NUM}/{NUM} children of 50 ms seen \({NUM} %\), "
                                            rf"{NUM} exits recorded$")
    assert forked == 20 and 0 <= seen <= forked and exits <= seen
    assert pct == round(100 * seen / forked)


def test_bench_trend(runs: dict[str, Run]) -> None:
    text = runs["bench_trend"].output()
    steady = [line for line in text.splitlines() if "steady" in line and "growing verdicts" in line]
    assert len(steady) in (3, 6), text  # python's three periods, and node's where installed
    for line in steady:
        seconds, rss, anon = figures(line, rf"steady \d+ s, {NUM} s sampled at 1 Hz: growing verdicts rss {NUM}, "
                                           rf"anon {NUM}$")
        assert seconds == 3 and rss <= seconds and anon <= seconds  # at most one verdict a sample
    # The leaks' (and node's control's) times to a growing verdict and their rates at the end,
    # or None: too slow to show within a quick run.
    when, rate = r"(None|\d+\.\d+) s", r"(None|-?\d+\.\d+ MiB/min)"
    watched = [r"python leaking 1 MiB/min"]
    if shutil.which("node"):
        watched += [r"node leaking 1 MiB/min", r"node control \(the same Buffers, none kept\)"]
    for name in watched:
        assert re.search(rf"^trend, {name}: growing after rss {when}, anon {when}; "
                         rf"rate at the end rss {rate}, anon {rate}$", text, re.M), text
        grew = figures(text, rf"^trend, {name}, grown over the run: rss ([-+]\d+\.\d) MiB, "
                             rf"anon ([-+]\d+\.\d) MiB$")
        assert all(abs(mib) < 64 for mib in grew)  # 3 s of 1 MiB/min, whatever the allocator does
    add_us, refit_us = figures(text, r"trend cost: add " + NUM + r" µs per sample, refit " + NUM + r" µs")
    assert 0 < add_us and 0 < refit_us
