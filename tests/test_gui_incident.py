"""Export incident… and the PNG exports from the live window, on real workers.

(An OOM-killed worker's incident, with the kernel's lines, from the live window and from its
replay, is in test_gui_record.py: it needs a cgroup.)"""

from __future__ import annotations

import csv
import json
import sys

import pytest

from conftest import PY
from gui_helpers import GUI_MARKS, HOLDER, confirmer, make_window  # noqa: F401 (fixtures)
from oomscope.core.launch import LaunchSpec
from oomscope.core.sizes import parse_level
from oomscope.core.thresholds import ThresholdConfig, thresholds_from_json
from test_gui_record_support import assert_plausible_png, png_facts

pytestmark = GUI_MARKS

# Holds its 16 MiB at a gate until the window has a sample of them, then gives up with code 3.
DIES = ("import sys\nheld = bytearray(16 << 20)\nheld[::4096] = b'x' * len(held[::4096])\n"
        "print('about to give up', file=sys.stderr, flush=True)\n{wait}\nsys.exit(3)\n")


def test_incident_of_a_worker_that_exited(qtbot, make_window, tmp_path, gate, monkeypatch) -> None:
    from oomscope.core.recording.export import SAMPLE_COLUMNS
    from oomscope.gui import incident
    from oomscope.gui.palette import worker_rgb
    from oomscope.gui.qt import QtGui

    framed: list[tuple[bool, int]] = []  # the incident's own plot as framed: (legend widget shown, width)
    real_framed_picture = incident.framed_picture

    def framing(plot, title=None):
        framed.append((plot.legend.isVisible(), plot.plot_widget.width()))
        return real_framed_picture(plot, title)

    monkeypatch.setattr(incident, "framed_picture", framing)

    held = gate()
    window = make_window(thresholds=ThresholdConfig(warn=parse_level("8MiB"), crit=parse_level("1GiB")))
    window.launch(LaunchSpec((PY, "-c", DIES.format(wait=held.wait_code)), name="dies"))
    window.launch(LaunchSpec((PY, "-c", HOLDER.format(mib=4)), name="holder"))
    qtbot.waitUntil(lambda: len(window.roster.workers) == 2, timeout=10_000)
    dies, holder = window.roster.workers
    qtbot.waitUntil(lambda: len(dies.series) > 0 and dies.series.values("anon").max() > 16 << 20, timeout=30_000)
    held.open()
    qtbot.waitUntil(lambda: not dies.alive and len(holder.series) > 3, timeout=30_000)

    # Enabled for a dead worker only: in the File menu and the table's context menu.
    window.select_worker(holder.id)
    assert not window.export_incident_action.isEnabled()
    assert window.export_incident(holder.id, tmp_path) is None
    assert "has not exited" in window.message_bar.history[-1]
    window.select_worker(dies.id)
    assert window.export_incident_action.isEnabled()
    menu = window.table_menu()
    assert window.export_incident_action in menu.actions()
    menu.close()

    folder = window.export_incident(dies.id, tmp_path)
    assert folder is not None
    stamp = folder.name.rsplit("-", 2)
    assert folder.name.startswith(f"incident-dies-{dies.ref.pid}-") and len(stamp[1]) == 8 and len(stamp[2]) == 6
    assert sorted(p.name for p in folder.iterdir()) == ["README.txt", "cause.json", "kernel.log", "plot.png",
                                                        "samples.csv", "timeline.png"]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []

    with (folder / "samples.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == SAMPLE_COLUMNS
    times = [float(r["t"]) for r in rows]
    assert len(rows) == len(dies.series) and times == sorted(times)
    assert times == pytest.approx(list(dies.series.times()), abs=1e-6)
    assert [int(r["rss"]) for r in rows] == [int(v) for v in dies.series.values("rss")]
    assert max(int(r["anon"]) for r in rows) > 16 << 20
    assert {r["swap"] for r in rows} == {""}  # the window's history does not hold it: empty, not made up

    cause = json.loads((folder / "cause.json").read_text())
    assert dies.exit is not None
    assert (cause["cause"], cause["exit_code"], cause["signal"]) == ("exit", 3, None) == (
        dies.cause, dies.exit.exit_code, dies.exit.signal)
    assert cause["evidence"] == list(dies.evidence)
    assert cause["worker"]["pid"] == dies.ref.pid and cause["worker"]["cmd"] == list(dies.ref.cmd)
    assert cause["died_at"] == dies.exit.t and cause["exit_event"]["event"] == "worker_exited"
    assert "about to give up" in cause["stderr_tail"]
    # The thresholds in the codec's form (as the levels event and a session's settings), with text.
    assert cause["thresholds"]["warn"] == {"bytes": 8 << 20} and cause["level_at_death"] == dies.level
    assert thresholds_from_json(cause["thresholds"]) == window.thresholds
    assert cause["thresholds"]["text"].startswith("warning 8.0 MiB")
    assert cause["source"]["kind"] == "live"

    log = (folder / "kernel.log").read_text()
    assert "# 1. No kernel OOM kill record names this worker (cause: exit)" in log
    readme = (folder / "README.txt").read_text()
    for name in ("cause.json", "samples.csv", "kernel.log", "plot.png", "timeline.png"):
        assert name in readme
    assert_plausible_png(folder / "plot.png", min_width=1200, min_height=500)
    # The curves take the plot's whole width (no legend widget beside them); the legend is the
    # picture's own, under the curves: both workers' colours in its bottom strip.
    [(legend_widget, curves_width)] = framed
    assert not legend_widget and curves_width > incident.PLOT_SIZE_PX[0] - 40, framed
    picture = QtGui.QImage(str(folder / "plot.png"))
    strip = {picture.pixelColor(x, y).getRgb()[:3] for y in range(picture.height() - 48, picture.height())
             for x in range(0, picture.width(), 2)}
    assert {worker_rgb(dies.color_index), worker_rgb(holder.color_index)} <= strip
    assert_plausible_png(folder / "timeline.png", min_width=1200, min_height=200)

    again = window.export_incident(dies.id, tmp_path)
    assert again is not None and again.name == folder.name + "-2"
    assert window.export_incident(dies.id, tmp_path / "missing") is None
    assert "does not exist" in window.message_bar.history[-1]


def test_plot_and_timeline_as_png(qtbot, make_window, tmp_path) -> None:
    window = make_window()
    window.launch(LaunchSpec((PY, "-c", HOLDER.format(mib=6)), name="holder"))
    qtbot.waitUntil(lambda: bool(window.roster.workers) and len(window.roster.workers[0].series) > 3, timeout=10_000)
    written = window.save_plot_png(tmp_path / "plot")  # the suffix is added
    assert written == tmp_path / "plot.png"
    width, height, _ = png_facts(written)
    assert width >= 1200 and height > 100
    assert_plausible_png(written)
    timeline = window.save_timeline_png(tmp_path / "timeline.png")
    assert timeline is not None
    assert_plausible_png(timeline, min_height=60)
    assert window.save_plot_png(tmp_path / "missing" / "plot.png") is None
    assert "does not exist" in window.message_bar.history[-1]


def test_menu_dialogs_hand_their_answer_on(qtbot, make_window, tmp_path, monkeypatch) -> None:
    from oomscope.gui.qt import QtWidgets

    window = make_window()
    window.launch(LaunchSpec((PY, "-c", "import sys; sys.exit(4)"), name="quick"))
    qtbot.waitUntil(lambda: bool(window.roster.workers) and not window.roster.workers[0].alive, timeout=10_000)
    window.select_worker(window.roster.workers[0].id)
    monkeypatch.setattr(QtWidgets.QFileDialog, "getExistingDirectory", lambda *a, **k: str(tmp_path))
    monkeypatch.setattr(QtWidgets.QFileDialog, "getSaveFileName",
                        lambda *a, **k: (str(tmp_path / "chosen.png"), ""))
    window.export_incident_action.trigger()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("incident-quick-")] != []
    window.save_plot_action.trigger()
    assert (tmp_path / "chosen.png").exists()
    # The next dialog starts where the user saved last.
    assert window.settings.value("files/incidents") == str(tmp_path)

    # Prometheus as a data source comes from gui/fleet.py; without it the menu says so.
    monkeypatch.setitem(sys.modules, "oomscope.gui.fleet", None)
    window.prometheus_action.trigger()
    assert "Prometheus as a data source is not available" in window.message_bar.history[-1]
