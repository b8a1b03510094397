"""``oomscope watch``: the engine without a window; JSON lines or readable lines on stdout."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, Protocol, TextIO

from .causes import OOM_KILL
from .config import example_config, load_config
from .engine import Engine, EngineConfig
from .errors import BadInput, Error
from .exits import MissingCommands
from .dispatch import Dispatcher
from .events import (
    CauseUpdated,
    CrashLoop,
    Doctor,
    Event,
    Heap,
    KernelLineRead,
    KernelOom,
    LevelPending,
    LevelsChanged,
    Notice,
    Output,
    RestartCancelled,
    Samples,
    SourceChanged,
    Stopped,
    Terminate,
    ThreadExited,
    Threshold,
    WorkerAttached,
    WorkerExited,
    WorkerRef,
    WorkerStarted,
)
from .launch import LaunchSpec
from .restart import RestartPolicy
from .options import add_shared_options, engine_config_from
from .sizes import format_size, parse_size


def add_arguments(p: argparse.ArgumentParser) -> None:
    what = p.add_argument_group("what to watch")
    lim = p.add_argument_group("limits and thresholds")
    run = p.add_argument_group("how")
    add_shared_options(what, lim, run)
    what.add_argument("--match", metavar="REGEX", action="append", default=[],
                      help="watch processes whose name or command line matches REGEX")
    what.add_argument("--inspect-heap", action="store_true",
                      help="per-thread V8 heaps of attached node processes through their inspector "
                      "(opened with SIGUSR1 while attached: any local user can run code in them then)")
    what.add_argument("command", nargs=argparse.REMAINDER,
                      help="after --: a command (argv, no shell) to launch as a worker")
    run.add_argument("--duration", metavar="S", type=float,
                     help="stop after S seconds (launched workers are terminated)")
    run.add_argument("--json", action="store_true", help="one JSON event per line")
    run.add_argument("--on-event", metavar="CMD",
                     help="run CMD (a shell command line) for every notable event (level changes, "
                     "exits, cause updates, thread deaths, unmatched kernel kills, advice), with the "
                     "event as one JSON object on its stdin")
    run.add_argument("--print-config", action="store_true",
                     help="print a commented settings file with every default, and exit")
    lim.add_argument("--restart", metavar="N", type=int,
                     help="restart a launched worker that dies up to N times, with backoff (the "
                     "settings file's [restart] table sets the delays and the crash-loop guard)")
    out = p.add_argument_group("recording and metrics")
    out.add_argument("--record", metavar="FILE.db",
                     help="record the session to an SQLite file (a new session is added to an "
                     "existing oomscope file); `oomscope open FILE.db` replays it")
    out.add_argument("--metrics-port", metavar="N", type=int,
                     help="serve Prometheus metrics on http://ADDR:N/metrics (0: any free port, "
                     "told in a notice)")
    out.add_argument("--metrics-addr", metavar="ADDR", default="127.0.0.1",
                     help="address for --metrics-port (default 127.0.0.1; the endpoint has no "
                     "authentication)")
    out.add_argument("--metrics-expire", metavar="S", type=float, default=300.0,
                     help="a gone worker's gauges disappear after S seconds; its slot's counters stay "
                     "(default 300)")
    out.add_argument("--metrics-linger", metavar="S", type=float, default=15.0,
                     help="when watch ends by itself, serve up to S more seconds until Prometheus has "
                     "scraped the last exits (default 15; 0: do not wait)")


class _Interrupted(Exception):
    pass


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise _Interrupted(signum)


def config_from_args(args: argparse.Namespace, notices: list[str] | None = None,
                     ) -> tuple[EngineConfig, list[LaunchSpec], RestartPolicy]:
    """Everything the user typed, checked before anything starts; ``notices`` collects what
    the user should be told (a warning level that followed --crit down)."""
    if args.restart is not None and args.restart < 0:
        raise BadInput(f"--restart {args.restart}: give how many restarts, 0 or more")
    settings = load_config(Path(args.config) if args.config else None)
    config = engine_config_from(args, settings, notices.append if notices is not None else None)
    restart = config.restart if args.restart is None else replace(config.restart, max=args.restart)
    config = replace(config, inspect_heap=args.inspect_heap, restart=restart)
    if args.metrics_linger < 0:
        raise BadInput(f"--metrics-linger {args.metrics_linger:g}: give a number of seconds, 0 or more")
    if args.duration is not None and not args.duration > 0:
        raise BadInput(f"--duration {args.duration:g}: give a number of seconds above 0")
    mem_limit = parse_size(args.mem_limit) if args.mem_limit else None
    specs = [LaunchSpec(cmd, mem_limit_bytes=mem_limit) for cmd in args.run]
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if args.command:
        if not command:
            raise BadInput("empty command after --: give the program to run")
        specs.append(LaunchSpec(tuple(command), mem_limit_bytes=mem_limit))
    if mem_limit is not None and not specs:
        raise BadInput("--mem-limit applies to launched workers: add --run CMD or -- CMD")
    if not (specs or args.attach or args.children_of or args.match):
        raise BadInput("nothing to watch: give --run CMD, --attach PID, --children-of PID, --match REGEX or -- CMD")
    if restart.max > 0 and not specs:
        raise BadInput("--restart applies to launched workers: add --run CMD or -- CMD")
    return config, specs, restart


def run(args: argparse.Namespace, stdout: TextIO = sys.stdout, stderr: TextIO = sys.stderr) -> int:
    if args.print_config:
        stdout.write(example_config())
        return 0
    notices: list[str] = []
    try:
        config, specs, restart = config_from_args(args, notices)
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
        _follow(engine, printer, deadline, follows_more, first)
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
    if (none_started := missing.none_started(len(specs))) is not None:
        print(f"oomscope watch: {none_started}", file=stderr)
        return 2
    return 0


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
            from .recording import open_recorder
            sinks.append(open_recorder(Path(args.record), config, notice))
        if args.metrics_port is not None:
            from .prometheus.metrics import start_exporter
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
            live: set[str]) -> None:
    restarting: set[int | None] = set()  # slots whose next life is on its way
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


Printer = Callable[[Event], None]


HOOKED = (Threshold, WorkerExited, CauseUpdated, CrashLoop, ThreadExited, KernelOom, Doctor, Terminate, LevelsChanged)


class EventHook:
    """``--on-event CMD``: CMD gets each notable event as JSON on stdin.

    Hooks run side by side and are not waited for (a slow hook must not hold the events back);
    finished ones are collected as events come, the rest at the end, for a bounded time.
    """

    def __init__(self, command: str, err: TextIO, finish_timeout_s: float = 10.0) -> None:
        self.command = command
        self.err = err
        self.finish_timeout_s = finish_timeout_s
        self.running: list[subprocess.Popen[bytes]] = []
        self.failures = 0

    def wrap(self, printer: Printer) -> Printer:
        def both(event: Event) -> None:
            printer(event)
            if isinstance(event, HOOKED) and printed(event):
                self.run(event)
        return both

    def run(self, event: Event) -> None:
        self._collect()
        try:
            p = subprocess.Popen(["/bin/sh", "-c", self.command], stdin=subprocess.PIPE,
                                 start_new_session=True)
        except OSError as e:
            self._failed(f"cannot start the --on-event command: {e}")
            return
        assert p.stdin is not None
        try:
            p.stdin.write((json.dumps(event.to_json(), separators=(",", ":")) + "\n").encode())
            p.stdin.close()
        except BrokenPipeError:
            pass  # the hook did not read its stdin: its business
        self.running.append(p)

    def _collect(self) -> None:
        still = []
        for p in self.running:
            rc = p.poll()
            if rc is None:
                still.append(p)
            elif rc != 0:
                self._failed(f"the --on-event command exited with code {rc}")
        self.running = still

    def _failed(self, text: str) -> None:
        self.failures += 1
        if self.failures <= 3:  # say it, but do not flood the terminal
            self.err.write(f"oomscope watch: {text}\n")
            self.err.flush()

    def finish(self) -> None:
        deadline = time.monotonic() + self.finish_timeout_s
        for p in self.running:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._failed(f"the --on-event command (PID {p.pid}) still runs; left running")
        self._collect()


class JsonPrinter:
    """The ``--json`` contract: one event per line on stdout, flushed per line.

    Worker output is passed through on stderr, prefixed, so stdout stays pure JSON.
    """

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out = out
        self.err = err
        self.dispatch: Dispatcher[object] = Dispatcher({
            Output: self._output,
            Samples: lambda ev: self._write(ev.to_json_lines()),
            # Every other event prints its own JSON form, when ``watch`` prints it at all.
            Event: lambda ev: self._write([ev.to_json()]) if printed(ev) else None,
        }, name="watch --json")

    def __call__(self, event: Event) -> None:
        self.dispatch(event)

    def _output(self, event: Output) -> None:
        self.err.write(f"[{event.worker.id} {event.worker.name} {event.stream}] {event.line}\n")
        self.err.flush()

    def _write(self, objs: list[dict[str, Any]]) -> None:
        for obj in objs:
            self.out.write(json.dumps(obj, separators=(",", ":")) + "\n")
        self.out.flush()


class TextPrinter:
    """One readable line per state change; samples are left out."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def __call__(self, event: Event) -> None:
        text = describe(event)
        if text is not None:
            self.out.write(text + "\n")
            self.out.flush()


