"""The options both front ends take (``oomscope watch`` and the window), declared once, and the
one way they and the settings file become an :class:`EngineConfig`.

An option left out is None, so "not given" differs from "given as the default": the command
line beats the settings file, which beats the built-in defaults, in both front ends.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from .cgroup.high import AUTO_HIGH_FRACTION, memory_high_bytes, parse_mem_high
from .config import OomscopeConfig
from .engine import MIN_INTERVAL_S, EngineConfig
from .errors import BadInput
from .sizes import Level, parse_level, parse_mem_limit, parse_percent, parse_size
from .thresholds import ACTIONS, MAX_SECONDS, METRICS, check_seconds, crit_with_following_warn

Notice = Callable[[str], None]

# The ThresholdConfig field each threshold option sets, and how its text is read.
_THRESHOLD_OPTIONS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "warn": ("warn", lambda text: level_arg(text)),
    "metric": ("metric", str),
    "on_warn": ("on_warn", str),
    "on_crit": ("on_crit", str),
    "sustain": ("sustain_s", float),
    "hysteresis": ("hysteresis", lambda text: hysteresis_arg(text)),
    "grace": ("grace_s", float),
}


def add_shared_options(what: argparse._ActionsContainer, limits: argparse._ActionsContainer,
                       how: argparse._ActionsContainer) -> None:
    """What to watch, the levels and their actions, sampling, the settings file."""
    what.add_argument("--run", metavar="CMD", action="append", default=[],
                      help="launch CMD (a shell command line) as a worker; repeatable")
    what.add_argument("--attach", metavar="PID", action="append", default=[], type=parse_pid,
                      help="watch a running process; repeatable")
    what.add_argument("--children-of", metavar="PID", action="append", default=[], type=parse_pid,
                      help="watch every child of PID, including children it starts later")
    limits.add_argument("--mem-limit", metavar="SIZE",
                        help="run launched workers in their own memory cgroup with this limit (at "
                        "most the machine's RAM + swap)")
    limits.add_argument("--mem-high", metavar="X",
                        help="with --mem-limit, cgroup v2: a throttle below the limit (memory.high), "
                        f"where the kernel slows the worker down instead of killing it: auto "
                        f"({AUTO_HIGH_FRACTION * 100:g}%% of the limit), a percent of it, a size below it, or off")
    limits.add_argument("--warn", metavar="X", help="warning level: a size (400MiB), a percent of the "
                        "worker's limit (default 75%%) or off")
    limits.add_argument("--crit", metavar="X", help="critical level: a size, a percent of the worker's "
                        "limit (default 90%%) or off; a warning level you do not give follows it down")
    limits.add_argument("--metric", default=None, choices=METRICS,
                        help="what the levels apply to (default rss; heap: V8/Python heap reports of "
                        "launched workers)")
    limits.add_argument("--on-warn", default=None, choices=ACTIONS,
                        help="what entering warning does (default none; notify: a desktop notification "
                        "in the app)")
    limits.add_argument("--on-crit", default=None, choices=ACTIONS,
                        help="what entering critical does (default notify; terminate: SIGTERM, grace, "
                        "SIGKILL)")
    limits.add_argument("--sustain", metavar="S", type=seconds_arg(0), default=None,
                        help="a level counts once the value stayed above it this long (default 2 s)")
    limits.add_argument("--hysteresis", metavar="P", default=None,
                        help="a level is left only below it minus this percent of it (default 5%%)")
    limits.add_argument("--grace", metavar="S", type=seconds_arg(0), default=None,
                        help="seconds between SIGTERM and SIGKILL (default 3)")
    how.add_argument("--interval", metavar="S", type=seconds_arg(MIN_INTERVAL_S), default=None,
                     help=f"sampling interval in seconds (default 1, minimum {MIN_INTERVAL_S})")
    how.add_argument("--heap-interval", metavar="S", type=seconds_arg(MIN_INTERVAL_S), default=None,
                     help=f"how often launched workers' heap reporters report (default 1 s, minimum "
                     f"{MIN_INTERVAL_S})")
    how.add_argument("--config", metavar="FILE",
                     help="settings file (default: $XDG_CONFIG_HOME/oomscope/config.toml or "
                     "~/.config/oomscope/config.toml); options given here win over it")


def parse_pid(text: str) -> int:
    try:
        pid = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a PID (a positive whole number)") from None
    if pid <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a PID (a positive whole number)")
    return pid


def seconds_arg(minimum: float, *, above: bool = False,
                maximum: float = MAX_SECONDS) -> Callable[[str], float]:
    """An argparse ``type`` for a duration option: a finite number of seconds in its range (nan,
    inf and 1e308 are refused with the range, as the settings file refuses them)."""
    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a number: write seconds as a number, e.g. 2.5") from None
        try:
            check_seconds(value, minimum, above=above, maximum=maximum)
        except BadInput as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return value

    return convert


def level_arg(text: str) -> Level | None:
    """A level as typed; ``off`` switches one off (the settings file's ``false``)."""
    return None if text.strip().lower() in ("off", "none", "false") else parse_level(text)


def hysteresis_arg(text: str) -> float:
    text = text.strip()
    return 0.0 if text in ("0", "0%") else parse_percent(text)


def engine_config_from(args: argparse.Namespace, file: OomscopeConfig,
                       notice: Notice | None = None) -> EngineConfig:
    """The engine's settings from the shared options (an option absent from ``args`` counts as
    not given) over the settings file ``file`` over the built-in defaults.

    A warning level not given on the command line (the file's or the default) follows ``--crit``
    down when it would not be below it, and ``notice`` is told; both given wrongly is a
    BadInput."""
    def given(name: str) -> Any:
        return getattr(args, name, None)

    if notice is not None:
        for note in file.notes:
            notice(note)
    try:
        changes = {field: parse(given(option)) for option, (field, parse) in _THRESHOLD_OPTIONS.items()
                   if given(option) is not None}
        crit_given = given("crit") is not None
        if crit_given and "warn" not in changes:
            before = replace(file.thresholds, **changes)
            thresholds, moved = crit_with_following_warn(before, level_arg(given("crit")))
            if moved and notice is not None:
                notice(f"warning level {before.warn} is not below --crit {thresholds.crit}: the "
                       f"warning level is {thresholds.warn} instead (give --warn to choose it)")
        else:
            if crit_given:
                changes["crit"] = level_arg(given("crit"))
            thresholds = replace(file.thresholds, **changes)
    except BadInput as e:
        raise BadInput(_as_option(str(e))) from None
    if given("on_crit") == "terminate" and thresholds.crit is None:
        raise BadInput("--on-crit terminate needs a critical level: add --crit SIZE or --crit PERCENT%")
    overrides = []
    for pattern, override in file.workers:
        try:
            overrides.append((pattern, override.apply(thresholds)))
        except BadInput as e:
            raise BadInput(f'{file.source}: [workers."{pattern}"] with the command line\'s levels: {e}') from None
    if given("mem_limit") is not None:
        try:
            parse_mem_limit(given("mem_limit"))
        except BadInput as e:
            raise BadInput(f"--mem-limit: {e}") from None
    interval, heap_interval = given("interval"), given("heap_interval")
    return EngineConfig(
        interval_s=interval if interval is not None else file.sampling.interval_s,
        heap_interval_s=heap_interval if heap_interval is not None else file.sampling.heap_interval_s,
        thresholds=thresholds, grace_s=thresholds.grace_s, worker_overrides=tuple(overrides),
        restart=file.restart, mem_high=_mem_high(given("mem_high"), given("mem_limit"), file),
    )


def _mem_high(text: str | None, limit_text: str | None, file: OomscopeConfig) -> Level | None:
    """--mem-high over the file's [launch] mem_high, checked against --mem-limit when given
    (a limit typed in the app's launch dialog is checked when the worker is launched)."""
    where = "--mem-high"
    if text is None:
        high = file.mem_high
        where = f"{file.source}: launch.mem_high"
    else:
        try:
            high = parse_mem_high(text)
        except BadInput as e:
            raise BadInput(f"--mem-high: {e}") from None
        if high is not None and limit_text is None:
            raise BadInput("--mem-high sets a throttle below a memory limit: add --mem-limit SIZE "
                           "(in the app, [launch] mem_high of the settings file also applies to a "
                           "limit given in the launch dialog)")
    if high is not None and limit_text is not None:
        try:
            memory_high_bytes(high, parse_size(limit_text))
        except BadInput as e:
            raise BadInput(f"{where}: {e}") from None
    return high


_OPTION_OF = {field: "--" + option.replace("_", "-") for option, (field, _) in _THRESHOLD_OPTIONS.items()}


def _as_option(message: str) -> str:
    """``sustain_s: …`` (the settings file's key) as ``--sustain: …`` (what was typed)."""
    key, sep, rest = message.partition(": ")
    return f"{_OPTION_OF[key]}: {rest}" if sep and key in _OPTION_OF else message
