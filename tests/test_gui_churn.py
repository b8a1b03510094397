"""Churn in the window: the roster keeps the latest exited rows and timeline deaths, not every
worker ever seen (issue #14, "Bounded memory"). Counts of rows and deaths, not RSS (the
benchmark, bench/bench_churn.py, measures RSS)."""

from __future__ import annotations

import time
from typing import Any

from gui_helpers import GUI_MARKS, confirmer, make_window  # noqa: F401 (fixtures)
from oomscope.core.events import Sample, Samples, WorkerAttached, WorkerExited, WorkerRef

pytestmark = GUI_MARKS


def _ref(n: int) -> WorkerRef:
    return WorkerRef(f"w{n}", 50_000 + n, 1.0, f"child{n}", ("child",), False, slot=None)


def _attached(n: int) -> WorkerAttached:
    return WorkerAttached(time.time(), _ref(n), parent_pid=1234)


def _exited(n: int, cause: str = "exit") -> WorkerExited:
    return WorkerExited(time.time(), _ref(n), cause=cause, exit_code=0 if cause == "exit" else None,
                        signal="SIGKILL" if cause == "oom-kill" else None)


def test_model_lets_go_of_the_oldest_exited_rows_within_qts_contract(qapp, qtmodeltester) -> None:
    from oomscope.gui.models import WorkerTreeModel
    from oomscope.gui.roster import Roster

    roster = Roster(exited_kept=3)
    model = WorkerTreeModel(roster)
    forgotten: list[str] = []
    roster.forget_listeners.append(forgotten.extend)
    qtmodeltester.check(model, force_py=True)  # from here on it checks every change signalled
    model.add_worker(_attached(0))  # a long-lived worker among the churn
    for n in range(1, 11):
        model.add_worker(_attached(n))
        roster.on_samples(Samples(time.time(), (Sample(_ref(n), 10 << 20, 8 << 20, 0, None, None),)))
        roster.on_exit(_exited(n))
    model.add_worker(_attached(11))  # a new worker is when the rows beyond the cap go
    qtmodeltester.check(model, force_py=True)
    assert [w.id for w in roster.workers] == ["w0", "w8", "w9", "w10", "w11"]
    assert model.rowCount() == 5
    assert forgotten == [f"w{n}" for n in range(1, 8)] and roster.forgotten == 7
    assert "w1" not in roster.by_id
    # The kept exits give back the history rows they never filled.
    assert len(roster.by_id["w9"].series._t) == 1
    assert roster.count_text() == "2 workers, 3 exited (+7 older)"
    assert "7 older exits are not shown (the window keeps the latest 3), a recording keeps them all" in roster.count_tip()


def test_timeline_keeps_the_latest_deaths_plain_exits_going_first(qapp) -> None:
    from oomscope.gui.roster import Roster

    roster = Roster(deaths_kept=4)
    for n, cause in enumerate(("oom-kill", "exit", "exit", "oom-kill", "exit", "exit")):
        roster.add(_attached(n))
        roster.on_exit(_exited(n, cause))
    assert [(d.worker_id, d.cause) for d in roster.deaths] == [
        ("w0", "oom-kill"), ("w3", "oom-kill"), ("w4", "exit"), ("w5", "exit")]
    assert roster.deaths_forgotten == 2


def test_window_under_churn_keeps_the_cap_and_says_how_many_it_let_go(make_window, qtbot: Any) -> None:
    from oomscope.gui.roster import EXITED_ROWS_KEPT

    window = make_window()
    assert window.roster.exited_kept == EXITED_ROWS_KEPT
    kept = window.roster.exited_kept = 20  # the same rule, fewer events to wait for
    extra = 40
    total = kept + extra
    # Through the engine's own queue, as the bridge reads every event.
    for n in range(1, total + 1):
        window.engine.events.put(_attached(n))
        window.engine.events.put(_exited(n))
    window.engine.events.put(_attached(total + 1))
    qtbot.waitUntil(lambda: f"w{total + 1}" in window.roster.by_id, timeout=60_000)
    assert window.model.rowCount() == kept + 1
    assert window.proxy.rowCount() == kept + 1
    assert window.roster.forgotten == extra
    assert "w1" not in window.roster.by_id and f"w{total}" in window.roster.by_id
    window._update_status()
    assert window.view.workers_status.text() == f"1 worker, {kept} exited (+{extra} older)"
    assert f"{extra} older exits are not shown" in window.view.workers_status.toolTip()


def test_colours_pens_and_slot_counts_stay_bounded_under_churn(make_window, qtbot: Any) -> None:
    """Every worker ever seen got a new colour index, and pens, swatches and legend icons were
    cached by it, as were each slot's colour and death counts: ~2 KB a worker that never went
    (bench_churn: the window grew 146 → 205 MiB over 2,000 workers). Now caches hold one entry
    per colour the palette has, and a forgotten slot's entries go with its last row."""
    from oomscope.gui.palette import worker_rgb

    palette = len({worker_rgb(i) for i in range(10_000)})
    assert palette < 1000  # a finite palette: the bound below means something
    window = make_window()
    kept = window.roster.exited_kept = 10
    total = palette + 60  # past the palette's length: colours come round again

    def ref(n: int) -> WorkerRef:
        return WorkerRef(f"w{n}", 60_000 + n, 1.0, f"slotted{n}", ("slotted",), True, slot=n)

    for n in range(1, total + 1):
        window.engine.events.put(WorkerAttached(time.time(), ref(n), parent_pid=None))
        window.engine.events.put(Samples(time.time(), (Sample(ref(n), 10 << 20, 8 << 20, 0, None, None),)))
        window.engine.events.put(WorkerExited(time.time(), ref(n), cause="exit", exit_code=3, signal=None))
    window.engine.events.put(WorkerAttached(time.time(), ref(total + 1), parent_pid=None))
    qtbot.waitUntil(lambda: f"w{total + 1}" in window.roster.by_id, timeout=60_000)
    window.plot.redraw()
    roster = window.roster
    assert roster.forgotten == total - kept
    # Slots: only those of rows still shown.
    shown = {w.ref.slot for w in roster.workers}
    assert set(roster.slot_deaths) <= shown and set(roster._slot_colors) <= shown
    # Pens, swatches and legend icons: at most one per colour, whatever the index reached.
    assert max(w.color_index for w in roster.workers) >= palette
    assert len(window.model._swatches) <= palette
    assert len(window.plot._pens) <= 2 * palette
    assert len(window.plot.legend._icons) <= palette


