"""Sustain and hysteresis on synthetic series, and a policy that stops a leaker before the kernel does."""

from __future__ import annotations

import dataclasses
import json

import pytest

from conftest import PY, v1_memory_writable
from oomscope.core.errors import BadInput
from oomscope.core.launch import LaunchSpec
from oomscope.core.sizes import Level, parse_level
from oomscope.core.thresholds import (
    CRITICAL,
    DEFAULT_THRESHOLDS,
    NORMAL,
    ROW_COLUMNS,
    WARNING,
    LevelTracker,
    ThresholdConfig,
    crit_with_following_warn,
    settings_to_json,
    thresholds_from_json,
    thresholds_from_row,
    thresholds_to_json,
    thresholds_to_row,
)

MiB = 1 << 20
WARN, CRIT = 100 * MiB, 200 * MiB


def run(series: list[tuple[float, int]], sustain_s: float = 2.0, hysteresis: float = 0.05) -> list[tuple[float, str]]:
    """(time, level) at every level change."""
    tracker = LevelTracker()
    changes = []
    for t, v in series:
        before = tracker.level
        after = tracker.update(v, v, WARN, CRIT, t, sustain_s, hysteresis)
        if after != before:
            changes.append((t, after))
    return changes


def every(step: float, until: float, f) -> list[tuple[float, int]]:
    n = int(until / step)
    return [(i * step, int(f(i * step))) for i in range(n + 1)]


def test_a_spike_does_not_trip_it() -> None:
    series = every(0.1, 10, lambda t: 250 * MiB if 5.0 <= t < 5.5 else 50 * MiB)
    assert run(series) == []


def test_a_steady_climb_trips_each_level_after_the_sustain_time() -> None:
    series = every(0.1, 30, lambda t: 10 * MiB * t)  # 10 MiB/s: warning at 10 s, critical at 20 s
    changes = run(series)
    assert [lv for _, lv in changes] == [WARNING, CRITICAL]
    assert changes[0][0] == pytest.approx(12.0, abs=0.11) and changes[1][0] == pytest.approx(22.0, abs=0.11)


def test_gc_sawtooth_under_the_line_never_trips_and_a_sawtooth_above_it_does() -> None:
    below = every(0.1, 20, lambda t: 60 * MiB + (t % 2) * 20 * MiB)  # 60..80 MiB
    assert run(below) == []
    # Peaks cross warning for 0.5 s of every 2 s: never sustained for 2 s.
    touching = every(0.1, 20, lambda t: 80 * MiB + (t % 2) * 20 * MiB + (5 * MiB if t % 2 > 1.5 else 0))
    assert run(touching) == []
    above = every(0.1, 20, lambda t: 110 * MiB + (t % 2) * 20 * MiB)  # floor above warning
    assert [lv for _, lv in run(above)] == [WARNING]


def test_hysteresis_keeps_a_hovering_value_from_flapping() -> None:
    # Up to 102 MiB, then hovering 96..101 MiB: above 95 MiB (100 minus 5%) it stays warning.
    series = every(0.1, 30, lambda t: 102 * MiB if t < 5 else (96 + (t * 7) % 5) * MiB)
    assert [lv for _, lv in run(series)] == [WARNING]
    falls = series + [(30.1, 94 * MiB)]
    assert [lv for _, lv in run(falls)] == [WARNING, NORMAL]


def test_plateau_below_critical_stays_warning_and_leaving_critical_goes_through_warning() -> None:
    series = every(0.1, 10, lambda t: 150 * MiB)
    assert [lv for _, lv in run(series)] == [WARNING]
    up_down = every(0.1, 10, lambda t: 250 * MiB) + [(10.1, 150 * MiB), (10.2, 50 * MiB)]
    assert [lv for _, lv in run(up_down)] == [CRITICAL, WARNING, NORMAL]


def test_zero_sustain_follows_every_sample() -> None:
    assert [lv for _, lv in run([(0, 150 * MiB), (0.1, 50 * MiB)], 0, 0)] == [WARNING, NORMAL]


@pytest.mark.parametrize("kw, text", [({"sustain_s": -1}, "sustain"), ({"hysteresis": 0.8}, "hysteresis")])
def test_bad_settings(kw, text) -> None:
    with pytest.raises(BadInput, match=text):
        ThresholdConfig(**kw)


@pytest.mark.cgroup
@pytest.mark.skipif(not v1_memory_writable(), reason="needs root and a writable cgroup v1 memory controller")
def test_policy_stops_a_leaker_before_the_kernel_does(make_engine) -> None:
    leak = "import time\nc = []\nwhile True:\n    c.append(bytearray(1 << 20)); time.sleep(0.02)\n"  # ~50 MiB/s
    config = ThresholdConfig(warn=parse_level("50%"), crit=parse_level("70%"), metric="anon",
                             on_crit="terminate", sustain_s=0.3, hysteresis=0.05)
    eng, log = make_engine(thresholds=config, interval_s=0.05, grace_s=0.5)
    ref = eng.launch(LaunchSpec((PY, "-c", leak), mem_limit_bytes=160 * MiB)).result(10)
    exited = log.wait_exit(ref.id, timeout=60)
    assert (exited.cause, exited.by) == ("terminated", "policy"), exited
    assert exited.signal in ("SIGTERM", "SIGKILL")
    crit = [t for t in log.of("threshold", ref.id) if t.level == CRITICAL][0]
    assert crit.limit == int(0.7 * 160 * MiB)
    assert not log.of("kernel_oom") or all(k.record.pid != ref.pid for k in log.of("kernel_oom"))


