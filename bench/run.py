"""`make bench`: every benchmark of oomscope, one after another, figures on stdout."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_engine  # noqa: E402
import bench_gui  # noqa: E402
import bench_heap  # noqa: E402
import bench_inspect  # noqa: E402
import bench_metrics  # noqa: E402
import bench_oom_latency  # noqa: E402
import bench_parse  # noqa: E402
import bench_policy_race  # noqa: E402
import bench_record  # noqa: E402
import bench_replay  # noqa: E402
import bench_trend  # noqa: E402


def main() -> None:
    print(f"oomscope benchmarks on {platform.node()} ({platform.machine()}, Linux {platform.release()}, "
          f"Python {platform.python_version()})")
    bench_engine.main()
    bench_parse.main()
    bench_gui.main()
    bench_oom_latency.main()
    bench_heap.main()
    bench_inspect.main()
    bench_record.main([])
    bench_replay.main([])
    bench_metrics.main()
    bench_policy_race.main([])
    bench_trend.main([])


if __name__ == "__main__":
    main()
