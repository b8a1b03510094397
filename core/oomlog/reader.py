"""Text in, kill records out: decoding, a cheap prefilter, and the parser, for files and streams.

The hot path: most lines of a kernel log have nothing to do with OOM. While the parser is idle
(no report table being read, nothing waiting) a line that contains none of a few substrings every
OOM-related message has is counted and dropped without being decoded; only the rest pays for
format detection and regular expressions.
"""

from __future__ import annotations

import codecs
import gzip
import io
import os
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Final, cast

from ..errors import LogFormatError
from .clock import KernelClock
from .lines import LineDecoder
from .parser import OomParser
from .records import KillRecord, latest_revisions

_CHUNK: Final = 1 << 20
_SNIFF_LINES: Final = 50  # lines decoded in full before the prefilter may skip any


def might_matter(line: str) -> bool:
    """False only for lines that cannot be part of any OOM message we read.

    Substrings: "oom" (oom-killer, oom-kill:, oom_reaper, memory.oom.group, systemd-oomd,
    earlyoom, 'oom-kill'), "Kill"/"kill" (Kill process, Killed, killing, killed as a result),
    "emory" (Out of memory, Memory cgroup, memory pressure, low memory), " pid " (task-table
    header), "SIG"/"exited"/"dryrun" (earlyoom follow-ups), "OOM" and "result '" (systemd unit
    lines). Every pattern in messages.py contains one of them; a test keeps it so.
    """
    return (
        "oom" in line or "ill" in line and ("Kill" in line or "kill" in line) or "emory" in line
        or " pid " in line or "SIG" in line or "exited" in line or "dryrun" in line
        or "OOM" in line or "result '" in line
    )


class LogReader:
    """Feeds raw text lines through format detection and the parser.

    ``name`` is used in error messages; ``reference_time`` anchors year-less stamps (see
    ``lines.py``); ``clock`` is for live lines of this boot only.
    """

    def __init__(
        self,
        name: str = "<input>",
        *,
        reference_time: datetime | None = None,
        clock: KernelClock | None = None,
        prefilter: bool = True,
    ) -> None:
        self.name = name
        self.decoder = LineDecoder(reference_time)
        self.parser = OomParser(clock)
        self._prefilter = prefilter
        self.nonblank = 0
        self.binary_lines = 0

    def push(self, raw: str) -> list[KillRecord]:
        """One line (with or without its line ending). Never raises on content."""
        parser = self.parser
        if self._prefilter and self.nonblank >= _SNIFF_LINES and parser.idle and not might_matter(raw):
            parser.seen += 1
            return []
        if raw.endswith("\n"):
            raw = raw[:-1]
        if not raw.strip():
            return []
        self.nonblank += 1
        if "\x00" in raw:
            self.binary_lines += 1
        line = self.decoder.decode(raw)
        if line is None:
            return []
        return parser.feed(line)

    def push_many(self, lines: Iterable[str]) -> list[KillRecord]:
        """``push`` for many lines, with the prefilter inlined: this loop is the hot path."""
        out: list[KillRecord] = []
        push = self.push
        parser = self.parser
        skip = self._prefilter
        matter = might_matter
        skipped = 0
        for raw in lines:
            if skip and parser.idle and not matter(raw) and self.nonblank >= _SNIFF_LINES:
                skipped += 1
                continue
            if skipped:
                parser.seen += skipped
                skipped = 0
            got = push(raw)
            if got:
                out.extend(got)
        parser.seen += skipped
        return out

    def flush(self) -> list[KillRecord]:
        return self.parser.flush()

    @property
    def recognized(self) -> bool:
        """Did anything look like a log we know (a known line format or an OOM message)?"""
        return self.decoder.recognized > 0 or self.parser.matched > 0

    def check_recognized(self) -> None:
        """Raise ``LogFormatError`` for non-empty input in which nothing was recognised."""
        if self.nonblank == 0 or self.recognized:
            return
        what = "binary data" if self.binary_lines * 4 >= self.nonblank else "text in no known log format"
        raise LogFormatError(
            f"{self.name}: {what}: no kernel log or OOM message recognised. oom-log reads dmesg "
            "(plain, -r, -x, -T, --time-format iso), journalctl -k (short*, json), /dev/kmsg "
            "captures, syslog files, earlyoom and systemd-oomd output; save one with "
            "'dmesg > FILE' or 'journalctl -k -o json > FILE'."
        )


