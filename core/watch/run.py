"""``oomscope watch`` itself: open the sinks, start the engine, attach and launch what the user
asked for, then print (and record, and hook) every event until the workers are gone, the
duration is up or a signal stops it."""

from __future__ import annotations

import argparse
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, TextIO

from ..config import example_config
from ..engine import Engine, EngineConfig
from ..errors import Error
from ..exits import MissingCommands
from ..events import (
    Event,
    Notice,
    RestartCancelled,
    Stopped,
    WorkerAttached,
    WorkerExited,
    WorkerStarted,
)
from ..gate.gate import Gate, gate_options
from .arguments import config_from_args
from .hook import EventHook
from .printers import JsonPrinter, Printer, TextPrinter


class _Interrupted(Exception):
    pass


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise _Interrupted(signum)


def run(args: argparse.Namespace, stdout: TextIO = sys.stdout, stderr: TextIO = sys.stderr) -> int:
    if args.print_config:
        stdout.write(example_config())
        return 0
    notices: list[str] = []
    try:
        config, specs, restart = config_from_args(args, notices)
        gate = Gate(gate_options(args, config.thresholds.metric, len(specs)))
    except Error as e:
        print(f"oomscope watch: {e}", file=stderr)
        return 2
    printer: Printer = JsonPrinter(stdout, stderr) if args.json else TextPrinter(stdout)
    hook = EventHook(args.on_event, stderr) if args.on_event else None
    if hook is not None:
        printer = hook.wrap(printer)
    engines: list[Engine] = []
    plain = printer

    def notice(level: str, message: str) -> None:
        """Trouble in a sink's own thread (disk full, port lost) reaches the user as an event;
        before the engine runs, or once it has stopped (a sink closing), it is printed here."""
        event = Notice(t=time.time(), level=level, message=message)
        if engines and not engines[0].stopped:
            engines[0].events.put(event)
        else:
            plain(event)

    try:
        sinks = open_sinks(args, config, notice)
    except Error as e:
        print(f"oomscope watch: {e}", file=stderr)
        return 2
    if sinks:
        printer = _tee(sinks, printer)
    printer = _tee([gate], printer)  # the CI gate's summary is built from the same events
    printer = missing = MissingCommands(printer)
    engine = Engine(config).start()
    engines.append(engine)
    for message in notices:  # through the engine's queue: printed, recorded and hooked like any
        engine.events.put(Notice(t=time.time(), level="warning", message=message))
    old_handlers = _install_signal_handlers()
    ended_by_itself = False
    try:
        try:
            # Followed from the start: one that ends before the next is launched must not end watch.
            first: set[str] = set()
            for pid in args.attach:
                first.add(engine.attach(pid).result().id)
            for pid in args.children_of:
                engine.watch_children(pid).result()
            for pattern in args.match:
                engine.watch_matching(pattern).result()
            for spec in specs:
                first.add(engine.launch(spec, restart).result().id)
        except Error as e:
            print(f"oomscope watch: {e}", file=stderr)
            engine.stop()
            _drain(engine, printer)
            return 2
        follows_more = bool(args.children_of or args.match)
        deadline = time.monotonic() + args.duration if args.duration else None
        # --children-of alone: once every parent is gone and no child is left, nothing can come.
        parents_only = bool(args.children_of) and not args.match
        _follow(engine, printer, deadline, follows_more, first, parents_only)
        ended_by_itself = True
    except _Interrupted:
        pass
    finally:
        _restore_signal_handlers(old_handlers)
        engine.stop()
        _drain(engine, printer)
        if hook is not None:
            hook.finish()
        if ended_by_itself:  # not after Ctrl-C or SIGTERM: whoever stops watch wants it gone now
            for sink in sinks:
                linger = getattr(sink, "linger", None)
                if linger is not None:
                    linger(args.metrics_linger, notice)
        for sink in sinks:
            sink.close()
    # GitHub's runner reads workflow commands on both streams: with --json, stdout stays JSON.
    status = gate.finish(stderr, stderr if args.json else stdout)
    if (none_started := missing.none_started(len(specs))) is not None:
        print(f"oomscope watch: {none_started}", file=stderr)
        return 2
    return status


class Sink(Protocol):
    """Takes every event (also those ``watch`` does not print) and must not block."""

    def __call__(self, event: Event) -> None: ...

    def close(self) -> None: ...


Notify = Callable[[str, str], None]  # (level, message)


def open_sinks(args: argparse.Namespace, config: EngineConfig, notice: Notify) -> list[Sink]:
    """The recorder and the metrics endpoint, opened before anything is launched so that a
    bad path or a taken port is exit code 2 with nothing started."""
    sinks: list[Sink] = []
    try:
        if args.record is not None:
            from ..recording import open_recorder
            sinks.append(open_recorder(Path(args.record), config, notice))
        if args.metrics_port is not None:
            from ..prometheus.metrics import start_exporter
            sinks.append(start_exporter(args.metrics_port, args.metrics_addr,
                                        expire_s=args.metrics_expire, notice=notice, config=config))
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    return sinks


def _tee(sinks: list[Sink], printer: Printer) -> Printer:
    def both(event: Event) -> None:
        for sink in sinks:
            sink(event)
        printer(event)
    return both


def _follow(engine: Engine, printer: Printer, deadline: float | None, follows_more: bool,
            live: set[str], parents_only: bool = False) -> None:
    restarting: set[int | None] = set()  # slots whose next life is on its way

    def nothing_can_come() -> bool:
        return not live and not restarting and parents_only and not engine.watched_parents().result(10)

    while True:
        timeout = None if deadline is None else deadline - time.monotonic()
        if timeout is not None and timeout <= 0:
            return
        try:
            event = engine.events.get(timeout=timeout)
        except queue.Empty:
            return
        printer(event)
        if isinstance(event, (WorkerStarted, WorkerAttached)):
            live.add(event.worker.id)
            restarting.discard(event.worker.slot)
        elif isinstance(event, (WorkerExited, RestartCancelled)):
            if isinstance(event, WorkerExited):
                live.discard(event.worker.id)
                if event.restart_in_s is not None:
                    restarting.add(event.worker.slot)
            elif event.worker is not None:
                restarting.discard(event.worker.slot)
            if not live and not restarting and not follows_more:
                return
            if nothing_can_come():
                return
        elif isinstance(event, Notice) and event.worker is None and parents_only:
            # A parent's exit is told by a notice: look whether any parent is left.
            if nothing_can_come():
                return
        elif isinstance(event, Stopped):
            return


def _drain(engine: Engine, printer: Printer) -> None:
    while True:
        try:
            event = engine.events.get(timeout=1.0 if not engine.stopped else 0.05)
        except queue.Empty:
            return
        if isinstance(event, Stopped):
            return
        printer(event)


def _install_signal_handlers() -> dict[int, Any]:
    if threading.current_thread() is threading.main_thread():
        return {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    return {}


def _restore_signal_handlers(old: dict[int, Any]) -> None:
    for sig, handler in old.items():
        signal.signal(sig, handler)
