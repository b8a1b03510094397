"""One log line in, one ``KernelLine`` out: transport/format detection and timestamp extraction.

Longer than the project's ~500 lines on purpose: one detector per format below, tried in turn
by one loop that must see them all (the last format that matched is tried first).

Formats (tests/data/oom-corpus/FORMATS.md section 4), detected per line, the last format that matched tried first:

=====================  ===================================================================
``kmsg``               ``prio,seq,usec,flags;msg`` (/dev/kmsg); lines starting with a space
                       right after a kmsg record are its dictionary (``SUBSYSTEM=``) and dropped
``dmesg``              ``[  663.894866] msg``, also with CONFIG_PRINTK_CALLER ``[t][ T123] msg``
``dmesg-raw``          ``<4>[  663.894866] msg`` (``dmesg -r``)
``dmesg-x``            ``kern  :warn  : [  663.894866] msg`` (``dmesg -x``, any time format)
``dmesg-T``            ``[Sun Nov 29 06:20:22 2026] msg`` (ctime; any locale's names)
``dmesg-iso``          ``2026-11-29T06:20:22,894866+00:00 msg`` (comma before the usec)
``dmesg-reltime``      ``[Nov29 06:20] msg`` / ``[  +0.000012] msg`` / ``[<    0.000012>] msg``
``journal-short``      ``Nov 29 06:20:23[.507022] host ident[pid]: msg`` (also rsyslog files;
                       month names in any locale; no year)
``journal-short-iso``  ``2026-11-29T06:20:23[.507022]+0000 host ident[pid]: msg`` (also RFC 3339
                       rsyslog)
``journal-short-full`` ``Sun 2026-11-29 06:20:23 UTC host ident[pid]: msg``
``journal-short-unix`` ``1795933223.507022 host ident[pid]: msg``
``journal-short-monotonic`` ``[  663.894866] host kernel: msg`` / ``[ 77.7] systemd-oomd[659]: msg``
``journal-json``       ``journalctl -o json``; ``MESSAGE`` may be an array of byte values
``bare``               anything else: the whole line is the message, no time
=====================  ===================================================================

The kernel's own printk stamp (``[  518.050606]``) inside a syslog/journal kernel message is
taken as ``kernel_time_s`` too. Decoding never raises: a line that fits no format is ``bare``.

Wall-clock stamps are kept as printed (``wall_time_text``) and, where they can be, converted to
ISO-8601 (``wall_time``): zone-less stamps (dmesg -T, syslog) stay zone-less ISO (local time of
the machine that printed them), and a stamp without a year gets the latest year that does not put
it more than a day after ``reference_time`` (the file's mtime for files, now for streams).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final

# Transport identifiers the parser cares about; every other syslog/journal tag is noise to it.
IDENT_KERNEL: Final = "kernel"
IDENT_USER: Final = "user"  # a user-space write to /dev/kmsg (facility != 0)
DAEMON_IDENTS: Final = frozenset({"systemd-oomd", "earlyoom", "systemd"})

_JOURNAL_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class KernelLine:
    """A decoded log line.

    ``raw`` is the line as a human should see it in a record's ``lines``: the input line without
    its line ending, or, for journal JSON, the ``MESSAGE`` text (the JSON object is not something
    to show). ``ident`` is ``"kernel"`` for kernel messages, the syslog/journal tag for others,
    ``"user"`` for user-space writes to /dev/kmsg, ``None`` when the transport does not say
    (dmesg without -x/-r, bare text): the parser then tries every message kind.
    """

    message: str
    raw: str = ""
    fmt: str = "bare"
    kernel_time_s: float | None = None
    monotonic_time_s: float | None = None
    wall_time_text: str | None = None
    wall_time: str | None = None
    wall_time_source: str | None = None
    wall_time_usec: int | None = None
    wall_time_unix: float | None = None
    ident: str | None = None
    ident_pid: int | None = None
    facility: int | None = None
    level: int | None = None
    seq: int | None = None
    caller: str | None = None
    history: bool = False
    extra: Mapping[str, Any] | None = None

    @property
    def text(self) -> str:
        """The line as a person should see it (the kernel log pane, a session file)."""
        return self.raw or self.message


# --- month names ------------------------------------------------------------------------------
# journalctl and dmesg -T print month names in the LC_TIME locale (tests/data/oom-corpus/FORMATS.md 4.3: "апр").
_MONTHS: Final[dict[str, int]] = {}
for _names in (
    "jan feb mar apr may jun jul aug sep oct nov dec",  # C / English
    "янв фев мар апр май июн июл авг сен окт ноя дек",  # ru (nominative abbreviations)
    "янв фев мар апр мая июн июл авг сен окт ноя дек",  # ru (genitive "мая")
    "jan feb mär apr mai jun jul aug sep okt nov dez",  # de
    "janv févr mars avr mai juin juil août sept oct nov déc",  # fr
    "ene feb mar abr may jun jul ago sep oct nov dic",  # es
    "gen feb mar apr mag giu lug ago set ott nov dic",  # it
    "jan fev mar abr mai jun jul ago set out nov dez",  # pt
    "sty lut mar kwi maj cze lip sie wrz paź lis gru",  # pl
    "jan feb mrt apr mei jun jul aug sep okt nov dec",  # nl
):
    for _i, _n in enumerate(_names.split(), start=1):
        _MONTHS.setdefault(_n, _i)


def month_number(name: str) -> int | None:
    """1-12 for a month name or abbreviation in one of the common locales, else None."""
    key = name.strip(".").lower()
    got = _MONTHS.get(key)
    if got is None and len(key) > 3:
        got = _MONTHS.get(key[:3])
    return got


# --- regular expressions, one per format ---------------------------------------------------------
_T = r"\[\s*(\d+\.\d+)\]"  # printk stamp
_CALLER = r"(?:\[\s*([TC]\d+)\])?"  # CONFIG_PRINTK_CALLER
_TAG = r"([^\s\[:]+)(?:\[(\d+)\])?: ?"  # journal/syslog identifier[pid]:

_RE_KMSG = re.compile(r"(\d+),(\d+),(\d+),([^;,]*)(?:,caller=([TC]\d+))?[^;]*;(.*)\Z", re.S)
_RE_DMESG = re.compile(_T + _CALLER + r" ?(.*)\Z", re.S)
_RE_DMESG_RAW = re.compile(r"<(\d{1,3})>" + _T + _CALLER + r" ?(.*)\Z", re.S)
_RE_DMESG_X = re.compile(r"([a-z]+)\s*:([a-z]+)\s*: (.*)\Z", re.S)
_RE_DMESG_T = re.compile(
    r"\[(([^\W\d_]+\.?) +([^\W\d_]+\.?) +(\d{1,2}) (\d\d):(\d\d):(\d\d) (\d{4}))\]" + _CALLER + r" ?(.*)\Z",
    re.S,
)
_RE_DMESG_ISO = re.compile(
    r"((\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d),(\d+)([+-]\d\d:?\d\d|Z)) (.*)\Z", re.S
)
_RE_DMESG_REL = re.compile(r"\[(?:<\s*[\d.]+>|\s*\+\s*[\d.]+|[^\W\d_]+\d+ \d\d:\d\d)\] ?(.*)\Z", re.S)
_RE_SHORT = re.compile(
    r"(([^\W\d_]{2,}\.?) +(\d{1,2}) (\d\d):(\d\d):(\d\d)(?:\.(\d+))?) (\S+) " + _TAG + r"(.*)\Z", re.S
)
_RE_SHORT_ISO = re.compile(
    r"((\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?([+-]\d\d:?\d\d|Z)?) (\S+) "
    + _TAG
    + r"(.*)\Z",
    re.S,
)
_RE_SHORT_FULL = re.compile(
    r"([^\W\d_]{2,}\.? ((\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d+))?)(?: \S+)?) (\S+) "
    + _TAG
    + r"(.*)\Z",
    re.S,
)
_RE_SHORT_UNIX = re.compile(r"((\d{9,11})\.(\d{1,9})) (\S+) " + _TAG + r"(.*)\Z", re.S)
# Inside a bracket-stamped line: "host kernel: msg" (short-monotonic) or a daemon's "ident[pid]: ".
_RE_MONO_KERNEL = re.compile(r"(?:\S+ )?kernel: ?(.*)\Z", re.S)
_RE_MONO_DAEMON = re.compile(r"(?:\S+ )?(systemd-oomd|earlyoom|systemd)\[(\d+)\]: ?(.*)\Z", re.S)
_RE_KERNEL_STAMP = re.compile(_T + _CALLER + r" ?(.*)\Z", re.S)
_RE_KMSG_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")

_SRC_DMESG_T: Final = "dmesg -T (boot time + printk timestamp, computed by util-linux at read time)"
_SRC_DMESG_ISO: Final = "dmesg --time-format iso (computed by util-linux at read time)"
_SRC_RECEIVE: Final = "journald/syslog receive time"
_SRC_JOURNAL_KERNEL: Final = (
    "journald: __REALTIME_TIMESTAMP - (__MONOTONIC_TIMESTAMP - _SOURCE_MONOTONIC_TIMESTAMP)"
)
_SRC_JOURNAL_RECEIVE: Final = "journald __REALTIME_TIMESTAMP (receive time)"
_SRC_JOURNAL_SOURCE: Final = "journald _SOURCE_REALTIME_TIMESTAMP (sender's clock)"

_FACILITY_NAMES: Final = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
    "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
}  # fmt: skip
_LEVEL_NAMES: Final = {
    "emerg": 0, "alert": 1, "crit": 2, "err": 3, "warn": 4, "notice": 5, "info": 6, "debug": 7,
}  # fmt: skip


def _int(value: Any) -> int | None:
    """journald JSON values are strings; anything odd becomes None instead of an exception."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _iso_from_usec(usec: int) -> tuple[str | None, float | None]:
    """ISO text and Unix seconds of a µs stamp; (None, None) for one no calendar holds
    (a mangled or hostile line must not stop a reader)."""
    try:
        dt = _JOURNAL_EPOCH + timedelta(microseconds=usec)
    except OverflowError:
        return None, None
    return dt.isoformat(timespec="microseconds"), usec / 1e6


