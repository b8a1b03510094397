"""The Node.js reporter in real node processes, over a real HeapServer socket."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_heap_support import NODE, Collector, descendant_of, needs_node, run

from oomscope.core.heap.inject import inject_node
from oomscope.core.heap.server import HeapServer

pytestmark = needs_node
MiB = 1 << 20


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector(HeapServer(is_allowed=descendant_of(os.getpid())))
    yield c
    c.close()


def node_cmd(code: str, socket_path: str, interval_s: float = 0.1) -> tuple[list[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NODE_", "OOMSCOPE_"))}
    assert NODE is not None
    return inject_node([NODE, "-e", code], env, socket_path, interval_s)


THREE_SIZES = r"""
const { Worker } = require('worker_threads');
for (const mb of [8, 40, 80]) {
  const w = new Worker(`
    // Doubles: 8 bytes each, kept alive for the whole test.
    globalThis.keep = Array.from({ length: ${mb} * 131072 }, (_, i) => i + 0.5);
    // Collect the garbage of building it, so heap_used is what the thread keeps.
    require('v8').setFlagsFromString('--expose-gc');
    require('vm').runInNewContext('gc')();
    setInterval(() => {}, 1000);
  `, { eval: true });
  console.log(JSON.stringify({ threadId: w.threadId, mb }));
}
"""


def test_three_worker_threads_are_told_apart(collector: Collector,
                                             children: Callable[..., subprocess.Popen[bytes]]) -> None:
    argv, env = node_cmd(THREE_SIZES, collector.server.socket_path)
    p = children(argv, env=env, stdout=subprocess.PIPE)
    assert p.stdout is not None
    sizes = {}
    for _ in range(3):
        row = json.loads(p.stdout.readline())
        sizes[row["threadId"]] = row["mb"]
    assert len(sizes) == 3 and 0 not in sizes

    def settled(c: Collector) -> bool:
        return all(any(r.heap_used > sizes[t] * MiB for r in c.reports(p.pid, t)) for t in sizes)

    collector.wait_for(settled)
    hellos = collector.hellos(p.pid)
    # Preloaded twice (command line and NODE_OPTIONS), each thread still says hello once.
    assert sorted(h.thread_id for h in hellos) == [0, *sorted(sizes)]
    assert all(h.kind == "node" and h.node_version and h.node_version.startswith("v") for h in hellos)
    main = next(h for h in hellos if h.thread_id == 0)
    assert main.is_main and main.resource_limits is None
    for h in hellos:
        if h.thread_id:
            assert not h.is_main and h.resource_limits is not None
            assert h.resource_limits["maxOldGenerationSizeMb"] > 0

    latest = {t: collector.reports(p.pid, t)[-1] for t in sizes}
    by_size = sorted(sizes, key=lambda t: sizes[t])
    used = [latest[t].heap_used for t in by_size]
    assert used == sorted(used) and len(set(used)) == 3
    for t in sizes:
        r = latest[t]
        assert r.rss is None  # only the main thread speaks for the process
        assert r.heap_total >= r.heap_used and r.heap_limit > 0
        assert r.old_space_used is not None and r.old_space_limit is not None
        assert r.old_space_limit < r.heap_limit
    main_report = collector.wait_for(lambda c: c.reports(p.pid, 0))[-1]
    assert main_report.rss is not None and main_report.rss > sum(sizes.values()) * MiB


LEAKER = r"""
const { Worker } = require('worker_threads');
const w = new Worker(`
  const keep = [];
  setInterval(() => { for (let i = 0; i < 20000; i++) keep.push({ i, s: 'x' + i }); }, 5);
`, { eval: true, resourceLimits: { maxOldGenerationSizeMb: 16 } });
HANDLER
w.on('exit', (code) => console.log('worker exit', code));
setTimeout(() => console.log('main alive'), 300).unref();
const keepAlive = setInterval(() => {}, 1000);
w.on('exit', () => setTimeout(() => { console.log('main done'); clearInterval(keepAlive); }, 400));
"""


def test_worker_heap_oom_is_reported_while_the_process_lives(collector: Collector) -> None:
    code = LEAKER.replace("HANDLER", "w.on('error', (e) => console.log('handled', e.code));")
    argv, env = node_cmd(code, collector.server.socket_path)
    p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        ended = collector.wait_for(lambda c: [e for e in c.ended(p.pid) if e.cause == "heap-oom"])
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    assert b"handled ERR_WORKER_OUT_OF_MEMORY" in out and b"main done" in out
    (e,) = ended
    assert e.thread_id != 0 and e.message is not None and "memory limit" in e.message
    # The worker reported against its own old-generation limit before it died.
    worker_reports = collector.reports(p.pid, e.thread_id)
    hello = next(h for h in collector.hellos(p.pid) if h.thread_id == e.thread_id)
    assert hello.resource_limits is not None and hello.resource_limits["maxOldGenerationSizeMb"] == 16
    assert worker_reports and worker_reports[-1].old_space_limit == 16 * MiB
    # Its own connection ended as well (cause None there: the dying thread cannot explain).
    assert any(x.thread_id == e.thread_id and x.cause is None for x in collector.ended(p.pid))


def test_unhandled_worker_heap_oom_behaves_as_without_the_reporter(collector: Collector,
                                                                   tmp_path: Path) -> None:
    code = LEAKER.replace("HANDLER", "")
    argv, env = node_cmd(code, collector.server.socket_path)
    plain_env = {k: v for k, v in env.items() if not k.startswith(("NODE_", "OOMSCOPE_"))}
    assert NODE is not None
    plain = run([NODE, "-e", code], plain_env)
    # Served while it runs, as the engine would: a peer that is gone before accept() is refused.
    with open(tmp_path / "out", "wb") as out, open(tmp_path / "err", "wb") as err:
        p = subprocess.Popen(argv, env=env, stdout=out, stderr=err)
        try:
            collector.wait_for(lambda c: [e for e in c.ended(p.pid) if e.cause == "heap-oom"])
            p.wait(timeout=20)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    stdout, stderr = (tmp_path / "out").read_bytes(), (tmp_path / "err").read_bytes()
    assert plain.returncode != 0  # node rethrows an unhandled 'error': the process dies
    # 'main alive' is printed only if the worker took longer than 300 ms to run out of heap: on a
    # busy machine one run may and the other not. Everything else must be the same.
    def timed(out: bytes) -> bytes:
        return out.replace(b"main alive\n", b"")

    assert (p.returncode, timed(stdout), stderr) == (plain.returncode, timed(plain.stdout), plain.stderr)
    assert b"ERR_WORKER_OUT_OF_MEMORY" in stderr


ISOLATED = r"""
const { Worker } = require('worker_threads');
const body = 'globalThis.keep = new Array(1000).fill(1); setInterval(() => {}, 1000);';
const a = new Worker(body, { eval: true, env: {} });
const b = new Worker(body, { eval: true, execArgv: [] });
console.log(JSON.stringify({ envEmpty: a.threadId, execArgvEmpty: b.threadId }));
"""


def test_workers_with_empty_env_or_empty_execargv_still_report(
        collector: Collector, children: Callable[..., subprocess.Popen[bytes]]) -> None:
    argv, env = node_cmd(ISOLATED, collector.server.socket_path)
    p = children(argv, env=env, stdout=subprocess.PIPE)
    assert p.stdout is not None
    ids = json.loads(p.stdout.readline())
    for tid in ids.values():
        collector.wait_for(lambda c, tid=tid: c.reports(p.pid, tid))


BEHAVIOUR = r"""
const { Worker } = require('worker_threads');
console.log('start');
console.error('to stderr');
const w = new Worker("require('worker_threads').parentPort.postMessage(21 * 2)", { eval: true });
w.on('message', (m) => { console.log('worker says', m); });
w.on('exit', (c) => { console.log('worker exit', c); process.exitCode = 3; });
"""


@pytest.mark.parametrize("where", ["missing", "regular-file", "directory"])
def test_bad_socket_path_leaves_the_app_unchanged(tmp_path: Path, where: str) -> None:
    bad = tmp_path / "nothing-here.sock"
    if where == "regular-file":
        bad.write_text("not a socket")
    elif where == "directory":
        bad.mkdir()
    assert NODE is not None
    code = BEHAVIOUR
    argv, env = node_cmd(code, str(bad))
    plain_env = {k: v for k, v in env.items() if not k.startswith(("NODE_", "OOMSCOPE_"))}
    plain = run([NODE, "-e", code], plain_env)
    injected = run(argv, env)
    assert plain.returncode == 3
    assert (injected.returncode, injected.stdout, injected.stderr) == \
        (plain.returncode, plain.stdout, plain.stderr)


def test_process_exits_as_soon_as_the_app_is_done(collector: Collector) -> None:
    # Timer and socket are unref'd: a connected reporter never keeps node (or a worker) alive.
    code = r"""
