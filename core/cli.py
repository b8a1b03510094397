"""The ``oomscope`` command line: subcommands, and the GUI when none is given.

``core`` never imports Qt: the GUI subcommands are run by a callable the top-level entry
point passes in (``oomscope/__main__.py``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from . import watch
from .oomlog import cli as oomlog_cli

GuiRunner = Callable[[argparse.Namespace], int]
GUI_COMMANDS = ("gui", "demo", "open")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="oomscope",
        description="Watch worker processes' memory and tell why they die. "
        "Without a subcommand, opens the desktop app.",
    )
    sub = p.add_subparsers(dest="subcommand", metavar="COMMAND")
    w = sub.add_parser("watch", help="watch workers without a window (JSON lines with --json)",
                       description="Launch or attach to workers, sample their memory, report "
                       "threshold crossings and every exit with its cause.")
    watch.add_arguments(w)
    o = sub.add_parser("oom-log", help="parse kernel OOM kill reports (live or from saved logs)",
                       description="One record per OOM kill from the live kernel log or from "
                       "saved dmesg / journalctl -k / /dev/kmsg captures.")
    oomlog_cli.add_arguments(o)
    d = sub.add_parser("demo", help="the desktop app with bundled demo workers")
    d.add_argument("--screenshot", metavar="FILE")
    d.add_argument("--after", metavar="S", type=float, default=5.0)
    op = sub.add_parser("open", help="open a recorded session file in the desktop app")
    op.add_argument("file", metavar="FILE.db")
    return p


def main(argv: Sequence[str] | None = None, gui_runner: GuiRunner | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.subcommand == "watch":
        return watch.run(args)
    if args.subcommand == "oom-log":
        return oomlog_cli.run(args, sys.stdout, sys.stderr)
    if args.subcommand is None:
        args.subcommand = "gui"
    if gui_runner is None:
        print(f"oomscope {args.subcommand}: the desktop app is not available here", file=sys.stderr)
        return 2
    return gui_runner(args)
