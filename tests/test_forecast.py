"""Trend on synthetic series: the rate follows the floor of a sawtooth, not its teeth or spikes,
and gives no verdict until the evidence is strong (no "growing" for a steady worker, ever)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings, strategies as st

from oomscope.core.forecast import GROWING_MIN_BYTES_PER_S, Trend, describe_rate

MiB = 1024**2
T0 = 73_412.37  # a monotonic clock is not aligned to anything; neither are the buckets here


def feed(trend: Trend, start: float, seconds: float, dt: float, value: Callable[[float], float]) -> float:
    """Samples every ``dt`` from ``start`` for ``seconds``; returns the time after the last one.

    Times come from a counter, not from summing ``dt``, so the series has no drift of its own.
    """
    k = 0
    n = int(round(seconds / dt))
    while k < n:
        t = start + k * dt
        trend.add(t, int(value(t)))
        k += 1
    return start + n * dt


def sawtooth(floor: Callable[[float], float], amp: float, period_samples: int, dt: float) -> Callable[[float], float]:
    """GC shape: climbs by ``amp`` over a period, then drops to the floor on a sample."""

    def value(t: float) -> float:
        k = int(round((t - T0) / dt))
        return floor(t) + amp * (k % period_samples) / period_samples

    return value


def growing(rate: float | None) -> bool:
    return rate is not None and rate >= GROWING_MIN_BYTES_PER_S


def test_no_verdict_while_collecting_then_the_slope() -> None:
    slope = 1.5 * MiB
    tr = Trend()
    t = feed(tr, T0, 60.0, 0.1, lambda t: 300 * MiB + slope * (t - T0))
    # One window of a climb is not yet evidence: a GC ramp looks the same for a minute.
    assert tr.rate_bytes_per_s() is None
    feed(tr, t, 70.0, 0.1, lambda t: 300 * MiB + slope * (t - T0))
    rate = tr.rate_bytes_per_s()
    assert rate is not None and rate == pytest.approx(slope, rel=0.01)
    assert tr.bucket_count >= 8


def test_spike_makes_no_rate() -> None:
    tr = Trend()
    flat = 400 * MiB
    spike_at = T0 + 40.0

    def value(t: float) -> float:
        return 4096 * MiB if abs(t - spike_at) < 0.01 else flat

    feed(tr, T0, 150.0, 0.1, value)
    assert tr.rate_bytes_per_s() == 0.0
    assert describe_rate(tr.rate_bytes_per_s()) == "stable"


def jittered_sawtooth(period_s: float, amp: float, floor: Callable[[float], float], seed: int,
                      jitter: float = 2 * MiB) -> Callable[[float], float]:
    """A GC sawtooth whose cycles vary by ±20 % and whose floor jitters by ±``jitter``."""
    rng = random.Random(seed)
    cycle_start = [T0]
    cycle_len = [period_s]
    floor_jitter = [0.0]

    def value(t: float) -> float:
        while t >= cycle_start[0] + cycle_len[0]:
            cycle_start[0] += cycle_len[0]
            cycle_len[0] = period_s * rng.uniform(0.8, 1.2)
            floor_jitter[0] = rng.uniform(-jitter, jitter)
        phase = (t - cycle_start[0]) / cycle_len[0]
        return floor(t) + floor_jitter[0] + amp * phase

    return value


@pytest.mark.parametrize("period_s, dt", [(1.0, 0.1), (10.0, 0.5), (60.0, 1.0)])
def test_steady_sawtooth_never_reads_growing(period_s: float, dt: float) -> None:
    """Ten minutes of a steady worker's GC sawtooth: never a growing verdict, at any sample."""
    tr = Trend()
    value = jittered_sawtooth(period_s, 80 * MiB, lambda t: 250 * MiB, seed=int(period_s))
    t = T0
    verdicts = set()
    while t < T0 + 600.0:
        tr.add(t, int(value(t)))
        rate = tr.rate_bytes_per_s()
        assert not growing(rate), (t - T0, rate)
        verdicts.add(describe_rate(rate))
        t += dt
    if period_s < 60:
        assert "stable" in verdicts  # it reaches a verdict, not "–" for ever


