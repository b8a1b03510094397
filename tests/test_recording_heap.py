"""Heap reports in the session file: packed many to a row, rebuilt one by one.

A real engine launches a Node.js worker whose worker threads report their heaps (and a Python
worker whose reporter says ``runtime`` python), the recorder writes the session, and the file
must give back every ``Heap`` event with the very field values, in the engine's order among
the other events — and ``heap.csv`` one row per report, as before the reports were packed.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from conftest import PY
from test_heap_support import NODE, needs_node
from test_recording import Notices, Pump, as_json
from oomscope.core.engine import EngineConfig
from oomscope.core.events import Event, Heap, KernelLineRead, Samples, Stopped, WorkerRef, WorkerStarted
from oomscope.core.launch import LaunchSpec
from oomscope.core.recording import SessionFile, open_recorder
from oomscope.core.recording.export import export_csv, export_json
from oomscope.core.recording.heappack import in_order, pack_rows

MiB = 1 << 20

THREADS = r"""
const { Worker, isMainThread, workerData } = require('worker_threads');
if (isMainThread) {
  for (const n of [1, 4, 16]) new Worker(__filename, { workerData: n });
  setInterval(() => {}, 1000);
} else {
  const keep = [];
  setInterval(() => { for (let i = 0; i < workerData * 500; i++) keep.push({ i, s: 'x' + i }); }, 50);
}
"""

HEAP_HEADER = ["session_id", "seq", "t", "worker", "pid", "thread_id", "heap_used", "heap_total", "heap_limit",
               "old_space_used", "old_space_limit", "external", "array_buffers", "is_main", "stale", "runtime"]


def _cell(v: Any) -> str:
    """A value as the per-report heap table wrote it to CSV (bools were stored as 0/1)."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(int(v))
    return str(v)


@needs_node
def test_heap_reports_of_node_threads_come_back_exactly_and_in_order(make_engine, tmp_path: Path) -> None:
    eng, log = make_engine(heap_interval_s=0.1)
    path = tmp_path / "heap.db"
    notices = Notices()
    # Commits every 0.3 s with reports every 0.1 s: a thread reports several times per row.
    rec = open_recorder(path, eng.config, notices, command_line=["test"], commit_interval_s=0.3)
    app = tmp_path / "app.js"
    app.write_text(THREADS)
    node = eng.launch(LaunchSpec((NODE, str(app)))).result(10)
    py = eng.launch(LaunchSpec((PY, "-c", "import time\nb = []\nfor _ in range(200):\n"
                                           "    b.append(bytearray(1 << 16)); time.sleep(0.01)\n"
                                           "time.sleep(60)"))).result(10)
    pump = Pump(log, rec)
    counts: dict[tuple[str, int], int] = {}

    def enough(e: Event) -> bool:
        if isinstance(e, Heap):
            counts[(e.worker.id, e.thread_id)] = counts.get((e.worker.id, e.thread_id), 0) + 1
        node_threads = [n for (w, _), n in counts.items() if w == node.id]
        return len(node_threads) == 4 and min(node_threads) >= 8 and counts.get((py.id, 0), 0) >= 3

    pump.wait_for(enough, timeout=30)
    for ref in (node, py):
        eng.terminate(ref.id)
        pump.wait_for(lambda e, ref=ref: e.kind == "worker_exited" and e.worker.id == ref.id)
    eng.stop()
    pump.wait_for(lambda e: isinstance(e, Stopped))
    rec.close()
    assert rec.failed is None and not notices.seen

    original = [e for e in log.events if not isinstance(e, Stopped)]
    heaps = [e for e in original if isinstance(e, Heap)]
    assert {h.runtime for h in heaps} == {"node", "python"}
    assert sum(1 for h in heaps if h.worker.id == node.id and not h.is_main) >= 24
    with SessionFile.open(path) as f:
        back = list(f.events())
        # Exact field values (floats bit for bit, bools as bools) and the same order.
        assert [e for e in back if isinstance(e, Heap)] == heaps
        assert [type(e) for e in back] == [type(e) for e in original]
        assert as_json(back) == as_json(log.events)
        without_samples = [e for e in f.events(samples=False)]
        # Exactly, but for a kernel line: the engine's event carries the line as decoded, of
        # which a session file keeps what the kernel log pane shows (text, flags, kernel time).
        assert [_kept(e) for e in without_samples] == [_kept(e) for e in original if not isinstance(e, Samples)]
        # Packed: far fewer rows than reports, every report in one of them.
        db = sqlite3.connect(path)
        try:
            rows, reports = db.execute("SELECT count(*), sum(n) FROM heap").fetchone()
        finally:
            db.close()
        assert reports == len(heaps) and rows <= rec.batches * 2 < len(heaps) / 3, (rows, rec.batches)

        out = tmp_path / "csv"
        export_csv(f, out)
        with open(out / "heap.csv", newline="", encoding="utf-8") as fh:
            table = list(csv.reader(fh))
        # seq: the recorder numbers every event it takes, in order, from 1.
        seq_of = {id(e): i for i, e in enumerate(original, 1)}
        expected = [[str(rec.session_id), str(seq_of[id(h)]), repr(h.t), h.worker.id, str(h.pid), str(h.thread_id),
                     *(_cell(getattr(h, name)) for name in HEAP_HEADER[6:])] for h in heaps]
        assert table[0] == HEAP_HEADER
        assert table[1:] == expected

        text = io.StringIO()
        export_json(f, text)
        doc = json.loads(text.getvalue())
        exported = [e for e in doc["sessions"][0]["events"] if e["event"] == "heap"]
        assert exported == json.loads(json.dumps([h.to_json() for h in heaps]))