def printed(event: Event) -> bool:
    """What ``watch`` shows: not kernel log lines (the GUI's pane), not kills from before it
    started (replayed from the ring buffer), not its own end marker."""
    if isinstance(event, (KernelLineRead, Stopped)):
        return False
    if isinstance(event, KernelOom) and event.history:
        return False
    return True


def _stamp(event: Event) -> str:
    return time.strftime("%H:%M:%S", time.localtime(event.t))


def _describe_source(event: SourceChanged) -> str:
    st = event.state
    state = "ok" if st.ok else f"unavailable: {st.reason}"
    return f"{_stamp(event)} kernel log source {st.name}: {state}"


def _describe_kernel_oom(event: KernelOom) -> str | None:
    if event.history:
        return None
    r = event.record
    return (f"{_stamp(event)} kernel OOM kill of a process oomscope does not watch: PID {r.pid} "
            f"({r.comm}), anon-rss {format_size((r.anon_rss_kb or 0) * 1024)}, "
            f"{r.killer}" + (f" in {r.task_memcg}" if r.task_memcg else ""))


def _describe_notice(event: Notice) -> str:
    target = f" {event.worker.id} {event.worker.name}[{event.worker.pid}]" if event.worker else ""
    return f"{_stamp(event)}{target} {event.level}: {event.message}"