def test_samples_carry_the_trend_and_the_time_to_the_limit(make_engine) -> None:
    grow = "import time\nc = []\nfor _ in range(400):\n    c.append(bytearray(1 << 20)); time.sleep(0.01)\ntime.sleep(60)\n"
    config = ThresholdConfig(crit=parse_level("2GiB"), metric="anon")
    eng, log = make_engine(thresholds=config, interval_s=0.05, trend_window_s=2.0, trend_bucket_s=0.2, trend_start_up_s=0.0)
    ref = eng.launch(LaunchSpec((PY, "-c", grow))).result(10)
    s = log.wait_for(lambda e: e.kind == "samples" and any(
        x.worker.id == ref.id and x.trend_bytes_per_s and x.trend_bytes_per_s > 20 * MiB for x in e.samples),
        timeout=30)
    x = next(x for x in s.samples if x.worker.id == ref.id)
    assert 20 * MiB < x.trend_bytes_per_s < 150 * MiB  # about 1 MiB per 10 ms, less the sleep's slack
    assert x.eta_crit_s is not None and 0 < x.eta_crit_s < (2048 * MiB) / (20 * MiB)
    assert x.eta_limit_s is None  # no cgroup limit: no time to it
    j = x.to_json(s.t)
    assert j["trend_bytes_per_s"] > 0 and j["eta_limit_s"] is None
    # Once it stops growing the times go away.
    log.wait_for(lambda e: e.kind == "samples" and any(
        y.worker.id == ref.id and y.trend_bytes_per_s is not None and y.trend_bytes_per_s < 1024 and y.eta_crit_s is None
        for y in e.samples), timeout=30)


def test_terminate_at_warning(make_engine) -> None:
    grow = "import time\nc = []\nfor _ in range(300):\n    c.append(bytearray(1 << 20)); time.sleep(0.01)\ntime.sleep(60)\n"
    config = ThresholdConfig(warn=parse_level("50MiB"), metric="anon", on_warn="terminate")
    eng, log = make_engine(thresholds=config, interval_s=0.05, grace_s=1.0)
    ref = eng.launch(LaunchSpec((PY, "-c", grow))).result(10)
    exited = log.wait_exit(ref.id, timeout=30)
    assert (exited.cause, exited.by) == ("terminated", "policy")
    term = log.of("terminate", ref.id)[0]
    assert "at or above warning 50.0 MiB" in term.reason
    with pytest.raises(BadInput, match="on_warn"):
        ThresholdConfig(on_warn="explode")


# --- the one codec -----------------------------------------------------------------------------

CODEC_CASES = [
    ThresholdConfig(),
    ThresholdConfig(warn=parse_level("75%"), crit=parse_level("90%"), sustain_s=2.0, hysteresis=0.05,
                    on_crit="notify"),
    ThresholdConfig(warn=parse_level("400MiB"), crit=None, metric="heap", on_warn="terminate",
                    on_crit="none", sustain_s=0.5, hysteresis=0.07, grace_s=9.5),
]


@pytest.mark.parametrize("config", CODEC_CASES)
def test_codec_round_trips(config: ThresholdConfig) -> None:
    assert thresholds_from_json(json.loads(json.dumps(settings_to_json(config)))) == config
    # The levels event and the session file's row hold the levels and actions, not the grace period.
    assert thresholds_from_json(thresholds_to_json(config)) == dataclasses.replace(config, grace_s=3.0)
    assert thresholds_from_row(thresholds_to_row(config)) == dataclasses.replace(config, grace_s=3.0)
    assert len(thresholds_to_row(config)) == len(ROW_COLUMNS)


def test_codec_reads_the_settings_older_session_files_hold() -> None:
    # Before the codec, a session's settings held the dataclass itself: a hysteresis fraction and
    # a level as both of its fields.
    old = {"warn": {"bytes": None, "fraction": 0.75}, "crit": {"bytes": 1 << 30, "fraction": None},
           "metric": "anon", "on_crit": "terminate", "sustain_s": 2.0, "hysteresis": 0.05, "on_warn": "none"}
    assert thresholds_from_json(old) == ThresholdConfig(
        warn=parse_level("75%"), crit=parse_level("1GiB"), metric="anon", on_crit="terminate", sustain_s=2.0,
        hysteresis=0.05)
    with pytest.raises(BadInput):
        thresholds_from_json({"warn": {"percent": 90}, "crit": {"percent": 80}})


def test_a_critical_level_alone_takes_an_unchosen_warning_level_down_with_it() -> None:
    base = DEFAULT_THRESHOLDS
    moved, did = crit_with_following_warn(base, parse_level("60%"))
    assert did and (moved.warn, moved.crit) == (parse_level("50%"), parse_level("60%"))
    kept, did = crit_with_following_warn(base, parse_level("80%"))
    assert not did and kept.warn == base.warn
    sized, did = crit_with_following_warn(ThresholdConfig(warn=parse_level("600MiB")), parse_level("600MiB"))
    assert did and sized.warn == Level(bytes=500 << 20)
    off, did = crit_with_following_warn(base, None)  # no critical level: nothing to be below
    assert not did and off.crit is None and off.warn == base.warn
