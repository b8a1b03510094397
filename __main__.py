"""Entry point of the ``oomscope`` command: the CLI from core, the GUI from gui."""

from __future__ import annotations

import argparse
import sys


def _run_gui(args: argparse.Namespace) -> int:
    from oomscope.gui.platform_check import display_problem

    problem = display_problem()
    if problem is not None:
        # Qt would abort (SIGABRT) naming one library; say all of them, and how to get them.
        print(f"oomscope: {problem}", file=sys.stderr)
        return 2
    from oomscope.gui.app import run

    return run(args)


def main() -> None:
    from oomscope.core.cli import main as cli_main

    sys.exit(cli_main(sys.argv[1:], gui_runner=_run_gui))


if __name__ == "__main__":
    main()
