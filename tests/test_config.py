"""The settings file: defaults, where it lives, every value checked with its key and line."""

from __future__ import annotations

import math
import re
import textwrap
from pathlib import Path

import pytest

from oomscope.core.config import (
    OomscopeConfig,
    RestartSettings,
    SamplingSettings,
    default_config_path,
    example_config,
    load_config,
)
from oomscope.core.errors import BadInput
from oomscope.core.sizes import Level
from oomscope.core.thresholds import DEFAULT_THRESHOLDS, ThresholdConfig, ThresholdOverride


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def bad(path: Path) -> str:
    with pytest.raises(BadInput) as e:
        load_config(path)
    return str(e.value)


# --- where the file is --------------------------------------------------------------------


def test_default_path_uses_absolute_xdg_config_home() -> None:
    env = {"XDG_CONFIG_HOME": "/cfg", "HOME": "/home/u"}
    assert default_config_path(env) == Path("/cfg/oomscope/config.toml")


@pytest.mark.parametrize("xdg", [None, "", "relative/dir"])
def test_default_path_falls_back_to_home_config(xdg: str | None) -> None:
    env = {"HOME": "/home/u"}
    if xdg is not None:
        env["XDG_CONFIG_HOME"] = xdg
    assert default_config_path(env) == Path("/home/u/.config/oomscope/config.toml")


def test_default_path_without_home_uses_the_user_home() -> None:
    assert default_config_path({}) == Path.home() / ".config" / "oomscope" / "config.toml"


def test_missing_default_file_gives_defaults(tmp_path: Path) -> None:
    config = load_config(env={"XDG_CONFIG_HOME": str(tmp_path / "nowhere")})
    assert config == OomscopeConfig()
    assert config.source is None


def test_default_file_is_read_when_present(tmp_path: Path) -> None:
    (tmp_path / "oomscope").mkdir()
    path = write(tmp_path / "oomscope", "[thresholds]\nwarn = \"60%\"\n")
    config = load_config(env={"XDG_CONFIG_HOME": str(tmp_path)})
    assert config.thresholds.warn == Level(fraction=0.6)
    assert config.source == path


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    msg = bad(tmp_path / "absent.toml")
    assert "absent.toml" in msg and "does not exist" in msg


def test_directory_as_path_is_a_clear_error(tmp_path: Path) -> None:
    msg = bad(tmp_path)
    assert str(tmp_path) in msg and "is a directory" in msg


def test_invalid_utf8_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'[thresholds]\nmetric = "rss"\nwarn = "75\xff%"\n')
    msg = bad(path)
    assert msg.startswith(f"{path}:3: ") and "UTF-8" in msg


def test_bad_toml_syntax_keeps_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, """
        [thresholds]
        warn = "75%"
        crit "90%"
    """)
    msg = bad(path)
    assert str(path) in msg and "invalid TOML" in msg
    assert "line 3, column" in msg


# --- defaults and a full file -------------------------------------------------------------


def test_defaults() -> None:
    c = OomscopeConfig()
    t = c.thresholds
    assert (t.metric, t.warn, t.crit) == ("rss", Level(fraction=0.75), Level(fraction=0.9))
    assert (t.sustain_s, t.hysteresis, t.on_warn, t.on_crit, t.grace_s) == (
        2.0, 0.05, "none", "notify", 3.0)
    assert c.restart == RestartSettings(0, 1.0, 60.0, 60.0, 2, 60.0)
    assert c.sampling == SamplingSettings(1.0, 1.0)
    assert c.workers == ()


def test_full_valid_file(tmp_path: Path) -> None:
    path = write(tmp_path, """
        [thresholds]
        metric = "anon"
        warn = "400MiB"
        crit = false
        sustain_s = 5          # ints are fine where seconds are expected
        hysteresis = "0%"
        on_warn = "notify"
        on_crit = "terminate"
        grace_s = 0.5

        [restart]
        max = 3
        backoff_initial_s = 0.5
        backoff_cap_s = 8
        healthy_s = 30.0
        crash_loop_kills = 3
        crash_loop_window_s = 120

        [sampling]
        interval_s = 0.05
        heap_interval_s = 2.5
    """)
    c = load_config(path)
    assert c.source == path
    assert c.thresholds == ThresholdConfig(
        metric="anon", warn=Level(bytes=400 * 1024**2), crit=None, sustain_s=5.0,
        hysteresis=0.0, on_warn="notify", on_crit="terminate", grace_s=0.5)
    assert isinstance(c.thresholds.sustain_s, float)
    assert c.restart == RestartSettings(3, 0.5, 8.0, 30.0, 3, 120.0)
    assert c.sampling == SamplingSettings(0.05, 2.5)