def _ref(n: int) -> WorkerRef:
    return WorkerRef(f"w{n}", 50_000 + n * 10, 1.0, "node", ("node", "app.js"), True, n, 1)


def test_a_damaged_heap_row_is_reported_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    rec = open_recorder(path, EngineConfig(), Notices())
    ref = _ref(1)
    rec(WorkerStarted(1.0, ref, None, None))
    for k in range(5):
        rec(Heap(2.0 + k, ref, ref.pid, 0, (10 + k) * MiB, 20 * MiB, 4096 * MiB))
    rec.close()
    with SessionFile.open(path) as f:
        assert sum(isinstance(e, Heap) for e in f.events()) == 5
    db = sqlite3.connect(path)
    db.execute("UPDATE heap SET n = n + 1")
    db.commit()
    db.close()
    # The damaged row's reports are left out and named; the rest of the session reads on.
    with SessionFile.open(path) as f:
        events = list(f.events())
        assert not any(isinstance(e, Heap) for e in events) and isinstance(events[0], WorkerStarted)
        damage, = f.damage
        assert re.fullmatch(r"session 1: the heap reports of batch \d+ are left out \(CodecError: heap row "
                            r"says 6 reports, its blob holds 5\)", damage), damage
    db = sqlite3.connect(path)
    db.execute("UPDATE heap SET n = n - 1, data = substr(data, 1, 10)")
    db.commit()
    db.close()
    with SessionFile.open(path) as f:
        assert not any(isinstance(e, Heap) for e in f.events())
        damage, = f.damage
        assert "the heap reports of batch" in damage and "CodecError" in damage


# ------------------------------------------------------------------ the packing alone

sizes = st.integers(0, 1 << 50)
maybe = st.one_of(st.none(), sizes)
report = st.tuples(
    st.integers(1, 6),                                  # worker
    st.integers(-3000, 3000),                           # pid offset (a descendant of a shell worker)
    st.integers(0, 40),                                 # thread id
    st.floats(0.0, 4e9, allow_nan=False),               # time
    sizes, sizes, sizes, maybe, maybe, maybe, maybe,    # heap figures
    st.booleans(), st.booleans(), st.sampled_from(["node", "python", "bun"]),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(report, max_size=30), min_size=1, max_size=4), st.integers(1, 1 << 40),
       st.lists(st.integers(1, 50), min_size=120, max_size=120))
def test_packed_rows_give_back_every_report_in_order(batches: list[list[tuple[Any, ...]]], first_seq: int,
                                                     gaps: list[int]) -> None:
    refs = {n: _ref(n) for n in range(1, 7)}
    seq, gap = first_seq, iter(gaps)
    originals: list[tuple[int, Heap]] = []
    stored: list[tuple[int, str, bytes, int]] = []
    for number, batch in enumerate(batches):
        pending = []
        for wid, offset, thread_id, t, *figures, main, stale, runtime in batch:
            ref = refs[wid]
            h = Heap(t, ref, ref.pid + offset, thread_id, *figures, main, stale, runtime)
            pending.append((seq, wid, h))
            originals.append((seq, h))
            seq += next(gap)
        for _, batch_no, _, n, runtime, data in pack_rows(7, number, pending):
            assert batch_no == number
            stored.append((number, runtime, data, n))
    assert len(stored) == sum(len({r[-1] for r in b}) for b in batches)  # one row per batch and runtime
    back = list(in_order(stored, refs))
    assert back == originals
    assert all(type(h.is_main) is bool and type(h.stale) is bool for _, h in back)
    assert all(math.copysign(1.0, h.t) == 1.0 for _, h in back)


def _kept(ev: Event) -> object:
    if isinstance(ev, KernelLineRead):
        return ("kernel_line", ev.t, ev.line.text, ev.oom, ev.line.history, ev.line.kernel_time_s)
    return ev
