"""Memory trend of one worker: is its floor rising, how fast, and when does it reach a line.

A garbage-collected heap climbs and drops (a sawtooth); its peaks say how much garbage waits,
its floors how much is live. A leak is a rising *floor*, so the trend is read from floors, and
only once the evidence is strong enough that the table and the dashed forecast do not cry wolf:

0. **Start-up.** Samples from a process's first :data:`START_UP_S` seconds are left out. A
   runtime sizes itself as it starts: V8 grows its heap spaces and compiles, CPython fills its
   arenas. Node workers of constant working set (``bench/bench_trend.py``, 10 s GC cycle) went
   from 81 to 130 MiB of RSS in their first 50 s, and that climb read as a leak from 110 s on
   in 5 of 8 such workers recorded; with the first 30 s left out, in none.
1. **Slots.** Every sample is folded into the minimum of a short slot (1 s by default, a fifth
   of a bucket when buckets are shorter): O(1) per sample, a bounded ring of 10 minutes.
2. **Period.** A GC cycle shows as a *drop* between consecutive slot minima (more than a
   quarter of the recent range). The sawtooth period is the median spacing of drops; with one
   drop seen, at least the time before it. A floor bucket must be longer than a period to hold
   a floor: ``B = max(bucket_s, 2 × period)`` (cycles vary: twice the median always holds one).
   Before any drop, ``B = bucket_s``.
3. **Floors.** The minimum of each whole bucket of length ``B`` inside the window, which is
   ``max(2 × window_s, 8 × B)``, capped at 10 minutes.
4. **Whether.** The Mann–Kendall test on the floors: a trend only when ``|Z| > 3`` (p < 0.003),
   the floors span nearly the whole window (at least 90 %), there are at least 8 of them, and the
   rise along the fitted line is at least three times the floors' own scatter around it (so a
   floor that wanders, or one step, is no trend), and the fit one floor bucket earlier found
   the same direction. One step between two floors that makes more than half the rise is
   taken out first and the rest judged alone (see ``_without_step``): a runtime growing a space
   once is no leak, and a leak that took such a step is still one. Before the window is
   filled: no verdict at all.
5. **How much.** The Theil–Sen slope (median of the pairwise slopes): a single step or spike
   moves it little, unlike least squares, which read a slow leaker as −292 MiB/min right after
   one large drop.

So ``rate_bytes_per_s()`` is None while collecting ("–" in the table), 0.0 when the evidence
shows no trend ("stable"), and the slope when it does. It is recomputed only when a floor bucket
closes (at most every ``bucket_s``), over at most ``max(2 × window_s / bucket_s, 16)`` floors.

Consequences, on purpose: a plain leak is reported after about ``start_up_s + 2 × window_s``
from the process's start (2 min 30 s by default; 2 minutes for a process attached later); a leak under a sawtooth of period P after about ``max(2 minutes, 10 × P)``. Fast leaks
are not this module's business: the engine acts on them from kernel notifications and fast
sampling long before a trend could be trusted.
"""

from __future__ import annotations

import math
from array import array

from .sizes import format_size

# Below 1 KiB/s (60 KiB a minute, 3.5 MiB an hour) a worker counts as not growing.
# RSS moves in 4 KiB pages and allocators hold and return memory in chunks, so a flat
# process's floors jitter by a few pages; that must read as "stable", not as a leak with an
# ETA of weeks.
GROWING_MIN_BYTES_PER_S = 1024.0

MAX_WINDOW_S = 600.0
# A process's start-up, left out of its trend (see 0. above). 20 s was enough in the recordings;
# 30 s leaves a margin and still sees a 1 MiB/min leak within about 140 s.
START_UP_S = 30.0
_MIN_BUCKETS = 3  # the constructor's sanity bound: a window must hold at least this many buckets
_MIN_FLOORS = 8  # fewer points and one swapped pair already keeps |Z| under the bar
_Z_TREND = 3.0
_SPAN_FILLED = 0.9
_RISE_OVER_SCATTER = 3.0
_DROP_FRACTION = 0.25
# A trend rises (or falls) along the window, not in one step: when a single step between two
# floors makes more than this share of the rise, it is a step (V8 growing a space by 4 MiB
# once, in the node control of bench_trend), not a leak.
_STEP_SHARE = 0.5
_PERIOD_FACTOR = 2.0


