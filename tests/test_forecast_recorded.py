"""Trend on recordings of real workers (tests/data/trend/: bench/bench_trend.py's steady and
leaking node and Python workers, RSS and anonymous RSS at 1 Hz from their start).

Node's RSS floors climb for the first minute or two while V8 sizes its heap; that start-up must
not read as a leak, and a 1 MiB/min leak must still show within 3 minutes."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from oomscope.core.forecast import GROWING_MIN_BYTES_PER_S, START_UP_S, Trend

DATA = Path(__file__).parent / "data" / "trend"
MiB = 1024**2
T0 = 51_207.5  # the recording's t = 0 (its process's start) on an arbitrary monotonic clock
# Floor buckets are aligned to the clock, so where t = 0 falls in a bucket changes which floors
# are seen: every recording is replayed at ten phases of the default 5 s bucket.
PHASES = [k * 0.5 for k in range(10)]

# Constant working sets: GC sawtooths of 10 and 60 s, and node's control (a Buffer a second,
# none kept), whose floors stay flat for 13 minutes and then step up 4 MiB once.
STEADY = ["node-steady-10s-a.csv", "node-steady-10s-b.csv", "node-steady-60s.csv", "python-steady-10s.csv",
          "node-control.csv"]
LEAKS = ["node-leak-1mib-per-min.csv", "python-leak-1mib-per-min.csv"]


def recording(name: str) -> list[tuple[float, int, int]]:
    with open(DATA / name, newline="") as f:
        rows = csv.DictReader(line for line in f if not line.startswith("#"))
        return [(float(r["t_s"]), int(r["rss_bytes"]), int(r["anon_bytes"])) for r in rows]


def replay(name: str, metric: int, start_up_s: float, phase: float = 0.0) -> list[tuple[float, float | None]]:
    """(t, rate) after every sample, the process having started at the recording's t = 0."""
    start = T0 + phase
    tr = Trend(process_start_mono=start, start_up_s=start_up_s)
    out = []
    for row in recording(name):
        tr.add(start + row[0], row[metric])
        out.append((row[0], tr.rate_bytes_per_s()))
    return out


def growing_at(rates: list[tuple[float, float | None]]) -> list[float]:
    return [t for t, r in rates if r is not None and r >= GROWING_MIN_BYTES_PER_S]


@pytest.mark.parametrize("name", STEADY)
@pytest.mark.parametrize("metric", [1, 2], ids=["rss", "anon"])
@pytest.mark.parametrize("phase", PHASES)
def test_steady_workers_never_read_growing(name: str, metric: int, phase: float) -> None:
    rates = replay(name, metric, START_UP_S, phase)
    assert len(rates) >= 800  # minutes of evidence, not a few samples
    assert growing_at(rates) == []
    if "60s" not in name:
        # it does come to a verdict, "stable", not "–" for the whole recording (a 60 s sawtooth
        # needs floor buckets of 2 minutes, so 10 minutes of them; it may stay "–" here)
        assert any(r == 0.0 for _, r in rates)


def test_without_the_start_up_rule_node_start_up_reads_as_a_leak() -> None:
    """Why the rule exists: the same recordings, every sample counted, cry wolf in the first
    minutes (from 110 s; at some phases 211 s, the start-up's climb still inflating the range
    the sawtooth's drops are measured against)."""
    for name in ("node-steady-10s-a.csv", "node-steady-10s-b.csv"):
        seen = [growing_at(replay(name, 1, 0.0, phase)) for phase in PHASES]
        cried = [s for s in seen if s]
        assert cried, name
        assert all(100 <= s[0] <= 240 for s in cried), (name, [s[:3] for s in cried])


@pytest.mark.parametrize("name", LEAKS)
@pytest.mark.parametrize("metric", [1, 2], ids=["rss", "anon"])
@pytest.mark.parametrize("phase", PHASES[::3])
def test_a_1_mib_per_minute_leak_is_seen_within_3_minutes(name: str, metric: int, phase: float) -> None:
    rates = replay(name, metric, START_UP_S, phase)
    seen = growing_at(rates)
    assert seen and seen[0] <= 180.0, seen[:3]
    # once seen it stays seen, at about the rate it leaks
    assert all(r is not None and r >= GROWING_MIN_BYTES_PER_S for t, r in rates if t >= seen[0])
    assert rates[-1][1] == pytest.approx(MiB / 60.0, rel=0.2)


def test_a_single_step_is_not_a_leak_but_a_leak_that_steps_still_is() -> None:
    """The control's one 4 MiB step read as growing for 20 s before steps were taken out; the
    leaker beside it took a step too and must keep its verdict through it."""
    control = replay("node-control.csv", 1, START_UP_S)
    step_at = next(t for (t, _), (_, rss, _a) in zip(control, recording("node-control.csv"))
                   if rss > recording("node-control.csv")[0][1] + 3 * MiB and t > 300)
    assert step_at < 800  # the recording does hold the step, well before its end
    assert growing_at(control) == []
    # a leak of 1 MiB/min with the control's step added stays growing at about its rate
    leak = MiB / 60.0
    tr = Trend(process_start_mono=T0)
    after: list[float | None] = []
    for t, rss, _anon in recording("node-control.csv"):
        tr.add(T0 + t, rss + int(leak * t))
        if t > step_at:
            after.append(tr.rate_bytes_per_s())
    assert all(r is not None and r == pytest.approx(leak, rel=0.3) for r in after)


def test_samples_in_the_start_up_are_not_counted() -> None:
    """A climb confined to the start-up leaves no trace: the same flat worker as one that never
    climbed, sample for sample."""
    climbed = Trend(process_start_mono=T0)
    flat = Trend(process_start_mono=T0)
    for k in range(400):
        t = T0 + k * 0.5
        climbed.add(t, 100 * MiB + (k * MiB if t < T0 + START_UP_S else 60 * MiB))
        flat.add(t, 160 * MiB)
        assert climbed.rate_bytes_per_s() == flat.rate_bytes_per_s()
    assert climbed.rate_bytes_per_s() == 0.0
