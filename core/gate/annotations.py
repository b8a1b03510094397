"""GitHub Actions workflow commands: each failure an ``::error``, each piece of advice a
``::warning``, so the run's page shows them without opening the log."""

from __future__ import annotations

from collections.abc import Sequence

from ..printable import printable
from .summary import WorkerSummary
from .verdict import Failure


def _data(text: str) -> str:
    # The runner's escaping for a command's message (workflow commands documentation); any other
    # control character (a process can name itself with terminal escapes) shown, not sent.
    return printable(text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A"))


def _prop(text: str) -> str:
    return _data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(level: str, title: str, message: str) -> str:
    return f"::{level} title={_prop(title)}::{_data(message)}"


def workflow_commands(workers: Sequence[tuple[WorkerSummary, Sequence[Failure]]]) -> list[str]:
    out: list[str] = []
    for w, failures in workers:
        who = f"oomscope: {w.ref.id} {w.ref.name}"
        for f in failures:
            # Room for one kill's key lines: trigger, usage, table header and row, oom-kill:, the
            # kill line, the reaper.
            out.append(annotation("error", f"{who} {f.kind}", "\n".join((f.message, *f.text[:8]))))
        for a in w.advice:
            out.append(annotation("warning", f"{who} doctor", f"{a['advice']} ({a['reason']})"))
    return out
