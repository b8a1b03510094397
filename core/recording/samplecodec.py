"""The compact on-disk form of one worker's samples within one batch (about a second).

Why this form: an hour of 200 workers at 10 Hz is 7.2 million samples, and the file must stay
under 200 MB, i.e. under 29 bytes per sample with everything else. One SQLite row per sample
would cost about 60 bytes before any value; one row per worker per batch holding a blob costs
the row overhead once per ten samples. Inside the blob the values are stored by column:

- every column is a whole number: sizes in bytes (RSS and anon RSS are page multiples, swap
  comes in KiB), the event's sequence number, and the forecast fields kept at the precision the
  JSON contract prints (``trend_bytes_per_s`` and the ETAs rounded to tenths);
- a column is divided by the largest of 4096 and 1024 that divides all its values (exact: the
  unit is stored), then stored as its first value plus the differences between neighbours, in
  the narrowest signed width (1, 2, 4 or 8 bytes) that holds them: a steady worker's
  differences are zeros, a growing one's a few pages;
- a column with one value in every sample (a steady worker's, or the limit) is that value once;
  a column unknown (None) in every sample costs one byte; one unknown in some samples carries
  a bitmap of the known ones;
- the whole body is then deflated (raw deflate, level 1) when that makes it smaller: the zero
  runs of idle workers and the repeats of once-a-second values (swap, trend) shrink to little.

Lossless for every integer field; the floats come back as the tenths the contract prints.
``bench/bench_record.py`` measures the result on disk (docs/recording.md, "Recording cost").

The same form serves other kinds of rows: a :class:`Layout` names a kind's columns and which
of them are tenths or times. Heap reports (``heappack``) use it with their own layout; their
times are kept bit for bit (a float's IEEE bits read as a whole number, which neighbouring
times keep close), since a replay must rebuild each report exactly.
"""

from __future__ import annotations

import struct
import sys
import zlib
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

import numpy as np
import numpy.typing as npt

FORMAT_VERSION = 1
_HEADER = struct.Struct("<BBI")  # format version, flags, number of samples
_FIRST = struct.Struct("<q")
_DEFLATED = 1

# Sample fields after ``worker``, in the order of core.events.Sample.
INT_FIELDS = ("rss", "anon", "swap", "cgroup_usage", "cgroup_limit", "heap_used", "heap_total", "heap_limit")
TENTHS_FIELDS = ("trend_bytes_per_s", "eta_limit_s", "eta_crit_s")
FIELDS = INT_FIELDS + TENTHS_FIELDS

_WHOLE, _TENTHS, _TIME = 0, 1, 2  # how a column's values become whole numbers


@dataclass(frozen=True)
class Layout:
    """The columns after the sequence numbers of one kind of row: every field a whole number,
    but ``tenths`` (kept to a tenth) and ``times`` (non-negative floats, kept exactly)."""

    fields: tuple[str, ...]
    tenths: frozenset[str] = frozenset()
    times: frozenset[str] = frozenset()
    kinds: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        unknown = (self.tenths | self.times) - set(self.fields)
        if unknown or self.tenths & self.times:
            raise ValueError(f"layout fields {sorted(unknown | (self.tenths & self.times))}")
        object.__setattr__(self, "kinds", tuple(  # frozen: the dataclass idiom for a derived field
            _TENTHS if f in self.tenths else _TIME if f in self.times else _WHOLE for f in self.fields))


SAMPLES = Layout(FIELDS, tenths=frozenset(TENTHS_FIELDS))
_DOUBLE_BITS = struct.Struct("<d")

_ABSENT, _ALL, _MIXED, _CONSTANT = 0, 1, 2, 3
_SIZES = (1, 2, 4, 8)  # bytes per difference, by width code; little-endian signed
_TYPECODES = ("b", "h", "i", "q")  # the same widths as array typecodes
_UNITS = (1, 1024, 4096)
_SHIFTS = (0, 10, 12)


class CodecError(ValueError):
    """A blob that is not in this format (a damaged file)."""


