"""Seeing a crossing as it happens: the kernel's notifications, fast sampling, and imminence.

The sampling tick (1 s by default) is too slow for a leak of hundreds of MB/s: it reaches
the cgroup's limit between two ticks, and a sustain of 2 s on top lets the kernel win every
time. Three things close that gap, all decided here and carried out by the engine's loop:

* **Kernel notifications** (core/cgroup/notify.py) for a launched worker's own cgroup: a wake-up
  the moment usage crosses a level, and the engine samples that worker at once. Besides each
  level, a short ladder above it (+1, +2, +4, +8 MiB) is registered: usage counts page cache
  and kernel memory, so an RSS or anon value crosses a little after usage does, and the next
  rung wakes the engine again in time.
* **Fast sampling**: a worker that a notification woke, or whose recent climb reaches its
  critical level or its limit within a few ticks, is sampled every :data:`FAST_INTERVAL_S`
  until it is safe again.
* **Imminence**: a worker whose recent climb reaches the hard limit before the sustain time
  would end enters its level at once. Sustain filters spikes; it must never let the kernel win.
"""

from __future__ import annotations


FAST_INTERVAL_S = 0.02
# Right after a kernel wake-up whose sample found the worker still under its level, the value
# the level compares (RSS, anon) may cross it between two 20 ms samples while usage passes
# no further rung: the kernel checks thresholds once per 128 pages charged per CPU, and usage
# runs ahead of anon by the page cache. A short burst of denser samples closes that gap (p99
# 11-17 ms at 20 ms sampling in bench/bench_policy_race.py; costs ~12 samples a wake-up).
BURST_INTERVAL_S = 0.005
BURST_S = 0.06
# After a wake-up or a fast climb, stay fast this long past the last reason to.
FAST_HOLD_S = 1.0
# A climb that reaches a line within this many sampling intervals turns fast sampling on.
FAST_LOOKAHEAD_TICKS = 3.0
_LADDER = (0, 1 << 20, 2 << 20, 4 << 20, 8 << 20)


class Velocity:
    """Short-term growth of one worker: the slope over its last half second to second (bytes/s).

    Not the trend (core/forecast.py), which reads the floor over minutes and waits for strong
    evidence: this one answers "where will it be in a second" for a worker in a hurry. Half a
    second, not the last few samples: at 20 ms sampling, one 8 MiB allocation would read as a
    leak of 400 MB/s.
    """

    __slots__ = ("_window_s", "_t0", "_v0", "_t1", "_v1", "_t", "_v")

    def __init__(self, window_s: float = 0.5) -> None:
        # Two anchors a window apart and the newest point: O(1) per sample, no list (this runs
        # per worker per sample). The slope runs from the older anchor, a window or two back.
        self._window_s = window_s
        self._t0 = self._t1 = self._t = -1.0
        self._v0 = self._v1 = self._v = 0

    def add(self, t_mono: float, value: int) -> None:
        if self._t1 < 0:
            self._t0 = self._t1 = t_mono
            self._v0 = self._v1 = value
        elif t_mono - self._t1 >= self._window_s:
            self._t0, self._v0 = self._t1, self._v1
            self._t1, self._v1 = t_mono, value
        self._t, self._v = t_mono, value

    def bytes_per_s(self) -> float | None:
        """Slope from the older anchor to the newest sample; None with less than 0.1 s between."""
        dt = self._t - self._t0
        if self._t0 < 0 or dt < 0.1:
            return None
        return (self._v - self._v0) / dt



def kernel_levels(levels_bytes: list[int | None], limit_bytes: int | None) -> list[int]:
    """The usage levels to register with the kernel: each level and its ladder, below the limit."""
    out: set[int] = set()
    for level in levels_bytes:
        if level is None or level <= 0:
            continue
        for step in _LADDER:
            value = level + step
            if limit_bytes is None or value < limit_bytes:
                out.add(value)
    return sorted(out)


def imminent(seconds_to_limit: float | None, sustain_s: float) -> bool:
    """The limit comes before the sustain time would end: act now, not after sustain."""
    return seconds_to_limit is not None and seconds_to_limit < sustain_s


def climb_outlook(rate: float | None, value: int, limit: int | None, metric_value: int,
                  crit: int | None, horizon_s: float) -> tuple[float | None, bool]:
    """From one velocity reading: seconds until ``value`` reaches ``limit`` (None when not
    climbing or no limit; 0.0 when there), and whether the limit, or ``crit`` on the metric's
    ``metric_value``, is reached within ``horizon_s`` (sample fast).

    Runs per worker per sample, so it is plain arithmetic on one rate: the engine's sampling
    pass costs a few microseconds a worker, and a helper call per check doubled it.
    """
    if rate is None or rate <= 0:
        return (0.0 if limit is not None and value >= limit else None), False
    reach = rate * horizon_s
    to_limit = None
    fast = False
    if limit is not None:
        room = limit - value
        to_limit = room / rate if room > 0 else 0.0
        fast = 0 < room <= reach
    if not fast and crit is not None:
        fast = 0 < crit - metric_value <= reach
    return to_limit, fast
