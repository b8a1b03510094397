"""The TOML settings file shared by ``watch`` and the GUI: thresholds, restart policy, sampling,
how launched workers run.

Everything here is pure: read a file, check every value, and return frozen dataclasses. A bad
file is refused as a whole with :class:`BadInput` naming the file, the dotted key and, where a
short search of the text finds it, the line it is written on, so a typo never silently falls
back to a default. ``[thresholds]`` is the engine's own :class:`ThresholdConfig`, and a
``[workers."regex"]`` table a :class:`ThresholdOverride` of it.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar, cast

from .cgroup.high import AUTO_HIGH_FRACTION, parse_mem_high
from .engine_config import MIN_INTERVAL_S
from .errors import BadInput
from .restart import RestartPolicy
from .sizes import Level, parse_level
from .tomllines import KeyPath, key_lines
from .thresholds import (
    ACTIONS,
    DEFAULT_THRESHOLDS,
    FIELDS as THRESHOLD_KEYS,
    MAX_HYSTERESIS,
    METRICS,
    ThresholdConfig,
    ThresholdOverride,
    check_choice,
    check_seconds,
    named,
)


T = TypeVar("T")


def _check_count(value: int, minimum: int) -> None:
    if value < minimum:
        raise BadInput(f"{value} is not allowed: write a whole number of at least {minimum}")


# ``[restart]`` is the engine's restart policy itself: one set of fields, checked in one place.
RestartSettings = RestartPolicy


@dataclass(frozen=True, slots=True)
class SamplingSettings:
    """``[sampling]``: how often memory is read and heap reporters report."""

    interval_s: float = 1.0
    heap_interval_s: float = 1.0

    def __post_init__(self) -> None:
        named("interval_s", lambda: check_seconds(self.interval_s, MIN_INTERVAL_S))
        named("heap_interval_s", lambda: check_seconds(self.heap_interval_s, MIN_INTERVAL_S))


@dataclass(frozen=True, slots=True)
class OomscopeConfig:
    thresholds: ThresholdConfig = DEFAULT_THRESHOLDS
    restart: RestartSettings = RestartSettings()
    sampling: SamplingSettings = SamplingSettings()
    # File order, because the first matching pattern should win and the user chose the order.
    workers: tuple[tuple[str, ThresholdOverride], ...] = ()
    source: Path | None = None  # the file read; None when running on defaults alone
    # [launch] mem_high: the memory.high throttle of launched workers that have a memory limit.
    mem_high: Level | None = None
    # What the file's values made oomscope decide for the user (said once at start, as notices).
    notes: tuple[str, ...] = ()


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
    return _Reader(target, key_lines(text)).read(doc)


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
            check_choice(raw, allowed, what)
            return raw
        raise BadInput(
            f"{_show(raw)} is not {what}: choose one of {', '.join(json.dumps(a) for a in allowed)}"
        )

    return convert


_metric = _choice(METRICS, "a metric")
_action = _choice(ACTIONS, "an action")


def _text_or_false(parse: Callable[[str], Level | None], advice: str) -> Callable[[object], Level | None]:
    """A string ``parse`` reads, or false for none; anything else is refused with ``advice``."""
    def convert(raw: object) -> Level | None:
        if raw is False:
            return None
        if isinstance(raw, str):
            return parse(raw)
        raise BadInput(f"{_show(raw)} {advice}")

    return convert


_level = _text_or_false(parse_level, 'is not a level: write a size in quotes ("400MiB"), a percent of '
                        'the worker\'s limit ("75%"), or false for no level')
_mem_high = _text_or_false(parse_mem_high, f'is not allowed: write "auto" ({AUTO_HIGH_FRACTION:.0%} of the '
                           'memory limit), a size in quotes ("230MiB"), a percent of the limit ("85%"), '
                           'or false for no throttle')


def _seconds(minimum: float, *, above: bool = False) -> Callable[[object], float]:
    def convert(raw: object) -> float:
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise BadInput(f"{_show(raw)} is not a number: write seconds as a number, e.g. 2.5")
        check_seconds(float(raw), minimum, above=above)
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
_LAUNCH_KEYS: Final = ("mem_high",)
_TOP_KEYS: Final = ("thresholds", "restart", "sampling", "launch", "workers")


class _Reader:
    """Checks a parsed document key by key, collecting every problem before refusing it."""

    def __init__(self, source: Path, lines: Mapping[KeyPath, int]) -> None:
        self.source = source
        self.lines = lines
        self.problems: list[tuple[int | None, str, str]] = []
        self.notes: list[str] = []

    def error(self, path: KeyPath, detail: str) -> None:
        self.problems.append((self.lines.get(path), _dotted(path), detail))

    def read(self, doc: Mapping[str, object]) -> OomscopeConfig:
        self.unknown_keys(doc, (), _TOP_KEYS, "the file")
        thresholds = DEFAULT_THRESHOLDS
        table = self.table(doc, ("thresholds",))
        if table is not None:
            mark = len(self.problems)
            override = self.override(table, ("thresholds",))
            thresholds = self.build(lambda: override.apply(DEFAULT_THRESHOLDS), table,
                                    ("thresholds",), ("crit", "warn"), mark) or thresholds
            if "warn" not in table and thresholds.warn != DEFAULT_THRESHOLDS.warn:
                line = self.lines.get(("thresholds", "crit"))
                self.notes.append(
                    f"{self.source}:{line}: thresholds.crit {thresholds.crit} is not above the default "
                    f"warning level {DEFAULT_THRESHOLDS.warn}: the warning level is {thresholds.warn} "
                    "instead (set thresholds.warn to choose it)")
        base = thresholds if not self.problems else None
        restart = self.restart(doc)
        sampling = self.sampling(doc)
        workers = self.workers(doc, base)
        mem_high = self.launch(doc)
        if self.problems:
            self.problems.sort(key=lambda p: (p[0] is None, p[0] or 0))
            raise BadInput("\n".join(
                f"{self.source}:{line}: {key}: {detail}" if line is not None
                else f"{self.source}: {key}: {detail}"
                for line, key, detail in self.problems
            ))
        return OomscopeConfig(thresholds, restart, sampling, workers, self.source, mem_high, tuple(self.notes))

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

    def override(self, table: Mapping[str, object], path: KeyPath) -> ThresholdOverride:
        self.unknown_keys(table, path, THRESHOLD_KEYS, f"[{_dotted(path)}]")
        changes: list[tuple[str, object]] = []
        for key, convert in _THRESHOLD_CONVERTERS.items():
            if key in table:
                mark = len(self.problems)
                value = self.field(table, path, key, convert, None)
                if len(self.problems) == mark:
                    changes.append((key, value))
        return ThresholdOverride(tuple(changes))

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

    def launch(self, doc: Mapping[str, object]) -> Level | None:
        path = ("launch",)
        table = self.table(doc, path)
        if table is None:
            return None
        self.unknown_keys(table, path, _LAUNCH_KEYS, "[launch]")
        return self.field(table, path, "mem_high", _mem_high, None)

    def workers(self, doc: Mapping[str, object],
                base: ThresholdConfig | None) -> tuple[tuple[str, ThresholdOverride], ...]:
        table = self.table(doc, ("workers",))
        if table is None:
            return ()
        result: list[tuple[str, ThresholdOverride]] = []
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

[launch]
# memory.high of each launched worker's own cgroup (--mem-limit, or the app's launch dialog):
# a throttle below the hard limit, where the kernel reclaims and slows the worker instead of
# killing it. "auto" (90% of the limit), a percent of the limit ("85%"), a size below it
# ("230MiB"), or false. cgroup v2 only: on cgroup v1 a notice says it is not set.
mem_high = false

# Per-worker overrides of any [thresholds] keys. The table name is a worker name or a regex;
# tables are tried in the order written.
# [workers."celery.*"]
# warn = "300MiB"
# crit = "400MiB"
# on_crit = "terminate"
'''
