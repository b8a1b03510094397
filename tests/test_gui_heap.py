"""Heap in the window, with real node workers: a worker thread's heap-oom on the kill timeline,
the doctor's advice in the detail pane, and the V8 heap limit on the heap metric."""

from __future__ import annotations

import shutil
from typing import Any

import pytest

from conftest import v1_memory_writable
from gui_helpers import GUI_MARKS, confirmer, make_window  # noqa: F401 (fixtures)
from oomscope.core.launch import LaunchSpec
from test_engine_heap import THREAD_HEAP_OOM, THREADS, script

NODE = shutil.which("node")
pytestmark = GUI_MARKS + [pytest.mark.skipif(NODE is None, reason="node is not installed")]


def test_thread_heap_oom_is_a_thread_marker_on_the_heap_oom_lane(qtbot, make_window, tmp_path) -> None:
    from oomscope.core.causes import HEAP_OOM
    from oomscope.gui.models import COL_STATE
    from oomscope.gui.timeline import marker_style, tip_text

    window = make_window(heap_interval_s=0.2)
    ended: list[Any] = []
    window.bridge.thread_exited.connect(ended.append)
    window.launch(LaunchSpec((NODE, script(tmp_path, THREAD_HEAP_OOM))))
    qtbot.waitUntil(lambda: len(window.roster.workers) == 1, timeout=10_000)
    w = window.roster.workers[0]
    qtbot.waitUntil(lambda: bool(ended), timeout=60_000)
    ev = ended[0]
    assert ev.cause == HEAP_OOM
    # (Other markers may be there: the kernel log replays earlier kills of other processes.)
    # The timeline redraws through a throttle: the marker may come a moment after the event.
    def mine() -> list[Any]:
        return [m for m in window.timeline.marker_deaths() if m[2].worker_id == w.id]

    qtbot.waitUntil(lambda: bool(mine()), timeout=2_000)
    [(t, lane, death)] = mine()
    assert lane == HEAP_OOM and t == pytest.approx(ev.t)
    assert (death.thread_id, death.pid, death.worker_id) == (ev.thread_id, w.ref.pid, w.id)
    assert f"thread {ev.thread_id} of PID {w.ref.pid}: heap-oom" in tip_text(death)
    # Told apart from a whole worker's heap-oom: another marker style on the same lane.
    from oomscope.gui.roster import Death

    process_death = Death(t, HEAP_OOM, HEAP_OOM, w.id, w.ref.name, w.ref.pid)
    assert marker_style(death) != marker_style(process_death)
    # The thread's row says it exited; the worker itself still runs.
    parent = window.model.row_of(w.id)
    model = window.model
    rows = {model.data(model.index(r, 0, parent)): model.data(model.index(r, COL_STATE, parent))
            for r in range(model.rowCount(parent))}
    assert rows[f"thread {ev.thread_id}"] == "exited: heap-oom"
    assert w.alive and window.model.data(parent.siblingAtColumn(COL_STATE)) == "running"
    assert window.table.rootIsDecorated()
    # Clicking the marker opens the worker, whose pane tells of the thread's death.
    window.open_death(death)
    assert window.detail.worker is w
    assert f"thread {ev.thread_id} of PID {w.ref.pid}: heap-oom" in window.detail.text()


@pytest.mark.cgroup
@pytest.mark.skipif(not v1_memory_writable(), reason="needs root and a writable cgroup v1 memory controller")
def test_doctor_advice_is_on_the_workers_detail_pane(qtbot, make_window) -> None:
    from oomscope.gui.qt import Qt

    window = make_window(heap_interval_s=0.2)
    given: list[Any] = []
    window.bridge.advice_given.connect(given.append)
    window.launch(LaunchSpec((NODE, "-e", "setInterval(() => {}, 1000)"), mem_limit_bytes=256 << 20))
    qtbot.waitUntil(lambda: bool(given), timeout=30_000)
    w = window.roster.by_id[given[0].worker.id]
    assert w.advice == given
    window.select_worker(w.id)
    assert window.detail.worker is w and window.detail.advice.isVisible()
    text = window.detail.text()
    assert "Doctor:" in text and "--max-old-space-size=192" in text
    assert "kernel will kill this worker before V8" in text
    tip = window.model.data(window.model.row_of(w.id), Qt.ItemDataRole.ToolTipRole)
    assert "doctor:" in tip


