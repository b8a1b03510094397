"""What a heap reporter says over the socket, and the immutable messages the engine gets.

Wire format: one JSON object per line (UTF-8, ``\\n``-terminated), one connection per thread.
The first line of a connection is a ``hello``; the ``pid`` the engine sees is always the peer's
``SO_PEERCRED`` pid, never the one the peer writes (pid namespaces, and it cannot be forged).

``{"type": "hello", "v": 1, "kind": "node"|"python", "pid": int, "threadId": int,
"isMainThread": bool, "resourceLimits": {str: number}|null, "node": str|null, "python": str|null}``

``{"type": "heap", "t": Unix s, "used", "total", "limit": int, "oldUsed", "oldLimit", "external",
"arrayBuffers", "rss": int|null, "dropped": int, "blocks": int|null, "gc": [int, int, int]|null}``

``{"type": "end", "threadId": int, "cause": "heap-oom"|null, "message": str|null}`` — sent by the
thread that created the Worker (the dying thread cannot speak), so it arrives on *another*
connection than the thread it is about, usually after that thread's own connection has ended.

Sizes are bytes. Node (resources/node/reporter.js): ``heap_used``/``heap_total``/``heap_limit``
are V8's ``used_heap_size``/``total_heap_size``/``heap_size_limit`` of that thread's isolate;
``old_space_used`` is the old generation as V8 counts it against its limit (old, code and
large-object spaces); ``old_space_limit`` is the old-generation limit (the reporter documents
the derivation); ``rss`` only from the main thread. Python (resources/python/_oomscope_heap.py):
one report per process, ``thread_id`` 0, ``heap_used`` = the process's anonymous resident memory
(RssAnon, what the OOM killer counts) read by the process itself, ``heap_total`` = RssAnon plus
its swapped-out anonymous memory, ``heap_limit`` = the soft RLIMIT_AS/RLIMIT_DATA (whichever is
smaller) or 0 when there is none, plus ``allocated_blocks`` (``sys.getallocatedblocks()``) and
``gc_counts`` (``gc.get_count()``); Python has no old space, so those fields are None.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Literal, TypeAlias

KINDS: Final = ("node", "python")
CAUSES: Final = ("heap-oom",)

# Bounds that no real heap or thread id comes near; anything outside is a hostile or broken peer.
_MAX_INT: Final = 1 << 60
_MAX_TEXT: Final = 500


@dataclass(frozen=True, slots=True)
class ThreadHello:
    """A thread (or a Python process) started reporting. ``resource_limits`` is read-only."""

    pid: int
    thread_id: int
    is_main: bool
    resource_limits: Mapping[str, float] | None
    node_version: str | None
    kind: Literal["node", "python"]
    python_version: str | None = None


@dataclass(frozen=True, slots=True)
class HeapReport:
    """One sample of one thread's heap (sizes in bytes, ``t`` in Unix seconds)."""

    pid: int
    thread_id: int
    t: float
    heap_used: int
    heap_total: int
    heap_limit: int
    old_space_used: int | None
    old_space_limit: int | None
    external: int | None
    array_buffers: int | None
    rss: int | None
    dropped: int = 0
    """Samples the reporter dropped since the previous one (its socket was backed up)."""
    allocated_blocks: int | None = None
    gc_counts: tuple[int, int, int] | None = None


@dataclass(frozen=True, slots=True)
class ThreadEnded:
    """A thread stopped reporting: ``cause`` ``"heap-oom"`` (ERR_WORKER_OUT_OF_MEMORY) or None.

    None comes from the end of the thread's own connection (a normal end, or one the reporter
    could not explain). A ``heap-oom`` for the same ``(pid, thread_id)`` may arrive after it,
    from the thread that created the Worker: it upgrades the cause.
    """

    pid: int
    thread_id: int
    cause: str | None
    message: str | None


Message: TypeAlias = ThreadHello | HeapReport | ThreadEnded


def decode_line(line: bytes) -> dict[str, Any] | None:
    """The JSON object on one line, or None for anything else (garbage is not an error)."""
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def _int(value: Any, *, minimum: int = 0) -> int | None:
    # bool is an int in Python and never a size; floats come from JS numbers (all integral here).
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            return None
        value = int(value)
    if not isinstance(value, int) or not minimum <= value < _MAX_INT:
        return None
    return value


def _opt_int(obj: Mapping[str, Any], key: str) -> int | None:
    return _int(obj.get(key))


def _text(value: Any, limit: int = _MAX_TEXT) -> str | None:
    return value[:limit] if isinstance(value, str) else None


def hello_from(obj: Mapping[str, Any], pid: int) -> ThreadHello | None:
    if obj.get("type") != "hello":
        return None
    kind = obj.get("kind")
    thread_id = _int(obj.get("threadId"))
    is_main = obj.get("isMainThread")
    if kind not in KINDS or thread_id is None or not isinstance(is_main, bool):
        return None
    limits: Mapping[str, float] | None = None
    raw = obj.get("resourceLimits")
    if isinstance(raw, dict) and raw:
        clean = {
            str(k)[:64]: float(v) for k, v in list(raw.items())[:16]
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        }
        limits = MappingProxyType(clean)
    return ThreadHello(
        pid=pid,
        thread_id=thread_id,
        is_main=is_main,
        resource_limits=limits,
        node_version=_text(obj.get("node"), 64),
        kind="node" if kind == "node" else "python",
        python_version=_text(obj.get("python"), 64),
    )


def report_from(obj: Mapping[str, Any], hello: ThreadHello) -> HeapReport | None:
    if obj.get("type") != "heap":
        return None
    t = obj.get("t")
    used, total, limit = _opt_int(obj, "used"), _opt_int(obj, "total"), _opt_int(obj, "limit")
    if (isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t)
            or used is None or total is None or limit is None):
        return None
    gc_counts: tuple[int, int, int] | None = None
    gc = obj.get("gc")
    if isinstance(gc, list) and len(gc) == 3:
        a, b, c = (_int(x) for x in gc)
        if a is not None and b is not None and c is not None:
            gc_counts = (a, b, c)
    return HeapReport(
        pid=hello.pid,
        thread_id=hello.thread_id,
        t=float(t),
        heap_used=used,
        heap_total=total,
        heap_limit=limit,
        old_space_used=_opt_int(obj, "oldUsed"),
        old_space_limit=_opt_int(obj, "oldLimit"),
        external=_opt_int(obj, "external"),
        array_buffers=_opt_int(obj, "arrayBuffers"),
        # Only the main thread speaks for the process: a worker's rss would be counted twice.
        rss=_opt_int(obj, "rss") if hello.is_main else None,
        dropped=_opt_int(obj, "dropped") or 0,
        allocated_blocks=_opt_int(obj, "blocks"),
        gc_counts=gc_counts,
    )


def ended_from(obj: Mapping[str, Any], pid: int) -> ThreadEnded | None:
    if obj.get("type") != "end":
        return None
    thread_id = _int(obj.get("threadId"))
    if thread_id is None:
        return None
    cause = obj.get("cause")
    return ThreadEnded(
        pid=pid,
        thread_id=thread_id,
        cause=cause if cause in CAUSES else None,
        message=_text(obj.get("message")),
    )
