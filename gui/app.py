"""The desktop application (issue 4 builds the window; until then it says so)."""

from __future__ import annotations

import argparse
import sys


def run(args: argparse.Namespace) -> int:
    what = {"gui": "The desktop app", "demo": "oomscope demo", "open": "oomscope open"}[args.subcommand]
    print(
        f"{what} is not available yet in this version of oomscope. "
        "Use `oomscope watch` (headless, --json for machine-readable events) meanwhile.",
        file=sys.stderr,
    )
    return 2
