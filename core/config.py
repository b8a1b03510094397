"""The TOML settings file shared by ``watch`` and the GUI: thresholds, restart policy, sampling.

Everything here is pure: read a file, check every value, and return frozen dataclasses. A bad
file is refused as a whole with :class:`BadInput` naming the file, the dotted key and the line
it is written on, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import difflib
import enum
import json
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, TypeVar, cast

from .errors import BadInput
from .restart import RestartPolicy
from .sizes import Level, parse_level
from .thresholds import METRICS, ThresholdConfig

Metric = Literal["rss", "anon", "heap"]
Action = Literal["none", "notify", "terminate"]
ACTIONS: Final[tuple[Action, ...]] = ("none", "notify", "terminate")

# Same floor as engine.MIN_INTERVAL_S (a test keeps them equal); not imported so that the
# engine can one day read this module without an import cycle.
MIN_INTERVAL_S: Final = 0.05
MAX_HYSTERESIS: Final = 0.5

T = TypeVar("T")
KeyPath = tuple[str, ...]


class Unset(enum.Enum):
    """Marks an override key the file does not set (``None`` already means ``false``: no level)."""

    UNSET = "unset"

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = Unset.UNSET


def _pick(value: T | Unset, base: T) -> T:
    return base if isinstance(value, Unset) else value


# --- checks shared by the dataclasses (programmatic use) and the file reader ----------------


def _check_choice(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise BadInput(
            f"{_show(value)} is not {what}: choose one of {', '.join(json.dumps(a) for a in allowed)}"
        )


def _check_seconds(value: float, minimum: float, *, above: bool = False) -> None:
    ok = math.isfinite(value) and (value > minimum if above else value >= minimum)
    if not ok:
        bound = f"above {minimum:g}" if above else f"at least {minimum:g}"
        raise BadInput(f"{_show(value)} is not allowed: write a number of seconds {bound}")


def _check_count(value: int, minimum: int) -> None:
    if value < minimum:
        raise BadInput(f"{value} is not allowed: write a whole number of at least {minimum}")


def _check_hysteresis(value: float) -> None:
    if not (math.isfinite(value) and 0 <= value <= MAX_HYSTERESIS):
        raise BadInput(
            f"{value * 100:g}% is not allowed: hysteresis is a percent of the level from "
            f'"0%" to "{MAX_HYSTERESIS * 100:g}%", e.g. "5%"'
        )


def _check_levels(warn: Level | None, crit: Level | None) -> None:
    # ThresholdConfig owns the rule (only levels of the same kind compare); reuse it verbatim.
    ThresholdConfig(warn=warn, crit=crit)


def _named(name: str, check: Callable[[], None]) -> None:
    try:
        check()
    except BadInput as e:
        raise BadInput(f"{name}: {e}") from None


# --- the settings --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ThresholdSettings:
    """``[thresholds]``: levels on one metric, how long a level must hold, what each level does."""

    metric: Metric = "rss"
    warn: Level | None = Level(fraction=0.75)
    crit: Level | None = Level(fraction=0.90)
    sustain_s: float = 2.0
    hysteresis: float = 0.05  # fraction of the level: left only below level * (1 - hysteresis)
    on_warn: Action = "none"
    on_crit: Action = "notify"
    grace_s: float = 3.0

    def __post_init__(self) -> None:
        _named("metric", lambda: _check_choice(self.metric, METRICS, "a metric"))
        _named("on_warn", lambda: _check_choice(self.on_warn, ACTIONS, "an action"))
        _named("on_crit", lambda: _check_choice(self.on_crit, ACTIONS, "an action"))
        _named("sustain_s", lambda: _check_seconds(self.sustain_s, 0))
        _named("grace_s", lambda: _check_seconds(self.grace_s, 0))
        _named("hysteresis", lambda: _check_hysteresis(self.hysteresis))
        _check_levels(self.warn, self.crit)

    def to_threshold_config(self) -> ThresholdConfig:
        """The engine's form. It knows only none/terminate on critical: notifying is the
        front end's job, so "notify" becomes "none" there and stays visible in ``on_crit`` here."""
        return ThresholdConfig(
            warn=self.warn,
            crit=self.crit,
            metric=self.metric,
            on_crit="terminate" if self.on_crit == "terminate" else "none",
            on_warn="terminate" if self.on_warn == "terminate" else "none",
            sustain_s=self.sustain_s,
            hysteresis=self.hysteresis,
        )


THRESHOLD_KEYS: Final = tuple(ThresholdSettings.__dataclass_fields__)


