"""The ``oomscope`` command line: subcommands, and the GUI when none is given.

``core`` never imports Qt: the GUI subcommands are run by a callable the top-level entry
point passes in (``oomscope/__main__.py``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from .options import add_shared_options, seconds_arg
from .oomlog import cli as oomlog_cli
from .recording import cli as recording_cli
from .watch import arguments as watch_arguments, run as watch_run

GuiRunner = Callable[[argparse.Namespace], int]
GUI_COMMANDS = ("gui", "demo", "open")


class _Parser(argparse.ArgumentParser):
    """A mistyped option gets its reason and a one-line hint, not the whole usage (13 lines
    for ``watch``) in front of the reason. Subcommands' parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}\n(`{self.prog} --help` lists the options)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="oomscope",
        description="Watch worker processes' memory and tell why they die. "
        "Without a subcommand, opens the desktop app.",
    )
    gui = p.add_argument_group("desktop app (no subcommand)")
    add_shared_options(gui, gui, gui)
    _add_screenshot_options(gui)
    sub = p.add_subparsers(dest="subcommand", metavar="COMMAND")
    w = sub.add_parser("watch", help="watch workers without a window (JSON lines with --json)",
                       description="Launch or attach to workers, sample their memory, report "
                       "threshold crossings and every exit with its cause.")
    watch_arguments.add_arguments(w)
    o = sub.add_parser("oom-log", help="parse kernel OOM kill reports (live or from saved logs)",
                       description="One record per OOM kill from the live kernel log or from "
                       "saved dmesg / journalctl -k / /dev/kmsg captures.")
    oomlog_cli.add_arguments(o)
    e = sub.add_parser("export", help="a recorded session file as CSV or JSON (or list its sessions)",
                       description="Export a session file recorded with `oomscope watch --record`: "
                       "one CSV per table, or one JSON document. Without --csv/--json: list its sessions.")
    recording_cli.add_arguments(e)
    d = sub.add_parser("demo", help="the desktop app with bundled demo workers")
    _add_screenshot_options(d)
    op = sub.add_parser("open", help="open a recorded session file in the desktop app")
    op.add_argument("file", metavar="FILE.db")
    _add_screenshot_options(op)
    return p


def _add_screenshot_options(p: argparse._ActionsContainer) -> None:
    p.add_argument("--screenshot", metavar="FILE.png",
                   help="render the window offscreen to FILE.png after --after seconds, then exit")
    p.add_argument("--after", metavar="S", type=seconds_arg(0), default=5.0,
                   help="seconds to run before the screenshot (default 5)")


_VALUE_OPTIONS = ("--warn", "--crit", "--mem-limit", "--mem-high", "--interval", "--duration", "--grace", "--heap-interval", "--sustain", "--hysteresis", "--metrics-linger", "--metrics-expire",
                 "--after")


def join_negative_values(argv: Sequence[str]) -> list[str]:
    """``--warn -5MiB`` → ``--warn=-5MiB``.

    argparse takes ``-5MiB`` for an option and answers "expected one argument"; joined, the
    value reaches the size parser, which says what is wrong with it.
    """
    out: list[str] = []
    it = iter(argv)
    for token in it:
        if token == "--":
            out.append(token)
            out.extend(it)
            break
        if token in _VALUE_OPTIONS:
            nxt = next(it, None)
            if nxt is not None and nxt.startswith("-") and not nxt.startswith("--"):
                out.append(f"{token}={nxt}")
                continue
            out.append(token)
            if nxt is not None:
                out.append(nxt)
            continue
        out.append(token)
    return out


def main(argv: Sequence[str] | None = None, gui_runner: GuiRunner | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(join_negative_values(sys.argv[1:] if argv is None else argv))
    if args.subcommand == "watch":
        return watch_run.run(args)
    if args.subcommand == "oom-log":
        return oomlog_cli.run(args, sys.stdout, sys.stderr)
    if args.subcommand == "export":
        return recording_cli.run(args, sys.stdout, sys.stderr)
    if args.subcommand is None:
        args.subcommand = "gui"
    if gui_runner is None:
        print(f"oomscope {args.subcommand}: the desktop app is not available here", file=sys.stderr)
        return 2
    return gui_runner(args)