def test_timeline_renders_each_marker_style_once_not_once_per_refresh(make_window, qtbot: Any) -> None:
    """pyqtgraph's scatter keeps a picture of each (symbol, size, pen, brush) it drew, keyed by
    the pen and brush *objects*. A new pen per marker per refresh rendered every marker again at
    every death and grew that atlas to four times the markers before it was rebuilt (the window
    handled 8 churned workers a second and swung 20 MiB). One pen and brush per style keep it
    at the number of styles."""
    from oomscope.gui.palette import CAUSE_STYLE

    window = make_window()
    causes = ("exit", "oom-kill", "signal", "unknown")
    for n in range(1, 201):
        window.engine.events.put(_attached(n))
        window.engine.events.put(_exited(n, causes[n % len(causes)]))
    qtbot.waitUntil(lambda: len([d for d in window.roster.deaths if d.worker_id]) == 200, timeout=60_000)
    for _ in range(5):
        window.timeline.refresh()
    drawn = [m for m in window.timeline.marker_deaths() if m[2].worker_id]
    assert len(drawn) == 200
    assert len(window.timeline.scatter.fragmentAtlas) <= len(CAUSE_STYLE)


def test_one_exit_touches_one_legend_entry(make_window, qtbot: Any) -> None:
    """The legend was cleared and refilled whenever any entry changed: every exit among hundreds
    of rows rebuilt hundreds of entries. Now the other entries stay the very same items, in order."""
    window = make_window()
    legend = window.plot.legend
    for n in range(1, 41):
        window.engine.events.put(_attached(n))
        window.engine.events.put(Samples(time.time(), (Sample(_ref(n), 10 << 20, 8 << 20, 0, None, None),)))
    # One worker without a sample: no curve, so no entry.
    window.engine.events.put(_attached(41))
    qtbot.waitUntil(lambda: len(window.roster.workers) == 41 and all(
        len(w.series) for w in window.roster.workers if w.id != "w41"), timeout=10_000)
    legend.refresh(window.roster.workers)
    before = [legend.list.item(row) for row in range(legend.list.count())]
    assert [e[0] for e in legend.entries()] == [f"w{n}" for n in range(1, 41)]
    window.engine.events.put(_exited(7))
    qtbot.waitUntil(lambda: not window.roster.by_id["w7"].alive, timeout=10_000)
    legend.refresh(window.roster.workers)
    after = [legend.list.item(row) for row in range(legend.list.count())]
    assert [e[0] for e in legend.entries()] == [f"w{n}" for n in range(1, 41)]
    assert all(a is b for a, b in zip(before, after)) and len(after) == 40
    assert "exited" in after[6].toolTip() and "exited" not in after[5].toolTip()


def test_the_legend_updated_in_place_always_equals_one_built_afresh(qapp) -> None:
    """Random rounds of workers coming, going, reordering, exiting, hidden and filtered: the
    legend that moves, inserts and refills entries shows exactly what a new legend shows."""
    import random

    import numpy as np

    from oomscope.gui.history import Series, history_columns
    from oomscope.gui.legend import PlotLegend
    from oomscope.gui.roster import WorkerState
    from oomscope.gui.visibility import CurveVisibility

    rng = random.Random(14)
    states = {n: WorkerState(_ref(n), n, Series()) for n in range(40)}
    for n, w in states.items():
        if n % 7:  # every seventh never sampled: no curve, never an entry
            w.series.extend(np.array([1.0]), history_columns({"rss": [10 << 20]}, 1))
    visibility = CurveVisibility()
    legend = PlotLegend(visibility)
    order = list(range(40))
    for _round in range(300):
        move = rng.random()
        if move < 0.3:
            order = [n for n in order if rng.random() > 0.1] + [n for n in range(40) if n not in order and rng.random() < 0.2]
        elif move < 0.4:
            rng.shuffle(order)
        elif move < 0.6:
            n = rng.choice(range(40))
            states[n].exit = _exited(n)
        elif move < 0.8:
            visibility.hidden ^= {f"w{rng.choice(range(40))}"}
        else:
            allowed = {f"w{n}" for n in range(40) if rng.random() < 0.7}
            visibility.passes_filter = None if rng.random() < 0.3 else allowed.__contains__
        shown = [states[n] for n in order]
        legend.refresh(shown)
        fresh = PlotLegend(visibility)
        fresh.refresh(shown)
        got = [(e, legend.list.item(i).toolTip(), legend.list.item(i).foreground().color().name())
               for i, e in enumerate(legend.entries())]
        want = [(e, fresh.list.item(i).toolTip(), fresh.list.item(i).foreground().color().name())
                for i, e in enumerate(fresh.entries())]
        assert got == want
        assert not any(e[0] in {f"w{n}" for n in range(0, 40, 7)} for e, _tip, _colour in got)
        fresh.deleteLater()
