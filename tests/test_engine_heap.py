"""Heap reports through the engine: real node and python workers, the reporter injected at launch."""

from __future__ import annotations

import shutil

import pytest

from conftest import PY, v1_memory_writable
from oomscope.core.launch import LaunchSpec
from oomscope.core.sizes import parse_level
from oomscope.core.thresholds import ThresholdConfig

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")

THREADS = r"""
const { Worker, isMainThread, workerData } = require('worker_threads');
if (isMainThread) {
  for (const n of [1, 4, 16]) new Worker(__filename, { workerData: n });
  setInterval(() => {}, 1000);
} else {
  const keep = [];
  for (let i = 0; i < workerData * 40000; i++) keep.push({ i, s: 'x' + i });
  setInterval(() => keep.length, 1000);
}
"""

THREAD_HEAP_OOM = r"""
const { Worker, isMainThread } = require('worker_threads');
if (isMainThread) {
  const w = new Worker(__filename, { resourceLimits: { maxOldGenerationSizeMb: 16 } });
  w.on('error', (e) => console.log('worker error', e.code));
  setInterval(() => {}, 1000);
} else {
  const a = []; setInterval(() => { for (let i = 0; i < 20000; i++) a.push({ i, s: 'y' + i }); }, 5);
}
"""


def script(tmp_path, code: str) -> str:
    """Worker threads need a real file (``new Worker(__filename)`` is refused under ``-e``)."""
    path = tmp_path / "app.js"
    path.write_text(code)
    return str(path)


def test_three_threads_are_told_apart_and_summed(make_engine, tmp_path) -> None:
    eng, log = make_engine(heap_interval_s=0.2)
    ref = eng.launch(LaunchSpec((NODE, script(tmp_path, THREADS)))).result(10)
    latest: dict[int, object] = {}

    def all_four(e) -> bool:
        if e.kind == "heap" and e.worker.id == ref.id:
            latest[e.thread_id] = e
        return len(latest) == 4 and all(h.heap_used > 0 for h in latest.values())

    log.wait_for(all_four, timeout=30)
    workers = sorted((h for t, h in latest.items() if t != 0), key=lambda h: h.thread_id)
    assert [h.is_main for h in latest.values()].count(True) == 1
    used = [h.heap_used for h in workers]
    assert used == sorted(used) and used[2] > 2 * used[0], used  # 1x, 4x, 16x the objects
    assert all(h.old_space_limit and h.old_space_used for h in workers)
    # The process's figure is the sum over its threads (each thread's GC moves its part, so
    # compare with the biggest thread plus the main thread's floor, not an old exact sum).
    floor = max(h.heap_used for h in workers) + min(h.heap_used for h in workers)
    sample = log.wait_for(lambda e: e.kind == "samples" and any(
        s.worker.id == ref.id and s.heap_used and s.heap_used >= floor for s in e.samples), timeout=30)
    assert sample


def test_worker_thread_heap_oom_while_the_process_lives(make_engine, tmp_path) -> None:
    eng, log = make_engine(heap_interval_s=0.2)
    ref = eng.launch(LaunchSpec((NODE, script(tmp_path, THREAD_HEAP_OOM)))).result(10)
    ended = log.wait_for(lambda e: e.kind == "thread_exited" and e.worker.id == ref.id, timeout=60)
    assert ended.cause == "heap-oom" and ended.thread_id >= 1
    assert not log.of("worker_exited", ref.id)
    line = log.wait_for(lambda e: e.kind == "output" and e.worker.id == ref.id)
    assert line.line == "worker error ERR_WORKER_OUT_OF_MEMORY"  # the app's own handling unchanged


def test_blocked_thread_turns_stale_not_zero(make_engine, tmp_path) -> None:
    code = r"""
const { Worker, isMainThread } = require('worker_threads');
if (isMainThread) { new Worker(__filename); setInterval(() => {}, 1000); }
else { setTimeout(() => { for (;;) {} }, 600); }
"""
    eng, log = make_engine(heap_interval_s=0.1)
    ref = eng.launch(LaunchSpec((NODE, script(tmp_path, code)))).result(10)
    stale = log.wait_for(lambda e: e.kind == "heap" and e.worker.id == ref.id and e.stale, timeout=30)
    assert stale.thread_id >= 1 and stale.heap_used > 0


@pytest.mark.skipif(not v1_memory_writable(), reason="needs a writable cgroup v1 memory controller")
def test_doctor_under_a_memory_limit(make_engine) -> None:
    eng, log = make_engine(heap_interval_s=0.2)
    ref = eng.launch(LaunchSpec((NODE, "-e", "setInterval(() => {}, 1000)"), mem_limit_bytes=256 << 20)).result(10)
    doc = log.wait_for(lambda e: e.kind == "doctor" and e.worker.id == ref.id, timeout=30)
    assert doc.suggested == "--max-old-space-size=192"
    assert "kernel will kill this worker before V8" in doc.reason
    fitted = eng.launch(LaunchSpec((NODE, "--max-old-space-size=128", "-e", "setTimeout(() => {}, 1500)"),
                                   mem_limit_bytes=256 << 20)).result(10)
    log.wait_exit(fitted.id, timeout=30)
    assert not log.of("doctor", fitted.id)