def pack(seqs: Sequence[int], rows: Sequence[Sequence[int | float | None]],
         cache: dict[tuple[int, ...], bytes] | None = None, layout: Layout = SAMPLES) -> bytes:
    """``rows[i]`` holds the ``layout``'s fields (by default the :data:`FIELDS` of a sample) of
    the row with sequence number ``seqs[i]``.

    ``cache`` (one dict per batch) reuses the encoded sequence numbers: every worker sampled
    on every tick of a batch has the same ones.
    """
    n = len(seqs)
    if n != len(rows):
        raise ValueError("one sequence number per row")
    body = bytearray()
    key = tuple(seqs)
    encoded = cache.get(key) if cache is not None else None
    if encoded is None:
        start = len(body)
        _put_column(body, key, n)
        encoded = bytes(body[start:])
        if cache is not None:
            cache[key] = encoded
    else:
        body += encoded
    columns = list(zip(*rows)) if rows else [() for _ in layout.fields]
    if len(columns) != len(layout.fields):
        raise ValueError(f"rows of {len(columns)} fields, the layout has {len(layout.fields)}")
    for kind, column in zip(layout.kinds, columns):
        if kind == _TENTHS:
            column = tuple(None if v is None else round(v * 10) for v in column)
        elif kind == _TIME:
            column = tuple(None if v is None else _time_bits(v) for v in column)
        _put_column(body, column, n)
    raw = bytes(body)
    deflate = zlib.compressobj(1, zlib.DEFLATED, -15)  # raw deflate: no header, no checksum
    packed = deflate.compress(raw) + deflate.flush()
    if len(packed) < len(raw):
        return _HEADER.pack(FORMAT_VERSION, _DEFLATED, n) + packed
    return _HEADER.pack(FORMAT_VERSION, 0, n) + raw


def _time_bits(value: float) -> int:
    bits: int = _FIRST.unpack(_DOUBLE_BITS.pack(value))[0]
    if bits < 0:  # a negative time (or -0.0): its bits would not difference within 8 bytes
        raise ValueError(f"a time must not be negative: {value!r}")
    return bits


def _bits_time(bits: int) -> float:
    value: float = _DOUBLE_BITS.unpack(_FIRST.pack(bits))[0]
    return value


# Plain Python, not numpy: a column holds about ten values, where numpy's per-call cost is
# larger than the work (measured: 6 µs per sample with numpy, about 2 µs this way).
_SWAP = sys.byteorder != "little"
if tuple(array(code).itemsize for code in _TYPECODES) != _SIZES:  # C int widths of this platform
    raise ImportError("session files need 1-, 2-, 4- and 8-byte array typecodes b, h, i, q")


