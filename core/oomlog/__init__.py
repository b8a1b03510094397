"""Kernel OOM-killer reports (and systemd-oomd / earlyoom kills): sources, parser, CLI.

Public API::

    KillRecord                      one kill (records.py)
    KernelLine, LineDecoder         one decoded log line / per-line format detection (lines.py)
    OomParser                       incremental report assembly: feed(line) / flush() (parser.py)
    LogReader                       text lines -> records with the fast prefilter (reader.py)
    parse_lines, parse_bytes, parse_file
    KernelClock                     printk time -> wall time (clock.py)
    KmsgSource, JournalctlSource, DmesgSource, open_live_source, SourceState (sources.py)
"""

from .clock import KernelClock, WallTime
from .lines import FORMATS, KernelLine, LineDecoder
from .parser import OomParser
from .reader import LogReader, parse_bytes, parse_file, parse_lines
from .records import CONTRACT_FIELDS, KILLERS, KillRecord, latest_revisions
from .sources import DmesgSource, JournalctlSource, KmsgSource, LiveSource, SourceState, open_live_source

__all__ = [
    "CONTRACT_FIELDS",
    "FORMATS",
    "KILLERS",
    "DmesgSource",
    "JournalctlSource",
    "KernelClock",
    "KernelLine",
    "KillRecord",
    "KmsgSource",
    "LineDecoder",
    "LiveSource",
    "LogReader",
    "OomParser",
    "SourceState",
    "WallTime",
    "latest_revisions",
    "open_live_source",
    "parse_bytes",
    "parse_file",
    "parse_lines",
]
