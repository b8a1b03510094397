"""Memory trend of one worker: growth rate over a sliding window and time until a line.

The rate is a least-squares line through the *minimum* of each fixed time bucket, not
through the raw samples. A garbage-collected heap climbs and drops (a sawtooth) many
times a minute; its peaks say how much garbage is waiting, its floors say how much is
live. A leak is a rising floor, so the floor is what the fit must follow: a bucket's
minimum is the floor it reached in that bucket (as long as a GC cycle is shorter than
the bucket), and one sampled spike cannot lower a minimum, so it cannot make a rate.

Buckets are aligned to multiples of ``bucket_s`` on the caller's clock (monotonic
seconds). A bucket closes when the first sample of a later bucket arrives; only closed
buckets are fitted, because the open one has not had its whole interval to reach its
floor and would read high. The window is the ``window_s / bucket_s`` bucket intervals
just before the open one, so after a gap in sampling the old buckets age out by time,
not only by count. Each bucket's point is (time of its minimum sample, that minimum):
the time of the minimum rather than the bucket's midpoint, so irregular sampling and a
minimum at a bucket's edge do not bend the slope.

Limitation, by design: a sawtooth with a period longer than ``bucket_s`` has buckets
that never see a floor, and part of its ramp leaks into the rate; a downward glitch
(one low reading) lowers one bucket's minimum. Both fade as the window slides.
"""

from __future__ import annotations

import math
from collections import deque

from .sizes import format_size

# Below 1 KiB/s (60 KiB a minute, 3.5 MiB an hour) a worker counts as not growing.
# RSS moves in 4 KiB pages and allocators hold and return memory in chunks, so a flat
# process's bucket minima jitter by a few pages; over a 60 s window that is a slope of
# some hundred bytes a second, which must read as "stable", not as a leak with an ETA
# of weeks.
GROWING_MIN_BYTES_PER_S = 1024.0

_MIN_BUCKETS = 3  # two points always fit a line exactly; the third is the first evidence


class Trend:
    """Growth rate of one worker's memory, fed with every sample (``add`` is O(1) amortised)."""

    __slots__ = (
        "_bucket_s",
        "_n",
        "_closed",
        "_idx",
        "_end",
        "_min_v",
        "_min_t",
        "_rate",
        "_dirty",
    )

    def __init__(self, window_s: float = 60.0, bucket_s: float = 5.0) -> None:
        if not (math.isfinite(bucket_s) and bucket_s > 0):
            raise ValueError(f"bucket_s must be a positive number of seconds, not {bucket_s!r}")
        if not math.isfinite(window_s):
            raise ValueError(f"window_s must be a finite number of seconds, not {window_s!r}")
        # The tiny slack keeps 0.3 / 0.1 from flooring to 2.
        n = int(window_s / bucket_s + 1e-9)
        if n < _MIN_BUCKETS:
            raise ValueError(
                f"window_s={window_s:g} holds {n} buckets of {bucket_s:g} s; "
                f"a rate needs at least {_MIN_BUCKETS}"
            )
        self._bucket_s = float(bucket_s)
        self._n = n
        # Closed buckets, oldest first: (bucket index, time of minimum, minimum).
        self._closed: deque[tuple[int, float, int]] = deque(maxlen=n)
        self._idx: int | None = None  # index of the open bucket; None before the first sample
        self._end = -math.inf  # where the open bucket ends; compared, not recomputed, per add
        self._min_v = 0
        self._min_t = 0.0
        self._rate: float | None = None
        self._dirty = False

    @property
    def window_s(self) -> float:
        return self._n * self._bucket_s

    @property
    def bucket_s(self) -> float:
        return self._bucket_s

    @property
    def bucket_count(self) -> int:
        """Closed buckets inside the window (the points the rate is fitted to)."""
        return len(self._closed)

    def add(self, t_mono: float, value_bytes: int) -> None:
        """One reading at monotonic time ``t_mono``.

        A time earlier than the open bucket (a caller's clock should not do this) counts in
        the open bucket rather than reopening a closed one, so history is never rewritten.
        """
        if t_mono < self._end:
            # The common case: same bucket as the last sample.
            if value_bytes < self._min_v:
                self._min_v = value_bytes
                self._min_t = t_mono
            return
        idx = math.floor(t_mono / self._bucket_s)
        if self._idx is not None:
            if idx <= self._idx:
                # Only float rounding at a bucket edge lands here; keep the sample where it is.
                if value_bytes < self._min_v:
                    self._min_v = value_bytes
                    self._min_t = t_mono
                return
            self._closed.append((self._idx, self._min_t, self._min_v))
            oldest = idx - self._n
            closed = self._closed
            while closed and closed[0][0] < oldest:
                closed.popleft()
            self._dirty = True
        self._idx = idx
        self._end = (idx + 1) * self._bucket_s
        self._min_v = value_bytes
        self._min_t = t_mono

    def rate_bytes_per_s(self) -> float | None:
        """Slope of the least-squares line through the window's bucket minima, in bytes/s.

        None with fewer than 3 closed buckets in the window. Cached between bucket closes,
        so calling it every tick costs nothing.
        """
        if self._dirty:
            self._rate = self._fit()
            self._dirty = False
        return self._rate

    def _fit(self) -> float | None:
        pts = self._closed
        n = len(pts)
        if n < _MIN_BUCKETS:
            return None
        # Centred on the first point: monotonic times run to 1e6 s and sizes to 1e10 B,
        # and squaring raw values would lose the few seconds and bytes the slope is made of.
        t0 = pts[0][1]
        v0 = pts[0][2]
        ts = [t - t0 for _, t, _ in pts]
        vs = [float(v - v0) for _, _, v in pts]
        mt = sum(ts) / n
        mv = sum(vs) / n
        sxx = 0.0
        sxy = 0.0
        for t, v in zip(ts, vs):
            dt = t - mt
            sxx += dt * dt
            sxy += dt * (v - mv)
        if sxx <= 0.0:  # cannot happen with distinct buckets; guards a degenerate clock
            return None
        rate = sxy / sxx
        return rate if math.isfinite(rate) else None

    def eta_s(self, target_bytes: int | None, current_bytes: int) -> float | None:
        """Seconds until ``current_bytes`` reaches ``target_bytes`` at the current rate.

        ``0.0`` when already at or above the target (whatever the rate: the line is crossed,
        nothing is being forecast). None when there is no target, no rate yet, or the rate is
        below :data:`GROWING_MIN_BYTES_PER_S` (not growing: no ETA, rather than one of years).
        """
        if target_bytes is None:
            return None
        if current_bytes >= target_bytes:
            return 0.0
        rate = self.rate_bytes_per_s()
        if rate is None or rate < GROWING_MIN_BYTES_PER_S:
            return None
        return (target_bytes - current_bytes) / rate


def describe_rate(bytes_per_s: float | None) -> str:
    """The rate as the table shows it: ``+12.3 MiB/min``, ``-2.0 GiB/min``, ``stable``, ``–``.

    Per minute because leaks worth watching are megabytes a minute, and a per-second figure
    would show them as small fractions. ``stable`` below the growth threshold either way.
    """
    if bytes_per_s is None or not math.isfinite(bytes_per_s):
        return "–"
    if abs(bytes_per_s) < GROWING_MIN_BYTES_PER_S:
        return "stable"
    sign = "+" if bytes_per_s > 0 else "-"
    return f"{sign}{format_size(abs(bytes_per_s) * 60.0)}/min"