def _tz(text: str | None) -> timezone | None:
    if not text:
        return None
    if text == "Z":
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    try:
        return timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0)))
    except ValueError:
        return None


def _frac_us(frac: str | None) -> int:
    if not frac:
        return 0
    return int((frac + "000000")[:6])


def _date(year: int | str, month: int | str | None, clock: Sequence[str | Any],
          tz: timezone | None = None) -> datetime | None:
    """The moment a printed stamp names (``clock``: day, hour, minute, second and an optional
    fraction, as printed); None where its numbers make no date (a mangled line must not stop a
    reader)."""
    if month is None:
        return None
    day, hour, minute, second, *frac = clock
    try:
        return datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                        _frac_us(frac[0] if frac else None), tzinfo=tz)
    except (ValueError, OverflowError):
        return None


def _stamp_iso(dt: datetime | None, has_fraction: bool) -> tuple[str | None, float | None]:
    return (None, None) if dt is None else _local_iso(dt, has_fraction)


def _local_iso(dt: datetime, has_fraction: bool) -> tuple[str, float | None]:
    """ISO text of a (possibly naive) datetime and its Unix seconds (naive = this machine's zone)."""
    text = dt.isoformat(timespec="microseconds" if has_fraction else "seconds")
    try:
        unix = dt.timestamp()
    except (OverflowError, OSError, ValueError):
        unix = None
    return text, unix


