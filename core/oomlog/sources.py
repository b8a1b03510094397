"""Live kernel-log sources for the engine's ``selectors`` loop: /dev/kmsg, journalctl, dmesg.

Every source has ``name``, ``fileno()`` (register it for EVENT_READ), ``read_available()``
(never blocks; returns the decoded lines that are there) and ``close()``. Records that were
already in the log when the source was opened are *replayed* by the first ``read_available()``
calls with ``history=True``; how each source knows where "now" starts:

* ``KmsgSource``: at open it reads /dev/kmsg until EAGAIN. Everything read so far is the ring
  buffer's content (history); a record stored after that read returns EAGAIN is new. Exact.
* ``JournalctlSource``: at open it runs ``journalctl -o json`` (no follow) to the end and keeps
  the last ``__CURSOR``; the follower then starts ``--after-cursor`` it. Exact, no overlap.
* ``DmesgSource``: at open it runs ``dmesg -r`` (no follow) to the end; the follower
  ``dmesg -r -w`` prints the buffer again and then follows, and lines stamped no later than the
  last replayed one are dropped. Nothing is lost; two records stamped in the same microsecond
  across the boundary would lose the second.

``open_live_source()`` tries them in this order and reports each one's state with a reason a user
can act on.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from ..errors import SourceUnavailable
from .lines import KernelLine, LineDecoder, journal_entry_to_line

_KMSG: Final = "/dev/kmsg"
_READ_SIZE: Final = 8192  # > the kernel's record limit (PRINTK_MESSAGE_MAX 2048 + dictionary)
_HISTORY_TIMEOUT_S: Final = 20.0
#: Journal matches: kernel messages plus the user-space OOM killers (OR-ed with "+").
JOURNAL_MATCHES: Final = ("_TRANSPORT=kernel", "+", "SYSLOG_IDENTIFIER=systemd-oomd", "+",
                          "SYSLOG_IDENTIFIER=earlyoom")


@dataclass(frozen=True, slots=True)
class SourceState:
    """Whether a source could be used; ``reason`` says why not and what would fix it."""

    name: str
    ok: bool
    reason: str | None = None


class LiveSource(Protocol):
    @property
    def name(self) -> str: ...

    def fileno(self) -> int: ...

    def read_available(self) -> list[KernelLine]: ...

    def close(self) -> None: ...


def _dmesg_restrict_hint() -> str:
    try:
        restricted = Path("/proc/sys/kernel/dmesg_restrict").read_text().strip() == "1"
    except OSError:
        restricted = False
    if restricted:
        return "kernel.dmesg_restrict=1: run as root or grant CAP_SYSLOG (or set kernel.dmesg_restrict=0)"
    return "permission denied: run as root or grant CAP_SYSLOG"


class KmsgSource:
    """/dev/kmsg, non-blocking: one record per read(), EAGAIN when there is nothing more.

    ``dropped`` counts records the kernel overwrote before we read them (EPIPE, seq gaps).
    """

    name: Final = "kmsg"

    def __init__(self, path: str = _KMSG) -> None:
        self.path = path
        try:
            self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except PermissionError:
            raise SourceUnavailable(f"{path}: {_dmesg_restrict_hint()}") from None
        except FileNotFoundError:
            raise SourceUnavailable(f"{path}: not present (a container without /dev/kmsg?)") from None
        except OSError as e:
            raise SourceUnavailable(f"{path}: cannot open: {e.strerror or e}") from None
        self._decoder = LineDecoder()
        self.dropped = 0
        self.overruns = 0
        self._last_seq: int | None = None
        try:
            self._backlog = self._drain(history=True)
        except OSError as e:
            os.close(self._fd)
            if e.errno in (errno.EPERM, errno.EACCES):
                raise SourceUnavailable(f"{path}: {_dmesg_restrict_hint()}") from None
            raise SourceUnavailable(f"{path}: cannot read: {e.strerror or e}") from None

    def fileno(self) -> int:
        return self._fd

    def read_available(self) -> list[KernelLine]:
        """Replayed history first (once), then whatever new records are there. Never blocks.

        Raises ``SourceUnavailable`` if the device fails (it does not on a healthy kernel).
        """
        out = self._backlog
        self._backlog = []
        try:
            out.extend(self._drain(history=False))
        except OSError as e:
            raise SourceUnavailable(f"{self.path}: read failed: {e.strerror or e}") from None
        return out

    def _drain(self, *, history: bool) -> list[KernelLine]:
        out: list[KernelLine] = []
        size = _READ_SIZE
        while True:
            try:
                data = os.read(self._fd, size)
                size = _READ_SIZE
            except BlockingIOError:
                return out
            except BrokenPipeError:
                # The ring buffer wrapped past our position; the next read continues at the oldest
                # record still there. The seq gap tells how many were lost.
                self.overruns += 1
                continue
            except InterruptedError:
                continue
            except OSError as e:
                if e.errno == errno.EINVAL and size == _READ_SIZE:
                    size = 16 * _READ_SIZE  # a record larger than any seen: read it whole
                    continue
                raise
            if not data:
                return out
            line = self._decode(data, history)
            if line is not None:
                out.append(line)

    def _decode(self, data: bytes, history: bool) -> KernelLine | None:
        text = data.decode("utf-8", "replace")
        first = text.split("\n", 1)[0]  # the rest is the record's dictionary (" SUBSYSTEM=...")
        line = self._decoder.decode(first, history=history)
        if line is not None and line.seq is not None:
            if self._last_seq is not None and line.seq > self._last_seq + 1:
                self.dropped += line.seq - self._last_seq - 1
            self._last_seq = line.seq
        return line

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> KmsgSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _PipeSource:
    """Shared plumbing: a follower subprocess whose stdout is a non-blocking pipe of lines."""

    name: str = "pipe"

    def __init__(self, argv: Sequence[str], decode: Callable[[str], KernelLine | None]) -> None:
        self._decode = decode
        try:
            self._proc: subprocess.Popen[bytes] = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, close_fds=True,
            )
        except OSError as e:
            raise SourceUnavailable(f"{argv[0]}: cannot start: {e.strerror or e}") from None
        assert self._proc.stdout is not None
        self._fd = self._proc.stdout.fileno()
        os.set_blocking(self._fd, False)
        self._partial = b""
        self._backlog: list[KernelLine] = []
        self.ended = False

    def fileno(self) -> int:
        return self._fd

    def read_available(self) -> list[KernelLine]:
        out = self._backlog
        self._backlog = []
        while True:
            try:
                chunk = os.read(self._fd, 65536)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            if not chunk:
                # The follower died (journald stopped, dmesg killed): the engine should see that.
                self.ended = True
                break
            data = self._partial + chunk
            parts = data.split(b"\n")
            self._partial = parts.pop()
            for part in parts:
                line = self._decode(part.decode("utf-8", "replace"))
                if line is not None:
                    out.append(line)
        return out

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()


def _run_history(argv: Sequence[str]) -> tuple[bytes, str]:
    try:
        done = subprocess.run(list(argv), stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=_HISTORY_TIMEOUT_S, check=False)
    except FileNotFoundError:
        raise SourceUnavailable(f"{argv[0]} not found") from None
    except subprocess.TimeoutExpired:
        raise SourceUnavailable(f"{' '.join(argv)} did not finish in {_HISTORY_TIMEOUT_S:.0f} s") from None
    except OSError as e:
        raise SourceUnavailable(f"{argv[0]}: cannot start: {e.strerror or e}") from None
    err = done.stderr.decode("utf-8", "replace").strip()
    if done.returncode != 0:
        raise SourceUnavailable(f"{' '.join(argv)} failed (exit {done.returncode}): {err or 'no message'}")
    return done.stdout, err


class JournalctlSource(_PipeSource):
    """``journalctl -f -o json`` over kernel messages and systemd-oomd/earlyoom."""

    name = "journalctl"

    def __init__(self, journalctl: str = "journalctl", *, history_lines: int = 10000) -> None:
        if shutil.which(journalctl) is None:
            raise SourceUnavailable("journalctl not found (no systemd journal on this system)")
        base = [journalctl, "--no-pager", "-o", "json", "-b"]
        out, err = _run_history([*base, "-n", str(history_lines), *JOURNAL_MATCHES])
        history: list[KernelLine] = []
        cursor: str | None = None
        for raw in out.split(b"\n"):
            line, cur = _journal_line(raw.decode("utf-8", "replace"), history=True)
            if line is not None:
                history.append(line)
            cursor = cur or cursor
        if not history and not _journald_running():
            raise SourceUnavailable("no journal (journald not running): " + (err or "journalctl printed nothing"))
        if not history and "not seeing messages" in err:
            raise SourceUnavailable(
                "journal not readable for this user: add it to the 'systemd-journal' or 'adm' group, or run as root"
            )
        follow = [*base, "-f"]
        follow += [f"--after-cursor={cursor}"] if cursor else ["-n", "0"]
        super().__init__([*follow, *JOURNAL_MATCHES], lambda text: _journal_line(text, history=False)[0])
        self._backlog = history


def _journal_line(text: str, *, history: bool) -> tuple[KernelLine | None, str | None]:
    text = text.strip()
    if not text.startswith("{"):
        return None, None
    try:
        obj = json.loads(text)
    except ValueError:
        return None, None
    if not isinstance(obj, dict):
        return None, None
    cursor = obj.get("__CURSOR")
    return journal_entry_to_line(obj, history=history), cursor if isinstance(cursor, str) else None


def _journald_running() -> bool:
    return Path("/run/systemd/journal/socket").exists() or Path("/run/systemd/journal").is_dir()


class DmesgSource(_PipeSource):
    """``dmesg -r -w`` (follow), after ``dmesg -r`` for the history."""

    name = "dmesg"

    def __init__(self, dmesg: str = "dmesg") -> None:
        if shutil.which(dmesg) is None:
            raise SourceUnavailable("dmesg not found (util-linux is not installed)")
        try:
            out, _err = _run_history([dmesg, "-r"])
        except SourceUnavailable as e:
            if "Operation not permitted" in str(e) or "Permission denied" in str(e):
                raise SourceUnavailable(f"dmesg: {_dmesg_restrict_hint()}") from None
            raise
        self._decoder = LineDecoder()
        history: list[KernelLine] = []
        for raw in out.decode("utf-8", "replace").split("\n"):
            line = self._decoder.decode(raw, history=True) if raw.strip() else None
            if line is not None:
                history.append(line)
        self._after_s = max((ln.kernel_time_s or 0.0 for ln in history), default=-1.0)
        # "dmesg -w" prints the whole buffer again, then follows: filtering out what the history
        # run returned leaves no gap (unlike "-W", which misses what is logged before it starts).
        # dmesg writes through stdio: into a pipe it would hold records back until 4 KiB pile up.
        stdbuf = shutil.which("stdbuf")
        prefix = [stdbuf, "-oL"] if stdbuf is not None else []
        super().__init__([*prefix, dmesg, "-r", "-w"], self._decode_after_history)
        self._backlog = history

    def _decode_after_history(self, text: str) -> KernelLine | None:
        line = self._decoder.decode(text) if text.strip() else None
        if line is not None and line.kernel_time_s is not None and line.kernel_time_s <= self._after_s:
            return None
        return line


def open_live_source(
    candidates: Sequence[str] = ("kmsg", "journalctl", "dmesg"),
) -> tuple[LiveSource | None, list[SourceState]]:
    """The first source that works, and the state of every one tried (in order).

    Returns ``(None, states)`` when none works; each state's reason says what to do.
    """
    states: list[SourceState] = []
    for name in candidates:
        try:
            src: LiveSource
            if name == "kmsg":
                src = KmsgSource()
            elif name == "journalctl":
                src = JournalctlSource()
            elif name == "dmesg":
                src = DmesgSource()
            else:
                states.append(SourceState(name, False, f"unknown source {name!r}"))
                continue
        except SourceUnavailable as e:
            states.append(SourceState(name, False, str(e)))
            continue
        states.append(SourceState(name, True, None))
        return src, states
    return None, states
