"""What a new user hit in the window (issue 15): details that stayed behind the table, a
message that moved the rows under the mouse, keyboard traps."""

from __future__ import annotations

from typing import Any

from conftest import PY
from gui_helpers import GUI_MARKS, HOLDER, confirmer, make_window, settings_at  # noqa: F401 (fixtures)
from oomscope.core.launch import LaunchSpec

pytestmark = GUI_MARKS

# Grows by 4 MiB every 0.1 s up to 200 MiB, then holds: the RSS changes between two looks.
GROWER = (
    "import time\n"
    "held = []\n"
    "print('ready', flush=True)\n"
    "for _ in range(50):\n"
    "    b = bytearray(4 << 20)\n"
    "    for i in range(0, len(b), 4096): b[i] = 1\n"
    "    held.append(b)\n"
    "    time.sleep(0.1)\n"
    "time.sleep(120)\n"
)


def _launch(qtbot: Any, window: Any, code: str, name: str) -> Any:
    window.launch(LaunchSpec((PY, "-c", code), name=name))
    qtbot.waitUntil(lambda: any(w.ref.name == name for w in window.roster.workers), timeout=10_000)
    w = next(w for w in window.roster.workers if w.ref.name == name)
    qtbot.waitUntil(lambda: w.last is not None, timeout=10_000)
    return w


def _row_center(window: Any, worker_id: str) -> Any:
    return window.table.visualRect(window.proxy.mapFromSource(window.model.row_of(worker_id))).center()


def test_details_follow_a_running_worker(qtbot, make_window) -> None:
    from oomscope.gui.qt import Qt

    window = make_window()
    w = _launch(qtbot, window, GROWER, "grower")
    qtbot.mouseClick(window.table.viewport(), Qt.MouseButton.LeftButton, pos=_row_center(window, w.id))
    assert window.detail.worker is w
    first = window.detail.text()
    assert w.memory_text() in first
    # No click, no selection change: only samples arrive, and the pane says what the row says.
    qtbot.waitUntil(lambda: w.last is not None and w.last.rss > 150 << 20, timeout=15_000)
    qtbot.waitUntil(lambda: w.memory_text() in window.detail.text(), timeout=2_000)
    assert window.detail.text() != first
    newest = window.detail.samples.item(0, 0).text()
    qtbot.waitUntil(lambda: window.detail.samples.item(0, 0).text() != newest, timeout=2_000)


def test_a_message_never_moves_the_worker_rows(qtbot, make_window) -> None:
    from oomscope.gui.qt import Qt

    window = make_window()
    a = _launch(qtbot, window, HOLDER.format(mib=8), "first")
    b = _launch(qtbot, window, HOLDER.format(mib=8), "second")
    viewport = window.table.viewport()
    before = (viewport.mapTo(window, viewport.rect().topLeft()), _row_center(window, b.id))
    window.message_bar.show_message("Cannot attach to PID 1: permission denied")
    assert window.message_bar.isVisible()
    qtbot.wait(50)  # layouts settle on the next event loop turn; a moved row would show then
    assert (viewport.mapTo(window, viewport.rect().topLeft()), _row_center(window, b.id)) == before
    # The click aimed at the second worker while the message shows selects the second worker.
    qtbot.mouseClick(viewport, Qt.MouseButton.LeftButton, pos=before[1])
    assert [w.id for w in window.selected_workers()] == [b.id]
    assert a.id != b.id
    # A click on the message dismisses it, and still nothing moves.
    qtbot.mouseClick(window.message_bar, Qt.MouseButton.LeftButton)
    assert not window.message_bar.isVisible()
    assert _row_center(window, b.id) == before[1]