class Trend:
    """Growth rate of one worker's memory, fed with every sample (``add`` is O(1) amortised)."""

    __slots__ = (
        "_bucket_s", "_window_s", "_slot_s", "_cap", "_ts", "_vs", "_head", "_len", "_slot_idx",
        "_slot_end", "_min_v", "_min_t", "_rate", "_dirty", "_floors", "_bucket_len", "_start_up_until",
    )  # fmt: skip

    def __init__(self, window_s: float = 60.0, bucket_s: float = 5.0, *,
                 process_start_mono: float | None = None, start_up_s: float = START_UP_S) -> None:
        """``process_start_mono``: when the process started, on the monotonic clock; readings
        before ``process_start_mono + start_up_s`` are its start-up and not counted. None for a
        process whose start is unknown (every reading counts)."""
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
        self._window_s = float(window_s)
        self._slot_s = min(1.0, self._bucket_s / 5.0)
        self._cap = int(max(MAX_WINDOW_S, 2 * window_s) / self._slot_s) + 1
        # Ring of closed slots: time of each slot's minimum and the minimum. It grows to its
        # capacity as slots close: a worker that lives a second must not hold ten minutes of
        # slots (10 KB each, thousands of short-lived workers under churn: issue #14).
        self._ts = array("d")
        self._vs = array("q")
        self._head = 0  # index of the oldest slot
        self._len = 0
        self._slot_idx: int | None = None
        self._slot_end = -math.inf
        self._min_v = 0
        self._min_t = 0.0
        self._rate: float | None = None
        self._dirty = False
        self._floors = 0
        self._bucket_len = self._bucket_s
        self._start_up_until = -math.inf if process_start_mono is None else process_start_mono + start_up_s

    @property
    def window_s(self) -> float:
        return self._window_s

    @property
    def bucket_s(self) -> float:
        return self._bucket_s

    @property
    def floor_bucket_s(self) -> float:
        """The floor bucket in use: ``bucket_s``, or longer than the sawtooth period seen."""
        return self._bucket_len

    @property
    def bucket_count(self) -> int:
        """Floors the last fit used (refreshed with :meth:`rate_bytes_per_s`)."""
        if self._dirty:
            self.rate_bytes_per_s()
        return self._floors

    def add(self, t_mono: float, value_bytes: int) -> None:
        """One reading at monotonic time ``t_mono``.

        A time earlier than the open slot (a caller's clock should not do this) counts in the
        open slot rather than reopening a closed one, so history is never rewritten.
        """
        if t_mono < self._start_up_until:
            return
        if t_mono < self._slot_end:
            if value_bytes < self._min_v:
                self._min_v = value_bytes
                self._min_t = t_mono
            return
        idx = math.floor(t_mono / self._slot_s)
        if self._slot_idx is not None:
            if idx <= self._slot_idx:  # float rounding at a slot edge
                if value_bytes < self._min_v:
                    self._min_v = value_bytes
                    self._min_t = t_mono
                return
            self._push(self._min_t, self._min_v)
            # Refit (when asked) only once a floor bucket has closed: between two closes the
            # floors are the same, and the fit is the costly part.
            b = self._bucket_len
            if math.floor(idx * self._slot_s / b) != math.floor(self._slot_idx * self._slot_s / b):
                self._dirty = True
        self._slot_idx = idx
        self._slot_end = (idx + 1) * self._slot_s
        self._min_v = value_bytes
        self._min_t = t_mono

    def _push(self, t: float, v: int) -> None:
        v = max(-(2**63), min(2**63 - 1, v))
        if self._len < self._cap:  # not full yet: the head is still at 0, the ring still growing
            self._ts.append(t)
            self._vs.append(v)
            self._len += 1
            return
        pos = self._head
        self._head = (self._head + 1) % self._cap
        self._ts[pos] = t
        self._vs[pos] = v

    def _slots(self, since: float) -> tuple[list[float], list[int]]:
        ts: list[float] = []
        vs: list[int] = []
        cap, head = self._cap, self._head
        for k in range(self._len):
            pos = (head + k) % cap
            t = self._ts[pos]
            if t >= since:
                ts.append(t)
                vs.append(self._vs[pos])
        return ts, vs

    def rate_bytes_per_s(self) -> float | None:
        """The floor's rate in bytes/s when the evidence is strong enough; 0.0 when it shows
        no trend; None while collecting. Cached between slot closes."""
        if self._dirty:
            self._rate = self._fit()
            self._dirty = False
        return self._rate

    def _fit(self) -> float | None:
        if self._slot_idx is None or not self._len:
            self._floors = 0
            return None
        floors_t, floors_v, window, bucket = self.floor_points()
        self._floors = len(floors_t)
        if len(floors_t) < max(_MIN_BUCKETS, 2):
            return None
        span = floors_t[-1] - floors_t[0]
        if len(floors_t) < _MIN_FLOORS or span < _SPAN_FILLED * (window - bucket):
            return None  # collecting: not yet enough evidence either way
        floors_v, slope = _without_step(floors_t, floors_v)
        if slope is None:
            return None
        sign = _significant_sign(floors_t, floors_v, slope, span)
        # A direction counts only if the floors up to one bucket ago show it too: a chance run
        # of floors passes the test now and then, two windows in a row almost never.
        if sign == 0 or _significant_sign(floors_t[:-1], floors_v[:-1], None, None) != sign:
            return 0.0
        return slope

    def floor_points(self) -> tuple[list[float], list[float], float, float]:
        """The floors the fit uses (times, values), the window and the floor bucket, in s."""
        if self._slot_idx is None:
            return [], [], self._window_s, self._bucket_s
        now = self._slot_idx * self._slot_s  # start of the open slot: everything before is closed
        ts, vs = self._slots(now - MAX_WINDOW_S)
        ts, vs = _after_last_gap(ts, vs, max(2 * self._window_s, 2 * self._bucket_s))
        period = _sawtooth_period(ts, vs, now)
        bucket = self._bucket_s if period is None else max(self._bucket_s, _PERIOD_FACTOR * period)
        self._bucket_len = bucket
        window = min(MAX_WINDOW_S, max(2 * self._window_s, 8 * bucket))
        start = now - window
        floors_t: list[float] = []
        floors_v: list[float] = []
        current: int | None = None
        for t, v in zip(ts, vs):
            if t < start:
                continue
            b = math.floor(t / bucket)
            if (b + 1) * bucket > now:
                break  # the open bucket has not had its whole length to reach its floor
            if b != current:
                current = b
                floors_t.append(t)
                floors_v.append(float(v))
            elif v < floors_v[-1]:
                floors_t[-1] = t
                floors_v[-1] = float(v)
        return floors_t, floors_v, window, bucket

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


