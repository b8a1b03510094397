"""Per-thread V8 heaps of a running Node.js process, read through its inspector (opt-in).

For a process oomscope did not launch there is no reporter inside; node's inspector is the only
way in. :meth:`NodeInspector.open` checks that ``/proc/PID/exe`` is node (SIGUSR1 kills most other
programs), sends SIGUSR1 through the pidfd, finds the port the process itself opened among its own
listening sockets, and speaks the DevTools protocol over a minimal WebSocket client (RFC 6455,
stdlib only). ``NodeWorker.enable`` reaches every ``worker_threads`` Worker, also those started
later; :meth:`NodeInspector.query` sends ``Runtime.getHeapUsage`` to every thread at once and
returns one :class:`HeapReport` per thread that answered.

Thread ids are node's own ``threadId`` (main thread 0), read once per worker by evaluating
``require('worker_threads').threadId`` in that worker's session, so they match what the launched
reporter (resources/node/reporter.js) says. The protocol's ``workerId`` is only the session's key.
A worker whose ``threadId`` has not come back yet is left out of that query rather than guessed.

``heap_used``/``heap_total`` are V8's ``usedSize``/``totalSize`` from ``Runtime.getHeapUsage``;
``heap_limit`` is ``v8.getHeapStatistics().heap_size_limit``, read once per thread (it does not
change while the thread lives). Old space, external, array buffers and RSS are None: the probe
asks only what the protocol answers without running code on every sample.

While the inspector is open any local user can run code in the process (:data:`INSPECTOR_WARNING`).
The engine calls :meth:`NodeInspector.close` on detach, on oomscope's exit and on Ctrl-C (also a
context manager); it evaluates ``require('inspector').close()`` in the process, which closes the
port, and then checks that the process no longer listens there. An inspector that was
already open before ``open()`` (node started with ``--inspect``) is left open: it is the user's.

What the process notices: node prints "Debugger listening on ws://…" and "Debugger attached." on
its own stderr (node does that for every SIGUSR1 and connection; nothing can suppress it). And
node does not exit while a client is connected ("Waiting for the debugger to disconnect..."): the
probe lets go as soon as node says it is waiting, which it reads at the next :meth:`query` or, if
the engine selects on :meth:`NodeInspector.fileno`, at once through
:meth:`NodeInspector.handle_events`. A process killed by a signal is not held at all.

The pieces: :mod:`.listeners` (which ports the process listens on, which one node would open,
whether another process holds it), :mod:`.httpclient` and :mod:`.websocket` (the transport),
:mod:`.devtools` (:class:`NodeInspector`, the protocol). This module keeps the public names and
the command-line program.

Not thread-safe: one thread (the engine's) opens, queries and closes an inspector.

Run ``python -m oomscope.core.heap.inspector [PID]`` for the per-thread heaps of PID, or with no
PID for a latency figure on a node with two worker threads that the program starts itself::

    main + 2 workers, 200 queries each
      TCP_QUICKACK on : median 0.23 ms, p90 0.31 ms per query()
      TCP_QUICKACK off: median 44.00 ms, p90 44.08 ms per query()
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

from ..errors import Error
from ..pidfd import ProcessHandle
from ..sizes import format_size
from .devtools import InspectorClosed, NodeInspector
from .listeners import (
    DEFAULT_PORT,
    NODE_NAMES,
    Listener,
    PortTaken,
    configured_port,
    node_executable,
    own_listeners,
)

__all__ = [
    "DEFAULT_PORT", "INSPECTOR_WARNING", "NODE_NAMES", "InspectorClosed", "Listener",
    "NodeInspector", "PortTaken", "configured_port", "main", "node_executable", "own_listeners",
]

INSPECTOR_WARNING: Final = (
    "While the inspector is open, any local user can run code inside this Node.js process "
    "(it listens on a TCP port on 127.0.0.1 with no password). oomscope keeps it open only "
    "while attached and closes it on detach, on exit and on Ctrl-C; if oomscope is killed, the "
    "process closes it itself within a second."
)


# ------------------------------------------------------------------------------------- program

_DEMO_MAIN: Final = r"""
const { Worker } = require('worker_threads');
let online = 0;
for (const mb of [8, 32]) {
  new Worker(require('path').join(__dirname, 'worker.js'), { workerData: mb })
    .on('message', () => { if (++online === 2) console.log('ready'); });
}
process.stdin.on('end', () => process.exit(0)).resume();
"""
_DEMO_WORKER: Final = r"""
const { parentPort, workerData } = require('worker_threads');
// Doubles, 8 bytes each: workerData MiB that stay alive for the thread's life.
globalThis.keep = Array.from({ length: workerData * 131072 }, (_, i) => i + 0.5);
parentPort.postMessage('ready');
setInterval(() => {}, 1000);
"""


def _timed(probe: NodeInspector, n: int) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.monotonic()
        probe.query()
        times.append(time.monotonic() - t0)
    return times


def _print_latency(label: str, times: list[float]) -> None:
    p90 = statistics.quantiles(times, n=10)[-1] if len(times) > 1 else times[0]
    print(f"  TCP_QUICKACK {label}: median {statistics.median(times) * 1e3:.2f} ms, "
          f"p90 {p90 * 1e3:.2f} ms per query()")


def _demo(n: int) -> int:
    """Latency of query() for main + 2 workers, with and without TCP_QUICKACK."""
    with tempfile.TemporaryDirectory(prefix="oomscope-inspector-") as tmp:
        Path(tmp, "main.js").write_text(_DEMO_MAIN)
        Path(tmp, "worker.js").write_text(_DEMO_WORKER)
        env = {k: v for k, v in os.environ.items() if k != "NODE_OPTIONS"}
        with subprocess.Popen(["node", str(Path(tmp, "main.js"))], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env) as node:
            assert node.stdin is not None and node.stdout is not None
            try:
                if node.stdout.readline().strip() != b"ready":
                    print("the demo node did not start", file=sys.stderr)
                    return 1
                handle = ProcessHandle.open(node.pid)
                try:
                    print(f"main + 2 workers, {n} queries each")
                    for quickack, label in ((True, "on "), (False, "off")):
                        with NodeInspector.open(node.pid, handle, quickack=quickack) as probe:
                            if len(probe.query()) != 3:
                                print("the demo node did not report 3 threads", file=sys.stderr)
                                return 1
                            _print_latency(label, _timed(probe, n))
                finally:
                    handle.close()
            finally:
                # End of stdin is the demo's cue to exit: no signal needed.
                node.stdin.close()
                node.wait(timeout=10)
    return 0


def _show(pid: int) -> int:
    print(INSPECTOR_WARNING, file=sys.stderr)
    handle = ProcessHandle.open(pid)
    try:
        with NodeInspector.open(pid, handle) as probe:
            t0 = time.monotonic()
            reports = probe.query()
            took = time.monotonic() - t0
            for r in reports:
                limit = format_size(r.heap_limit) if r.heap_limit else "?"
                print(f"thread {r.thread_id:3d}  used {format_size(r.heap_used):>10}  "
                      f"total {format_size(r.heap_total):>10}  limit {limit:>10}")
            print(f"query() took {took * 1e3:.2f} ms for {len(reports)} threads")
    finally:
        handle.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``inspector [PID] [-n N]``: heaps of PID's threads, or the latency demo without a PID."""
    args = list(sys.argv[1:] if argv is None else argv)
    n = 200
    if "-n" in args:
        i = args.index("-n")
        n = int(args[i + 1])
        del args[i:i + 2]
    try:
        return _show(int(args[0])) if args else _demo(n)
    except Error as e:
        print(f"oomscope: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