# A 1 s GC cycle frees what one second allocates: a few MiB, not the tens of a 10 s cycle.
@pytest.mark.parametrize("period_s, amp", [(None, 0.0), (1.0, 8 * MiB), (10.0, 30 * MiB)])
def test_a_1_mib_per_minute_leak_is_seen_within_3_minutes(period_s: float | None, amp: float) -> None:
    leak = MiB / 60.0
    floor = lambda t: 200 * MiB + leak * (t - T0)  # noqa: E731
    # Floors that wander by ±0.5 MiB per cycle: a 1 MiB/min rise must still show within 3 min.
    value = floor if period_s is None else jittered_sawtooth(period_s, amp, floor, seed=7, jitter=MiB / 2)
    tr = Trend()
    t = T0
    seen_at = seen_rate = None
    while t < T0 + 180.0:
        tr.add(t, int(value(t)))
        rate = tr.rate_bytes_per_s()
        if seen_at is None and growing(rate):
            seen_at, seen_rate = t - T0, rate
        t += 0.5
    assert seen_at is not None, describe_rate(tr.rate_bytes_per_s())
    assert seen_rate == pytest.approx(leak, rel=0.5)


def test_a_drop_in_a_slow_leak_does_not_read_as_shrinking() -> None:
    leak = 50 * 1024.0
    tr = Trend()
    t = feed(tr, T0, 170.0, 0.5, lambda t: 300 * MiB + leak * (t - T0))
    # A one-off release of 150 MiB (a cache dropped), then the leak goes on.
    feed(tr, t, 20.0, 0.5, lambda t: 150 * MiB + leak * (t - T0))
    rate = tr.rate_bytes_per_s()
    # "–" (the drop may be one GC cycle of a long period) or the leak; never a large shrink.
    assert rate is None or rate > -GROWING_MIN_BYTES_PER_S, describe_rate(rate)


def test_sawtooth_on_a_rising_floor_gives_the_floor_slope() -> None:
    leak = 200 * 1024.0  # 200 KiB/s under 60 MiB of GC teeth
    dt = 0.1
    tr = Trend()
    feed(tr, T0, 180.0, dt, sawtooth(lambda t: 500 * MiB + leak * (t - T0), 60 * MiB, 20, dt))
    rate = tr.rate_bytes_per_s()
    assert rate is not None
    assert rate == pytest.approx(leak, rel=0.10)


def test_plateau_after_a_climb_reads_stable_once_the_window_passes() -> None:
    tr = Trend()
    top = 200 * MiB + MiB * 150.0
    t = feed(tr, T0, 150.0, 0.1, lambda t: 200 * MiB + MiB * (t - T0))
    climbing = tr.rate_bytes_per_s()
    assert climbing is not None and climbing == pytest.approx(MiB, rel=0.01)
    feed(tr, t, 130.0, 0.1, lambda t: top)
    assert tr.rate_bytes_per_s() == 0.0
    assert tr.eta_s(1024 * MiB, int(top)) is None


def test_a_pause_longer_than_the_window_forgets_the_past() -> None:
    tr = Trend(window_s=60, bucket_s=5)
    t = feed(tr, T0, 600.0, 0.5, lambda t: 100 * MiB + 100_000 * (t - T0))
    assert growing(tr.rate_bytes_per_s())
    assert tr.bucket_count <= 24
    # Sampling stops for longer than the window (a stopped process, a suspended laptop):
    # what came before is no evidence about now.
    t += 300.0
    feed(tr, t, 5.0, 0.5, lambda t: 900 * MiB)
    assert tr.rate_bytes_per_s() is None


def test_irregular_sample_intervals_still_give_the_slope() -> None:
    rng = random.Random(6)
    slope = 750 * 1024.0
    tr = Trend()
    t = T0
    while t < T0 + 150.0:
        tr.add(t, int(1024 * MiB + slope * (t - T0)))
        t += rng.uniform(0.005, 1.7)
    rate = tr.rate_bytes_per_s()
    assert rate is not None
    assert rate == pytest.approx(slope, rel=0.02)


def test_period_sets_the_floor_bucket() -> None:
    tr = Trend()
    feed(tr, T0, 200.0, 0.5, jittered_sawtooth(20.0, 50 * MiB, lambda t: 100 * MiB, seed=3))
    tr.rate_bytes_per_s()
    assert 30.0 <= tr.floor_bucket_s <= 50.0


def test_eta_to_a_limit_on_a_steady_climb() -> None:
    slope = 2 * MiB
    tr = Trend()
    end = feed(tr, T0, 140.0, 0.1, lambda t: 100 * MiB + slope * (t - T0))
    current = int(100 * MiB + slope * (end - T0))
    limit = current + 600 * MiB
    eta = tr.eta_s(limit, current)
    assert eta is not None
    assert eta == pytest.approx(300.0, rel=0.02)


