"""`--inspect-heap`: per-thread heaps of an attached node process, and the port closed after."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from conftest import EventLog, ready_child
from oomscope.core.engine import Engine, EngineConfig
from oomscope.core.heap.inspector import own_listeners

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")

APP = r"""
const { Worker, isMainThread } = require('worker_threads');
if (isMainThread) {
  let up = 0;
  for (let i = 0; i < 2; i++) new Worker(__filename).on('online', () => { if (++up === 2) console.log('ready'); });
  setInterval(() => {}, 1000);
} else {
  setInterval(() => {}, 1000);
}
"""


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "no-pidfd"])
def test_attached_node_threads_through_the_inspector(children, tmp_path, monkeypatch, pidfd: bool) -> None:
    """Also without pidfd (forced: this kernel has it): the inspector's own process handle then
    waits on the kept stat file, and the port is still closed after."""
    if not pidfd:
        monkeypatch.setenv("OOMSCOPE_NO_PIDFD", "1")
    app = tmp_path / "app.js"
    app.write_text(APP)
    node = children([NODE, str(app)], stdout=subprocess.PIPE)
    assert node.stdout is not None and node.stdout.readline().strip() == b"ready"
    eng = Engine(EngineConfig(interval_s=0.2, heap_interval_s=0.2, inspect_heap=True)).start()
    try:
        log = EventLog(eng)
        ref = eng.attach(node.pid).result(10)
        seen: set[int] = set()
        log.wait_for(lambda e: e.kind == "heap" and e.worker.id == ref.id
                     and (seen.add(e.thread_id) or len(seen) == 3), timeout=30)
        assert 0 in seen and len(seen) == 3
        assert own_listeners(node.pid), "the inspector port is open while attached"
    finally:
        eng.stop()
    assert not own_listeners(node.pid), "the inspector port must be closed after oomscope stops"
    assert node.poll() is None  # unharmed


def test_inspect_heap_skips_a_process_that_is_not_node(children) -> None:
    sleeper = ready_child(children, "import time; print('ready', flush=True); time.sleep(60)")
    eng = Engine(EngineConfig(interval_s=0.2, inspect_heap=True)).start()
    try:
        log = EventLog(eng)
        ref = eng.attach(sleeper.pid).result(10)
        note = log.wait_for(lambda e: e.kind == "notice" and e.worker is not None and e.worker.id == ref.id)
        assert "is not node" in note.message
        assert sleeper.poll() is None  # no SIGUSR1 was sent: it would have killed python
    finally:
        eng.stop()



CLUSTER = r"""
const cluster = require('cluster');
if (cluster.isPrimary) {
  let up = 0;
  for (let i = 0; i < 3; i++) cluster.fork().on('online', () => { if (++up === 3) console.log('ready'); });
} else {
  setInterval(() => {}, 1000);
}
"""


def test_every_worker_of_a_node_cluster_is_inspected(children, tmp_path) -> None:
    """node's cluster module: three workers, all with 9229 as their inspector port. Each gets an
    inspector of its own, a notice says where, and all are closed when oomscope stops."""
    app = tmp_path / "cluster.js"
    app.write_text(CLUSTER)
    primary = children([NODE, str(app)], stdout=subprocess.PIPE)
    assert primary.stdout is not None and primary.stdout.readline().strip() == b"ready"
    eng = Engine(EngineConfig(interval_s=0.2, heap_interval_s=0.2, inspect_heap=True)).start()
    try:
        log = EventLog(eng)
        refs = eng.watch_children(primary.pid).result(10)
        assert len(refs) == 3
        ids = {r.id for r in refs}
        reported: set[str] = set()
        log.wait_for(lambda e: e.kind == "heap" and e.worker.id in ids
                     and (reported.add(e.worker.id) or reported == ids), timeout=60)
        opened = [e for e in log.events if e.kind == "notice" and "opened the inspector" in e.message]
        ports = {e.message.split("127.0.0.1:")[1].split(";")[0] for e in opened}
        assert len(opened) == 3 and len(ports) == 3, [e.message for e in opened]
        assert not [e for e in log.events if e.kind == "notice" and "taken" in e.message]
    finally:
        eng.stop()
    for r in refs:
        assert not own_listeners(r.pid), f"worker {r.pid}'s inspector must be closed after oomscope stops"
    assert primary.poll() is None
