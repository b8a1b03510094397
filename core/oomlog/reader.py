"""Text in, kill records out: decoding, a cheap prefilter, and the parser, for files and streams.

The hot path: most lines of a kernel log have nothing to do with OOM. While the parser is idle
(no report table being read, nothing waiting) a line that contains none of a few substrings every
OOM-related message has is counted and dropped without being decoded; only the rest pays for
format detection and regular expressions.
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Final, cast

from ..errors import LogFormatError
from .clock import KernelClock
from .lines import LineDecoder
from .parser import OomParser
from .records import KillRecord, latest_revisions

_CHUNK: Final = 1 << 20
#: Longest line read (bytes): kernel log lines are under 1 KiB, a journal JSON entry a few KiB.
MAX_LINE: Final = 64 * 1024
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
        self.line_stats = LineStats()

    def text_lines(self, stream: BinaryIO) -> Iterator[str]:
        """``iter_text_lines`` of a stream, counted in this reader's ``line_stats``."""
        return iter_text_lines(stream, self.line_stats)

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
        odd = self.line_stats.nul_lines + self.line_stats.overlong
        if (self.nonblank == 0 and odd == 0) or self.recognized:
            return
        binary = (self.binary_lines + odd) * 4 >= self.nonblank + odd
        what = "binary data" if binary else "text in no known log format"
        raise LogFormatError(
            f"{self.name}: {what}: no kernel log or OOM message recognised. oom-log reads dmesg "
            "(plain, -r, -x, -T, --time-format iso), journalctl -k (short*, json), /dev/kmsg "
            "captures, syslog files, earlyoom and systemd-oomd output; save one with "
            "'dmesg > FILE' or 'journalctl -k -o json > FILE'."
        )

    def notices(self) -> list[str]:
        """What a user should know about input that was read anyway: lines skipped or mended."""
        out = []
        st = self.line_stats
        if st.overlong:
            out.append(f"{self.name}: skipped {_lines(st.overlong)} longer than {MAX_LINE // 1024} KiB "
                       "(kernel log lines are under 1 KiB: binary data?)")
        if st.nul_lines:
            out.append(f"{self.name}: removed NUL bytes from {_lines(st.nul_lines)} (a hole left in "
                       "the file by a crash, or binary data)")
        return out


def _lines(n: int) -> str:
    return "1 line" if n == 1 else f"{n} lines"


@dataclass(frozen=True)
class LogResult:
    """A saved log read whole: the last revision of every record, and the reader's notices."""

    records: list[KillRecord]
    notices: list[str]


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
    with gunzipped(io.BufferedReader(io.BytesIO(data)), name) as stream:
        return read_stream(stream, name=name, reference_time=reference_time).records