def _describe_started(event: WorkerStarted) -> str:
    cg = f" in cgroup {event.cgroup} (limit {format_size(event.cgroup_limit)})" if event.cgroup_limit else ""
    return f"{_stamp(event)} {_who(event.worker)} started{cg}: {' '.join(event.worker.cmd)}"


def _describe_attached(event: WorkerAttached) -> str:
    parent = f" (child of {event.parent_pid})" if event.parent_pid else ""
    cg = f", cgroup limit {format_size(event.cgroup_limit)}" if event.cgroup_limit else ""
    return f"{_stamp(event)} {_who(event.worker)} attached{parent}{cg}"


def _describe_threshold(event: Threshold) -> str:
    head = f"{_stamp(event)} {_who(event.worker)}"
    if event.level == "normal":
        return f"{head} back to normal: {event.metric} {format_size(event.value)}"
    return f"{head} {event.level.upper()}: {event.metric} {format_size(event.value)} >= {format_size(event.limit)}"


def _describe_terminate(event: Terminate) -> str:
    why = f" ({event.reason})" if event.reason else ""
    return f"{_stamp(event)} {_who(event.worker)} {event.signal} sent by {event.by}{why}"


def _cause_text(cause: str) -> str:
    return "KILLED BY THE OOM KILLER" if cause == OOM_KILL else cause


