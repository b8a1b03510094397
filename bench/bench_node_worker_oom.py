"""Node worker-thread heap OOM with and without the heap reporter: thread error or process abort?

A node worker thread created with small ``resourceLimits`` that leaks normally dies with the
catchable ``ERR_WORKER_OUT_OF_MEMORY`` 'error' on its Worker object, and the process lives on.
If V8 cannot end the isolate cleanly it aborts the whole process instead (``FATAL ERROR: Reached
heap limit``, SIGABRT). This script runs fresh node processes, each with one leaking worker
thread (maxOldGenerationSizeMb 32), alternately without and with the reporter (connected to a
live HeapServer served here), for each leak pattern, and counts the outcomes:

    $ .venv/bin/python bench/bench_node_worker_oom.py --runs 60
    node worker heap OOM, node v20.20.2, 60 runs per pattern and way, interleaved, ...
      chunks   without: 60 thread-error, 0 abort, 0 other; with: 60 thread-error, 0 abort, 0 other ...

``thread-error``: the parent saw ERR_WORKER_OUT_OF_MEMORY and the process exited 0.
``abort``: the process died of a signal or printed V8's FATAL ERROR. ``other``: anything else
(a timeout, an unexpected exit code), printed once per kind.
"""

from __future__ import annotations

import argparse
import os
import selectors
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import benchargs
from oomscope.core.heap.inject import inject_node
from oomscope.core.heap.messages import ThreadEnded
from oomscope.core.heap.server import Connection, HeapServer

LIMIT_MB = 32
# Three ways an app leaks asynchronously, so the thread's event loop turns while it fills up.
PATTERNS: dict[str, str] = {
    # Synchronous chunks of small objects, one chunk per setImmediate turn.
    "chunks": "const keep = []; (function step() { for (let i = 0; i < 20000; i++) "
              "keep.push({ i, s: 'x' + i }); setImmediate(step); })();",
    # A promise loop: a microtask turn every thousand objects.
    "promises": "const keep = []; (async () => { for (let i = 0; ; i++) { keep.push({ i, s: 'y' + i }); "
                "if (i % 1000 === 0) await null; } })();",
    # Slower: a thousand small objects a millisecond, so the thread lives a few report intervals.
    "slow": "const keep = []; setInterval(() => { for (let i = 0; i < 1000; i++) "
            "keep.push({ i, s: 'w' + i }); }, 1);",
    # Flat 256 KiB strings (large-object space) from a 1 ms timer. ('z'.repeat(n) would be a
    # tree of a few shared pieces, hardly growing the heap.)
    "strings": "const keep = []; let n = 0; setInterval(() => { for (let i = 0; i < 8; i++) "
               "keep.push(Buffer.alloc(262144, 97 + (n++ % 26)).toString('latin1')); }, 1);",
}
PROGRAM = r"""
const { Worker } = require('worker_threads');
const w = new Worker(process.argv[1], { eval: true, resourceLimits: { maxOldGenerationSizeMb: LIMIT } });
w.on('error', (e) => console.log('thread-error', e.code));
w.on('exit', (c) => console.log('thread-exit', c));
""".replace("LIMIT", str(LIMIT_MB))


@dataclass
class Tally:
    outcomes: Counter[str] = field(default_factory=Counter)
    others: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


class Pump(threading.Thread):
    """Serves a HeapServer as the engine would, counting heap-oom ends, until ``stop()``."""

    def __init__(self, server: HeapServer) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.heap_oom_pids: set[int] = set()
        self.lock = threading.Lock()
        self._halt = threading.Event()

    def run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.server.fileno(), selectors.EVENT_READ, None)
        while not self._halt.is_set():
            for key, _ in sel.select(0.1):
                conn: Connection | None = key.data
                if conn is None:
                    for c in self.server.accept():
                        sel.register(c.fileno(), selectors.EVENT_READ, c)
                    continue
                msgs, eof = conn.read()
                for m in msgs:
                    if isinstance(m, ThreadEnded) and m.cause == "heap-oom":
                        with self.lock:
                            self.heap_oom_pids.add(m.pid)
                if eof:
                    sel.unregister(conn.fileno())
                    conn.close()
        sel.close()

    def stop(self) -> None:
        self._halt.set()
        self.join()