def read_stream(stream: BinaryIO, *, name: str, reference_time: datetime | None = None) -> LogResult:
    """Parse a binary stream to its end (see ``iter_text_lines`` for what bounds the cost).

    Raises ``LogFormatError`` when nothing in a non-empty input was recognised or a gzip
    stream is broken."""
    reader = LogReader(name, reference_time=reference_time)
    try:
        records = reader.push_many(reader.text_lines(stream))
    except (OSError, EOFError, zlib.error) as e:
        raise LogFormatError(f"{name}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    records.extend(reader.flush())
    reader.check_recognized()
    return LogResult(latest_revisions(records), reader.notices())


@dataclass
class LineStats:
    """What the line splitter did to a stream that was not all text: ``nul_lines`` held NUL
    bytes (removed: a syslog file's hole after a crash, a truncated copy, binary data);
    ``overlong`` lines were longer than ``MAX_LINE`` and skipped whole (no kernel log line is)."""

    nul_lines: int = 0
    overlong: int = 0


def iter_text_lines(stream: BinaryIO, stats: LineStats | None = None) -> Iterator[str]:
    """Lines of a binary stream, decoded as UTF-8 (invalid bytes become U+FFFD).

    Bounded whatever the input: reads at most 1 MiB at a time (what a pipe has, so its lines
    come as they are written), keeps at most ``MAX_LINE`` bytes of an unfinished line, and drops
    NUL bytes as they come, so a gigabyte of NULs costs the time to read it and no memory.
    ``stats`` (if given) counts what was removed or skipped. The last line may lack its newline.
    """
    stats = stats if stats is not None else LineStats()
    read = getattr(stream, "read1", stream.read)
    pending = b""  # the unfinished line, at most MAX_LINE bytes
    skipping = False  # the unfinished line grew past MAX_LINE: drop it up to its newline
    nul_open = False  # the unfinished line held NULs (counted once, however many chunks)
    while True:
        chunk = read(_CHUNK)
        if not chunk:
            break
        if b"\x00" in chunk:
            chunk, nul_open = _drop_nuls(chunk, stats, nul_open)
        elif nul_open and b"\n" in chunk:
            nul_open = False
        end = chunk.rfind(b"\n")
        if end < 0:
            if not skipping:
                pending, skipping = _hold(pending + chunk, stats)
            continue
        if skipping:  # the rest of the overlong line goes too
            first = chunk.find(b"\n", 0, end)
            pending, skipping = _hold(chunk[end + 1:], stats)
            if first < 0:
                continue
            whole = chunk[first + 1:end]
        else:
            whole = pending + chunk[:end]
            pending, skipping = _hold(chunk[end + 1:], stats)
        parts = whole.decode("utf-8", "replace").split("\n")
        if len(whole) > MAX_LINE and max(map(len, parts)) > MAX_LINE:
            stats.overlong += sum(1 for x in parts if len(x) > MAX_LINE)
            parts = [x for x in parts if len(x) <= MAX_LINE]
        yield from parts
    if pending and not skipping:
        yield pending.decode("utf-8", "replace")


def _drop_nuls(chunk: bytes, stats: LineStats, nul_open: bool) -> tuple[bytes, bool]:
    """``chunk`` without its NULs, and whether its unfinished last line held any."""
    if b"\n" not in chunk:  # inside one line (a hole): no need to look at lines
        stats.nul_lines += 0 if nul_open else 1
        return chunk.translate(None, b"\x00"), True
    segments = chunk.split(b"\n")
    held = [b"\x00" in seg for seg in segments]
    stats.nul_lines += sum(held) - (1 if nul_open and held[0] else 0)
    return chunk.translate(None, b"\x00"), held[-1]


def _hold(tail: bytes, stats: LineStats) -> tuple[bytes, bool]:
    """The unfinished line kept for the next chunk, and whether it is being skipped (longer
    than MAX_LINE: kept no longer, counted once)."""
    if len(tail) > MAX_LINE:
        stats.overlong += 1
        return b"", True
    return tail, False


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
        compressed = _is_gzip(f, str(p))
    except LogFormatError:
        f.close()
        raise
    if compressed:
        f.close()
        return cast(BinaryIO, gzip.open(p, "rb"))  # owns its file: closing it closes everything
    return f


def gunzipped(stream: BinaryIO, name: str) -> BinaryIO:
    """A buffered (peekable) stream as text bytes: gunzipped when it starts with gzip's magic,
    so ``oom-log -`` takes a compressed log as it takes a compressed file."""
    return cast(BinaryIO, gzip.GzipFile(fileobj=stream, mode="rb")) if _is_gzip(stream, name) else stream


def _is_gzip(f: BinaryIO, name: str) -> bool:
    peek = getattr(f, "peek", None)
    try:
        return peek is not None and peek(2)[:2] == b"\x1f\x8b"
    except OSError as e:
        raise LogFormatError(f"{name}: cannot read: {e.strerror or e}") from None


def read_log(path: str | os.PathLike[str]) -> LogResult:
    """Read a saved log (any supported format, optionally gzip-compressed): its records and
    notices. Year-less stamps are anchored on the file's modification time (the log was
    written before)."""
    p = Path(path)
    try:
        ref = datetime.fromtimestamp(p.stat().st_mtime)
    except OSError:
        ref = None
    with open_log(p) as f:
        return read_stream(f, name=str(p), reference_time=ref)


def parse_file(path: str | os.PathLike[str]) -> list[KillRecord]:
    """The records of a saved log (``read_log`` without the notices)."""
    return read_log(path).records
