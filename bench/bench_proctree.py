"""How many short-lived children does ``--children-of`` see? (issue #14)

A parent forks N children (default 200), one every 10 ms, each living 50 ms, and prints their
PIDs; an engine watches the parent's children as ``watch --children-of`` does. The figure is
how many of those PIDs were attached and how many exits recorded. Through the kernel's process
events (root, CONFIG_PROC_EVENTS) every child is seen; ``--rescan`` forces the fallback, the
/proc rescan every 0.5 s, which sees a child only if it is alive at a rescan (~10 % of 50 ms
children). Run against an older checkout (``PYTHONPATH`` to it), the script measures that one.

Usage: ``python bench/bench_proctree.py [--children N] [--life-ms MS] [--rescan] [--quick]``
"""

from __future__ import annotations

import queue
import subprocess
import sys
import time

import benchargs

from oomscope.core.engine import Engine, EngineConfig

PARENT = (
    "import os, sys, time\n"
    "n, ms, gap = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])\n"
    "sys.stdin.readline()\n"
    "pids = []\n"
    "for _ in range(n):\n"
    "    pid = os.fork()\n"
    "    if pid == 0:\n"
    "        time.sleep(ms / 1000)\n"
    "        os._exit(0)\n"
    "    pids.append(pid)\n"
    "    time.sleep(gap)\n"
    "    while os.waitpid(-1, os.WNOHANG)[0] > 0: pass\n"
    "print(' '.join(map(str, pids)), flush=True)\n"
    "while True:\n"
    "    try: os.wait()\n"
    "    except ChildProcessError: break\n"
)


def _force_rescan() -> str:
    try:
        from oomscope.core.procevents import ProcEvents, Unavailable
    except ImportError:
        return "rescan (this checkout has no process events)"

    def refuse() -> ProcEvents:
        raise Unavailable("turned off by --rescan")

    ProcEvents.open = staticmethod(refuse)  # type: ignore[method-assign]
    return "rescan (forced)"


def measure(children: int, life_ms: int, gap_s: float) -> tuple[int, int, int]:
    """(forked, attached, exits recorded) of one run."""
    eng = Engine(EngineConfig(interval_s=1.0, kernel_log=False, heap_reports=False)).start()
    parent = subprocess.Popen([sys.executable, "-u", "-c", PARENT, str(children), str(life_ms), str(gap_s)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert parent.stdin is not None and parent.stdout is not None
        eng.watch_children(parent.pid).result(10)
        parent.stdin.write(b"go\n")
        parent.stdin.flush()
        forked = set(map(int, parent.stdout.readline().split()))
        parent.wait(30)
        attached: set[int] = set()
        exited: set[int] = set()
        quiet_until = time.monotonic() + 1.0  # the last exits: the engine has had its round
        while time.monotonic() < quiet_until:
            try:
                ev = eng.events.get(timeout=0.1)
            except queue.Empty:
                continue
            pid = getattr(getattr(ev, "worker", None), "pid", None)
            if ev.kind == "worker_attached" and pid in forked:
                attached.add(pid)
            elif ev.kind == "worker_exited" and pid in forked:
                exited.add(pid)
        return len(forked), len(attached), len(exited)
    finally:
        if parent.poll() is None:
            parent.kill()  # our own child, by its Popen
            parent.wait()
        eng.stop()


def main(argv: list[str] | None = None) -> None:
    p = benchargs.parser(__doc__, "20 children")
    p.add_argument("--children", type=int, default=200)
    p.add_argument("--life-ms", type=int, default=50)
    p.add_argument("--rescan", action="store_true", help="force the /proc rescan (no process events)")
    args = p.parse_args(argv)
    n = 20 if args.quick else args.children
    mode = _force_rescan() if args.rescan else "process events where available"
    forked, attached, exited = measure(n, args.life_ms, 0.010)
    print(f"children-of, {mode}: {attached}/{forked} children of {args.life_ms} ms seen "
          f"({100 * attached / max(1, forked):.0f} %), {exited} exits recorded")


if __name__ == "__main__":
    main()