def test_a_long_message_takes_one_line_until_the_mouse_is_over_it(qtbot, make_window) -> None:
    """Three wrapped lines at rest hid a third of a 1024x700 window's curves for 15 s."""
    from oomscope.gui.qt import QtCore, QtWidgets

    QApplication = QtWidgets.QApplication
    window = make_window()
    window.resize(1024, 700)
    bar = window.message_bar
    text = ("fast-leak (w5): Off-heap (Buffer) growth: a heap limit will not help. 29.4 MiB lives outside "
            "V8's heap (28.0 MiB of it in Buffers and ArrayBuffers), against 3.9 MiB on it, under a 96.0 MiB "
            "memory limit; --max-old-space-size bounds only the heap, so bound the Buffers instead.")
    bar.show_message(text, "warning")
    one_line = bar.fontMetrics().lineSpacing()
    assert bar.isVisible() and bar.height() < 2 * one_line + 16
    assert bar.text().endswith("…") and bar.text()[:-1] in text and text in bar.toolTip()
    host = bar.parentWidget()
    bottom = bar.geometry().bottom()
    QApplication.sendEvent(bar, QtCore.QEvent(QtCore.QEvent.Type.Enter))
    assert bar.text() == text and bar.height() >= 2 * one_line
    assert bar.geometry().bottom() == bottom  # grows upwards: the clock labels below stay readable
    assert bar.geometry().top() >= 0 and bar.geometry().bottom() < host.height()
    QApplication.sendEvent(bar, QtCore.QEvent(QtCore.QEvent.Type.Leave))
    assert bar.height() < 2 * one_line + 16 and bar.text().endswith("…")
    # A short message is whole on its line.
    bar.show_message("Cannot attach to PID 1: permission denied")
    assert bar.text() == "Cannot attach to PID 1: permission denied"


def test_a_standing_problem_stays_and_comes_back_after_a_passing_message(qtbot, make_window) -> None:
    window = make_window()
    bar = window.message_bar
    bar.fade_ms = 100
    bar.show_message("cannot reach Prometheus", "error", standing=True)
    qtbot.wait(300)
    assert bar.isVisible() and bar.full_text == "cannot reach Prometheus"  # no fading
    bar.show_message("worker w3 exited", "warning")
    assert bar.full_text == "worker w3 exited"
    qtbot.waitUntil(lambda: bar.full_text == "cannot reach Prometheus", timeout=2_000)
    assert bar.isVisible()
    bar.end_standing()
    assert not bar.isVisible()
    # A passing message fades as before.
    bar.show_message("worker w4 exited", "warning")
    qtbot.waitUntil(lambda: not bar.isVisible(), timeout=2_000)
    for n in range(300):
        bar.show_message(f"retry {n}", "error", standing=True)
    assert len(bar.history) <= 200 and bar.history[-1] == "retry 299"


def test_doctor_advice_reads_as_sentences_with_or_without_a_flag(qtbot, make_window) -> None:
    import time

    from oomscope.core.doctor import node_heap_advice, off_heap_advice
    from oomscope.core.events import Doctor

    window = make_window()
    w = _launch(qtbot, window, HOLDER.format(mib=8), "node-like")
    window.select_worker(w.id)
    heap = node_heap_advice(4 << 30, 200 << 20, None)
    off = off_heap_advice(3 << 20, 186 << 20, 180 << 20, 200 << 20)
    assert heap is not None and off is not None and off.suggested == ""
    for a in (heap, off):
        window.handle_event(Doctor(time.time(), w.ref, a.advice, a.reason, a.suggested))
    pane = window.detail.text()
    # Each phrase ends its sentence before the next begins; the empty flag of the off-heap
    # advice leaves no dangling "Suggested:".
    assert "limit) V8's" not in pane and "exhaustion Suggested" not in pane
    assert "Doctor: Set --max-old-space-size=150 (75% of the 200.0 MiB memory limit). V8's heap" in pane
    assert "reports heap exhaustion.\n" in pane
    assert "Doctor: Off-heap (Buffer) growth: a heap limit will not help. 186.0 MiB lives" in pane
    assert "caches)." in pane and pane.count("Suggested") == 0
    bar = window.message_bar.history[-2:]
    assert bar[0].endswith("heap exhaustion.") and "limit). V8's" in bar[0]
    assert bar[1].endswith("caches).") and "Suggested" not in bar[1]


