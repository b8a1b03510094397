"""The ``memory.high`` throttle a launched worker's cgroup may get below its hard limit
(``--mem-high``, ``[launch] mem_high``): what the user may ask for and the bytes it becomes.

Above ``memory.high`` the kernel reclaims the cgroup's memory and makes its allocations wait
instead of killing it: a leaking worker slows down, ``memory.events`` counts ``high`` (the engine
is woken), and the critical level's policy has time to act before ``memory.max``. cgroup v2 (and
systemd's ``MemoryHigh=``) only: core/cgroup/limited.py writes it, or says why it cannot.
"""

from __future__ import annotations

import os

from ..errors import BadInput
from ..sizes import Level, format_size, parse_level

__all__ = ["AUTO_HIGH_FRACTION", "memory_high_bytes", "parse_mem_high", "v1_has_no_high"]

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

# ``auto``: the throttle starts at 90 % of the hard limit. That is where oomscope's default
# critical level sits, so a leaking worker is slowed down just as the critical policy would act,
# leaving the policy time before ``max``; and it is the factor Kubernetes' MemoryQoS uses for
# memory.high by default (memoryThrottlingFactor 0.9). A fixed margin instead (limit minus N MiB)
# would throttle a 64 MiB worker from its first pages or give a 64 GiB one no room at all.
AUTO_HIGH_FRACTION = 0.9


def parse_mem_high(text: str) -> Level | None:
    """``auto``, a size (``230MiB``) or a percent of the hard limit (``85%``); ``off``: none."""
    word = text.strip().lower()
    if word in ("off", "none", "false"):
        return None
    if word == "auto":
        return Level(fraction=AUTO_HIGH_FRACTION)
    try:
        return parse_level(text)
    except BadInput as e:
        raise BadInput(f"{e}; or auto ({AUTO_HIGH_FRACTION:.0%} of the memory limit), or off") from None


def memory_high_bytes(high: Level, limit_bytes: int) -> int:
    """``memory.high`` in whole pages for a worker whose hard limit is ``limit_bytes``.

    Raises :class:`BadInput` unless it is below the limit: at or above it the kernel kills
    before it would ever throttle.
    """
    wanted = high.resolve(limit_bytes)
    assert wanted is not None  # a percent resolves: every worker here has a limit
    applied = wanted - wanted % _PAGE_SIZE
    if applied >= limit_bytes:
        raise BadInput(
            f"memory.high {high} ({format_size(wanted)}) is not below the memory limit "
            f"({format_size(limit_bytes)}): it must be, to throttle before the kernel kills; "
            f"give a smaller size or percent, or auto ({AUTO_HIGH_FRACTION:.0%} of the limit)"
        )
    if applied <= 0:
        raise BadInput(f"memory.high {high} is less than one page ({_PAGE_SIZE} bytes)")
    return applied


def v1_has_no_high(path: str | None, limit_bytes: int) -> str:
    """Why a cgroup v1 worker runs without the throttle it was asked for."""
    return (
        f"memory.high needs cgroup v2: this worker's cgroup ({path}) is cgroup v1, which has no "
        "throttle (its memory.soft_limit_in_bytes only steers reclaim when the whole machine runs "
        f"short), so the worker runs with its hard limit of {format_size(limit_bytes)} alone"
    )
