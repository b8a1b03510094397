from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from oomscope.core.errors import BadInput
from oomscope.core.sizes import Level, format_size, parse_level, parse_percent, parse_size


@pytest.mark.parametrize(
    "text, expected",
    [
        ("400MiB", 400 * 1024**2),
        ("1.5G", int(1.5 * 1024**3)),
        ("512m", 512 * 1024**2),
        ("1GB", 10**9),
        ("4096", 4096),
        (" 64 MiB ", 64 * 1024**2),
        ("2KiB", 2048),
    ],
)
def test_parse_size_accepts_what_users_type(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["-5MiB", "0", "abc", "", "5 parsecs", "0.1B", "nan", "1e999G", "--5"])
def test_parse_size_rejects_with_advice(text: str) -> None:
    with pytest.raises(BadInput) as e:
        parse_size(text)
    assert repr(text) in str(e.value)
    assert "e.g." in str(e.value) or "greater than zero" in str(e.value) or "unit" in str(e.value) or "byte" in str(e.value)


@pytest.mark.parametrize("text", ["150%", "0%", "-5%", "abc%", "75"])
def test_parse_percent_rejects(text: str) -> None:
    with pytest.raises(BadInput):
        parse_percent(text)


def test_levels_resolve_against_a_limit() -> None:
    assert parse_level("75%").resolve(1000) == 750
    assert parse_level("75%").resolve(None) is None
    assert parse_level("1KiB").resolve(None) == 1024
    assert str(parse_level("75%")) == "75%"
    assert str(Level(bytes=3 * 1024**2)) == "3.0 MiB"


@given(st.integers(min_value=1, max_value=2**50))
def test_plain_byte_counts_round_trip(n: int) -> None:
    assert parse_size(str(n)) == n


@given(st.text(max_size=12))
def test_parse_size_never_raises_anything_but_badinput(text: str) -> None:
    try:
        assert parse_size(text) > 0
    except BadInput:
        pass


def test_format_size() -> None:
    assert format_size(None) == "-"
    assert format_size(512) == "512 B"
    assert format_size(1536) == "1.5 KiB"
    assert format_size(3 * 1024**3) == "3.0 GiB"


def test_format_size_rolls_a_number_that_would_show_as_1024_one_unit_up() -> None:
    assert format_size(1024**2 - 1) == "1.0 MiB"
    assert format_size(1023) == "1023 B"
    assert format_size(5 * 1024**4) == "5.0 TiB"
    assert format_size(2048 * 1024**4) == "2048.0 TiB"  # TiB is the largest unit


def test_format_size_in_the_forms_callers_show() -> None:
    # oom-log's anon-rss column: whole KiB below a MiB.
    assert format_size(0, smallest="KiB") == "0 KiB"
    assert format_size(500 * 1024, smallest="KiB") == "500 KiB"
    assert format_size(int(63.2 * 1024**2), smallest="KiB") == "63.2 MiB"
    # The plot's MiB axis.
    axis = [format_size(v * 1024**2, spec="g", smallest="MiB") for v in (0, 0.5, 512, 1536)]
    assert axis == ["0 MiB", "0.5 MiB", "512 MiB", "1.5 GiB"]
    # The typed form of a level field, which parse_size reads back.
    typed = [format_size(n, spec=".4g", sep="") for n in (512, 150 * 1024**2, 3 * 1024**3 // 2)]
    assert typed == ["512B", "150MiB", "1.5GiB"]
    assert [parse_size(t) for t in typed] == [512, 150 * 1024**2, 3 * 1024**3 // 2]
