"""History ring buffers and peak decimation (Qt-free, so no gui mark)."""

from __future__ import annotations


import numpy as np
from hypothesis import given, settings, strategies as st

from oomscope.gui.history import PeakView, Series, bucket_width


def _filled(n: int, capacity: int = 1024, seed: int = 0) -> tuple[Series, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = 1_700_000_000.0 + np.arange(n) * 0.1
    v = (rng.integers(1, 1000, n) << 20).astype(np.float64)
    s = Series(capacity)
    for ti, vi in zip(t, v):
        s.append(float(ti), float(vi), float(vi) / 2, None)
    return s, t, v


def test_series_keeps_every_sample_until_full() -> None:
    s, t, v = _filled(1000)
    assert len(s) == 1000
    assert np.array_equal(s.times(), t)
    assert np.array_equal(s.values("rss"), v.astype(np.float32))
    assert not s.has_heap and np.isnan(s.values("heap_used")).all()


def test_full_series_folds_old_half_and_keeps_peaks_and_order() -> None:
    s, t, v = _filled(5000, capacity=1024)
    assert len(s) <= 1024
    times = s.times()
    assert np.all(np.diff(times) >= 0)
    assert times[-1] == t[-1] and times[0] == t[0]
    # Decimation never invents values and never loses the global peak.
    assert float(s.values("rss").max()) == float(v.max())
    assert set(s.values("rss").tolist()) <= set(v.astype(np.float32).tolist())


@settings(max_examples=40, deadline=None)
@given(n=st.integers(10, 3000), width_pow=st.integers(-3, 5), seed=st.integers(0, 10))
def test_peak_view_matches_brute_force(n: int, width_pow: int, seed: int) -> None:
    s, t, v = _filled(n, capacity=4096, seed=seed)
    width = 2.0 ** width_pow
    t0, t1 = float(t[0]), float(t[-1])
    view = PeakView()
    x, y = view.points(s, "rss", t0, t1, width)
    if len(x) == len(t) or len(x) >= n:  # sparse: raw samples
        return
    idx = np.floor(t / width).astype(np.int64)
    for b in np.unique(idx):
        sel = v[idx == b].astype(np.float32)
        centre = (b + 0.5) * width
        got = y[np.isclose(x, centre, rtol=0.0, atol=1e-6)]
        assert got.min() == sel.min() and got.max() == sel.max()


def test_peak_view_cache_gives_the_same_as_a_fresh_view_while_data_grows() -> None:
    s, t, _ = _filled(2000, capacity=8192, seed=3)
    cached = PeakView()
    width = bucket_width(60.0, 30)
    rng = np.random.default_rng(9)
    now = float(t[-1])
    for step in range(50):
        now += 0.1
        s.append(now, float(rng.integers(1, 1000) << 20), 1.0, None)
        x1, y1 = cached.points(s, "rss", now - 60.0, now, width)
        x2, y2 = PeakView().points(s, "rss", now - 60.0, now, width)
        assert np.array_equal(x1, x2) and np.array_equal(y1, y2), step


def test_value_at_and_heap_flag() -> None:
    s = Series()
    s.append(10.0, 1.0, 1.0, None)
    s.append(11.0, 2.0, 2.0, 5.0)
    assert s.has_heap
    assert s.value_at(10.5, "rss") == (10.0, 1.0)
    assert s.value_at(9.0, "rss") is None
    assert s.value_at(10.5, "heap_used") is None
    assert s.value_at(11.5, "heap_used") == (11.0, 5.0)