def _significant_sign(ts: list[float], vs: list[float], slope: float | None, span: float | None) -> int:
    """+1 or -1 when the floors show a trend (Mann-Kendall and rise over scatter), else 0."""
    if len(ts) < _MIN_FLOORS - 1:
        return 0
    if slope is None:
        vs, slope = _without_step(ts, vs)
        if slope is None:
            return 0
    if span is None:
        span = ts[-1] - ts[0]
    if abs(_mann_kendall_z(vs)) <= _Z_TREND:
        return 0
    if abs(slope) * span < _RISE_OVER_SCATTER * _residual_scatter(ts, vs, slope):
        return 0
    return 1 if slope > 0 else -1


def _without_step(ts: list[float], vs: list[float]) -> tuple[list[float], float | None]:
    """The floors with their one step taken out, if one step makes most of the rise, and the
    Theil–Sen slope of what is left.

    A runtime grows a space once (V8 added 4 MiB to the node control of bench_trend after 13
    minutes flat): a step, which read as a leak for 20 s. A leak rises along the whole window.
    So the largest move between consecutive floors in the slope's direction, when it is more
    than :data:`_STEP_SHARE` of the rise, is removed (the floors after it shifted back by it)
    and the rest is judged alone: flat for the control, the leak's own slope for a leaker that
    took the same step."""
    slope = _theil_sen(ts, vs)
    if slope is None or slope == 0 or len(vs) < 2:
        return vs, slope
    moves = [b - a for a, b in zip(vs, vs[1:])]
    k = max(range(len(moves)), key=lambda i: moves[i] if slope > 0 else -moves[i])
    step = moves[k]
    if (step > 0) != (slope > 0) or abs(step) <= _STEP_SHARE * abs(slope) * (ts[-1] - ts[0]):
        return vs, slope
    flattened = vs[: k + 1] + [v - step for v in vs[k + 1:]]
    return flattened, _theil_sen(ts, flattened)


