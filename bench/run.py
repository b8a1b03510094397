"""`make bench`: every benchmark of oomscope, one after another, figures on stdout."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_churn  # noqa: E402
import bench_engine  # noqa: E402
import benchargs  # noqa: E402
import bench_gui  # noqa: E402
import bench_gui_race  # noqa: E402
import bench_heap  # noqa: E402
import bench_inspect  # noqa: E402
import bench_metrics  # noqa: E402
import bench_node_worker_oom  # noqa: E402
import bench_oom_latency  # noqa: E402
import bench_parse  # noqa: E402
import bench_policy_race  # noqa: E402
import bench_proctree  # noqa: E402
import bench_record  # noqa: E402
import bench_replay  # noqa: E402
import bench_trend  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    # --quick: every script in its tiny configuration, to check they all still run.
    args = ["--quick"] if benchargs.quick(argv, __doc__) else []
    print(f"oomscope benchmarks on {platform.node()} ({platform.machine()}, Linux {platform.release()}, "
          f"Python {platform.python_version()})")
    bench_engine.main(args)
    bench_parse.main(bool(args))
    bench_gui.main(args)
    bench_oom_latency.main(args)
    bench_heap.main(args)
    bench_node_worker_oom.main(args)
    bench_inspect.main(args)
    bench_record.main(args)
    bench_replay.main(args)
    bench_metrics.main(args)
    bench_policy_race.main(args)
    bench_proctree.main(args)
    bench_gui_race.main(args)
    bench_trend.main(args)
    bench_churn.main(args)


if __name__ == "__main__":
    main()