def test_partial_tables_keep_other_defaults(tmp_path: Path) -> None:
    c = load_config(write(tmp_path, "[restart]\nmax = 2\n"))
    assert c.restart == RestartSettings(max=2)
    assert c.thresholds == DEFAULT_THRESHOLDS


def test_dotted_keys_and_inline_tables_are_accepted(tmp_path: Path) -> None:
    c = load_config(write(tmp_path, """
        thresholds.warn = "50%"
        restart = { max = 4, healthy_s = 10 }
    """))
    assert c.thresholds.warn == Level(fraction=0.5)
    assert c.restart == RestartSettings(max=4, healthy_s=10.0)


def test_the_file_gives_the_engine_its_own_type_with_notify_and_grace(tmp_path: Path) -> None:
    # One type: what the file says reaches the engine and the window as written, "notify"
    # included (the window notifies by it), not mapped to another type that drops it.
    c = load_config(write(tmp_path, '[thresholds]\non_warn = "notify"\non_crit = "none"\ngrace_s = 7\n'))
    assert type(c.thresholds) is ThresholdConfig
    assert (c.thresholds.on_warn, c.thresholds.on_crit, c.thresholds.grace_s) == ("notify", "none", 7.0)
    assert c.thresholds.action("warning") == "notify" and c.thresholds.action("critical") == "none"


def test_example_config_loads_to_the_defaults(tmp_path: Path) -> None:
    text = example_config()
    c = load_config(write(tmp_path, text))
    assert c == OomscopeConfig(source=c.source)
    for key in ThresholdConfig.__dataclass_fields__:
        assert re.search(rf"^{key} = ", text, re.M), key
    for key in (*RestartSettings.__dataclass_fields__, *SamplingSettings.__dataclass_fields__):
        assert re.search(rf"^{key} = ", text, re.M), key


def test_example_workers_section_works_when_uncommented(tmp_path: Path) -> None:
    text = re.sub(r"^# (\[workers|warn|crit|on_crit)", r"\1", example_config(), flags=re.M)
    c = load_config(write(tmp_path, text))
    assert [name for name, _ in c.workers] == ["celery.*"]


# --- bad values: key and line -------------------------------------------------------------

FILE = """\
[thresholds]
metric = "rss"
warn = "75%"
crit = "90%"
sustain_s = 2.0
hysteresis = "5%"
on_crit = "notify"
"""


@pytest.mark.parametrize(
    "key, value, line, advice",
    [
        ("crit", '"150%"', 4, "at most 100%"),
        ("warn", '"-5MiB"', 3, "greater than zero"),
        ("warn", "75", 3, '"75%"'),
        ("warn", "true", 3, "false for no level"),
        ("sustain_s", "-1", 5, "at least 0"),
        ("sustain_s", '"2s"', 5, "not a number"),
        ("sustain_s", "nan", 5, "at least 0"),
        ("metric", '"bytes"', 2, '"rss", "anon", "heap"'),
        ("on_crit", '"kill"', 7, '"none", "notify", "terminate"'),
        ("hysteresis", '"80%"', 6, '"0%" to "50%"'),
        ("hysteresis", "0.05", 6, '"0%" to "50%"'),
    ],
)
def test_bad_value_names_key_and_line(
    tmp_path: Path, key: str, value: str, line: int, advice: str
) -> None:
    text = re.sub(rf"^{key} = .*$", f"{key} = {value}", FILE, flags=re.M)
    path = write(tmp_path, text)
    msg = bad(path)
    assert msg.startswith(f"{path}:{line}: thresholds.{key}: "), msg
    assert advice in msg


@pytest.mark.parametrize("warn, crit", [('"90%"', '"90%"'), ('"95%"', '"90%"'),
                                        ('"2GiB"', '"1GiB"')])
def test_warn_not_below_crit_is_refused(tmp_path: Path, warn: str, crit: str) -> None:
    path = write(tmp_path, f"[thresholds]\nwarn = {warn}\n\ncrit = {crit}\n")
    msg = bad(path)
    assert msg.startswith(f"{path}:4: thresholds.crit: "), msg
    assert "must be below" in msg


def test_warn_and_crit_of_different_kinds_are_not_compared(tmp_path: Path) -> None:
    c = load_config(write(tmp_path, '[thresholds]\nwarn = "2GiB"\ncrit = "50%"\n'))
    assert c.thresholds.warn == Level(bytes=2 * 1024**3)