def _put_column(body: bytearray, column: Sequence[Any], n: int) -> None:
    if n == 0:
        body.append(_ABSENT)
        return
    mask: bytes | None = None
    if None in column:
        values = [v for v in column if v is not None]
        if not values:
            body.append(_ABSENT)
            return
        bits = 0
        for i, v in enumerate(column):
            if v is not None:
                bits |= 0x80 >> (i & 7) << (8 * (i >> 3))
        mask = bits.to_bytes((n + 7) // 8, "little")
    else:
        values = list(column)
    first = values[0]
    if mask is None and values.count(first) == n:  # steady, the usual column: one value
        body.append(_CONSTANT)
        body += _FIRST.pack(first)
        return
    unit_code = 0
    any_bits = 0
    for v in values:
        any_bits |= v
    if not any_bits & 4095:
        unit_code = 2
    elif not any_bits & 1023:
        unit_code = 1
    shift = _SHIFTS[unit_code]
    scaled = [v >> shift for v in values] if shift else values
    deltas = [b - a for a, b in zip(scaled, scaled[1:])]
    lo, hi = (min(deltas), max(deltas)) if deltas else (0, 0)
    width_code = 3
    for code, bits_ in enumerate((8, 16, 32)):
        if -(1 << (bits_ - 1)) <= lo and hi < 1 << (bits_ - 1):
            width_code = code
            break
    body.append((_MIXED if mask is not None else _ALL) | width_code << 2 | unit_code << 4)
    if mask is not None:
        body += mask
    body += _FIRST.pack(scaled[0])
    packed = array(_TYPECODES[width_code], deltas)
    if _SWAP:
        packed.byteswap()
    body += packed.tobytes()


class Unpacked:
    """Decoded columns: ``seqs``, and per field a list of values, None where not known."""

    __slots__ = ("seqs", "columns")

    def __init__(self, seqs: list[int], columns: dict[str, list[Any]]) -> None:
        self.seqs = seqs
        self.columns = columns

    def __len__(self) -> int:
        return len(self.seqs)

    def as_python(self, name: str) -> list[Any]:
        """The field's values (the tenths fields back in their unit), None where not known."""
        return self.columns[name]

    def as_float(self, name: str) -> npt.NDArray[np.float64]:
        """The field as float64, NaN where not known."""
        return np.array(self.columns[name], dtype=np.float64)


def unpack(blob: bytes, layout: Layout = SAMPLES) -> Unpacked:
    # Plain Python again, for the same reason as _put_column: about ten values a column.
    try:
        version, flags, n = _HEADER.unpack_from(blob, 0)
    except struct.error:
        raise CodecError("sample blob too short") from None
    if version != FORMAT_VERSION:
        raise CodecError(f"sample blob format {version}, expected {FORMAT_VERSION}")
    body = blob[_HEADER.size:]
    if flags & _DEFLATED:
        try:
            body = zlib.decompress(body, -15)
        except zlib.error as e:
            raise CodecError(f"sample blob does not inflate: {e}") from None
    pos = 0
    columns: list[list[Any]] = []
    try:
        for _ in range(1 + len(layout.fields)):
            values, pos = _get_column(body, pos, n)
            columns.append(values)
    except (IndexError, ValueError, struct.error) as e:
        raise CodecError(f"sample blob is damaged: {e}") from None
    if pos != len(body):
        raise CodecError(f"sample blob is damaged: {len(body) - pos} bytes left over")
    if any(v is None for v in columns[0]):
        raise CodecError("sample blob is damaged: a sample without its sequence number")
    try:
        for i, kind in enumerate(layout.kinds, 1):
            if kind == _TENTHS:
                columns[i] = [None if v is None else v / 10 for v in columns[i]]
            elif kind == _TIME:
                columns[i] = [None if v is None else _bits_time(v) for v in columns[i]]
    except struct.error as e:  # bits beyond 8 bytes: not a time this codec wrote
        raise CodecError(f"sample blob is damaged: {e}") from None
    return Unpacked(columns[0], dict(zip(layout.fields, columns[1:])))


def _get_column(body: bytes, pos: int, n: int) -> tuple[list[Any], int]:
    code = body[pos]
    pos += 1
    presence = code & 3
    if presence == _ABSENT:
        return [None] * n, pos
    if presence == _CONSTANT:
        (value,) = _FIRST.unpack_from(body, pos)
        return [value] * n, pos + _FIRST.size
    width_code = (code >> 2) & 3
    unit_code = (code >> 4) & 3
    if unit_code >= len(_UNITS):
        raise ValueError(f"unit code {unit_code}")
    known: list[int] | None = None
    k = n
    if presence == _MIXED:
        nbytes = (n + 7) // 8
        if pos + nbytes > len(body):
            raise ValueError("bitmap cut short")
        bits = int.from_bytes(body[pos:pos + nbytes], "little")
        known = [i for i in range(n) if bits >> (8 * (i >> 3)) & (0x80 >> (i & 7))]
        pos += nbytes
        k = len(known)
        if k == 0:
            raise ValueError("a column of unknowns stored as values")
    (first,) = _FIRST.unpack_from(body, pos)
    pos += _FIRST.size
    size = _SIZES[width_code]
    end = pos + (k - 1) * size
    if end > len(body):
        raise ValueError("values cut short")
    deltas = array(_TYPECODES[width_code], body[pos:end])
    if _SWAP:
        deltas.byteswap()
    values = list(accumulate(deltas, initial=first))
    shift = _SHIFTS[unit_code]
    if shift:
        values = [v << shift for v in values]
    if known is None:
        return values, end
    full: list[Any] = [None] * n
    for i, v in zip(known, values):
        full[i] = v
    return full, end