def classify(returncode: int, out: bytes, err: bytes) -> str:
    if returncode < 0 or b"FATAL ERROR" in err:
        return "abort"
    if returncode == 0 and b"thread-error ERR_WORKER_OUT_OF_MEMORY" in out:
        return "thread-error"
    return "other"


def run_once(argv: list[str], env: dict[str, str], timeout_s: float) -> tuple[str, str, int]:
    p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        out, err = p.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        p.kill()  # our own child, by its Popen
        p.communicate()
        return "other", f"timeout after {timeout_s} s", p.pid
    kind = classify(p.returncode, out, err)
    detail = f"rc={p.returncode} {err.decode(errors='replace').strip().splitlines()[:1]}"
    return kind, detail, p.pid


def measure(node: str, runs: int, patterns: list[str], interval_s: float, timeout_s: float = 30.0,
            ways: tuple[str, ...] = ("without", "with")) -> tuple[dict[tuple[str, str], Tally], int, int]:
    """Per (pattern, way) tallies, and with the reporter: thread-error runs, and of those how
    many reached oomscope as a heap-oom end."""
    server = HeapServer(is_allowed=lambda pid, uid: uid == os.geteuid())
    pump = Pump(server)
    pump.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NODE_", "OOMSCOPE_"))}
    tallies: dict[tuple[str, str], Tally] = {}
    reported_pids: list[int] = []
    try:
        for i in range(runs):
            for pattern in patterns:
                plain = [node, "-e", PROGRAM, PATTERNS[pattern]]
                injected, injected_env = inject_node(list(plain), env, server.socket_path, interval_s)
                both = [(w, a, e) for w, a, e in [("without", plain, env), ("with", injected, injected_env)]
                        if w in ways]
                # Interleaved, and the order alternates, so neither way always runs first.
                for way, argv, e in (both if i % 2 == 0 else both[::-1]):
                    t = tallies.setdefault((pattern, way), Tally())
                    t0 = time.monotonic()
                    kind, detail, pid = run_once(argv, e, timeout_s)
                    t.seconds += time.monotonic() - t0
                    t.outcomes[kind] += 1
                    if kind != "thread-error":
                        t.others.setdefault(kind, detail)
                    elif way == "with":
                        reported_pids.append(pid)
        # The last ends may still be in flight.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with pump.lock:
                if all(pid in pump.heap_oom_pids for pid in reported_pids):
                    break
            time.sleep(0.05)
        with pump.lock:
            reached = sum(pid in pump.heap_oom_pids for pid in reported_pids)
    finally:
        pump.stop()
        server.close()
    return tallies, len(reported_pids), reached


def main(argv: list[str] | None = None) -> None:
    p = benchargs.parser(__doc__, "2 runs of one pattern")
    p.add_argument("--runs", type=int, default=60, help="runs per pattern and way (default 60)")
    p.add_argument("--interval", type=float, default=1.0,
                   help="the reporter's interval in seconds (default 1, oomscope's default)")
    p.add_argument("--pattern", choices=sorted(PATTERNS), action="append",
                   help="leak pattern (repeatable; default all)")
    args: argparse.Namespace = p.parse_args(argv)
    if args.runs <= 0 or not args.interval > 0:
        p.error("--runs and --interval must be positive")
    node = shutil.which("node")
    if node is None:
        print("node worker heap OOM: node is not installed, skipped")
        return
    runs = 2 if args.quick else args.runs
    patterns = args.pattern or (["chunks"] if args.quick else list(PATTERNS))
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"node worker heap OOM, node {version}, {runs} runs per pattern and way, interleaved, "
          f"worker maxOldGenerationSizeMb {LIMIT_MB}, reporter interval {args.interval:g} s", flush=True)
    tallies, clean, reached = measure(node, runs, patterns, args.interval)
    for pattern in patterns:
        parts = []
        for way in ("without", "with"):
            t = tallies[(pattern, way)]
            c = t.outcomes
            parts.append(f"{way}: {c['thread-error']} thread-error, {c['abort']} abort, "
                         f"{c['other']} other ({t.seconds / runs:.2f} s a run)")
        print(f"  {pattern:<8} " + "; ".join(parts))
        for way in ("without", "with"):
            for kind, detail in tallies[(pattern, way)].others.items():
                print(f"    {way} {kind}: {detail}")
    print(f"  heap-oom reached oomscope: {reached} of {clean} thread-error runs with the reporter")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
