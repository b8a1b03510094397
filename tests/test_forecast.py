"""Trend on synthetic series: the rate follows the floor of a sawtooth, not its teeth or spikes."""

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


def test_no_rate_until_three_buckets_have_closed() -> None:
    tr = Trend(window_s=60, bucket_s=5)
    assert tr.rate_bytes_per_s() is None
    t = 100.0  # aligned: buckets [100,105), [105,110), ...
    t = feed(tr, t, 15.0, 0.1, lambda t: 100 * MiB + MiB * (t - 100))
    # Three intervals sampled, but the third is still open: only two points so far.
    assert tr.bucket_count == 2
    assert tr.rate_bytes_per_s() is None
    tr.add(t, 200 * MiB)  # first sample of the fourth bucket closes the third
    assert tr.bucket_count == 3
    assert tr.rate_bytes_per_s() is not None


def test_steady_climb_gives_its_slope() -> None:
    slope = 1.5 * MiB
    tr = Trend()
    feed(tr, T0, 90.0, 0.05, lambda t: 300 * MiB + slope * (t - T0))
    rate = tr.rate_bytes_per_s()
    assert rate is not None
    assert rate == pytest.approx(slope, rel=0.01)


def test_spike_makes_no_rate() -> None:
    tr = Trend()
    flat = 400 * MiB
    spike_at = T0 + 40.0

    def value(t: float) -> float:
        return 4096 * MiB if abs(t - spike_at) < 0.01 else flat

    feed(tr, T0, 90.0, 0.1, value)
    rate = tr.rate_bytes_per_s()
    assert rate is not None
    assert abs(rate) < 1.0
    assert describe_rate(rate) == "stable"


@pytest.mark.parametrize("period_samples, dt", [(20, 0.1), (12, 0.25), (4, 1.0)])
def test_sawtooth_on_a_flat_floor_is_stable(period_samples: int, dt: float) -> None:
    tr = Trend()
    feed(tr, T0, 120.0, dt, sawtooth(lambda t: 250 * MiB, 80 * MiB, period_samples, dt))
    rate = tr.rate_bytes_per_s()
    assert rate is not None
    assert abs(rate) < GROWING_MIN_BYTES_PER_S
    assert tr.eta_s(1024 * MiB, 300 * MiB) is None


def test_sawtooth_on_a_rising_floor_gives_the_floor_slope() -> None:
    leak = 200 * 1024.0  # 200 KiB/s under 60 MiB of GC teeth
    dt = 0.1
    tr = Trend()
    feed(tr, T0, 120.0, dt, sawtooth(lambda t: 500 * MiB + leak * (t - T0), 60 * MiB, 20, dt))
    rate = tr.rate_bytes_per_s()
    assert rate is not None
    assert rate == pytest.approx(leak, rel=0.10)
    # The raw samples climb 30 MiB/s on every tooth: nowhere near what the floor does.
    assert rate < 2 * leak


def test_plateau_after_a_climb_reads_stable_once_the_window_passes() -> None:
    tr = Trend()
    top = 200 * MiB + MiB * 60.0
    t = feed(tr, T0, 60.0, 0.1, lambda t: 200 * MiB + MiB * (t - T0))
    climbing = tr.rate_bytes_per_s()
    assert climbing is not None and climbing == pytest.approx(MiB, rel=0.01)
    feed(tr, t, 60.0 + 2 * 5.0, 0.1, lambda t: top)
    rate = tr.rate_bytes_per_s()
    assert rate is not None
    assert abs(rate) < GROWING_MIN_BYTES_PER_S
    assert tr.eta_s(1024 * MiB, int(top)) is None


def test_window_is_bounded_by_count_and_by_time() -> None:
    tr = Trend(window_s=60, bucket_s=5)
    t = feed(tr, T0, 600.0, 0.5, lambda t: 100 * MiB + 1000 * (t - T0))
    assert tr.bucket_count == 12
    assert tr.rate_bytes_per_s() is not None
    # Sampling stops for longer than the window (a stopped process, a suspended laptop):
    # what came before is no evidence about now.
    t += 300.0
    t = feed(tr, t, 5.0, 0.5, lambda t: 900 * MiB)
    assert tr.bucket_count <= 1
    assert tr.rate_bytes_per_s() is None


