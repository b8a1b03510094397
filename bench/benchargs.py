"""The one option every benchmark script takes: ``--quick``, a tiny run for the smoke tests."""

from __future__ import annotations

import argparse


def parser(doc: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0] if doc else None)
    p.add_argument("--quick", action="store_true",
                   help="a tiny configuration: checks the script works, its figures mean little")
    return p


def quick(argv: list[str] | None, doc: str | None) -> bool:
    """Whether ``--quick`` is in ``argv`` (``None``: the command line)."""
    return bool(parser(doc).parse_args(argv).quick)
