"""Sizes and percentages as users type them: ``400MiB``, ``1.5G``, ``75%``."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .errors import BadInput

_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1000,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "t": 1024**4,
    "tb": 1000**4,
    "tib": 1024**4,
}
# Bare K/M/G follow the kernel and `free`: powers of 1024. KB/MB/GB are SI, as written.
_SIZE_RE = re.compile(r"^\s*([+-]?[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*$")


def parse_size(text: str) -> int:
    """Bytes from ``"400MiB"``, ``"1.5G"``, ``"4096"``; raises :class:`BadInput` with advice."""
    m = _SIZE_RE.match(text)
    if not m:
        raise BadInput(
            f"invalid size {text!r}: write a positive number with an optional unit, "
            "e.g. 400MiB, 1.5G, 512M or 1048576"
        )
    number, unit = m.group(1), m.group(2).lower()
    if unit not in _UNITS:
        raise BadInput(
            f"invalid size {text!r}: unknown unit {m.group(2)!r} (use B, KiB, MiB, GiB, TiB, "
            "K, M, G, T, KB, MB, GB or TB)"
        )
    value = float(number) * _UNITS[unit]
    if not math.isfinite(value) or value <= 0:
        raise BadInput(f"invalid size {text!r}: a size must be greater than zero")
    if value < 1:
        raise BadInput(f"invalid size {text!r}: that is less than one byte")
    return int(value)


def machine_memory() -> tuple[int, int]:
    """(RAM, swap) in bytes from /proc/meminfo; (0, 0) where it cannot be read."""
    found = {"MemTotal:": 0, "SwapTotal:": 0}
    try:
        with open("/proc/meminfo", encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, rest = line.partition(" ")
                if key in found:
                    found[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return 0, 0
    return found["MemTotal:"], found["SwapTotal:"]


def parse_mem_limit(text: str, machine: tuple[int, int] | None = None) -> int:
    """A worker's memory limit: a size (:func:`parse_size`) that this machine can reach.

    A limit above RAM + swap (``machine``, default: this machine's) can never be hit, so it
    is refused here, naming the machine's memory, before any cgroup is made: a size problem is
    not the cgroup mechanisms' to explain."""
    limit = parse_size(text)
    ram, swap = machine_memory() if machine is None else machine
    if ram and limit > ram + swap:
        raise BadInput(
            f"memory limit {text.strip()} ({format_size(limit)}) is more than this machine has: "
            f"{format_size(ram)} of RAM + {format_size(swap)} of swap = {format_size(ram + swap)}; "
            f"a limit above that never applies: give at most {(ram + swap) // 2**20}MiB"
        )
    return limit


def parse_percent(text: str) -> float:
    """Fraction in (0, 1] from ``"75%"``; raises :class:`BadInput` with advice."""
    body = text.strip()
    if not body.endswith("%"):
        raise BadInput(f"invalid percentage {text!r}: write it like 75%")
    try:
        value = float(body[:-1])
    except ValueError:
        raise BadInput(f"invalid percentage {text!r}: write it like 75%") from None
    if not math.isfinite(value) or value <= 0 or value > 100:
        raise BadInput(
            f"invalid percentage {text!r}: a percent of a limit must be above 0% and at most 100%"
        )
    return value / 100.0


@dataclass(frozen=True, slots=True)
class Level:
    """A threshold level: an absolute size in bytes, or a fraction of the worker's limit."""

    bytes: int | None = None
    fraction: float | None = None

    def resolve(self, limit_bytes: int | None) -> int | None:
        """The level in bytes for a worker with this limit; None where a percent has no limit."""
        if self.bytes is not None:
            return self.bytes
        if self.fraction is not None and limit_bytes:
            return int(self.fraction * limit_bytes)
        return None

    def __str__(self) -> str:
        if self.bytes is not None:
            return format_size(self.bytes)
        return f"{(self.fraction or 0) * 100:g}%"


def parse_level(text: str) -> Level:
    """A size (``400MiB``) or a percent of the limit (``75%``)."""
    if text.strip().endswith("%"):
        return Level(fraction=parse_percent(text))
    return Level(bytes=parse_size(text))


_BINARY_UNITS: tuple[str, ...] = ("B", "KiB", "MiB", "GiB", "TiB")


def format_size(n: int | float | None, *, spec: str = ".1f", sep: str = " ",
                smallest: str = "B") -> str:
    """Human size with binary units: ``1.5 GiB``; ``-`` for None.

    The one size formatter; its options give the other forms callers show: ``spec`` formats the
    number (``".4g"`` with ``sep=""`` is the typed form ``1.5GiB``), ``smallest`` is the unit
    to start from (oom-log's ``512 KiB``). In the smallest unit a whole number (always bytes)
    shows without decimals. A number that would show as 1024 goes one unit up.
    """
    if n is None:
        return "-"
    start = _BINARY_UNITS.index(smallest)
    value = float(n) / 1024**start
    for unit in _BINARY_UNITS[start:]:
        if unit == smallest and (unit == "B" or value.is_integer()):
            shown = str(int(value))
        else:
            shown = f"{value:{spec}}"
        if unit == _BINARY_UNITS[-1] or abs(float(shown)) < 1024:
            break
        value /= 1024
    return f"{shown}{sep}{unit}"