def test_irregular_sample_intervals_still_give_the_slope() -> None:
    rng = random.Random(6)
    slope = 750 * 1024.0
    tr = Trend()
    t = T0
    while t < T0 + 90.0:
        tr.add(t, int(1024 * MiB + slope * (t - T0)))
        t += rng.uniform(0.005, 1.7)
    rate = tr.rate_bytes_per_s()
    assert rate is not None
    assert rate == pytest.approx(slope, rel=0.01)


def test_irregular_sawtooth_on_a_rising_floor() -> None:
    # GC cycles of varying length, sampled at jittered intervals: the floor still wins.
    rng = random.Random(61)
    leak = 300 * 1024.0
    tr = Trend()
    t = T0
    next_gc = T0
    since = T0
    while t < T0 + 120.0:
        if t >= next_gc:
            since = t
            next_gc = t + rng.uniform(0.8, 2.2)
        value = 700 * MiB + leak * (t - T0) + 40 * MiB * (t - since)
        tr.add(t, int(value))
        t += rng.uniform(0.05, 0.15)
    rate = tr.rate_bytes_per_s()
    assert rate is not None
    assert rate == pytest.approx(leak, rel=0.10)


def test_eta_to_a_limit_on_a_steady_climb() -> None:
    slope = 2 * MiB
    tr = Trend()
    end = feed(tr, T0, 80.0, 0.1, lambda t: 100 * MiB + slope * (t - T0))
    current = int(100 * MiB + slope * (end - T0))
    limit = current + 600 * MiB
    eta = tr.eta_s(limit, current)
    assert eta is not None
    assert eta == pytest.approx(300.0, rel=0.02)


def test_eta_is_none_when_not_growing_or_unknown() -> None:
    fresh = Trend()
    assert fresh.eta_s(1024 * MiB, 100 * MiB) is None  # no rate yet

    flat = Trend()
    feed(flat, T0, 90.0, 0.1, lambda t: 100 * MiB)
    assert flat.eta_s(1024 * MiB, 100 * MiB) is None

    shrinking = Trend()
    feed(shrinking, T0, 90.0, 0.1, lambda t: 900 * MiB - 100 * 1024 * (t - T0))
    rate = shrinking.rate_bytes_per_s()
    assert rate is not None and rate < 0
    assert shrinking.eta_s(1024 * MiB, 800 * MiB) is None

    # Growing, but under the threshold: a few hundred bytes a second is allocator noise.
    slow = Trend()
    feed(slow, T0, 90.0, 0.1, lambda t: 100 * MiB + 0.5 * GROWING_MIN_BYTES_PER_S * (t - T0))
    slow_rate = slow.rate_bytes_per_s()
    assert slow_rate is not None and 0 < slow_rate < GROWING_MIN_BYTES_PER_S
    assert slow.eta_s(1024 * MiB, 100 * MiB) is None

    growing = Trend()
    feed(growing, T0, 90.0, 0.1, lambda t: 100 * MiB + MiB * (t - T0))
    assert growing.eta_s(None, 100 * MiB) is None  # no limit, no ETA


def test_eta_is_zero_at_or_above_the_target() -> None:
    growing = Trend()
    feed(growing, T0, 90.0, 0.1, lambda t: 100 * MiB + MiB * (t - T0))
    assert growing.eta_s(500 * MiB, 500 * MiB) == 0.0
    assert growing.eta_s(500 * MiB, 501 * MiB) == 0.0
    # Already over the line is a fact, not a forecast: it needs no rate.
    assert Trend().eta_s(500 * MiB, 600 * MiB) == 0.0


def test_time_going_backwards_is_absorbed_not_rewritten() -> None:
    tr = Trend()
    feed(tr, T0, 30.0, 0.1, lambda t: 100 * MiB + MiB * (t - T0))
    before = tr.bucket_count
    tr.add(T0 + 1.0, 1)  # belongs to a closed bucket: counted in the open one instead
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
        assert tr.bucket_count <= 12
    rate = tr.rate_bytes_per_s()
    assert rate is None or math.isfinite(rate)
    current = steps[-1][1] if steps else 0
    eta = tr.eta_s(target, current)
    assert eta is None or (math.isfinite(eta) and eta >= 0.0)
    assert isinstance(describe_rate(rate), str)