@dataclass(frozen=True, slots=True)
class ThresholdsOverride:
    """A ``[workers."<name or regex>"]`` table: any subset of the ``[thresholds]`` keys."""

    metric: Metric | Unset = UNSET
    warn: Level | None | Unset = UNSET
    crit: Level | None | Unset = UNSET
    sustain_s: float | Unset = UNSET
    hysteresis: float | Unset = UNSET
    on_warn: Action | Unset = UNSET
    on_crit: Action | Unset = UNSET
    grace_s: float | Unset = UNSET

    @property
    def keys(self) -> tuple[str, ...]:
        """The keys this override sets, in schema order."""
        return tuple(k for k in THRESHOLD_KEYS if not isinstance(getattr(self, k), Unset))

    def apply(self, base: ThresholdSettings) -> ThresholdSettings:
        """``base`` with this override's keys replaced; raises BadInput if the result is invalid
        (e.g. a worker's warn at or above the global crit)."""
        return ThresholdSettings(
            metric=_pick(self.metric, base.metric),
            warn=_pick(self.warn, base.warn),
            crit=_pick(self.crit, base.crit),
            sustain_s=_pick(self.sustain_s, base.sustain_s),
            hysteresis=_pick(self.hysteresis, base.hysteresis),
            on_warn=_pick(self.on_warn, base.on_warn),
            on_crit=_pick(self.on_crit, base.on_crit),
            grace_s=_pick(self.grace_s, base.grace_s),
        )


# ``[restart]`` is the engine's restart policy itself: one set of fields, checked in one place.
RestartSettings = RestartPolicy


@dataclass(frozen=True, slots=True)
class SamplingSettings:
    """``[sampling]``: how often memory is read and heap reporters report."""

    interval_s: float = 1.0
    heap_interval_s: float = 1.0

    def __post_init__(self) -> None:
        _named("interval_s", lambda: _check_seconds(self.interval_s, MIN_INTERVAL_S))
        _named("heap_interval_s", lambda: _check_seconds(self.heap_interval_s, MIN_INTERVAL_S))


@dataclass(frozen=True, slots=True)
class OomscopeConfig:
    thresholds: ThresholdSettings = field(default_factory=ThresholdSettings)
    restart: RestartSettings = field(default_factory=RestartSettings)
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    # File order, because the first matching pattern should win and the user chose the order.
    workers: tuple[tuple[str, ThresholdsOverride], ...] = ()
    source: Path | None = None  # the file read; None when running on defaults alone


# --- where the file is ---------------------------------------------------------------------


def default_config_path(env: Mapping[str, str] = os.environ) -> Path:
    """``$XDG_CONFIG_HOME/oomscope/config.toml``, else ``~/.config/oomscope/config.toml``.

    The XDG base-directory spec says a relative ``XDG_CONFIG_HOME`` is invalid and must be
    ignored, as must an empty one.
    """
    xdg = env.get("XDG_CONFIG_HOME", "")
    if xdg and os.path.isabs(xdg):
        base = Path(xdg)
    else:
        home = env.get("HOME", "")
        base = (Path(home) if home else Path.home()) / ".config"
    return base / "oomscope" / "config.toml"


def load_config(path: Path | None = None, *, env: Mapping[str, str] = os.environ) -> OomscopeConfig:
    """Settings from ``path`` (``--config FILE``), or from the default path when None.

    A missing default file means defaults; a missing file asked for by name is an error,
    since the user expects it to be used.
    """
    explicit = path is not None
    target = Path(path) if path is not None else default_config_path(env)
    try:
        data = target.read_bytes()
    except (FileNotFoundError, NotADirectoryError) as e:
        if not explicit:
            return OomscopeConfig()
        raise BadInput(f"config file {target} does not exist") from e
    except IsADirectoryError as e:
        raise BadInput(f"{target}: cannot read the config file: it is a directory") from e
    except PermissionError as e:
        if not explicit and not _reachable(target):
            # The default place lies in a home we may not enter (HOME kept across a change of
            # user, as sudo and setpriv do): that is nobody's settings for us, not an error.
            return OomscopeConfig()
        raise BadInput(f"{target}: cannot read the config file: {e.strerror or e}") from e
    except OSError as e:
        raise BadInput(f"{target}: cannot read the config file: {e.strerror or e}") from e
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise BadInput(
            f"{target}:{line}: the file is not valid UTF-8 (byte 0x{data[e.start]:02x}); "
            "a TOML file must be UTF-8"
        ) from e
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        # tomllib's message already ends with "(at line L, column C)".
        raise BadInput(f"{target}: invalid TOML: {e}") from e
    return _Reader(target, _key_lines(text)).read(doc)


