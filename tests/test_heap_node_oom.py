"""A worker thread that runs out of its resourceLimits heap under the reporter: thread error only.

Issue #14 suspected that the reporter (``net`` and ``v8`` loaded, a live socket and timer in the
worker thread) turns some of these deaths into an abort of the whole process (V8's ``FATAL
ERROR: Reached heap limit``). bench/bench_node_worker_oom.py measures it; this checks the
promise in every run: the parent sees ERR_WORKER_OUT_OF_MEMORY, the process exits 0, and the
heap-oom end reaches oomscope. The reporter samples every 50 ms here (oomscope's default is 1 s),
so most runs take samples while the thread is close to its limit.
"""

from __future__ import annotations

import sys

from conftest import REPO
from test_heap_support import NODE, needs_node

sys.path.insert(0, str(REPO / "bench"))
import bench_node_worker_oom as oom  # noqa: E402 - the bench directory is not a package

pytestmark = needs_node
RUNS_PER_PATTERN = 6


def test_leaking_worker_threads_end_in_their_own_error_under_the_reporter() -> None:
    assert NODE is not None
    patterns = sorted(oom.PATTERNS)
    tallies, thread_errors, reached = oom.measure(NODE, RUNS_PER_PATTERN, patterns, 0.05, ways=("with",))
    for pattern in patterns:
        t = tallies[(pattern, "with")]
        assert dict(t.outcomes) == {"thread-error": RUNS_PER_PATTERN}, (pattern, t.others)
    assert thread_errors == RUNS_PER_PATTERN * len(patterns)
    assert reached == thread_errors


def test_the_classifier_tells_an_abort_from_a_thread_error() -> None:
    # The figures above mean something only if an abort would be counted as one.
    fatal = b"FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory\n"
    assert oom.classify(-6, b"", fatal) == "abort"
    assert oom.classify(134, b"thread-error ERR_WORKER_OUT_OF_MEMORY\n", fatal) == "abort"
    assert oom.classify(0, b"thread-error ERR_WORKER_OUT_OF_MEMORY\nthread-exit 1\n", b"") == "thread-error"
    assert oom.classify(1, b"thread-error ERR_WORKER_OUT_OF_MEMORY\n", b"") == "other"
    assert oom.classify(0, b"thread-exit 0\n", b"") == "other"