def parse_lines(
    lines: Iterable[str],
    *,
    name: str = "<input>",
    reference_time: datetime | None = None,
    check_format: bool = True,
) -> list[KillRecord]:
    """Parse text lines; the last revision of every record, in order of the kills.

    Raises ``LogFormatError`` when ``check_format`` and nothing in the input was recognised.
    """
    reader = LogReader(name, reference_time=reference_time)
    records = reader.push_many(lines)
    records.extend(reader.flush())
    if check_format:
        reader.check_recognized()
    return latest_revisions(records)


def parse_bytes(data: bytes, *, name: str = "<bytes>", reference_time: datetime | None = None) -> list[KillRecord]:
    """Parse a whole log held in memory (gzip-compressed logs are recognised and opened)."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise LogFormatError(f"{name}: broken gzip data ({e})") from None
    text = data.decode("utf-8", "replace")
    return parse_lines(text.split("\n"), name=name, reference_time=reference_time)


def iter_text_lines(stream: BinaryIO) -> Iterator[str]:
    """Lines of a binary stream, decoded as UTF-8 (invalid bytes become U+FFFD), CR stripped.

    Reads in 1 MiB chunks, so a huge file is never held whole; the last line may lack its newline.
    """
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    tail = ""
    while True:
        chunk = stream.read(_CHUNK)
        if not chunk:
            break
        text = tail + decoder.decode(chunk)
        parts = text.split("\n")
        tail = parts.pop()
        yield from parts
    tail += decoder.decode(b"", final=True)
    if tail:
        yield tail


def open_log(path: str | os.PathLike[str]) -> BinaryIO:
    """Open a log file for reading, transparently gunzipping; ``LogFormatError`` if unreadable."""
    p = Path(path)
    try:
        f: BinaryIO = open(p, "rb")  # noqa: SIM115 - handed to the caller
    except FileNotFoundError:
        raise LogFormatError(f"{p}: no such file: check the path (without a path, oom-log reads this machine's kernel log)") from None
    except IsADirectoryError:
        raise LogFormatError(f"{p}: is a directory; give a log file") from None
    except PermissionError:
        raise LogFormatError(f"{p}: permission denied; run as a user who may read it (or root)") from None
    except OSError as e:
        raise LogFormatError(f"{p}: cannot read: {e.strerror or e}") from None
    try:
        magic = f.peek(2)[:2] if isinstance(f, io.BufferedReader) else b""
    except OSError as e:
        f.close()
        raise LogFormatError(f"{p}: cannot read: {e.strerror or e}") from None
    if magic == b"\x1f\x8b":
        f.close()
        return cast(BinaryIO, gzip.open(p, "rb"))  # owns its file: closing it closes everything
    return f


def parse_file(path: str | os.PathLike[str]) -> list[KillRecord]:
    """Parse a saved log (any supported format, optionally gzip-compressed).

    Year-less stamps are anchored on the file's modification time (the log was written before).
    """
    p = Path(path)
    try:
        ref = datetime.fromtimestamp(p.stat().st_mtime)
    except OSError:
        ref = None
    with open_log(p) as f:
        try:
            return parse_lines(iter_text_lines(f), name=str(p), reference_time=ref)
        except (OSError, EOFError) as e:
            raise LogFormatError(f"{p}: cannot read: {getattr(e, 'strerror', None) or e}") from None
