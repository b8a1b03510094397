"""Attach-time heap inspection: latency of one query (main thread + 2 worker threads) through
node's inspector, with and without TCP_QUICKACK on oomscope's socket."""

from __future__ import annotations

import shutil

import benchargs
from oomscope.core.heap import inspector


def main(argv: list[str] | None = None) -> None:
    quick = benchargs.quick(argv, __doc__)
    if shutil.which("node") is None:
        print("inspector: skipped, node is not installed")
        return
    print("inspector query latency (--inspect-heap), TCP_QUICKACK on and off:")
    inspector._demo(10 if quick else 200)


if __name__ == "__main__":
    main()
