"""Per-worker memory history in numpy ring buffers, and peak decimation for drawing.

Qt-free on purpose (napari's lesson): the plot pulls arrays from here, tests check the
numbers without a QApplication.

Memory stays bounded: a series holds at most ``capacity`` rows; when full, its older half is
folded into min/max pairs per four rows (docs/DESIGN.md "old history is decimated"), so an hour at
10 Hz stays exact and older history keeps its peaks at a coarser step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

METRICS = ("rss", "anon", "heap_used", "cgroup_usage")
METRIC_LABELS = {"rss": "RSS", "anon": "anon RSS", "heap_used": "heap used", "cgroup_usage": "cgroup usage"}
# Metrics only some workers have (a heap reporter, a cgroup of their own): NaN where unknown, and
# a worker without the figure draws no curve on them rather than a line along zero.
SPARSE_METRICS = frozenset(("heap_used", "cgroup_usage"))
_COLUMN = {m: i for i, m in enumerate(METRICS)}
_HEAP = _COLUMN["heap_used"]
_CGROUP = _COLUMN["cgroup_usage"]

# One hour at 10 Hz, the densest history the plot promises to keep exact.
DEFAULT_CAPACITY = 36_000
_INITIAL_ROWS = 512

FloatArray = npt.NDArray[np.float64]
Float32Array = npt.NDArray[np.float32]


def plotted_cgroup_usage(usage: npt.ArrayLike, limit: npt.ArrayLike) -> Float32Array:
    """The cgroup usage the history keeps: only where the cgroup has a limit (NaN elsewhere).

    A worker with no limited cgroup of its own sits in some unlimited one (the root, a session's
    scope) whose usage is the whole machine's or many processes': drawn per worker, that is
    hundreds of MiB of noise, and there is no limit line to read it against."""
    u = np.asarray(usage, np.float64)
    return np.where(np.isfinite(np.asarray(limit, np.float64)), u, np.nan).astype(np.float32)


def history_columns(columns: Mapping[str, npt.ArrayLike], rows: int) -> Float32Array:
    """``Series.extend``'s block from named columns: one per metric in METRICS, a metric not
    given (a recording without cgroup usage, a fleet without heaps) NaN throughout."""
    block = np.full((rows, len(METRICS)), np.nan, np.float32)
    for name, values in columns.items():
        block[:, _COLUMN[name]] = values
    return block


class Series:
    """One worker's samples: time (Unix s, float64) and one column per metric in METRICS
    (rss, anon, heap_used, cgroup_usage; bytes, float32).

    float32 keeps 7.2 M samples near 144 MB; its 24-bit mantissa resolves a GiB to 64 bytes.
    Unknown values (heap without a reporter, usage without a cgroup of its own) are NaN.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 16:
            raise ValueError("capacity must be at least 16 rows")
        self.capacity = capacity
        self._t: FloatArray = np.empty(min(_INITIAL_ROWS, capacity), np.float64)
        self._v: Float32Array = np.empty((len(self._t), len(METRICS)), np.float32)
        self._n = 0
        self.has_heap = False
        self.has_cgroup_usage = False
        self.version = 0  # bumped on every change; caches compare it

    def __len__(self) -> int:
        return self._n

    def append(self, t: float, rss: float, anon: float, heap_used: float | None,
               cgroup_usage: float | None = None) -> None:
        if self._n == len(self._t):
            if self._n < self.capacity:
                self._grow(min(self.capacity, max(16, 2 * self._n)))
            else:
                self._compact()
        n = self._n
        self._t[n] = t
        row = self._v[n]
        row[0] = rss
        row[1] = anon
        if heap_used is None:
            row[_HEAP] = math.nan
        else:
            row[_HEAP] = heap_used
            self.has_heap = True
        if cgroup_usage is None:
            row[_CGROUP] = math.nan
        else:
            row[_CGROUP] = cgroup_usage
            self.has_cgroup_usage = True
        self._n = n + 1
        self.version += 1

    def extend(self, t: FloatArray, values: Float32Array) -> None:
        """Bulk append (benchmarks, recorded sessions): ``values`` has one column per metric."""
        for start in range(0, len(t), self.capacity // 2):
            chunk_t = t[start:start + self.capacity // 2]
            chunk_v = values[start:start + self.capacity // 2]
            while self._n + len(chunk_t) > len(self._t):
                if len(self._t) < self.capacity:
                    self._grow(min(self.capacity, 2 * len(self._t)))
                else:
                    self._compact()
            self._t[self._n:self._n + len(chunk_t)] = chunk_t
            self._v[self._n:self._n + len(chunk_t)] = chunk_v
            self._n += len(chunk_t)
        if len(values) and np.isfinite(values[:, _HEAP]).any():
            self.has_heap = True
        if len(values) and np.isfinite(values[:, _CGROUP]).any():
            self.has_cgroup_usage = True
        self.version += 1

    def trim(self) -> None:
        """Give back the rows not filled (a worker that exited gets no more samples): a worker
        that lived a second keeps a few rows, not the 512 every series starts with."""
        if len(self._t) > self._n:
            self._grow(self._n)

    def _grow(self, rows: int) -> None:
        t = np.empty(rows, np.float64)
        v = np.empty((rows, len(METRICS)), np.float32)
        t[:self._n] = self._t[:self._n]
        v[:self._n] = self._v[:self._n]
        self._t, self._v = t, v

    def _compact(self) -> None:
        """Fold the older half into (first time, min) and (last time, max) per four rows."""
        half = (self._n // 2) // 4 * 4
        buckets = half // 4
        old_t = self._t[:half].reshape(buckets, 4)
        old_v = self._v[:half].reshape(buckets, 4, len(METRICS))
        folded_t = np.empty(2 * buckets, np.float64)
        folded_t[0::2] = old_t[:, 0]
        folded_t[1::2] = old_t[:, 3]
        folded_v = np.empty((2 * buckets, len(METRICS)), np.float32)
        with np.errstate(invalid="ignore"):
            folded_v[0::2] = np.fmin.reduce(old_v, axis=1)
            folded_v[1::2] = np.fmax.reduce(old_v, axis=1)
        rest = self._n - half
        self._t[:2 * buckets] = folded_t
        self._v[:2 * buckets] = folded_v
        self._t[2 * buckets:2 * buckets + rest] = self._t[half:self._n]
        self._v[2 * buckets:2 * buckets + rest] = self._v[half:self._n]
        self._n = 2 * buckets + rest

    def times(self) -> FloatArray:
        return self._t[:self._n]

    def values(self, metric: str) -> Float32Array:
        return self._v[:self._n, _COLUMN[metric]]

    def value_at(self, t: float, metric: str) -> tuple[float, float] | None:
        """The sample at or just before ``t``: (its time, its value), None before the first."""
        i = int(np.searchsorted(self._t[:self._n], t, side="right")) - 1
        if i < 0:
            return None
        value = float(self._v[i, _COLUMN[metric]])
        if math.isnan(value):
            return None
        return float(self._t[i]), value

    def bounds(self, metric: str, t0: float, t1: float) -> float | None:
        """Largest value between t0 and t1 (for the y range), None if nothing is there."""
        t = self._t[:self._n]
        i0 = int(np.searchsorted(t, t0))
        i1 = int(np.searchsorted(t, t1, side="right"))
        if i1 <= i0:
            return None
        top = float(np.nanmax(self._v[i0:i1, _COLUMN[metric]])) if np.isfinite(
            self._v[i0:i1, _COLUMN[metric]]).any() else None
        return top


def bucket_width(span_s: float, buckets: int) -> float:
    """A power-of-two bucket width giving between ``buckets/2`` and ``buckets`` buckets.

    Powers of two keep the width, and with it the peak cache, stable while the window
    slides or the widget is resized by a few pixels.
    """
    raw = max(span_s, 1e-6) / max(buckets, 1)
    return float(2.0 ** math.ceil(math.log2(raw)))


class PeakView:
    """What one series looks like at one bucket width: min/max per time bucket, cached.

    Buckets are aligned to multiples of the width in absolute time, so finished buckets never
    change and a redraw computes only the buckets that gained samples since the last one.
    """

    def __init__(self) -> None:
        self._key: tuple[str, float] | None = None
        self._done_x: FloatArray = np.empty(0, np.float64)  # bucket centres, two per bucket
        self._done_y: FloatArray = np.empty(0, np.float64)
        self._start = math.inf  # start of the first cached bucket
        self._done_until = -math.inf  # start of the first bucket not cached

    def points(self, series: Series, metric: str, t0: float, t1: float,
               width_s: float) -> tuple[FloatArray, FloatArray]:
        """x, y to draw for [t0, t1]: raw samples when sparse, min/max pairs when dense."""
        # ndarray methods, not np.* wrappers: this runs for every worker on every redraw.
        t = series.times()
        i0 = max(0, int(t.searchsorted(t0)) - 1)
        i1 = min(len(t), int(t.searchsorted(t1, side="right")) + 1)
        if i1 - i0 <= 2 * (t1 - t0) / width_s:
            # Fewer samples than pixels to spend: draw them as they are.
            return t[i0:i1].astype(np.float64), series.values(metric)[i0:i1].astype(np.float64)
        key = (metric, width_s)
        # From one bucket before the window's first, so the curve enters at the left edge.
        lo = math.floor(t0 / width_s) * width_s - width_s
        if key != self._key or lo < self._start or self._done_until < lo:
            self._key = key
            self._done_x = np.empty(0, np.float64)
            self._done_y = np.empty(0, np.float64)
            self._start = self._done_until = lo
        elif self._start < lo - (t1 - t0):
            # Keep about twice the window: drop what slid far out of view.
            keep = int(np.searchsorted(self._done_x, lo))
            self._done_x = self._done_x[keep:]
            self._done_y = self._done_y[keep:]
            self._start = lo
        last_open = math.floor(t[-1] / width_s) * width_s  # the bucket still filling
        j0 = int(t.searchsorted(self._done_until))
        j_open = int(t.searchsorted(last_open))
        if j_open > j0:
            x, y = _peaks(t[j0:j_open], series.values(metric)[j0:j_open], width_s)
            self._done_x = np.concatenate((self._done_x, x))
            self._done_y = np.concatenate((self._done_y, y))
            self._done_until = last_open
        # Every sample from last_open on lies in that one bucket: two reductions, no bucketing.
        tail = series.values(metric)[j_open:]
        if len(tail):
            open_y = np.array((np.fmin.reduce(tail), np.fmax.reduce(tail)), np.float64)
            centre = last_open + 0.5 * width_s
            open_x = np.array((centre, centre))
        else:
            open_x = open_y = np.empty(0, np.float64)
        k0 = int(self._done_x.searchsorted(lo))
        return (np.concatenate((self._done_x[k0:], open_x)),
                np.concatenate((self._done_y[k0:], open_y)))


def _peaks(t: FloatArray, v: Float32Array, width_s: float) -> tuple[FloatArray, FloatArray]:
    if len(t) == 0:
        return np.empty(0, np.float64), np.empty(0, np.float64)
    idx = np.floor(t / width_s).astype(np.int64)
    starts = np.flatnonzero(np.concatenate(([True], idx[1:] != idx[:-1])))
    with np.errstate(invalid="ignore"):
        lo = np.fmin.reduceat(v, starts).astype(np.float64)
        hi = np.fmax.reduceat(v, starts).astype(np.float64)
    x = np.repeat((idx[starts] + 0.5) * width_s, 2)
    y = np.empty(2 * len(starts), np.float64)
    y[0::2] = lo
    y[1::2] = hi
    return x, y