def test_heap_metric_draws_each_workers_heap_limit(qtbot, make_window) -> None:
    window = make_window(heap_interval_s=0.2)
    window.launch(LaunchSpec((NODE, "-e", "setInterval(() => {}, 1000)")))
    qtbot.waitUntil(lambda: len(window.roster.workers) == 1, timeout=10_000)
    w = window.roster.workers[0]
    qtbot.waitUntil(lambda: w.last is not None and bool(w.last.heap_limit), timeout=30_000)
    # Two samples with a heap: a line needs a length.
    qtbot.waitUntil(lambda: w.heap_since is not None and float(w.series.times()[-1]) > w.heap_since, timeout=10_000)
    window.plot.set_metric("heap_used")
    # Plotting heap moves nothing the alerts compare: that has a control of its own.
    assert window.thresholds.metric == window.engine.thresholds.metric == "rss"
    window.plot.redraw()
    assert window.plot.heap_limit_lines == {w.id: w.last.heap_limit}
    [(pen, poly)] = window.plot.curves.limit_lines()
    assert poly.at(0).y() == pytest.approx(w.last.heap_limit / (1 << 20))
    assert pen.style() == pen.style().DashLine
    assert pen.color().alpha() < 255  # faint
    window.plot.set_metric("rss")
    window.plot.redraw()
    assert window.plot.heap_limit_lines == {} and window.plot.curves.limit_lines() == []


def test_heap_metric_draws_one_curve_per_thread(qtbot, make_window, tmp_path) -> None:
    """The demo's Node worker with three threads: on heap used, four curves (main + 3 threads),
    each named apart; on RSS, its single curve again."""
    window = make_window(heap_interval_s=0.2)
    window.launch(LaunchSpec((NODE, script(tmp_path, THREADS))))
    qtbot.waitUntil(lambda: len(window.roster.workers) == 1, timeout=10_000)
    w = window.roster.workers[0]
    qtbot.waitUntil(lambda: window.roster.any_heap(), timeout=30_000)  # heap used is offered
    window.plot.set_metric("heap_used")

    def four_curves() -> bool:
        curves = window.plot.drawn_curves.get(w.id, [])
        return len(curves) == 4 and all(points > 0 for _name, points in curves)

    qtbot.waitUntil(four_curves, timeout=30_000)
    names = [name for name, _points in window.plot.drawn_curves[w.id]]
    assert len(set(names)) == 4
    assert f"{w.id} main thread" in names
    thread_ids = sorted(th.thread_id for th in w.threads)
    assert len(thread_ids) == 3
    assert sorted(names) == sorted([f"{w.id} main thread"] + [f"{w.id} thread {t}" for t in thread_ids])
    # Worker threads are told apart from the main thread and from each other by their pens.
    pens = [(pen.style(), pen.color().rgb()) for pen, _poly in window.plot.curves.curve_lines()]
    assert len(set(pens)) == 4
    window.plot.set_metric("rss")
    assert [name for name, _points in window.plot.drawn_curves[w.id]] == [w.id]


def test_attach_with_heap_inspection_shows_the_threads(qtbot, make_window, tmp_path, children) -> None:
    """The attach dialog's opt-in: the warning shows before enabling; attached node threads then
    appear under their process, and stopping the engine closes the inspector port."""
    import subprocess

    from oomscope.core.heap.inspector import INSPECTOR_WARNING, own_listeners
    from oomscope.gui.dialogs import AttachDialog
    from test_engine_inspect import APP

    app = tmp_path / "app.js"
    app.write_text(APP)
    node = children([NODE, str(app)], stdout=subprocess.PIPE)
    assert node.stdout is not None and node.stdout.readline().strip() == b"ready"
    window = make_window(heap_interval_s=0.2)
    dialog = AttachDialog(window.settings, window, lister=lambda: [])
    qtbot.addWidget(dialog)
    assert not dialog.inspect_box.isChecked() and not dialog.inspect_warning.isVisibleTo(dialog)
    dialog.inspect_box.setChecked(True)
    assert dialog.inspect_warning.isVisibleTo(dialog) and dialog.inspect_warning.text() == INSPECTOR_WARNING
    window.attach(node.pid, inspect_heap=True)
    qtbot.waitUntil(lambda: len(window.roster.workers) == 1, timeout=10_000)
    w = window.roster.workers[0]
    parent = window.model.row_of(w.id)
    qtbot.waitUntil(lambda: window.model.rowCount(parent) == 2, timeout=30_000)  # its 2 worker threads
    assert own_listeners(node.pid)
    window.engine.stop()
    assert not own_listeners(node.pid)
    assert node.poll() is None
