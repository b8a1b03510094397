"""The one option every benchmark script takes: ``--quick``, a tiny run for the smoke tests."""

from __future__ import annotations

import argparse


def parser(doc: str | None, quick_help: str = "a tiny configuration") -> argparse.ArgumentParser:
    """The script's parser with ``--quick``; ``quick_help`` says what the tiny run is."""
    p = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0] if doc else None)
    p.add_argument("--quick", action="store_true",
                   help=f"{quick_help}: checks the script works, its figures mean little")
    return p


def quick(argv: list[str] | None, doc: str | None) -> bool:
    """Whether ``--quick`` is in ``argv`` (``None``: the command line)."""
    return bool(parser(doc).parse_args(argv).quick)