const { Worker } = require('worker_threads');
const w = new Worker("require('worker_threads').parentPort.once('message', () => {})", { eval: true });
process.stdin.once('data', () => { process.stdin.destroy(); w.postMessage('done'); console.log('bye'); });
"""
    argv, env = node_cmd(code, collector.server.socket_path, interval_s=30.0)
    p = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        collector.wait_for(lambda c: len(c.hellos(p.pid)) == 2)
        out, _ = p.communicate(b"go\n", timeout=10)
        collector.wait_for(lambda c: len(c.ended(p.pid)) == 2)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert (p.returncode, out) == (0, b"bye\n")


@pytest.mark.parametrize(("flags", "old_mib", "young_mib"), [
    (["--max-old-space-size=300"], 300, None),
    (["--max-semi-space-size=4"], None, 12),  # three semi-spaces of 4 MiB
    (["--max-old-space-size=100", "--max-semi-space-size=2"], 100, 6),
])
def test_main_thread_old_generation_limit(collector: Collector, flags: list[str],
                                          old_mib: int | None, young_mib: int | None) -> None:
    assert NODE is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NODE_", "OOMSCOPE_"))}
    argv, env = inject_node([NODE, *flags, "-e", "process.stdin.resume()"], env,
                            collector.server.socket_path, 0.05)
    p = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE)
    try:
        r = collector.wait_for(lambda c: c.reports(p.pid))[-1]
        p.communicate(b"", timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert r.old_space_limit is not None
    if old_mib is not None:
        assert r.old_space_limit == old_mib * MiB
    if young_mib is not None:
        assert r.heap_limit - r.old_space_limit == young_mib * MiB
