"""The worker tree model: Qt's model contract (qtmodeltester) and real engine events."""

from __future__ import annotations

import time

import pytest

from conftest import PY
from gui_helpers import GUI_MARKS, HOLDER
from oomscope.core.events import Sample, Samples, Threshold, WorkerExited, WorkerRef, WorkerStarted
from oomscope.core.launch import LaunchSpec

pytestmark = GUI_MARKS


def _ref(n: int) -> WorkerRef:
    return WorkerRef(f"w{n}", 1000 + n, 1.0, f"job{n}", (f"job{n}", "--x"), True)


def test_model_passes_qtmodeltester_with_workers_threads_and_exits(qapp, qtmodeltester) -> None:
    from oomscope.gui.models import COL_RSS, COL_STATE, WorkerFilterProxy, WorkerTreeModel
    from oomscope.gui.roster import Roster, ThreadState

    roster = Roster()
    model = WorkerTreeModel(roster)
    for n in (1, 2, 3):
        model.add_worker(WorkerStarted(time.time(), _ref(n), cgroup=None, cgroup_limit=256 << 20))
    now = time.time()
    roster.on_samples(Samples(now, tuple(Sample(_ref(n), n << 24, n << 23, 0, None, 256 << 20) for n in (1, 2, 3))))
    roster.on_threshold(Threshold(now, _ref(2), "critical", "rss", 2 << 24, 1 << 24))
    roster.on_exit(WorkerExited(now, _ref(3), cause="oom-kill", exit_code=None, signal="SIGKILL"))
    # A worker with thread rows, as per-thread heap reports will bring them.
    model.beginInsertRows(model.index(0, 0), 0, 1)
    roster.workers[0].threads.extend([ThreadState(1, 10 << 20, 64 << 20), ThreadState(2)])
    model.endInsertRows()
    model.refresh_values()
    # With the plot's visibility shared: a check box per worker row, none on thread rows.
    from oomscope.gui.models import COL_NAME
    from oomscope.gui.qt import Qt
    from oomscope.gui.visibility import CurveVisibility

    seen = CurveVisibility()
    model.set_visibility(seen)
    seen.set_hidden("w2", True)
    qtmodeltester.check(model, force_py=True)
    proxy = WorkerFilterProxy()
    proxy.setSourceModel(model)
    proxy.share_with(seen)
    qtmodeltester.check(proxy, force_py=True)
    check = Qt.ItemDataRole.CheckStateRole
    assert Qt.CheckState(model.data(model.index(1, COL_NAME), check)) == Qt.CheckState.Unchecked
    assert Qt.CheckState(model.data(model.index(0, COL_NAME), check)) == Qt.CheckState.Checked
    assert model.data(model.index(0, COL_NAME, model.index(0, 0)), check) is None
    assert not model.flags(model.index(0, COL_NAME, model.index(0, 0))) & Qt.ItemFlag.ItemIsUserCheckable
    assert model.setData(model.index(1, COL_NAME), Qt.CheckState.Checked, check) and not seen.is_hidden("w2")
    proxy.setFilterFixedString("job3")
    assert seen.filtered_out("w1") and not seen.filtered_out("w3") and not seen.shown("w2")
    proxy.setFilterFixedString("")
    assert seen.passes_filter is None and seen.shown("w1")

    assert model.rowCount(model.index(0, 0)) == 2
    assert model.data(model.index(1, COL_STATE)) == "critical"
    assert model.data(model.index(2, COL_STATE)) == "exited: oom-kill (SIGKILL)"
    assert model.data(model.index(0, COL_RSS)) == "16.0 MiB"
    proxy.setFilterFixedString("job2")
    assert proxy.rowCount() == 1


