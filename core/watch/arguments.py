"""``oomscope watch``'s command line: its options, and the checks that turn them into the
engine's settings, the workers to launch and the restart policy before anything starts."""

from __future__ import annotations

import argparse
import re
from dataclasses import replace
from pathlib import Path

from ..config import load_config
from ..gate.gate import add_gate_arguments
from ..engine import EngineConfig
from ..errors import BadInput
from ..launch import LaunchSpec
from ..options import add_shared_options, engine_config_from, seconds_arg
from ..restart import RestartPolicy
from ..sizes import parse_size


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
    run.add_argument("--duration", metavar="S", type=seconds_arg(0, above=True),
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
    out.add_argument("--metrics-expire", metavar="S", type=seconds_arg(0, above=True), default=300.0,
                     help="a gone worker's gauges disappear after S seconds; its slot's counters stay "
                     "(default 300)")
    out.add_argument("--metrics-linger", metavar="S", type=seconds_arg(0), default=15.0,
                     help="when watch ends by itself, serve up to S more seconds until Prometheus has "
                     "scraped the last exits (default 15; 0: do not wait)")
    add_gate_arguments(p)


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
    for pattern in args.match:
        _check_match(pattern)
    if not (specs or args.attach or args.children_of or args.match):
        raise BadInput("nothing to watch: give --run CMD, --attach PID, --children-of PID, --match REGEX or -- CMD")
    if restart.max > 0 and not specs:
        raise BadInput("--restart applies to launched workers: add --run CMD or -- CMD")
    return config, specs, restart


def _check_match(pattern: str) -> None:
    """Refuse a --match pattern that matches every process (oomscope's own shell too): empty,
    blank, or matching empty text (``.*``, ``x?``). An invalid one is the engine's to explain."""
    try:
        matches_all = not pattern.strip() or re.search(pattern, "") is not None
    except re.error:
        return
    if matches_all:
        raise BadInput(f"--match {pattern!r} matches every process: give a part of the workers' "
                       "name or command line, e.g. --match 'gunicorn'")