def _describe_exit(event: WorkerExited) -> str:
    detail = []
    if event.signal:
        detail.append(event.signal)
    if event.exit_code is not None:
        detail.append(f"exit code {event.exit_code}")
    if event.by:
        detail.append(f"by {event.by}")
    detail.extend(event.evidence)
    again = f"; restart in {event.restart_in_s:g} s" if event.restart_in_s is not None else ""
    return (f"{_stamp(event)} {_who(event.worker)} exited: {_cause_text(event.cause)}"
            + (f" ({'; '.join(detail)})" if detail else "") + again)


def _describe_thread_exit(event: ThreadExited) -> str:
    cause = "HEAP EXHAUSTED (heap-oom)" if event.cause == "heap-oom" else event.cause
    why = f": {event.message}" if event.message else ""
    return f"{_stamp(event)} {_who(event.worker)} worker thread {event.thread_id} of PID {event.pid} ended: {cause}{why}"


def _describe_cause_updated(event: CauseUpdated) -> str:
    return (f"{_stamp(event)} {_who(event.worker)} cause updated: {_cause_text(event.cause)} "
            f"(was {event.previous}; {'; '.join(event.evidence)})")


_DESCRIBE: Dispatcher[str | None] = Dispatcher({
    SourceChanged: _describe_source,
    KernelOom: _describe_kernel_oom,
    Notice: _describe_notice,
    LevelsChanged: lambda ev: f"{_stamp(ev)} " + _describe_levels(ev),
    WorkerStarted: _describe_started,
    WorkerAttached: _describe_attached,
    Threshold: _describe_threshold,
    Terminate: _describe_terminate,
    WorkerExited: _describe_exit,
    CrashLoop: lambda ev: f"{_stamp(ev)} {_who(ev.worker)} CRASH LOOP: {ev.message}",
    Doctor: lambda ev: f"{_stamp(ev)} {_who(ev.worker)} doctor: {ev.advice} ({ev.reason})",
    ThreadExited: _describe_thread_exit,
    CauseUpdated: _describe_cause_updated,
    Output: lambda ev: f"[{ev.worker.id} {ev.worker.name} {ev.stream}] {ev.line}",
    LevelPending: lambda ev: _describe_pending(ev),
}, ignore=(Samples, Heap, KernelLineRead, Stopped), name="watch (text)")


def _describe_pending(event: LevelPending) -> str | None:
    """``over critical 230.0 MiB (limit 200.0 MiB): critical in 2 s unless it drops``; the
    clearing event prints nothing (the threshold line, or nothing at all, says what followed)."""
    if event.level is None:
        return None
    return (f"{_stamp(event)} {_who(event.worker)} over {event.level} {format_size(event.value)} "
            f"(limit {format_size(event.limit)}): {event.level} in {event.sustain_s:g} s unless it drops")


def describe(event: Event) -> str | None:
    """The line ``watch`` prints for ``event`` without ``--json``; None for what it leaves out."""
    return _DESCRIBE(event)


def _who(w: WorkerRef) -> str:
    return f"{w.id} {w.name}[{w.pid}]" + (f" (slot {w.slot}, life {w.life})" if w.slot is not None and w.life > 1 else "")


def _describe_levels(event: LevelsChanged) -> str:
    """``levels changed: warning 400.0 MiB, critical 90% (rss)``; for one worker, its own."""
    c = event.thresholds
    if c is None:  # only ever for one worker: LevelsChanged refuses global levels of None
        return f"{_who(event.worker)} follows the global levels again" if event.worker else "levels changed"
    text = f"warning {c.warn or 'off'}, critical {c.crit or 'off'} ({c.metric})"
    actions = [f"{action} at {level}" for level, action in (("warning", c.on_warn), ("critical", c.on_crit))
               if action != "none"]
    if actions:
        text += "; " + ", ".join(actions)
    if event.worker is not None:
        return f"{_who(event.worker)} own levels: {text}"
    return f"levels changed: {text}"