def test_model_follows_real_engine_events(qtbot, make_engine) -> None:
    from oomscope.gui.bridge import EngineBridge
    from oomscope.gui.models import COL_RSS, COL_STATE, WorkerTreeModel
    from oomscope.gui.roster import Roster

    engine, _log = make_engine(interval_s=0.05)
    roster = Roster()
    model = WorkerTreeModel(roster)
    bridge = EngineBridge(engine)
    bridge.worker_added.connect(model.add_worker)
    bridge.samples_added.connect(lambda ev: (roster.on_samples(ev), model.refresh_values()))
    bridge.worker_exited.connect(lambda ev: model.worker_changed(roster.on_exit(ev)[0]))
    bridge.start()
    ref = engine.launch(LaunchSpec((PY, "-c", HOLDER.format(mib=24)))).result(10)
    qtbot.waitUntil(lambda: model.rowCount() == 1, timeout=10_000)
    # The holder touches 24 MiB: wait until the table says so.
    qtbot.waitUntil(lambda: roster.workers[0].last is not None and roster.workers[0].last.rss > 24 << 20,
                    timeout=10_000)
    assert model.data(model.index(0, COL_RSS)).endswith("MiB")
    assert model.data(model.index(0, COL_STATE)) == "running"
    with qtbot.waitSignal(model.dataChanged, timeout=10_000):
        engine.terminate(ref.id, kill_now=True).result(5)
    qtbot.waitUntil(lambda: model.data(model.index(0, COL_STATE)).startswith("exited"), timeout=10_000)
    assert model.data(model.index(0, COL_STATE)) == "exited: terminated (SIGKILL, by user)"
    bridge.stop()


@pytest.mark.parametrize("metric", ["rss", "anon"])
def test_percent_column_divides_what_the_limit_counts(qapp, metric: str) -> None:
    """The cgroup's usage where the sample has it, else anon RSS, whatever the plotted metric:
    RSS counts shared file pages the cgroup may not be charged for (live workers read 111-135 %
    of a hard limit that way)."""
    from oomscope.gui.models import COL_PERCENT, WorkerTreeModel
    from oomscope.gui.roster import Roster

    roster = Roster()
    model = WorkerTreeModel(roster)
    model.add_worker(WorkerStarted(1.0, _ref(1), cgroup="/x", cgroup_limit=100 << 20))
    model.add_worker(WorkerStarted(1.0, _ref(2), cgroup="/y", cgroup_limit=100 << 20))
    roster.on_samples(Samples(2.0, (Sample(_ref(1), 150 << 20, 25 << 20, 0, None, 100 << 20),
                                    Sample(_ref(2), 150 << 20, 25 << 20, 0, 40 << 20, 100 << 20))))
    model.set_metric(metric)
    assert model.data(model.index(0, COL_PERCENT)) == "25 %"  # no usage known: anon RSS
    assert model.data(model.index(1, COL_PERCENT)) == "40 %"  # the cgroup's usage


def test_thread_heap_reports_become_child_rows(qapp, qtmodeltester) -> None:
    from oomscope.core.events import Heap, ThreadExited
    from oomscope.gui.models import COL_HEAP, COL_STATE, WorkerFilterProxy, WorkerTreeModel
    from oomscope.gui.roster import Roster

    roster = Roster()
    model = WorkerTreeModel(roster)
    model.add_worker(WorkerStarted(1.0, _ref(1)))
    proxy = WorkerFilterProxy()
    proxy.setSourceModel(model)
    for tid in (1, 2, 3, 2):
        model.apply_heap(Heap(2.0, _ref(1), 1001, tid, tid << 20, 8 << 20, 64 << 20, is_main=False))
    model.apply_heap(Heap(2.0, _ref(1), 1001, 0, 5 << 20, 8 << 20, 64 << 20))  # main thread: no row
    roster.on_thread_exit(ThreadExited(3.0, _ref(1), 1001, 3, "heap-oom"))
    parent = model.index(0, 0)
    assert model.rowCount(parent) == 3
    assert model.data(model.index(2, COL_STATE, parent)) == "exited: heap-oom"
    assert model.data(model.index(0, COL_HEAP, parent)) == "1.0 MiB / 64.0 MiB"
    assert proxy.rowCount(proxy.index(0, 0)) == 3  # the proxy saw each insertion once
    qtmodeltester.check(model, force_py=True)
    qtmodeltester.check(proxy, force_py=True)
