"""The compact sample encoding: lossless for every integer field, tenths for the forecast
fields, small for the workers a fleet is made of, and loud about a damaged blob."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from oomscope.core.recording.samplecodec import FIELDS, INT_FIELDS, SAMPLES, CodecError, Layout, pack, unpack

PAGE = 4096

sizes = st.one_of(st.none(), st.integers(0, 1 << 50), st.integers(0, 1 << 30).map(lambda p: p * PAGE))
tenths = st.one_of(st.none(), st.integers(-(10**12), 10**12).map(lambda v: v / 10))
row = st.tuples(*([sizes] * len(INT_FIELDS)), *([tenths] * (len(FIELDS) - len(INT_FIELDS))))


@settings(max_examples=300, deadline=None)
@given(st.lists(row, min_size=1, max_size=40), st.integers(1, 1 << 40),
       st.lists(st.integers(1, 300), min_size=40, max_size=40))
def test_round_trip_is_exact(rows, first_seq, gaps) -> None:
    seqs = [first_seq]
    for g in gaps[: len(rows) - 1]:
        seqs.append(seqs[-1] + g)
    u = unpack(pack(seqs, rows))
    assert u.seqs == seqs
    for i, name in enumerate(FIELDS):
        assert u.as_python(name) == [r[i] for r in rows], name
        floats = u.as_float(name)
        expect = [np.nan if r[i] is None else float(r[i]) for r in rows]
        np.testing.assert_array_equal(floats, np.array(expect))


def test_forecast_fields_keep_what_the_json_contract_prints() -> None:
    rows = [(PAGE, PAGE, 0, None, None, None, None, None, 1234.5678, 61.26, None)]
    u = unpack(pack([1], rows))
    assert u.as_python("trend_bytes_per_s") == [1234.6]  # round(1234.5678, 1), as watch --json prints
    assert u.as_python("eta_limit_s") == [61.3]


def _steady(n: int) -> list[tuple[object, ...]]:
    return [(300 * PAGE * 256, 280 * PAGE * 256, 0, None, None, None, None, None, 12.5, None, None)] * n


def test_a_steady_worker_costs_a_few_bytes_per_sample() -> None:
    seqs = list(range(100, 110))
    blob = pack(seqs, _steady(10))
    assert len(blob) <= 36, len(blob)  # 10 samples of 11 fields: under 4 bytes a sample


def test_a_growing_worker_stays_compact() -> None:
    rng = np.random.default_rng(3)
    rss = (100 << 20) + np.cumsum(rng.integers(0, 64, 10)) * PAGE
    rows = [(int(r), int(r) - (12 << 20), 0, int(r) + 8 * PAGE, 512 << 20, None, None, None, 8000.0, 50.0, None)
            for r in rss]
    blob = pack(list(range(10)), rows)
    assert len(blob) < 120, len(blob)  # raw, one int64 per value, it would be 960 bytes
    assert unpack(blob).as_python("rss") == [int(r) for r in rss]


def test_seq_cache_gives_the_same_bytes() -> None:
    cache: dict[tuple[int, ...], bytes] = {}
    seqs = [5, 9, 14]
    a = pack(seqs, _steady(3), cache)
    b = pack(seqs, _steady(3), cache)
    assert a == b == pack(seqs, _steady(3))
    assert tuple(seqs) in cache


@pytest.mark.parametrize("damage", [
    lambda b: b[:3],                                   # cut inside the header
    lambda b: bytes([9]) + b[1:],                      # another format version
    lambda b: b[:6] + b"\x00" * (len(b) - 6),          # deflated body overwritten
    lambda b: b[:-5],                                  # cut short
])
def test_damaged_blob_raises_codec_error(damage) -> None:
    rows = [(i * PAGE, i * PAGE, None, None, None, None, None, None, None, None, None) for i in range(1, 30)]
    blob = pack(list(range(29)), rows)
    with pytest.raises(CodecError):
        unpack(damage(blob))


def test_uncompressed_body_when_deflate_does_not_help() -> None:
    rng = np.random.default_rng(5)
    rows = [tuple(int(v) for v in rng.integers(1, 1 << 62, 8)) + (None, None, None)]
    blob = pack([int(rng.integers(1 << 61, 1 << 62))], rows)
    assert blob[1] == 0  # flags: stored as is
    with pytest.raises(zlib.error):
        zlib.decompress(blob[6:], -15)
    assert unpack(blob).as_python("heap_limit") == [rows[0][7]]


# ------------------------------------------------------------------ other layouts (heap reports)

MIXED = Layout(("a", "when", "b", "tenth"), tenths=frozenset({"tenth"}), times=frozenset({"when"}))
times = st.one_of(st.none(), st.floats(0.0, allow_nan=False), st.floats(1.7e9, 1.8e9))
mixed_row = st.tuples(st.one_of(st.none(), st.integers(-(1 << 40), 1 << 40)), times, sizes, tenths)


@settings(max_examples=300, deadline=None)
@given(st.lists(mixed_row, min_size=1, max_size=40), st.integers(1, 1 << 40),
       st.lists(st.integers(-300, 300), min_size=40, max_size=40))
def test_a_layout_with_times_round_trips_bit_for_bit(rows, first_seq, gaps) -> None:
    seqs = [first_seq]
    for g in gaps[: len(rows) - 1]:
        seqs.append(seqs[-1] + g)  # not sorted: heap rows keep their reports by thread
    u = unpack(pack(seqs, rows, layout=MIXED), MIXED)
    assert u.seqs == seqs
    for i, name in enumerate(MIXED.fields):
        assert u.as_python(name) == [r[i] for r in rows], name
    assert all(type(v) is float for v in u.as_python("when") if v is not None)


def test_times_are_kept_exactly_where_tenths_or_microseconds_would_not() -> None:
    ts = [1764420000.123456789, 1764420000.1234568, 1764420001.0000002, 0.0, float("inf")]
    layout = Layout(("t",), times=frozenset({"t"}))
    back = unpack(pack(range(len(ts)), [(t,) for t in ts], layout=layout), layout).as_python("t")
    assert [t.hex() for t in back] == [t.hex() for t in ts]


def test_a_negative_time_is_refused() -> None:
    layout = Layout(("t",), times=frozenset({"t"}))
    for bad in (-1.0, -0.0):
        with pytest.raises(ValueError, match="must not be negative"):
            pack([1], [(bad,)], layout=layout)


def test_a_blob_read_with_another_layout_is_damaged() -> None:
    rows = [(i * PAGE, i * PAGE, None, None, None, None, None, None, None, None, None) for i in range(1, 5)]
    blob = pack(list(range(4)), rows)
    assert unpack(blob, SAMPLES).as_python("rss") == [r[0] for r in rows]
    with pytest.raises(CodecError):
        unpack(blob, MIXED)
    with pytest.raises(ValueError, match="fields"):
        pack([1], [(1, 2.0)], layout=MIXED)


def test_a_layout_names_its_special_fields_among_its_fields() -> None:
    with pytest.raises(ValueError):
        Layout(("a",), times=frozenset({"b"}))
    with pytest.raises(ValueError):
        Layout(("a",), tenths=frozenset({"a"}), times=frozenset({"a"}))