def _after_last_gap(ts: list[float], vs: list[int], gap_s: float) -> tuple[list[float], list[int]]:
    """Only the slots after the last pause in sampling longer than ``gap_s``: what came before a
    stopped process or a suspended laptop is no evidence about now."""
    for k in range(len(ts) - 1, 0, -1):
        if ts[k] - ts[k - 1] > gap_s:
            return ts[k:], vs[k:]
    return ts, vs


def _sawtooth_period(ts: list[float], vs: list[int], now: float) -> float | None:
    """The GC period from drops between consecutive slot minima; None when nothing drops."""
    if len(vs) < 3:
        return None
    lo, hi = min(vs), max(vs)
    threshold = _DROP_FRACTION * (hi - lo)
    if threshold <= 4096 * 16:  # a few pages of allocator jitter is not a GC cycle
        return None
    drops = [ts[k] for k in range(1, len(vs)) if vs[k - 1] - vs[k] > threshold]
    if not drops:
        return None
    if len(drops) == 1:
        # One cycle seen: the period is at least the ramp before the drop, and the time since.
        return max(drops[0] - ts[0], now - drops[0])
    gaps = sorted(b - a for a, b in zip(drops, drops[1:]))
    return gaps[len(gaps) // 2]


def _theil_sen(ts: list[float], vs: list[float]) -> float | None:
    slopes: list[float] = []
    n = len(ts)
    for i in range(n):
        ti, vi = ts[i], vs[i]
        for j in range(i + 1, n):
            dt = ts[j] - ti
            if dt > 0:
                slopes.append((vs[j] - vi) / dt)
    if not slopes:
        return None
    slopes.sort()
    m = len(slopes)
    mid = slopes[m // 2] if m % 2 else 0.5 * (slopes[m // 2 - 1] + slopes[m // 2])
    return mid if math.isfinite(mid) else None


def _mann_kendall_z(vs: list[float]) -> float:
    n = len(vs)
    s = 0
    for i in range(n):
        vi = vs[i]
        for j in range(i + 1, n):
            d = vs[j] - vi
            s += (d > 0) - (d < 0)
    var = n * (n - 1) * (2 * n + 5) / 18.0
    if s == 0 or var <= 0:
        return 0.0
    return (s - 1 if s > 0 else s + 1) / math.sqrt(var)


def _residual_scatter(ts: list[float], vs: list[float], slope: float) -> float:
    """Robust spread of the floors around the line (1.4826 × median absolute deviation)."""
    resid = sorted(v - slope * t for t, v in zip(ts, vs))
    med = resid[len(resid) // 2]
    dev = sorted(abs(r - med) for r in resid)
    return 1.4826 * dev[len(dev) // 2]


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
