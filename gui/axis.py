"""The plot's size axis (``plot.SizeAxis``): ticks at round steps of MiB or GiB (1, 2, 5 times a power of ten), so a
label reads "4 GiB" or "250 MiB", never "19.5312 GiB" (pyqtgraph's decimal steps of a MiB value)."""

from __future__ import annotations

import math

GIB_IN_MIB = 1024.0
# Past this top the axis counts GiB: 1500 MiB still reads well, 3000 MiB less so than 3 GiB.
GIB_FROM_MIB = 2048.0
_PX_PER_TICK = 42  # room a label and its gap take on the vertical axis


def axis_unit(top_mib: float) -> tuple[float, str]:
    """The unit (its size in MiB, its name) the axis counts in up to ``top_mib``."""
    return (GIB_IN_MIB, "GiB") if top_mib >= GIB_FROM_MIB else (1.0, "MiB")


def nice_step(raw: float) -> float:
    """The smallest of 1, 2, 5 × 10^k that is at least ``raw`` (> 0)."""
    power = 10.0 ** math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 5.0, 10.0):
        if factor * power >= raw * (1 - 1e-9):
            return factor * power
    return 10.0 * power  # unreachable: 10 × power always covers raw


def tick_decimals(step_in_unit: float) -> int:
    """Decimals a label needs at this step: 0 for 1, 2, 5, 10…; 1 for 0.5; 2 for 0.05."""
    for decimals in range(4):
        scaled = step_in_unit * 10 ** decimals
        if abs(scaled - round(scaled)) < 1e-6 * max(1.0, scaled):
            return decimals
    return 3


def tick_label(value_mib: float, unit: tuple[float, str], step_mib: float) -> str:
    size, name = unit
    decimals = tick_decimals(step_mib / size)
    text = f"{value_mib / size:.{decimals}f}"
    return f"{'0' if float(text) == 0 else text} {name}"


def tick_spacing(low: float, high: float, size_px: float) -> list[tuple[float, float]] | None:
    """pyqtgraph's tick levels ((spacing, offset), major first) for a MiB axis from ``low`` to
    ``high`` over ``size_px``: round steps of the axis's unit; None for a range with no span."""
    span = high - low
    if span <= 0 or not math.isfinite(span):
        return None
    unit_size, _ = axis_unit(max(abs(low), abs(high)))
    count = max(2.0, size_px / _PX_PER_TICK)
    step = nice_step(span / count / unit_size)
    leading = round(step / 10.0 ** math.floor(math.log10(step) + 1e-9))
    # Minor ticks split a step into round parts: 5 into fives, 1 and 2 into halves.
    minor = step / (5.0 if leading == 5 else 2.0)
    return [(step * unit_size, 0.0), (minor * unit_size, 0.0)]