def test_warn_alone_above_default_crit_is_blamed_on_warn(tmp_path: Path) -> None:
    path = write(tmp_path, '[thresholds]\nwarn = "95%"\n')
    assert bad(path).startswith(f"{path}:2: thresholds.warn: ")


def test_crit_alone_below_the_default_warning_takes_it_down_and_says_so(tmp_path: Path) -> None:
    """Issue #13's first complaint, in the settings file: crit = "60%" alone was refused ("warning
    level 75% must be below critical level 60%") for a warning level the user never set."""
    import argparse

    from oomscope.core.options import engine_config_from

    path = write(tmp_path, '[thresholds]\ncrit = "60%"\non_crit = "terminate"\n')
    c = load_config(path)
    assert c.thresholds.crit == Level(fraction=0.6) and c.thresholds.warn == Level(fraction=0.5)
    (note,) = c.notes
    assert note.startswith(f"{path}:2: thresholds.crit 60% ") and "warning level is 50%" in note
    told: list[str] = []
    engine_config_from(argparse.Namespace(), c, told.append)
    assert told == [note]
    # Given both, wrongly, it is still the user's mistake to fix.
    assert "must be below" in bad(write(tmp_path, '[thresholds]\nwarn = "75%"\ncrit = "60%"\n'))


def test_worker_crit_alone_takes_its_warning_down(tmp_path: Path) -> None:
    c = load_config(write(tmp_path, '[workers.web]\ncrit = "60%"\n'))
    (pattern, override), = c.workers
    t = override.apply(c.thresholds)
    assert (t.warn, t.crit) == (Level(fraction=0.5), Level(fraction=0.6))


def test_unknown_key_is_named_with_line_and_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, '[thresholds]\nwarn = "75%"\nsustian_s = 3\n')
    msg = bad(path)
    assert msg.startswith(f"{path}:3: thresholds.sustian_s: unknown key"), msg
    assert "did you mean sustain_s?" in msg


def test_unknown_table_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, '# settings\n\n[threshold]\nwarn = "75%"\n')
    msg = bad(path)
    assert msg.startswith(f"{path}:3: threshold: unknown key (did you mean thresholds?)"), msg


def test_table_given_as_value_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, 'sampling = 3\n')
    assert bad(path).startswith(f"{path}:1: sampling: 3 is not allowed: this must be a table")


@pytest.mark.parametrize(
    "text, line, key, advice",
    [
        ("[restart]\nmax = -1\n", 2, "restart.max", "at least 0"),
        ("[restart]\nmax = 1.5\n", 2, "restart.max", "not a whole number"),
        ("[restart]\nmax = true\n", 2, "restart.max", "not a whole number"),
        ("[restart]\ncrash_loop_kills = 0\n", 2, "restart.crash_loop_kills", "at least 1"),
        ("[restart]\nbackoff_initial_s = 0\n", 2, "restart.backoff_initial_s", "above 0"),
        ("[restart]\nbackoff_initial_s = 10\nbackoff_cap_s = 5\n", 3, "restart.backoff_cap_s",
         "must not be below"),
        ("[sampling]\n\ninterval_s = 0.01\n", 3, "sampling.interval_s", "at least 0.05"),
        ("[sampling]\nheap_interval_s = inf\n", 2, "sampling.heap_interval_s", "at least 0.05"),
    ],
)
def test_bad_restart_and_sampling_values(
    tmp_path: Path, text: str, line: int, key: str, advice: str
) -> None:
    path = write(tmp_path, text)
    msg = bad(path)
    assert msg.startswith(f"{path}:{line}: {key}: "), msg
    assert advice in msg


def test_every_problem_is_reported_in_line_order(tmp_path: Path) -> None:
    path = write(tmp_path, """
        [sampling]
        interval_s = 0

        [thresholds]
        metric = "bytes"
        sustian_s = 1
    """)
    lines = bad(path).splitlines()
    assert [ln.split(": ")[0] for ln in lines] == [f"{path}:2", f"{path}:5", f"{path}:6"]


# --- finding the line in other layouts ----------------------------------------------------


def test_line_of_dotted_key_at_top_level(tmp_path: Path) -> None:
    path = write(tmp_path, '# x\nthresholds.metric = "rss"\nthresholds . "crit" = "150%"\n')
    assert bad(path).startswith(f"{path}:3: thresholds.crit: ")