def readable_line(raw: str) -> str:
    """A ``/dev/kmsg`` record as ``dmesg`` shows it (``[  8700.139923] message``); any other
    line as it is. Records keep their lines verbatim; this is for people reading them."""
    m = _RE_KMSG.match(raw)
    if m is None:
        return raw
    usec = int(m.group(3))
    return f"[{usec // 1_000_000:>6}.{usec % 1_000_000:06d}] {unescape_kmsg(m.group(6))}"


def unescape_kmsg(text: str) -> str:
    """/dev/kmsg escapes control characters and non-printables as ``\\xNN`` (tests/data/oom-corpus/FORMATS.md 4.1)."""
    if "\\x" not in text:
        return text
    def _one(m: re.Match[str]) -> str:
        return chr(int(m.group(1), 16))
    # Escaped bytes >= 0x80 are UTF-8 fragments: rebuild the bytes, then decode once.
    raw = _RE_KMSG_ESCAPE.sub(_one, text)
    try:
        return raw.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return raw


class LineDecoder:
    """Turns raw text lines into ``KernelLine`` objects. Never raises on odd input.

    ``reference_time`` anchors the year of year-less stamps (syslog, journal short).
    """

    def __init__(self, reference_time: datetime | None = None) -> None:
        self._ref = reference_time if reference_time is not None else datetime.now()
        if self._ref.tzinfo is not None:
            self._ref = self._ref.astimezone().replace(tzinfo=None)
        self._last: str | None = None
        self._after_kmsg = False
        self.recognized = 0  # lines that matched a format other than bare

    # The order formats are tried in when the last one did not match. Cheap, specific ones first.
    def decode(self, raw: str, *, history: bool = False) -> KernelLine | None:
        """Decode one line (without its newline). None for lines that carry nothing (kmsg
        dictionary lines); a ``bare`` KernelLine for anything unrecognised."""
        if raw.endswith("\r"):
            raw = raw.rstrip("\r")
        if self._after_kmsg and raw.startswith(" "):
            # /dev/kmsg dictionary ("SUBSYSTEM=acpi") belonging to the record before it.
            return None
        last = self._last
        if last is not None:
            got = self._try(last, raw, history)
            if got is not None:
                return got
        for fmt in _ORDER:
            if fmt == last:
                continue
            got = self._try(fmt, raw, history)
            if got is not None:
                self._last = fmt
                return got
        self._after_kmsg = False
        return KernelLine(message=raw, raw=raw, fmt="bare", history=history)

    def _try(self, fmt: str, raw: str, history: bool) -> KernelLine | None:
        got = _DECODERS[fmt](self, raw, history)
        if got is not None:
            self.recognized += 1
            self._after_kmsg = fmt == "kmsg"
        return got

    # --- one method per format ---------------------------------------------------------------
    def _kmsg(self, raw: str, history: bool) -> KernelLine | None:
        if not raw[:1].isdigit():
            return None
        m = _RE_KMSG.match(raw)
        if m is None:
            return None
        prio = int(m.group(1))
        facility = prio >> 3
        msg = unescape_kmsg(m.group(6))
        ident: str | None = IDENT_KERNEL if facility == 0 else IDENT_USER
        ident_pid = None
        if facility != 0:
            dm = _RE_MONO_DAEMON.match(msg)
            if dm is not None:
                ident, ident_pid, msg = dm.group(1), int(dm.group(2)), dm.group(3)
        return KernelLine(
            message=msg,
            raw=raw,
            fmt="kmsg",
            kernel_time_s=int(m.group(3)) / 1e6,
            ident=ident,
            ident_pid=ident_pid,
            facility=facility,
            level=prio & 7,
            seq=int(m.group(2)),
            caller=m.group(5),
            history=history,
        )

    def _bracketed(
        self, fmt: str, raw: str, stamp: str, caller: str | None, msg: str, history: bool,
        facility: int | None = None, level: int | None = None,
    ) -> KernelLine:
        t = float(stamp)
        km = _RE_MONO_KERNEL.match(msg) if "kernel:" in msg[:80] else None
        if km is not None:
            return KernelLine(
                message=km.group(1), raw=raw, fmt="journal-short-monotonic", kernel_time_s=t,
                ident=IDENT_KERNEL, caller=caller, history=history,
            )
        if "]: " in msg[:80]:
            dm = _RE_MONO_DAEMON.match(msg)
            if dm is not None:
                # A journal entry (or a journald line forwarded to kmsg): its stamp is a
                # CLOCK_MONOTONIC receive time, not a printk time of a kernel message.
                return KernelLine(
                    message=dm.group(3), raw=raw, fmt=fmt, monotonic_time_s=t, ident=dm.group(1),
                    ident_pid=int(dm.group(2)), caller=caller, history=history,
                )
        # dmesg -r prints <level> only for kernel records, <facility*8+level> for others: a
        # facility above 0 is a user-space write; 0 proves nothing, so the parser tries all kinds.
        ident: str | None = IDENT_USER if facility else None
        return KernelLine(
            message=msg, raw=raw, fmt=fmt, kernel_time_s=t, ident=ident, facility=facility,
            level=level, caller=caller, history=history,
        )

    def _dmesg(self, raw: str, history: bool) -> KernelLine | None:
        if not raw.startswith("["):
            return None
        m = _RE_DMESG.match(raw)
        if m is None:
            return None
        return self._bracketed("dmesg", raw, m.group(1), m.group(2), m.group(3), history)

    def _dmesg_raw(self, raw: str, history: bool) -> KernelLine | None:
        if not raw.startswith("<"):
            return None
        m = _RE_DMESG_RAW.match(raw)
        if m is None:
            return None
        prio = int(m.group(1))
        return self._bracketed(
            "dmesg-raw", raw, m.group(2), m.group(3), m.group(4), history, prio >> 3, prio & 7
        )

    def _dmesg_x(self, raw: str, history: bool) -> KernelLine | None:
        m = _RE_DMESG_X.match(raw)
        if m is None or m.group(1) not in _FACILITY_NAMES:
            return None
        facility = _FACILITY_NAMES[m.group(1)]
        level = _LEVEL_NAMES.get(m.group(2))
        rest = m.group(3)
        for sub in ("dmesg", "dmesg-T", "dmesg-iso", "dmesg-reltime"):
            inner = _DECODERS[sub](self, rest, history)
            if inner is not None:
                ident = inner.ident
                if ident is None:
                    ident = IDENT_KERNEL if facility == 0 else IDENT_USER
                return replace(inner, raw=raw, fmt="dmesg-x", facility=facility, level=level, ident=ident)
        return KernelLine(
            message=rest, raw=raw, fmt="dmesg-x", facility=facility, level=level,
            ident=IDENT_KERNEL if facility == 0 else IDENT_USER, history=history,
        )

    def _dmesg_t(self, raw: str, history: bool) -> KernelLine | None:
        if not raw.startswith("[") or raw[1:2].isspace() or raw[1:2].isdigit():
            return None
        m = _RE_DMESG_T.match(raw)
        if m is None:
            return None
        iso, unix = _stamp_iso(_date(m.group(8), month_number(m.group(3)), m.group(4, 5, 6, 7)), False)
        return KernelLine(
            message=m.group(10), raw=raw, fmt="dmesg-T", wall_time_text=m.group(1), wall_time=iso,
            wall_time_unix=unix, wall_time_source=_SRC_DMESG_T, caller=m.group(9), history=history,
        )

    def _dmesg_iso(self, raw: str, history: bool) -> KernelLine | None:
        if not raw[:1].isdigit() or raw[19:20] != ",":
            return None
        m = _RE_DMESG_ISO.match(raw)
        if m is None:
            return None
        iso, unix = _stamp_iso(_date(m.group(2), m.group(3), m.group(4, 5, 6, 7, 8), _tz(m.group(9))), True)
        return KernelLine(
            message=m.group(10), raw=raw, fmt="dmesg-iso", wall_time_text=m.group(1), wall_time=iso,
            wall_time_unix=unix, wall_time_source=_SRC_DMESG_ISO, ident=None, history=history,
        )

    def _dmesg_rel(self, raw: str, history: bool) -> KernelLine | None:
        if not raw.startswith("["):
            return None
        m = _RE_DMESG_REL.match(raw)
        if m is None:
            return None
        return KernelLine(message=m.group(1), raw=raw, fmt="dmesg-reltime", history=history)

    def _tagged(
        self, fmt: str, raw: str, stamp: str, iso: str | None, unix: float | None,
        tag: str, tag_pid: str | None, msg: str, history: bool,
    ) -> KernelLine:
        kernel_t: float | None = None
        caller: str | None = None
        if tag == IDENT_KERNEL and msg.startswith("["):
            km = _RE_KERNEL_STAMP.match(msg)
            if km is not None:
                kernel_t = float(km.group(1))
                caller = km.group(2)
                msg = km.group(3)
        return KernelLine(
            message=msg, raw=raw, fmt=fmt, kernel_time_s=kernel_t, wall_time_text=stamp,
            wall_time=iso, wall_time_unix=unix, wall_time_source=_SRC_RECEIVE, ident=tag,
            ident_pid=int(tag_pid) if tag_pid else None, caller=caller, history=history,
        )

    def _short(self, raw: str, history: bool) -> KernelLine | None:
        if not raw[:1].isalpha():
            return None
        m = _RE_SHORT.match(raw)
        if m is None:
            return None
        dt = _date(self._ref.year, month_number(m.group(2)), m.group(3, 4, 5, 6, 7))
        if dt is not None and dt > self._ref + timedelta(days=1):
            # No year in the stamp: the latest year that does not put it in the future.
            dt = _date(self._ref.year - 1, dt.month, m.group(3, 4, 5, 6, 7))
        iso, unix = _stamp_iso(dt, m.group(7) is not None)
        return self._tagged("journal-short", raw, m.group(1), iso, unix, m.group(9), m.group(10),
                            m.group(11), history)

    def _short_iso(self, raw: str, history: bool) -> KernelLine | None:
        if not raw[:1].isdigit() or raw[4:5] != "-":
            return None
        m = _RE_SHORT_ISO.match(raw)
        if m is None:
            return None
        iso, unix = _stamp_iso(_date(m.group(2), m.group(3), m.group(4, 5, 6, 7, 8), _tz(m.group(9))),
                               m.group(8) is not None)
        return self._tagged("journal-short-iso", raw, m.group(1), iso, unix, m.group(11),
                            m.group(12), m.group(13), history)

    def _short_full(self, raw: str, history: bool) -> KernelLine | None:
        if not raw[:1].isalpha():
            return None
        m = _RE_SHORT_FULL.match(raw)
        if m is None:
            return None
        iso, unix = _stamp_iso(_date(m.group(3), m.group(4), m.group(5, 6, 7, 8, 9)), m.group(9) is not None)
        return self._tagged("journal-short-full", raw, m.group(1), iso, unix, m.group(11),
                            m.group(12), m.group(13), history)

    def _short_unix(self, raw: str, history: bool) -> KernelLine | None:
        if not raw[:1].isdigit():
            return None
        m = _RE_SHORT_UNIX.match(raw)
        if m is None:
            return None
        usec = int(m.group(2)) * 1_000_000 + _frac_us(m.group(3))
        iso, unix = _iso_from_usec(usec)
        return self._tagged("journal-short-unix", raw, m.group(1), iso, unix, m.group(5),
                            m.group(6), m.group(7), history)

    def _json(self, raw: str, history: bool) -> KernelLine | None:
        text = raw.strip()
        if not text.startswith("{"):
            return None
        try:
            obj = json.loads(text)
        except ValueError:
            return None
        if not isinstance(obj, dict) or "MESSAGE" not in obj:
            return None
        return journal_entry_to_line(obj, history=history)