def _reachable(path: Path) -> bool:
    """Whether we may look inside the folders on the way to ``path`` (stat works)."""
    try:
        path.stat()
    except PermissionError:
        return False
    except OSError:
        return True
    return True


# --- turning the parsed document into settings ---------------------------------------------


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _dotted(path: KeyPath) -> str:
    return ".".join(p if _BARE_KEY.fullmatch(p) else json.dumps(p, ensure_ascii=False) for p in path)


def _show(value: object) -> str:
    """A value as it would be written in TOML, for messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _choice(allowed: tuple[str, ...], what: str) -> Callable[[object], str]:
    def convert(raw: object) -> str:
        if isinstance(raw, str):
            _check_choice(raw, allowed, what)
            return raw
        raise BadInput(
            f"{_show(raw)} is not {what}: choose one of {', '.join(json.dumps(a) for a in allowed)}"
        )

    return convert


def _metric(raw: object) -> Metric:
    return cast(Metric, _choice(METRICS, "a metric")(raw))


def _action(raw: object) -> Action:
    return cast(Action, _choice(ACTIONS, "an action")(raw))


def _level(raw: object) -> Level | None:
    if raw is False:
        return None
    if isinstance(raw, str):
        return parse_level(raw)
    raise BadInput(
        f"{_show(raw)} is not a level: write a size in quotes (\"400MiB\"), a percent of the "
        "worker's limit (\"75%\"), or false for no level"
    )


def _seconds(minimum: float, *, above: bool = False) -> Callable[[object], float]:
    def convert(raw: object) -> float:
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise BadInput(f"{_show(raw)} is not a number: write seconds as a number, e.g. 2.5")
        _check_seconds(float(raw), minimum, above=above)
        return float(raw)

    return convert


def _count(minimum: int) -> Callable[[object], int]:
    def convert(raw: object) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise BadInput(f"{_show(raw)} is not a whole number: write e.g. {max(minimum, 3)}")
        _check_count(raw, minimum)
        return raw

    return convert


def _hysteresis(raw: object) -> float:
    if isinstance(raw, str) and raw.strip().endswith("%"):
        try:
            value = float(raw.strip()[:-1]) / 100
        except ValueError:
            value = math.nan
        if math.isfinite(value) and 0 <= value <= MAX_HYSTERESIS:
            return value
    raise BadInput(
        f"{_show(raw)} is not allowed: hysteresis is a percent of the level from \"0%\" to "
        f"\"{MAX_HYSTERESIS * 100:g}%\", e.g. \"5%\""
    )


_THRESHOLD_CONVERTERS: Final[Mapping[str, Callable[[object], object]]] = {
    "metric": _metric,
    "warn": _level,
    "crit": _level,
    "sustain_s": _seconds(0),
    "hysteresis": _hysteresis,
    "on_warn": _action,
    "on_crit": _action,
    "grace_s": _seconds(0),
}
_RESTART_KEYS: Final = tuple(RestartSettings.__dataclass_fields__)
_SAMPLING_KEYS: Final = tuple(SamplingSettings.__dataclass_fields__)
_TOP_KEYS: Final = ("thresholds", "restart", "sampling", "workers")


class _Reader:
    """Checks a parsed document key by key, collecting every problem before refusing it."""

    def __init__(self, source: Path, lines: Mapping[KeyPath, int]) -> None:
        self.source = source
        self.lines = lines
        self.problems: list[tuple[int | None, str, str]] = []

    def error(self, path: KeyPath, detail: str) -> None:
        self.problems.append((self.lines.get(path), _dotted(path), detail))

    def read(self, doc: Mapping[str, object]) -> OomscopeConfig:
        self.unknown_keys(doc, (), _TOP_KEYS, "the file")
        thresholds = ThresholdSettings()
        table = self.table(doc, ("thresholds",))
        if table is not None:
            mark = len(self.problems)
            override = self.override(table, ("thresholds",))
            thresholds = self.build(lambda: override.apply(ThresholdSettings()), table,
                                    ("thresholds",), ("crit", "warn"), mark) or thresholds
        base = thresholds if not self.problems else None
        restart = self.restart(doc)
        sampling = self.sampling(doc)
        workers = self.workers(doc, base)
        if self.problems:
            self.problems.sort(key=lambda p: (p[0] is None, p[0] or 0))
            raise BadInput("\n".join(
                f"{self.source}:{line}: {key}: {detail}" if line is not None
                else f"{self.source}: {key}: {detail}"
                for line, key, detail in self.problems
            ))
        return OomscopeConfig(thresholds, restart, sampling, workers, self.source)

    def table(self, parent: Mapping[str, object], path: KeyPath) -> Mapping[str, object] | None:
        value = parent.get(path[-1])
        if value is None:
            return None
        if not isinstance(value, dict):
            self.error(path, f"{_show(value)} is not allowed: this must be a table, [{_dotted(path)}]")
            return None
        return cast(Mapping[str, object], value)

    def unknown_keys(self, table: Mapping[str, object], path: KeyPath, known: tuple[str, ...],
                     where: str) -> None:
        for key in table:
            if key in known:
                continue
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            self.error(path + (key,), f"unknown key{hint}; {where} takes {', '.join(known)}")

    def field(self, table: Mapping[str, object], path: KeyPath, key: str,
              convert: Callable[[object], T], default: T) -> T:
        if key not in table:
            return default
        try:
            return convert(table[key])
        except BadInput as e:
            self.error(path + (key,), str(e))
            return default

    def build(self, make: Callable[[], T], table: Mapping[str, object], path: KeyPath,
              blame: tuple[str, ...], since: int) -> T | None:
        """Construct settings whose keys each passed (no problem recorded after ``since``); a
        failure now is between keys (warn vs crit), so it is put on the first of ``blame`` that
        this table writes."""
        if len(self.problems) > since:
            return None
        try:
            return make()
        except BadInput as e:
            key = next((k for k in blame if k in table), None)
            self.error(path + (key,) if key else path, str(e))
            return None

    def override(self, table: Mapping[str, object], path: KeyPath) -> ThresholdsOverride:
        self.unknown_keys(table, path, THRESHOLD_KEYS, f"[{_dotted(path)}]")
        values: dict[str, object] = {}
        for key, convert in _THRESHOLD_CONVERTERS.items():
            value = self.field(table, path, key, convert, cast(object, UNSET))
            values[key] = value
        return ThresholdsOverride(
            metric=cast("Metric | Unset", values["metric"]),
            warn=cast("Level | None | Unset", values["warn"]),
            crit=cast("Level | None | Unset", values["crit"]),
            sustain_s=cast("float | Unset", values["sustain_s"]),
            hysteresis=cast("float | Unset", values["hysteresis"]),
            on_warn=cast("Action | Unset", values["on_warn"]),
            on_crit=cast("Action | Unset", values["on_crit"]),
            grace_s=cast("float | Unset", values["grace_s"]),
        )

    def restart(self, doc: Mapping[str, object]) -> RestartSettings:
        path = ("restart",)
        table = self.table(doc, path)
        if table is None:
            return RestartSettings()
        self.unknown_keys(table, path, _RESTART_KEYS, "[restart]")
        mark = len(self.problems)
        d = RestartSettings()
        seconds, positive = _seconds(0), _seconds(0, above=True)
        max_ = self.field(table, path, "max", _count(0), d.max)
        initial = self.field(table, path, "backoff_initial_s", positive, d.backoff_initial_s)
        cap = self.field(table, path, "backoff_cap_s", positive, d.backoff_cap_s)
        healthy = self.field(table, path, "healthy_s", seconds, d.healthy_s)
        kills = self.field(table, path, "crash_loop_kills", _count(1), d.crash_loop_kills)
        window = self.field(table, path, "crash_loop_window_s", positive, d.crash_loop_window_s)
        return self.build(
            lambda: RestartSettings(max_, initial, cap, healthy, kills, window),
            table, path, ("backoff_cap_s", "backoff_initial_s"), mark,
        ) or d

    def sampling(self, doc: Mapping[str, object]) -> SamplingSettings:
        path = ("sampling",)
        table = self.table(doc, path)
        if table is None:
            return SamplingSettings()
        self.unknown_keys(table, path, _SAMPLING_KEYS, "[sampling]")
        d = SamplingSettings()
        interval = _seconds(MIN_INTERVAL_S)
        return SamplingSettings(
            interval_s=self.field(table, path, "interval_s", interval, d.interval_s),
            heap_interval_s=self.field(table, path, "heap_interval_s", interval, d.heap_interval_s),
        )

    def workers(self, doc: Mapping[str, object],
                base: ThresholdSettings | None) -> tuple[tuple[str, ThresholdsOverride], ...]:
        table = self.table(doc, ("workers",))
        if table is None:
            return ()
        result: list[tuple[str, ThresholdsOverride]] = []
        for name in table:  # tomllib keeps file order
            path = ("workers", name)
            sub = self.table(table, path)
            if sub is None:
                continue
            if not name.strip():
                self.error(path, "an empty name matches nothing: write a worker name or a regex")
                continue
            try:
                re.compile(name)
            except re.error as e:
                self.error(path, f"not a valid regex ({e}); escape special characters, e.g. "
                                 f"{json.dumps(re.escape(name))}")
                continue
            mark = len(self.problems)
            override = self.override(sub, path)
            # Checked against the global levels too: a worker's warn above the global crit
            # would otherwise only fail when that worker appears. (Not against broken ones.)
            if base is not None:
                self.build(lambda: override.apply(base), sub, path, ("crit", "warn"), mark)
            result.append((name, override))
        return tuple(result)


# --- where each key is written ---------------------------------------------------------------


class _ScanError(Exception):
    pass


_ESCAPES: Final = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\",
                   "e": "\x1b"}
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class _KeyScanner:
    """The line of each key path in a TOML text that tomllib has already accepted.

    tomllib returns plain values with no positions, so this walks the text once more: table
    headers, dotted keys, quoted keys and inline tables, skipping over strings and arrays.
    It records the first line each path (and each of its prefixes) is written on.
    """

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.line = 1
        self.found: dict[KeyPath, int] = {}

    def peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.s[j] if j < len(self.s) else ""

    def advance(self, n: int = 1) -> None:
        self.line += self.s.count("\n", self.i, self.i + n)
        self.i += n

    def expect(self, text: str) -> None:
        self.skip_blanks()
        if not self.s.startswith(text, self.i):
            raise _ScanError(f"expected {text!r} at line {self.line}")
        self.advance(len(text))

    def skip_blanks(self) -> None:
        while self.peek() in (" ", "\t"):
            self.advance()

    def skip_space(self) -> None:
        while True:
            c = self.peek()
            if c in (" ", "\t", "\r", "\n"):
                self.advance()
            elif c == "#":
                end = self.s.find("\n", self.i)
                self.advance((end if end >= 0 else len(self.s)) - self.i)
            else:
                return

    def record(self, path: KeyPath, line: int) -> None:
        for n in range(1, len(path) + 1):
            self.found.setdefault(path[:n], line)

    def run(self) -> dict[KeyPath, int]:
        table: KeyPath = ()
        try:
            while True:
                self.skip_space()
                if not self.peek():
                    break
                if self.peek() == "[":
                    line = self.line
                    double = self.peek(1) == "["
                    self.advance(2 if double else 1)
                    table = self.key()
                    self.expect("]]" if double else "]")
                    self.record(table, line)
                else:
                    self.keyval(table)
        except (_ScanError, ValueError):
            pass  # keys found before the surprise keep their lines; the rest are reported without
        return self.found

    def key(self) -> KeyPath:
        parts: list[str] = []
        while True:
            self.skip_blanks()
            c = self.peek()
            if c == '"':
                parts.append(self.basic_string())
            elif c == "'":
                end = self.s.find("'", self.i + 1)
                if end < 0:
                    raise _ScanError("unterminated literal key")
                parts.append(self.s[self.i + 1 : end])
                self.advance(end + 1 - self.i)
            else:
                m = _BARE_KEY.match(self.s, self.i)
                if not m:
                    raise _ScanError(f"no key at line {self.line}")
                parts.append(m.group())
                self.advance(m.end() - self.i)
            self.skip_blanks()
            if self.peek() != ".":
                return tuple(parts)
            self.advance()

    def keyval(self, prefix: KeyPath | None) -> None:
        line = self.line
        path = self.key()
        self.expect("=")
        full = prefix + path if prefix is not None else None
        if full is not None:
            self.record(full, line)
        self.value(full)

    def value(self, path: KeyPath | None) -> None:
        """Skip one value; inside an inline table, record its keys under ``path``."""
        self.skip_blanks()
        c = self.peek()
        if self.s.startswith('"""', self.i) or self.s.startswith("'''", self.i):
            self.multiline_string()
        elif c == '"':
            self.basic_string()
        elif c == "'":
            end = self.s.find("'", self.i + 1)
            if end < 0:
                raise _ScanError("unterminated literal string")
            self.advance(end + 1 - self.i)
        elif c == "{":
            self.advance()
            self.skip_space()
            while self.peek() != "}":
                self.keyval(path)
                self.skip_space()
                if self.peek() == ",":
                    self.advance()
                    self.skip_space()
            self.advance()
        elif c == "[":
            # Array elements have no key of their own; nothing in them is recorded.
            self.advance()
            self.skip_space()
            while self.peek() != "]":
                if not self.peek():
                    raise _ScanError("unterminated array")
                self.value(None)
                self.skip_space()
                if self.peek() == ",":
                    self.advance()
                    self.skip_space()
            self.advance()
        else:
            start = self.i
            while self.peek() and self.peek() not in " \t\r\n,]}#":
                self.advance()
            if self.i == start:
                raise _ScanError(f"no value at line {self.line}")
            # A date-time may be written with a space between date and time.
            if (_DATE.fullmatch(self.s, start, self.i) and self.peek() == " "
                    and self.peek(1).isdigit()):
                self.advance()
                while self.peek() and self.peek() not in " \t\r\n,]}#":
                    self.advance()

    def basic_string(self) -> str:
        self.advance()
        out: list[str] = []
        while True:
            c = self.peek()
            if c in ("", "\n"):
                raise _ScanError("unterminated string")
            if c == '"':
                self.advance()
                return "".join(out)
            if c == "\\":
                e = self.peek(1)
                if e in _ESCAPES:
                    out.append(_ESCAPES[e])
                    self.advance(2)
                elif e in ("u", "U"):
                    width = 4 if e == "u" else 8
                    out.append(chr(int(self.s[self.i + 2 : self.i + 2 + width], 16)))
                    self.advance(2 + width)
                else:
                    raise _ScanError("unknown escape")
            else:
                out.append(c)
                self.advance()

    def multiline_string(self) -> None:
        quote = self.s[self.i : self.i + 3]
        self.advance(3)
        while True:
            if not self.peek():
                raise _ScanError("unterminated multi-line string")
            if quote == '"""' and self.peek() == "\\":
                self.advance(2)
            elif self.s.startswith(quote, self.i):
                self.advance(3)
                # Up to two more quotes belong to the content: """a""""" ends after them.
                for _ in range(2):
                    if self.peek() == quote[0]:
                        self.advance()
                return
            else:
                self.advance()


