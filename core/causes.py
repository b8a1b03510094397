"""Why a worker died: the cause table of docs/DESIGN.md, from what the engine knows at exit."""

from __future__ import annotations

import signal
from collections.abc import Iterable
from dataclasses import dataclass

OOM_KILL, HEAP_OOM, TERMINATED, SIGNAL, EXIT, UNKNOWN = (
    "oom-kill",
    "heap-oom",
    "terminated",
    "signal",
    "exit",
    "unknown",
)
CAUSES = (OOM_KILL, HEAP_OOM, TERMINATED, SIGNAL, EXIT, UNKNOWN)
# Not a worker's cause: an OOM kill of a process nobody watches, as timelines show it.
KERNEL_OTHER = "kernel-oom"

# What V8 prints when the heap is exhausted (main thread: then abort(); worker thread: the
# Worker's 'error' event carries ERR_WORKER_OUT_OF_MEMORY).
_HEAP_OOM_MARKERS = (
    "JavaScript heap out of memory",
    "ERR_WORKER_OUT_OF_MEMORY",
    "Worker terminated due to reaching memory limit",
)


# The start of an exit's evidence when the shell could not find the program (exit code 127 with
# its "not found" on stderr): such a worker never ran, and is not restarted.
COMMAND_NOT_FOUND = "command not found"
_SHELL_NOT_FOUND = 127


def command_not_found(evidence: Iterable[str]) -> bool:
    """Whether an exit's evidence says its command was not found."""
    return any(line.startswith(COMMAND_NOT_FOUND + ": ") for line in evidence)


def _not_found_line(code: int | None, stderr_tail: Iterable[str]) -> str | None:
    """The shell's own "not found" line (dash: `sh: 1: x: not found`, bash: `…: command not
    found`) behind an exit code 127; a program that exits 127 by itself has none."""
    if code != _SHELL_NOT_FOUND:
        return None
    for line in reversed(list(stderr_tail)):
        if line.rstrip().endswith("not found"):
            return line.strip()
    return None


def signal_name(signum: int | None) -> str | None:
    if signum is None:
        return None
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"SIG{signum}"


@dataclass(frozen=True, slots=True)
class Verdict:
    cause: str
    exit_code: int | None
    signal: str | None
    by: str | None
    evidence: tuple[str, ...]


def classify(
    *,
    returncode: int | None,
    terminated_by: str | None,
    last_signal_sent: int | None,
    kernel_record_line: str | None,
    cgroup_oom_kills_rose: bool,
    kernel_log_ok: bool,
    stderr_tail: Iterable[str],
    no_status: str | None = None,
) -> Verdict:
    """The cause of one exit.

    ``returncode`` is Popen's (negative: killed by that signal); for an attached process what
    its pidfd told (Linux 6.15+), or None with ``no_status`` saying why it is not known.
    ``kernel_record_line`` is the kill line of a kernel record already matched to this worker
    (see oomlog/correlate.py).
    """
    sig = -returncode if returncode is not None and returncode < 0 else None
    code = returncode if returncode is not None and returncode >= 0 else None
    killed = sig == signal.SIGKILL
    shell_137 = code == 128 + signal.SIGKILL
    counter = ("cgroup oom_kill counter rose",) if cgroup_oom_kills_rose else ()
    if kernel_record_line is not None and (killed or returncode is None or shell_137) \
            and last_signal_sent != signal.SIGKILL:
        evidence = ("kernel: " + kernel_record_line.strip(),) + counter
        if terminated_by is not None:
            evidence += ("oomscope had sent " + (signal_name(last_signal_sent) or "a signal") + " before",)
        if shell_137:
            evidence += ("exit code 137: a process the worker waited for was SIGKILLed",)
        # The kernel's OOM killer always sends SIGKILL: for an attached process, whose status
        # we cannot read, the record says which signal ended it.
        ended = signal_name(sig) if sig is not None else (None if shell_137 else "SIGKILL")
        return Verdict(OOM_KILL, code, ended, None, evidence)
    # A SIGKILL oomscope did not send (it had sent SIGTERM, which the worker ignored) came from
    # elsewhere: nothing can catch it, so it is not the worker's answer to oomscope's signal.
    foreign_kill = terminated_by is not None and killed and last_signal_sent != signal.SIGKILL
    if terminated_by is not None and not foreign_kill:
        ended_by = sig if sig is not None else (last_signal_sent if code is None else None)
        evidence = ("oomscope sent " + (signal_name(last_signal_sent) or "a signal"),)
        return Verdict(TERMINATED, code, signal_name(ended_by), terminated_by, evidence)
    if cgroup_oom_kills_rose and not kernel_log_ok and (killed or returncode is None or shell_137):
        # No kernel log to name the victim: the counter of the worker's cgroup is the best
        # evidence there is (the record stays null).
        evidence = counter + ("kernel log unreadable: the cgroup counter is the only evidence",)
        if shell_137:
            evidence += ("exit code 137: a process the worker waited for was SIGKILLed",)
        return Verdict(OOM_KILL, code, signal_name(sig), None, evidence)
    if sig == signal.SIGABRT or code == 134:
        for line in stderr_tail:
            if any(marker in line for marker in _HEAP_OOM_MARKERS):
                return Verdict(HEAP_OOM, code, signal_name(sig), None, ("stderr: " + line.strip(),))
    aside: tuple[str, ...] = ()
    if cgroup_oom_kills_rose:
        aside = ("the worker's cgroup oom_kill counter rose, but no kernel record names this PID "
                 "(another process in the cgroup was OOM-killed, or the record is late)",)
    if foreign_kill:
        aside = (f"oomscope had sent {signal_name(last_signal_sent) or 'a signal'} ({terminated_by}) "
                 "before; the SIGKILL that ended it came from elsewhere",) + aside
    if sig is not None:
        return Verdict(SIGNAL, None, signal_name(sig), None, aside)
    if code is not None:
        missing = _not_found_line(code, stderr_tail)
        if missing is not None:
            aside = (f"{COMMAND_NOT_FOUND}: {missing}",) + aside
        return Verdict(EXIT, code, None, None, aside)
    why = f": {no_status}" if no_status else ""
    return Verdict(UNKNOWN, None, None, None, (f"attached process vanished; no exit status{why}",) + aside)