def test_tab_leaves_the_environment_box_and_the_samples_table(qtbot, tmp_path) -> None:
    from oomscope.gui.detail import DetailPane
    from oomscope.gui.dialogs import LaunchDialog
    from oomscope.gui.qt import QtWidgets, Qt

    dialog = LaunchDialog(settings_at(tmp_path / "s.ini"))
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    dialog.env.setFocus()
    qtbot.waitUntil(dialog.env.hasFocus, timeout=2_000)
    qtbot.keyClicks(dialog.env, "A=1")
    qtbot.keyClick(dialog.env, Qt.Key.Key_Tab)
    assert dialog.env.toPlainText() == "A=1" and not dialog.env.hasFocus()
    pane = DetailPane()
    assert not pane.samples.tabKeyNavigation()
    assert isinstance(pane.samples, QtWidgets.QTableWidget)


def test_attach_search_keys(qtbot, tmp_path) -> None:
    import subprocess

    from oomscope.core.processes import list_processes
    from oomscope.gui.dialogs import AttachDialog
    from oomscope.gui.qt import Qt

    # Two real processes, and a list of only them: what the keys do is then certain.
    kids = [subprocess.Popen([PY, "-c", "import time; time.sleep(60)"]) for _ in range(2)]
    try:
        pids = {k.pid for k in kids}
        dialog = AttachDialog(settings_at(tmp_path / "s.ini"),
                              lister=lambda: [p for p in list_processes() if p.pid in pids])
        qtbot.addWidget(dialog)
        dialog.show()
        qtbot.waitExposed(dialog)
        dialog.search.setFocus()
        qtbot.waitUntil(dialog.search.hasFocus, timeout=2_000)
        assert dialog.proxy.rowCount() == 2
        # Enter with nothing chosen among two matches says why nothing happened.
        qtbot.keyClick(dialog.search, Qt.Key.Key_Return)
        assert dialog.hint.isVisible() and "Select a process" in dialog.hint.text()
        assert dialog.choice is None and dialog.isVisible()
        # Down goes from the search into the list, on its first row.
        qtbot.keyClick(dialog.search, Qt.Key.Key_Down)
        assert dialog.table.hasFocus() and len(dialog.selected_pids()) == 1
        # Esc empties the search, and does not close the dialog.
        dialog.search.setFocus()
        qtbot.keyClicks(dialog.search, "no such process")
        assert dialog.proxy.rowCount() == 0
        qtbot.keyClick(dialog.search, Qt.Key.Key_Escape)
        assert dialog.search.text() == "" and dialog.isVisible() and dialog.proxy.rowCount() == 2
        # One match and Enter: that one is attached, no selection needed.
        dialog.table.clearSelection()
        qtbot.keyClicks(dialog.search, str(kids[1].pid))
        assert dialog.proxy.rowCount() == 1
        qtbot.keyClick(dialog.search, Qt.Key.Key_Return)
        assert dialog.choice is not None and dialog.choice.pids == (kids[1].pid,)
    finally:
        for k in kids:
            k.kill()
            k.wait()


def test_escape_clears_the_worker_filter_and_down_enters_the_table(qtbot, make_window) -> None:
    from oomscope.gui.qt import Qt

    window = make_window()
    w = _launch(qtbot, window, HOLDER.format(mib=8), "filtered")
    window.filter_edit.setFocus()
    qtbot.waitUntil(window.filter_edit.hasFocus, timeout=2_000)
    qtbot.keyClicks(window.filter_edit, "nomatch")
    assert window.proxy.rowCount() == 0
    qtbot.keyClick(window.filter_edit, Qt.Key.Key_Escape)
    assert window.filter_edit.text() == "" and window.proxy.rowCount() == 1
    qtbot.keyClick(window.filter_edit, Qt.Key.Key_Down)
    assert window.table.hasFocus() and [x.id for x in window.selected_workers()] == [w.id]