def journal_entry_to_line(obj: Mapping[str, Any], *, history: bool = False) -> KernelLine:
    """One ``journalctl -o json`` entry as a KernelLine (tests/data/oom-corpus/FORMATS.md 4.3 and 5)."""
    message = obj.get("MESSAGE")
    if isinstance(message, list):
        # journald stores messages with control characters as byte arrays.
        try:
            text = bytes(b & 0xFF for b in message if isinstance(b, int)).decode("utf-8", "replace")
        except (TypeError, ValueError):
            text = ""
    elif isinstance(message, str):
        text = message
    else:
        text = "" if message is None else str(message)
    text = text.rstrip("\n")
    transport = obj.get("_TRANSPORT")
    facility = _int(obj.get("SYSLOG_FACILITY"))
    level = _int(obj.get("PRIORITY"))
    ident_field = obj.get("SYSLOG_IDENTIFIER") or obj.get("_COMM")
    ident: str | None = ident_field if isinstance(ident_field, str) else None
    pid = _int(obj.get("SYSLOG_PID")) or _int(obj.get("_PID"))
    realtime = _int(obj.get("__REALTIME_TIMESTAMP"))
    monotonic = _int(obj.get("__MONOTONIC_TIMESTAMP"))
    source_mono = _int(obj.get("_SOURCE_MONOTONIC_TIMESTAMP"))
    is_kernel = transport == "kernel" and (facility in (None, 0))
    if is_kernel:
        ident = IDENT_KERNEL
        pid = None
    elif transport == "kernel":
        # A user-space write to /dev/kmsg: journald took the identifier from its "name:" prefix.
        ident = ident if ident in DAEMON_IDENTS else IDENT_USER
    extra: dict[str, Any] = {}
    kernel_t: float | None = None
    mono_t: float | None = None
    wall: str | None = None
    unix: float | None = None
    source: str | None = None
    if is_kernel and source_mono is not None:
        kernel_t = source_mono / 1e6
        if realtime is not None and monotonic is not None:
            # journald stamps the time it *read* the record (18-25 ms late live, minutes late for
            # records it imported at start-up); shift it back by its own monotonic delay.
            derived = realtime - (monotonic - source_mono)
            extra["journald_monotonic_usec"] = monotonic
            extra["event_wall_time_usec_derived"] = derived
            wall, unix = _iso_from_usec(derived)
            source = _SRC_JOURNAL_KERNEL
    else:
        if monotonic is not None:
            mono_t = monotonic / 1e6
        src_rt = _int(obj.get("_SOURCE_REALTIME_TIMESTAMP"))
        if src_rt is not None:
            wall, unix = _iso_from_usec(src_rt)
            source = _SRC_JOURNAL_SOURCE
        elif realtime is not None:
            wall, unix = _iso_from_usec(realtime)
            source = _SRC_JOURNAL_RECEIVE
    if wall is None and realtime is not None:
        wall, unix = _iso_from_usec(realtime)
        source = _SRC_JOURNAL_RECEIVE
    boot_id = obj.get("_BOOT_ID")
    if isinstance(boot_id, str):
        extra["boot_id"] = boot_id
    return KernelLine(
        message=text, raw=text, fmt="journal-json", kernel_time_s=kernel_t, monotonic_time_s=mono_t,
        wall_time=wall, wall_time_unix=unix, wall_time_source=source, wall_time_usec=realtime,
        ident=ident, ident_pid=pid, facility=facility, level=level, history=history,
        extra=extra or None,
    )


_DECODERS: Final = {
    "kmsg": LineDecoder._kmsg,
    "dmesg": LineDecoder._dmesg,
    "dmesg-raw": LineDecoder._dmesg_raw,
    "dmesg-x": LineDecoder._dmesg_x,
    "dmesg-T": LineDecoder._dmesg_t,
    "dmesg-iso": LineDecoder._dmesg_iso,
    "dmesg-reltime": LineDecoder._dmesg_rel,
    "journal-short": LineDecoder._short,
    "journal-short-iso": LineDecoder._short_iso,
    "journal-short-full": LineDecoder._short_full,
    "journal-short-unix": LineDecoder._short_unix,
    "journal-json": LineDecoder._json,
}
# journal-short-monotonic is recognised inside _dmesg (same bracket stamp, then a tag).
_ORDER: Final = (
    "dmesg", "kmsg", "dmesg-raw", "dmesg-iso", "journal-short-iso", "journal-short-unix",
    "journal-json", "dmesg-T", "dmesg-x", "journal-short-full", "journal-short", "dmesg-reltime",
)  # fmt: skip

FORMATS: Final = tuple(sorted(set(_DECODERS) | {"journal-short-monotonic", "bare"}))
