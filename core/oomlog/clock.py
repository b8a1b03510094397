"""Kernel (printk) time to wall-clock time, for records read live from this boot.

Method
------
printk stamps a record with ``local_clock()`` (the scheduler clock, in ns since boot) when it is
stored. It is neither CLOCK_MONOTONIC nor CLOCK_BOOTTIME by definition, but like MONOTONIC it does
not advance during suspend, and on x86/arm64 with a stable counter it tracks MONOTONIC closely
(measured on this machine's kind: within a few ms, tests/data/oom-corpus/FORMATS.md section 5). So::

    wall(t_printk) = (CLOCK_REALTIME - CLOCK_MONOTONIC)  measured now  +  t_printk

The offset is measured by reading MONOTONIC, REALTIME, MONOTONIC back to back, several times, and
keeping the tightest bracket; it is measured again for every conversion, so a wall-clock step
(NTP, settimeofday) is picked up by the next record.

Error bound
-----------
For a record converted when it is read (live, a few ms after the kill):

* measurement: half the bracket width, typically < 1 us;
* local_clock vs CLOCK_MONOTONIC: MONOTONIC is slewed by NTP, the scheduler clock is not, so they
  drift apart by the NTP frequency correction (usually < 50 ppm, bounded by the kernel's 500 ppm
  adjtimex limit): < 4.3 s per day of uptime at 50 ppm in the worst case, typically a few ms;
* nothing from suspend (the event happened after the last resume or the record would be old).

For records replayed from the ring buffer at start (``history=True``) add:

* suspend: every suspend *after* the event makes the result late by the time suspended
  (REALTIME - MONOTONIC grows by it). The bound is ``CLOCK_BOOTTIME - CLOCK_MONOTONIC`` (total time
  suspended since boot), given per conversion as ``max_late_s``;
* wall-clock steps after the event shift the result by the step (unknowable afterwards).

dmesg -T / --time-format iso use the same idea but drop the boot time's fraction and add the
total suspend time (util-linux ``dmesg.c``), so their stamps are up to 1 s early and may be late by
the suspend time; journald's ``__REALTIME_TIMESTAMP`` is a receive time (see ``lines.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

SOURCE_LIVE: Final = "kernel clock: CLOCK_REALTIME - CLOCK_MONOTONIC at read time + printk timestamp"


@dataclass(frozen=True, slots=True)
class ClockOffsets:
    """One measurement: ``realtime - monotonic`` and ``boottime - monotonic`` (seconds)."""

    realtime_minus_monotonic_s: float
    boottime_minus_monotonic_s: float
    uncertainty_s: float


def measure_offsets(tries: int = 3) -> ClockOffsets:
    """Measure the clock offsets, keeping the tightest of ``tries`` brackets."""
    best: tuple[float, float, float] | None = None
    for _ in range(max(1, tries)):
        m0 = time.clock_gettime(time.CLOCK_MONOTONIC)
        rt = time.clock_gettime(time.CLOCK_REALTIME)
        bt = time.clock_gettime(time.CLOCK_BOOTTIME)
        m1 = time.clock_gettime(time.CLOCK_MONOTONIC)
        width = m1 - m0
        mid = (m0 + m1) / 2
        if best is None or width < best[2]:
            best = (rt - mid, bt - mid, width)
    assert best is not None
    return ClockOffsets(best[0], best[1], best[2] / 2)


@dataclass(frozen=True, slots=True)
class WallTime:
    """A converted time: Unix seconds, ISO-8601 (UTC), and how late it may be at most."""

    unix: float
    iso: str
    max_late_s: float
    uncertainty_s: float


class KernelClock:
    """Converts printk times of *this boot* to wall time. ``measure`` is injectable for tests."""

    source: Final = SOURCE_LIVE

    def __init__(self, measure: Callable[[], ClockOffsets] = measure_offsets) -> None:
        self._measure = measure

    def to_wall(self, kernel_time_s: float) -> WallTime:
        off = self._measure()
        unix = off.realtime_minus_monotonic_s + kernel_time_s
        iso = datetime.fromtimestamp(unix, tz=UTC).isoformat(timespec="microseconds")
        return WallTime(unix, iso, max(0.0, off.boottime_minus_monotonic_s), off.uncertainty_s)

    def boot_time_unix(self) -> float:
        """Wall time of printk time 0, as this mapping sees it now."""
        return self._measure().realtime_minus_monotonic_s

    @staticmethod
    def monotonic_now_s() -> float:
        """Now on the clock printk stamps approximate (for telling replayed records from new ones)."""
        return time.clock_gettime(time.CLOCK_MONOTONIC)
