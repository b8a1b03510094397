"""Advice about a Node.js worker whose V8 heap limit does not fit its container.

V8 grows the heap up to ``heap_size_limit`` before it reports exhaustion. Where that limit is
above what the cgroup leaves (the seed's rule: 75 % of the container limit, the rest being
stacks, code, buffers and the young generation), the kernel kills the worker first: an
``oom-kill`` with no JavaScript stack, instead of a ``heap-oom`` that says what grew.

That advice is about the heap. A worker whose memory is mostly outside it — ``Buffer``s and
``ArrayBuffer``s, which V8 counts as ``external`` — is not bounded by any heap limit: for it the
doctor says so instead (:func:`off_heap_advice`), once that memory is a real share of the limit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .sizes import format_size

FIT_FRACTION = 0.75
# Off-heap memory worth a word: this share of the memory limit, and twice the heap in use.
OFF_HEAP_SHARE = 0.25
_MAX_OLD = re.compile(r"--max[-_]old[-_]space[-_]size(?:=|\s+)(\d+)")


@dataclass(frozen=True, slots=True)
class Advice:
    advice: str
    reason: str
    suggested: str


def max_old_space_mb(words: Iterable[str]) -> int | None:
    """The ``--max-old-space-size`` (MiB) in a command line or NODE_OPTIONS, if any."""
    m = _MAX_OLD.search(" ".join(words))
    return int(m.group(1)) if m else None


def node_heap_advice(heap_limit: int, cgroup_limit: int | None, configured_mb: int | None) -> Advice | None:
    if not cgroup_limit:
        return None
    fit_mb = int(cgroup_limit * FIT_FRACTION) // (1024 * 1024)
    suggested = f"--max-old-space-size={fit_mb}"
    # heap_size_limit adds the young generation to --max-old-space-size: a worker that follows
    # the advice (old space at 75 %) reports a few MiB above it, and must not be told again.
    if heap_limit > cgroup_limit * FIT_FRACTION and (configured_mb is None or configured_mb > fit_mb):
        return Advice(
            advice=f"set {suggested} (75% of the {format_size(cgroup_limit)} memory limit)",
            reason=(f"V8's heap limit is {format_size(heap_limit)}, above 75% of the cgroup limit "
                    f"{format_size(cgroup_limit)}: the kernel will kill this worker before V8 "
                    "reports heap exhaustion"),
            suggested=suggested,
        )
    if configured_mb is None:
        return Advice(
            advice=f"set {suggested} explicitly",
            reason=(f"no --max-old-space-size under a {format_size(cgroup_limit)} memory limit: V8 "
                    "sizes its heap from the machine, not the container, and the kernel will kill "
                    "this worker before V8 reports heap exhaustion if it grows"),
            suggested=suggested,
        )
    return None


def off_heap_advice(heap_used: int, external: int | None, array_buffers: int | None,
                    cgroup_limit: int | None) -> Advice | None:
    """Advice for a worker whose growth is off the V8 heap, where a heap limit cannot help."""
    if not cgroup_limit or external is None:
        return None
    if external < cgroup_limit * OFF_HEAP_SHARE or external < 2 * heap_used:
        return None
    buffers = f" ({format_size(array_buffers)} of it in Buffers and ArrayBuffers)" if array_buffers else ""
    return Advice(
        advice="off-heap (Buffer) growth: a heap limit will not help",
        reason=(f"{format_size(external)} lives outside V8's heap{buffers}, against "
                f"{format_size(heap_used)} on it, under a {format_size(cgroup_limit)} memory limit; "
                "--max-old-space-size bounds only the heap, so bound the Buffers instead (stream "
                "rather than read whole files, cap pools and caches)"),
        suggested="",
    )