def _key_lines(text: str) -> dict[KeyPath, int]:
    return _KeyScanner(text).run()


# --- the example file ----------------------------------------------------------------------


def example_config() -> str:
    """A commented config file that sets every key to its default."""
    return '''\
# oomscope settings, read by `oomscope watch` and the GUI.
# Default location: $XDG_CONFIG_HOME/oomscope/config.toml (else ~/.config/oomscope/config.toml);
# `--config FILE` reads another file. Every key is optional; these are the defaults.

[thresholds]
# The memory figure compared with the levels: "rss", "anon" (anonymous RSS) or "heap"
# (V8 heap used, for Node workers that report it).
metric = "rss"
# Levels: a size ("400MiB", "1.5G") or a percent of the worker's limit ("75%": of its cgroup
# memory limit, or of its V8 heap limit for the heap metric). A percent is inactive for a
# worker without a limit. false turns a level off. warn must be below crit.
warn = "75%"
crit = "90%"
# A level is entered only when the value stays above it this many seconds (spikes don't count)...
sustain_s = 2.0
# ...and left only when the value drops this far below it (a percent of the level, 0% to 50%).
hysteresis = "5%"
# What entering a level does: "none", "notify" (desktop notification / watch event) or
# "terminate" (SIGTERM, then SIGKILL after grace_s).
on_warn = "none"
on_crit = "notify"
grace_s = 3.0

[restart]
# Restarts allowed per launched worker (0: never restart).
max = 0
# Delay before a restart: doubles each time from backoff_initial_s, up to backoff_cap_s.
backoff_initial_s = 1.0
backoff_cap_s = 60.0
# A run at least this long resets the backoff.
healthy_s = 60.0
# Crash-loop guard: this many oom-kill/heap-oom deaths within crash_loop_window_s stop the
# restarts until you restart the worker yourself.
crash_loop_kills = 2
crash_loop_window_s = 60.0

[sampling]
# Seconds between memory samples and between heap reports (at least 0.05).
interval_s = 1.0
heap_interval_s = 1.0

# Per-worker overrides of any [thresholds] keys. The table name is a worker name or a regex;
# tables are tried in the order written.
# [workers."celery.*"]
# warn = "300MiB"
# crit = "400MiB"
# on_crit = "terminate"
'''