def test_a_small_window_gives_the_plot_height_first(qtbot, make_window) -> None:
    window = make_window()
    for size in ((1024, 700), (1000, 560)):
        window.resize(*size)
        qtbot.waitUntil(lambda: window.height() == size[1], timeout=2_000)
        # The docks give way until plot and timeline have half the height, then stop at their minimum.
        qtbot.waitUntil(lambda: window.plot_splitter.height() >= size[1] // 2 - 2, timeout=2_000)
        assert window.plot.plot_widget.height() >= 140
        assert window.timeline.plot_widget.height() >= 96  # six lanes, six readable labels
        assert window.workers_dock.height() >= window.workers_dock.minimumSizeHint().height()
        assert window.workers_dock.isVisible() and window.table.viewport().height() > 20


def test_a_long_crosshair_readout_does_not_widen_the_window(qtbot, make_window) -> None:
    """Seen at 1024x700 under X11: the readout's text ('cursor 180.8 MiB, steady (w1, PID …)
    cgroup usage …') set the toolbar's minimum width and pushed the window past the screen."""
    window = make_window()
    window.resize(1024, 700)
    before = window.minimumSizeHint().width()
    window.plot.readout.setText("<b>07:15:32</b> &nbsp; cursor 180.8 MiB &nbsp; " + "steady (w1, PID 15599) " * 20)
    window.plot.levels_note.setText("levels are on anon RSS: not drawn on cgroup usage")
    window.plot.levels_note.setVisible(True)
    from oomscope.gui.qt import QtWidgets
    QtWidgets.QApplication.processEvents()  # the layout request the new text posted
    assert window.minimumSizeHint().width() <= max(before, 1024)  # was 3458 px
    assert window.plot.levels_note.width() >= window.plot.levels_note.sizeHint().width() - 2  # still readable


def test_the_empty_plot_offers_the_demo_launch_and_attach(qtbot, make_window) -> None:
    from oomscope.gui import demo
    from oomscope.gui.qt import Qt

    window = make_window()
    hint = window.plot.empty_label
    assert hint.isVisible()
    # Whole, inside the plot: nothing of it clipped at an edge.
    assert window.plot.plot_widget.rect().contains(hint.geometry())
    assert hint.sizeHint().width() <= hint.width() and hint.sizeHint().height() <= hint.height()
    assert not hint.buttons["demo"].isVisible()  # nothing answers it yet
    assert hint.buttons["launch"].isVisible() and hint.buttons["attach"].isVisible()
    demo.offer_demo(window)
    assert hint.buttons["demo"].isVisible()
    qtbot.mouseClick(hint.buttons["demo"], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: {"steady", "slow-leak", "threads"} <= {w.ref.name for w in window.roster.workers},
                    timeout=15_000)
    qtbot.waitUntil(lambda: not hint.isVisible(), timeout=2_000)
    for w in list(window.roster.workers):
        if w.alive:
            window.engine.terminate(w.id, kill_now=True).result(5)


def test_the_empty_window_has_a_clock_and_a_mib_scale(qtbot, make_window) -> None:
    import re

    window = make_window()
    plot = window.plot
    (t0, t1), (y0, y1) = plot.view_box.viewRange()
    assert t1 - t0 >= 59 and y0 == 0 and y1 >= 16  # a minute of clock, 16 MiB of scale
    axis = plot.date_axis
    plot.plot_widget.grab()  # an axis learns its font's size when it is first drawn
    labels = [text for spacing, values in axis.tickValues(t0, t1, 800) for text in axis.tickStrings(values, 1.0, spacing)]
    assert labels and all(re.fullmatch(r"\d\d:\d\d(:\d\d)?", text) for text in labels), labels