def test_line_of_key_in_inline_table(tmp_path: Path) -> None:
    path = write(tmp_path, '# a\n# b\nthresholds = { warn = "70%", crit = "150%" }\n')
    assert bad(path).startswith(f"{path}:3: thresholds.crit: ")


def test_line_after_multiline_strings_and_arrays(tmp_path: Path) -> None:
    # Text that looks like keys inside a string or array must not confuse the line search;
    # the unknown key holding it is reported too, at its own line.
    path = write(tmp_path, '''
        [thresholds]
        note = """
        crit = "1%"
        """
        list = [
          "crit = 2",  # crit = 3
        ]
        when = 1979-05-27 07:32:00Z
        crit = "150%"
    ''')
    lines = bad(path).splitlines()
    assert lines[0].startswith(f"{path}:2: thresholds.note: unknown key")
    assert lines[1].startswith(f"{path}:5: thresholds.list: unknown key")
    assert lines[2].startswith(f"{path}:8: thresholds.when: unknown key")
    assert lines[3].startswith(f"{path}:9: thresholds.crit: ")


def test_crlf_line_endings(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'[thresholds]\r\nwarn = "75%"\r\ncrit = "150%"\r\n')
    assert bad(path).startswith(f"{path}:3: thresholds.crit: ")


# --- per-worker overrides -----------------------------------------------------------------


def test_worker_overrides_in_file_order(tmp_path: Path) -> None:
    c = load_config(write(tmp_path, """
        [thresholds]
        crit = "1GiB"

        [workers."web-1"]
        on_crit = "terminate"

        [workers."celery.*"]
        warn = "300MiB"
        crit = false

        [workers.api]
        metric = "heap"
    """))
    assert [name for name, _ in c.workers] == ["web-1", "celery.*", "api"]
    celery = c.workers[1][1]
    assert celery == ThresholdOverride((("warn", Level(bytes=300 * 1024**2)), ("crit", None)))
    assert celery.keys == ("warn", "crit")
    assert "metric" not in dict(celery.changes)
    merged = celery.apply(c.thresholds)
    assert (merged.warn, merged.crit, merged.metric) == (Level(bytes=300 * 1024**2), None, "rss")
    assert c.workers[2][1].apply(c.thresholds).metric == "heap"


def test_worker_bad_value_named_with_quoted_key(tmp_path: Path) -> None:
    path = write(tmp_path, '[workers."celery.*"]\nwarn = "300MiB"\non_crit = "kill"\n')
    msg = bad(path)
    assert msg.startswith(f'{path}:3: workers."celery.*".on_crit: '), msg


def test_worker_unknown_key(tmp_path: Path) -> None:
    path = write(tmp_path, '[workers.web]\nwran = "1GiB"\n')
    assert bad(path).startswith(f"{path}:2: workers.web.wran: unknown key (did you mean warn?)")


def test_worker_warn_checked_against_global_crit(tmp_path: Path) -> None:
    path = write(tmp_path, '[thresholds]\ncrit = "1GiB"\n[workers.web]\nwarn = "2GiB"\n')
    msg = bad(path)
    assert msg.startswith(f"{path}:4: workers.web.warn: "), msg
    assert "must be below" in msg


def test_worker_bad_regex_and_non_table(tmp_path: Path) -> None:
    path = write(tmp_path, '[workers]\nweb = 3\n\n[workers."celery(("]\nwarn = "1GiB"\n')
    lines = bad(path).splitlines()
    assert lines[0].startswith(f"{path}:2: workers.web: 3 is not allowed: this must be a table")
    assert lines[1].startswith(f'{path}:4: workers."celery((": not a valid regex')


# --- the dataclasses check themselves when built in code (the GUI will) -------------------


def test_dataclasses_validate_programmatic_values() -> None:
    with pytest.raises(BadInput, match="sustain_s"):
        ThresholdConfig(sustain_s=-1)
    with pytest.raises(BadInput, match="grace_s"):
        ThresholdConfig(grace_s=math.nan)
    with pytest.raises(BadInput, match="must be below"):
        ThresholdConfig(warn=Level(fraction=0.9), crit=Level(fraction=0.8))
    with pytest.raises(BadInput, match="hysteresis"):
        ThresholdConfig(hysteresis=0.6)
    with pytest.raises(BadInput, match='on_crit: "kill" is not an action'):
        ThresholdConfig(on_crit="kill")
    with pytest.raises(BadInput, match="backoff_cap_s"):
        RestartSettings(backoff_initial_s=5, backoff_cap_s=1)
    with pytest.raises(BadInput, match="interval_s"):
        SamplingSettings(interval_s=0)