def test_eta_is_none_when_not_growing_or_unknown() -> None:
    fresh = Trend()
    assert fresh.eta_s(1024 * MiB, 100 * MiB) is None  # no rate yet

    flat = Trend()
    feed(flat, T0, 150.0, 0.1, lambda t: 100 * MiB)
    assert flat.eta_s(1024 * MiB, 100 * MiB) is None

    shrinking = Trend()
    feed(shrinking, T0, 150.0, 0.1, lambda t: 900 * MiB - 100 * 1024 * (t - T0))
    rate = shrinking.rate_bytes_per_s()
    assert rate is not None and rate < 0
    assert shrinking.eta_s(1024 * MiB, 800 * MiB) is None

    # Growing, but under the threshold: a few hundred bytes a second is allocator noise.
    slow = Trend()
    feed(slow, T0, 150.0, 0.1, lambda t: 100 * MiB + 0.5 * GROWING_MIN_BYTES_PER_S * (t - T0))
    slow_rate = slow.rate_bytes_per_s()
    assert slow_rate is not None and 0 < slow_rate < GROWING_MIN_BYTES_PER_S
    assert slow.eta_s(1024 * MiB, 100 * MiB) is None

    growing_ = Trend()
    feed(growing_, T0, 150.0, 0.1, lambda t: 100 * MiB + MiB * (t - T0))
    assert growing_.eta_s(None, 100 * MiB) is None  # no limit, no ETA


def test_eta_is_zero_at_or_above_the_target() -> None:
    growing_ = Trend()
    feed(growing_, T0, 150.0, 0.1, lambda t: 100 * MiB + MiB * (t - T0))
    assert growing_.eta_s(500 * MiB, 500 * MiB) == 0.0
    assert growing_.eta_s(500 * MiB, 501 * MiB) == 0.0
    # Already over the line is a fact, not a forecast: it needs no rate.
    assert Trend().eta_s(500 * MiB, 600 * MiB) == 0.0


def test_time_going_backwards_is_absorbed_not_rewritten() -> None:
    tr = Trend()
    feed(tr, T0, 150.0, 0.1, lambda t: 100 * MiB + MiB * (t - T0))
    before = tr.bucket_count
    tr.add(T0 + 1.0, 1)  # belongs to a closed slot: counted in the open one instead
    assert tr.bucket_count == before
    rate = tr.rate_bytes_per_s()
    assert rate is not None and math.isfinite(rate)


def test_constructor_rejects_windows_that_can_never_give_a_rate() -> None:
    with pytest.raises(ValueError):
        Trend(window_s=10, bucket_s=5)
    with pytest.raises(ValueError):
        Trend(window_s=60, bucket_s=0)
    with pytest.raises(ValueError):
        Trend(window_s=math.inf, bucket_s=5)
    assert Trend(window_s=0.3, bucket_s=0.1).window_s == pytest.approx(0.3)


@pytest.mark.parametrize(
    "rate, text",
    [
        (None, "–"),
        (math.nan, "–"),
        (0.0, "stable"),
        (GROWING_MIN_BYTES_PER_S - 1, "stable"),
        (-(GROWING_MIN_BYTES_PER_S - 1), "stable"),
        (GROWING_MIN_BYTES_PER_S, "+60.0 KiB/min"),
        (12.3 * MiB / 60, "+12.3 MiB/min"),
        (-4 * MiB / 60, "-4.0 MiB/min"),
        (1.5 * 1024 * MiB / 60, "+1.5 GiB/min"),
        (1023.99 * 1024 / 60, "+1.0 MiB/min"),
    ],
)
def test_describe_rate(rate: float | None, text: str) -> None:
    assert describe_rate(rate) == text


@settings(max_examples=300, deadline=None)
@given(
    start=st.floats(min_value=0.0, max_value=1e7, allow_nan=False),
    steps=st.lists(
        st.tuples(
            st.floats(min_value=0.0, max_value=40.0, allow_nan=False),
            st.integers(min_value=0, max_value=2**63 - 1),
        ),
        max_size=400,
    ),
    target=st.none() | st.integers(min_value=0, max_value=2**63 - 1),
)
def test_any_monotonic_series_gives_a_finite_rate_or_none(
    start: float, steps: list[tuple[float, int]], target: int | None
) -> None:
    tr = Trend()
    t = start
    for gap, value in steps:
        t += gap
        tr.add(t, value)
        assert tr.bucket_count <= 120
    rate = tr.rate_bytes_per_s()
    assert rate is None or math.isfinite(rate)
    current = steps[-1][1] if steps else 0
    eta = tr.eta_s(target, current)
    assert eta is None or (math.isfinite(eta) and eta >= 0.0)
    assert isinstance(describe_rate(rate), str)
