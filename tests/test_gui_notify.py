"""Notifications in a burst: a few go out at once, the rest as one summary afterwards."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import PY
from gui_helpers import GUI_MARKS, confirmer, make_window  # noqa: F401 (fixtures)
from oomscope.core.config import load_config
from oomscope.core.launch import LaunchSpec
from oomscope.gui.notify import Burst


def test_burst_lets_a_few_through_and_holds_the_rest() -> None:
    b = Burst(count=3, window_s=10)
    assert [b.offer(f"oomscope: w{i} is critical", now=0.0) for i in range(5)] == [True] * 3 + [False] * 2
    assert b.held == ["oomscope: w3 is critical", "oomscope: w4 is critical"]
    assert b.wait_s(now=4.0) == pytest.approx(6.0)
    title, text = b.take_summary(now=10.0)
    assert title == "oomscope: 2 more alerts" and text == "w3 is critical; w4 is critical"
    assert b.take_summary(now=10.0) is None
    assert b.offer("oomscope: later", now=10.5)  # the first three aged out of the window


def test_burst_summary_names_five_and_counts_the_rest() -> None:
    b = Burst(count=1, window_s=10)
    for i in range(9):
        b.offer(f"oomscope: w{i} OOM-killed", now=0.0)
    title, text = b.take_summary(now=11.0)
    assert title == "oomscope: 8 more alerts"
    assert text.startswith("w1 OOM-killed; w2") and text.endswith("; and 3 more")


def test_a_flood_of_alerts_reaches_the_desktop_as_a_few_and_one_summary(qtbot, make_window) -> None:
    window = make_window()
    shown: list[tuple[str, str]] = []
    window.notifier.show_fn = lambda title, text: shown.append((title, text))
    window.notifier.burst = Burst(count=2, window_s=0.5)
    for i in range(12):
        window.notifier.notify(f"oomscope: w{i} is critical", f"w{i}: rss above critical")
    assert [t for t, _ in shown] == ["oomscope: w0 is critical", "oomscope: w1 is critical"]
    qtbot.waitUntil(lambda: len(shown) == 3, timeout=5_000)
    assert shown[2][0] == "oomscope: 10 more alerts" and "w2 is critical" in shown[2][1]


pytestmark = GUI_MARKS


# 1 MiB every 20 ms to 30 MiB, held there at a gate until the window shows it at warning, then
# on to 60 MiB: each level is reached, however the sampler and the climber share the CPU.
CLIMB_TO_60_MIB = ("import time\nc = []\nfor _ in range(30):\n    c.append(b'x' * (1 << 20)); time.sleep(0.02)\n"
                   "{wait}\nfor _ in range(30):\n    c.append(b'x' * (1 << 20)); time.sleep(0.02)\n"
                   "time.sleep(60)\n")


def crossings_notified(qtbot: Any, make_window: Any, gate: Any, tmp_path: Path, thresholds_toml: str) -> list[str]:
    """The titles notified while a worker climbs through warning (20 MiB) into critical
    (40 MiB), with the levels' actions from a settings file, as the app reads it."""
    cfg = tmp_path / "config.toml"
    cfg.write_text('[thresholds]\nmetric = "anon"\nwarn = "20MiB"\ncrit = "40MiB"\nsustain_s = 0\n'
                   + thresholds_toml)
    window = make_window(load_config(cfg).thresholds, interval_s=0.05)
    shown: list[tuple[str, str]] = []
    window.notifier.show_fn = lambda title, text: shown.append((title, text))
    at_warning = gate()
    climb = CLIMB_TO_60_MIB.format(wait=at_warning.wait_code)
    ref = window.engine.launch(LaunchSpec((PY, "-c", climb), name="climber")).result(10)
    level = lambda: ref.id in window.roster.by_id and window.roster.by_id[ref.id].level  # noqa: E731
    qtbot.waitUntil(lambda: level() == "warning", timeout=30_000)
    at_warning.open()
    qtbot.waitUntil(lambda: level() == "critical", timeout=30_000)
    window.engine.terminate(ref.id)
    return [title for title, _text in shown]


def test_warning_notifies_and_critical_does_not_when_the_file_says_so(qtbot, make_window, gate, tmp_path) -> None:
    titles = crossings_notified(qtbot, make_window, gate, tmp_path, 'on_warn = "notify"\non_crit = "none"\n')
    assert "oomscope: climber is warning" in titles, titles
    assert not [t for t in titles if "critical" in t], titles


def test_by_default_critical_notifies_and_warning_does_not(qtbot, make_window, gate, tmp_path) -> None:
    titles = crossings_notified(qtbot, make_window, gate, tmp_path, "")
    assert "oomscope: climber is critical" in titles, titles
    assert not [t for t in titles if "warning" in t], titles
