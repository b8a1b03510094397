"""One dispatch mechanism: its rules, and proof that every consumer covers every event class.

A new event class in ``core/events.py`` that some consumer neither handles nor lists as ignored
fails ``test_every_core_consumer_covers_every_event_class`` (and its GUI twin in
test_gui_bridge.py) instead of being dropped silently at run time.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from oomscope.core.watch import printers as watch
from oomscope.core.dispatch import Dispatcher, UnhandledEvent, event_classes
from oomscope.core.events import (
    CrashLoop,
    Event,
    Heap,
    KernelOom,
    Notice,
    RestartCancelled,
    Samples,
    SourceChanged,
    Stopped,
    WorkerAttached,
    WorkerEvent,
    WorkerRef,
    WorkerStarted,
)
from oomscope.core.gate.summary import SummaryBuilder
from oomscope.core.prometheus.metrics import MetricsBook
from oomscope.core.oomlog.records import KillRecord
from oomscope.core.oomlog.sources import SourceState
from oomscope.core.recording import rowevents as session_reader
from oomscope.core.recording import open_recorder

REF = WorkerRef("w1", 4242, 1.0, "python3", ("python3",), True, slot=1, life=2)


@dataclass(frozen=True, slots=True)
class Unheard(WorkerEvent):
    """An event kind no consumer knows (defined here, so not one of the engine's)."""

    kind: ClassVar[str] = "unheard"


def test_the_nearest_registered_base_handles_a_subclass_unless_it_has_its_own() -> None:
    d: Dispatcher[str] = Dispatcher({Notice: lambda ev: "notice " + ev.message,
                                     Event: lambda ev: "any " + ev.kind}, name="t")
    assert d(RestartCancelled(1.0, "warning", "restart cancelled")) == "notice restart cancelled"
    assert d(Stopped(1.0)) == "any stopped"
    own: Dispatcher[str] = Dispatcher({Notice: lambda ev: "notice", RestartCancelled: lambda ev: "own"})
    assert own(RestartCancelled(1.0, "warning", "x")) == "own" and own(Notice(1.0, "info", "x")) == "notice"


def test_ignored_kinds_return_none_and_unknown_kinds_raise_or_fall_back() -> None:
    calls: list[Event] = []
    d: Dispatcher[int] = Dispatcher({Notice: lambda ev: calls.append(ev) or 1}, ignore=(Stopped,), name="mine")
    assert d(Stopped(1.0)) is None and d.handler_for(Stopped) is None and not calls
    with pytest.raises(UnhandledEvent, match=r"mine: no handler for Unheard events"):
        d(Unheard(1.0, REF))
    assert d.covers(RestartCancelled) and d.covers(Stopped) and not d.covers(Unheard)
    fallback: Dispatcher[str] = Dispatcher({}, fallback=lambda ev: "fell back " + ev.kind)
    assert fallback(Unheard(1.0, REF)) == "fell back unheard"
    with pytest.raises(ValueError, match="both handled and ignored"):
        Dispatcher({Stopped: print}, ignore=(Stopped,))


def test_event_classes_are_the_engines_all_of_them() -> None:
    classes = event_classes()
    assert Unheard not in classes
    assert {CrashLoop, RestartCancelled, SourceChanged, KernelOom, Samples, Stopped} <= set(classes)
    assert Event not in classes and WorkerEvent not in classes  # bases, never emitted as such
    assert len(classes) == len(set(classes))


def _core_dispatchers(tmp_path: Path) -> dict[str, Dispatcher[Any]]:
    recorder = open_recorder(tmp_path / "cover.db", None, lambda level, text: None)
    try:
        recorded = recorder._rows.dispatch
    finally:
        recorder.close()
    return {
        "watch --json": watch.JsonPrinter(io.StringIO(), io.StringIO()).dispatch,
        "watch (text)": watch._DESCRIBE,
        "recorder": recorded,
        "session reader": session_reader.builders({}, {}),
        "metrics": MetricsBook("host", 60.0)._dispatch,
        "watch gate summary": SummaryBuilder("rss").dispatch,
    }


def test_every_core_consumer_covers_every_event_class(tmp_path) -> None:
    missing = {name: [cls.__name__ for cls in event_classes() if not d.covers(cls)]
               for name, d in _core_dispatchers(tmp_path).items()}
    assert missing == {name: [] for name in missing}


def test_what_the_recorder_writes_the_reader_rebuilds(tmp_path) -> None:
    """Every kind the recorder stores comes back from a table of rows, or from the tables of
    their own shape (packed samples and heap reports, the workers table)."""
    recorded = _core_dispatchers(tmp_path)["recorder"]
    rebuilt = session_reader.builders({}, {})
    own_shape = {Samples, Heap, WorkerStarted, WorkerAttached}
    lost = [cls.__name__ for cls in event_classes()
            if recorded.handler_for(cls) is not None
            and rebuilt.handler_for(cls) is None and cls not in own_shape]
    assert lost == []


def test_a_printer_refuses_an_event_kind_nobody_taught_it() -> None:
    with pytest.raises(UnhandledEvent, match="watch \\(text\\)"):
        watch.describe(Unheard(1.0, REF))
    # The JSON printer prints any event's own JSON form: that is its rule for every kind.
    out = io.StringIO()
    watch.JsonPrinter(out, io.StringIO())(Unheard(1.0, REF))
    assert '"event":"unheard"' in out.getvalue()


def test_typed_records_and_sources_print_as_the_contract_has_them() -> None:
    rec = KillRecord("kernel-memcg", pid=77, comm="node", anon_rss_kb=2048, task_memcg="/x",
                     lines=("Memory cgroup out of memory: Killed process 77 (node)",), wall_time_unix=5.0)
    out = io.StringIO()
    printer = watch.JsonPrinter(out, io.StringIO())
    printer(KernelOom(1.0, rec))
    printer(KernelOom(2.0, rec, history=True))  # from before watch started: not printed
    printer(SourceChanged(3.0, SourceState("kmsg", False, "no access")))
    assert out.getvalue() == (
        '{"t":1.0,"event":"kernel_oom","oom":{"killer":"kernel-memcg","pid":77,"comm":"node","uid":null,'
        '"total_vm_kb":null,"anon_rss_kb":2048,"file_rss_kb":null,"shmem_rss_kb":null,"constraint":null,'
        '"oom_memcg":null,"task_memcg":"/x","kernel_time_s":null,"wall_time":null,'
        '"lines":["Memory cgroup out of memory: Killed process 77 (node)"]},"history":false,"concerns":null}\n'
        '{"t":3.0,"event":"source","source":"kmsg","ok":false,"reason":"no access"}\n')
    assert watch.describe(KernelOom(1.0, rec)).endswith(
        "PID 77 (node), anon-rss 2.0 MiB, kernel-memcg in /x")
    assert watch.describe(CrashLoop(1.0, REF, 2, 60.0, "slot 1: crash loop")).endswith(
        "w1 python3[4242] (slot 1, life 2) CRASH LOOP: slot 1: crash loop")