def test_heap_metric_thresholds(make_engine) -> None:
    grow = "const a = []; setInterval(() => { for (let i = 0; i < 30000; i++) a.push({ i, s: 'z' + i }); }, 20);"
    config = ThresholdConfig(warn=parse_level("40MiB"), crit=parse_level("80MiB"), metric="heap")
    eng, log = make_engine(thresholds=config, heap_interval_s=0.1, interval_s=0.1)
    ref = eng.launch(LaunchSpec((NODE, "-e", grow))).result(10)
    crit = log.wait_for(lambda e: e.kind == "threshold" and e.worker.id == ref.id and e.level == "critical", timeout=60)
    warn = log.of("threshold", ref.id)[0]
    assert (warn.level, warn.metric) == ("warning", "heap") and warn.value >= 40 << 20
    assert crit.value >= 80 << 20


def test_python_worker_reports_too(make_engine, gate) -> None:
    eng, log = make_engine(heap_interval_s=0.1)
    held = gate()  # it holds its 30 MiB until their report is seen, however slowly the reporter starts
    ref = eng.launch(LaunchSpec((PY, "-c", f"b = bytearray(30 << 20); {held.wait_code}"))).result(10)
    h = log.wait_for(lambda e: e.kind == "heap" and e.worker.id == ref.id and e.heap_used > 30 << 20, timeout=30)
    assert h.runtime == "python" and h.thread_id == 0
    held.open()
    assert log.wait_exit(ref.id).exit_code == 0


def test_anon_stands_in_for_the_heap_where_no_reporter_speaks(make_engine, children) -> None:
    from conftest import ready_child

    config = ThresholdConfig(warn=parse_level("20MiB"), metric="heap")
    eng, log = make_engine(thresholds=config)
    holder = ready_child(children, "import time; b = bytearray(40 << 20); print('ready', flush=True); time.sleep(60)")
    ref = eng.attach(holder.pid).result(10)  # attached: no reporter inside it
    warn = log.wait_for(lambda e: e.kind == "threshold" and e.worker.id == ref.id)
    assert (warn.level, warn.metric) == ("warning", "heap") and warn.value >= 40 << 20
    sample = log.wait_samples(ref.id)[-1]
    assert sample.heap_used is None and warn.value <= sample.rss
    assert sample.to_json(0.0)["heap_source"] == "anon"


FAKE_ENDS = r"""
import json, os, socket, time
s = socket.socket(socket.AF_UNIX)
s.connect(os.environ["OOMSCOPE_HEAP_SOCKET"])
for msg in ({"type": "hello", "kind": "python", "threadId": 5, "isMainThread": False},
            {"type": "end", "threadId": 7, "cause": "heap-oom", "message": "made up"},
            {"type": "end", "threadId": 5, "cause": "heap-oom", "message": "its own"}):
    s.sendall(json.dumps(msg).encode() + b"\n")
time.sleep(60)
"""


def test_a_thread_end_for_a_thread_that_never_reported_is_ignored(make_engine) -> None:
    """Any process of the worker's tree may write to the heap socket: an end with heap-oom for a
    thread that never said hello is no evidence, and is dropped with one notice; the end of a
    thread that did say hello is still a thread death."""
    eng, log = make_engine(heap_interval_s=0.2)
    ref = eng.launch(LaunchSpec((PY, "-c", FAKE_ENDS))).result(10)
    real = log.wait_for(lambda e: e.kind == "thread_exited" and e.worker.id == ref.id, timeout=20)
    assert (real.thread_id, real.cause) == (5, "heap-oom")
    assert not [e for e in log.of("thread_exited", ref.id) if e.thread_id == 7]
    notes = [e for e in log.of("notice", ref.id) if "thread 7" in e.message]
    assert len(notes) == 1 and "never reported" in notes[0].message


@pytest.mark.skipif(not v1_memory_writable(), reason="needs a writable cgroup v1 memory controller")
def test_the_doctor_tells_off_heap_growth_from_heap_growth(make_engine) -> None:
    """A worker whose memory is in Buffers gets 'a heap limit will not help', not only the heap
    limit advice (issue #15: --max-old-space-size=150 was advised for 3 MiB of heap and 186 MiB of
    Buffers); one whose memory is on the heap does not."""
    buffers = "const a = []; setInterval(() => { if (a.length < 12) a.push(Buffer.alloc(8 << 20, 1)); }, 20);"
    objects = ("const a = []; setInterval(() => { if (a.length < 900000) "
               "for (let i = 0; i < 30000; i++) a.push({ i, s: 'z' + i }); }, 20);")
    eng, log = make_engine(heap_interval_s=0.1)
    off = eng.launch(LaunchSpec((NODE, "--max-old-space-size=96", "-e", buffers), mem_limit_bytes=256 << 20)).result(10)
    on = eng.launch(LaunchSpec((NODE, "--max-old-space-size=96", "-e", objects), mem_limit_bytes=256 << 20)).result(10)
    doc = log.wait_for(lambda e: e.kind == "doctor" and e.worker.id == off.id, timeout=30)
    assert "off-heap" in doc.advice and "will not help" in doc.advice
    assert "Buffers" in doc.reason and doc.suggested == ""
    # The heap grower reaches as much memory (on its heap) without being told the same.
    log.wait_for(lambda e: e.kind == "heap" and e.worker.id == on.id and e.heap_used > 48 << 20, timeout=60)
    assert not [e for e in log.of("doctor", on.id) if "off-heap" in e.advice]
