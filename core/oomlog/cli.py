"""``oomscope oom-log [PATH...|-] [--json] [--follow]``: kill records from kernel logs.

No PATH: this machine's live kernel log (what the ring buffer still holds; with ``--follow``,
then every new kill until interrupted). ``-``: standard input, read as a stream (records are
printed as their kill lines arrive, so ``journalctl -k -f | oomscope oom-log -`` works).

Output: a table (time, killer, pid, comm, anon-rss, memcg; text from the log with control
characters escaped), or with ``--json`` one contract object per kill per line. Exit status: 0
(also when no kill was found, empty input included, file or stdin: "no OOM kills found"), 2 when
a file cannot be read or is in no known format, or no live source can be read. Input is read
line by line in bounded memory (see ``reader.iter_text_lines``); what was skipped or mended is
said once per input on stderr.

Example::

    $ oomscope oom-log /var/log/kern.log
    TIME                        KILLER        PID  COMM      ANON-RSS   MEMCG
    2026-11-29T06:20:23.486274  kernel-memcg  6356 node      63.2 MiB   /research_oom_node
"""

from __future__ import annotations

import argparse
import json
import selectors
import sys
import zlib
from collections.abc import Iterable
from datetime import datetime
from typing import Final, TextIO

from ..errors import Error, LogFormatError
from ..printable import printable
from ..sizes import format_size
from .clock import KernelClock
from .reader import LogReader, gunzipped, read_log
from .records import KillRecord
from .sources import LiveSource, open_live_source

EXIT_OK: Final = 0
EXIT_UNREADABLE: Final = 2
NO_KILLS: Final = "no OOM kills found"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths", nargs="*", metavar="PATH",
        help="saved log(s): dmesg, journalctl -k (short*, json), /dev/kmsg capture, syslog, "
             "earlyoom/systemd-oomd output, optionally .gz; '-' for stdin. None: the live kernel log.",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per kill per line")
    parser.add_argument(
        "--follow", "-f", action="store_true",
        help="live kernel log only: after the replay, keep printing new kills until interrupted",
    )


class _Printer:
    def __init__(self, stdout: TextIO, as_json: bool) -> None:
        self._out = stdout
        self._json = as_json
        self._header_done = False
        self.count = 0

    def emit(self, records: Iterable[KillRecord]) -> None:
        for rec in records:
            if rec.revision > 0:
                continue  # streaming: the kill was already printed; a revision only adds detail
            self.print_one(rec)

    def print_one(self, rec: KillRecord) -> None:
        self.count += 1
        if self._json:
            self._out.write(json.dumps(rec.to_json(), ensure_ascii=False) + "\n")
        else:
            if not self._header_done:
                self._out.write(_row("TIME", "KILLER", "PID", "COMM", "ANON-RSS", "MEMCG"))
                self._header_done = True
            self._out.write(_row(*_cells(rec)))
        self._out.flush()


def _row(*cells: str) -> str:
    t, killer, pid, comm, anon, memcg = cells
    return f"{t:<32} {killer:<13} {pid:>7}  {comm:<16} {anon:>10}  {memcg}\n"


def _cells(rec: KillRecord) -> tuple[str, str, str, str, str, str]:
    if rec.wall_time is not None:
        when = rec.wall_time
    elif rec.wall_time_text is not None:
        when = rec.wall_time_text
    elif rec.kernel_time_s is not None:
        when = f"[{rec.kernel_time_s:.6f}]"
    elif rec.monotonic_time_s is not None:
        when = f"[{rec.monotonic_time_s:.6f}] mono"
    else:
        when = "-"
    anon = "-" if rec.anon_rss_kb is None else format_size(rec.anon_rss_kb * 1024, smallest="KiB")
    memcg = rec.task_memcg or rec.oom_memcg or rec.extra.get("killed_cgroup") or "-"
    comm = "-" if rec.comm is None else rec.comm
    pid = "-" if rec.pid is None else str(rec.pid)
    # Every text cell comes from the log: a process name (or a cgroup path) can carry terminal
    # escapes that must not act on the reader's terminal.
    return printable(when), printable(rec.killer), pid, printable(comm), anon, printable(str(memcg))


def run(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Run ``oom-log``; returns the exit status. Never raises for bad input."""
    printer = _Printer(stdout, bool(args.json))
    paths: list[str] = list(args.paths or [])
    try:
        if not paths:
            status = _run_live(printer, bool(args.follow), stderr)
        else:
            if args.follow:
                stderr.write("oom-log: --follow works with the live kernel log (no PATH); for a "
                             "pipe use '-' (e.g. journalctl -k -f -o json | oomscope oom-log -)\n")
                return EXIT_UNREADABLE
            status = EXIT_OK
            for path in paths:
                status = max(status, _run_path(path, printer, stderr))
    except KeyboardInterrupt:
        status = EXIT_OK
    except BrokenPipeError:
        return EXIT_OK  # "oom-log ... | head": the reader went away; nothing to report
    if printer.count == 0 and status == EXIT_OK:
        stdout.write(NO_KILLS + "\n")
    return status


def _run_path(path: str, printer: _Printer, stderr: TextIO) -> int:
    try:
        if path == "-":
            reader = LogReader("<stdin>", reference_time=datetime.now())
            for raw in reader.text_lines(gunzipped(sys.stdin.buffer, reader.name)):
                printer.emit(reader.push(raw))
            printer.emit(reader.flush())
            reader.check_recognized()
            notices = reader.notices()
        else:
            result = read_log(path)
            for rec in result.records:
                printer.print_one(rec)
            notices = result.notices
    except LogFormatError as e:
        stderr.write(f"oom-log: {e}\n")
        return EXIT_UNREADABLE
    except (OSError, EOFError, zlib.error) as e:  # a gzip stream cut short or corrupt
        stderr.write(f"oom-log: {path}: cannot read: {getattr(e, 'strerror', None) or e}\n")
        return EXIT_UNREADABLE
    for notice in notices:
        stderr.write(f"oom-log: {notice}\n")
    return EXIT_OK


def _run_live(printer: _Printer, follow: bool, stderr: TextIO) -> int:
    source, states = open_live_source()
    for st in states:
        if not st.ok:
            stderr.write(f"oom-log: {st.name}: {st.reason}\n")
    if source is None:
        stderr.write("oom-log: no kernel log source can be read (see above); or give a saved log as PATH\n")
        return EXIT_UNREADABLE
    reader = LogReader(source.name, clock=KernelClock())
    try:
        _pump(source, reader, printer)
        if follow:
            stderr.write(f"oom-log: following {source.name}; Ctrl-C to stop\n")
            stderr.flush()
            with selectors.DefaultSelector() as sel:
                sel.register(source.fileno(), selectors.EVENT_READ)
                while True:
                    sel.select()
                    if not _pump(source, reader, printer):
                        stderr.write(f"oom-log: {source.name} ended\n")
                        break
        printer.emit(reader.flush())
    finally:
        source.close()
    return EXIT_OK


def _pump(source: LiveSource, reader: LogReader, printer: _Printer) -> bool:
    parser = reader.parser
    for line in source.read_available():
        printer.emit(parser.feed(line))
    return not bool(getattr(source, "ended", False))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="oomscope oom-log", description="Kill records from kernel OOM-killer reports."
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args, sys.stdout, sys.stderr)
    except Error as e:
        sys.stderr.write(f"oom-log: {e}\n")
        return EXIT_UNREADABLE


if __name__ == "__main__":
    sys.exit(main())
