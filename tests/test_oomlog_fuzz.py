"""Random and mutated kernel lines: the parser never raises and never invents a kill.

"Kill wording" is what every kill line of every format has (``Killed process``, ``oom-kill:``,
``Kill process``, earlyoom's ``sending SIG``/``Killing process``/``killing process``,
systemd-oomd's ``Killed <cgroup>``/``Marked <cgroup>``/``attempting to kill``). A line without any
of it must never produce a record, alone or in the middle of a real report.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oomscope.core.oomlog import KillRecord, LogReader
from oomscope.core.oomlog.messages import RE_KILLED_HEAD
from oomscope.core.oomlog.reader import iter_text_lines, might_matter

CORPUS = Path(__file__).resolve().parent / "data" / "oom-corpus"
if not CORPUS.is_dir():
    raise RuntimeError(f"OOM corpus not found at {CORPUS}")

KILL_WORDING = ("Killed", "oom-kill:", "Kill process", "sending SIG", "illing process", "Marked ",
                "attempting to kill")


def _corpus_lines() -> list[str]:
    out: list[str] = []
    for path in sorted(CORPUS.iterdir()):
        if path.name.endswith(".expected.json") or path.suffix == ".md":
            continue
        with path.open("rb") as f:
            out.extend(ln for ln in iter_text_lines(f) if ln.strip())
    return out


LINES = _corpus_lines()
KILL_LINES = [ln for ln in LINES if any(w in ln for w in KILL_WORDING)]
# A real report up to (not including) its summary and kill lines: the worst place for a stray line.
_REPORT = (CORPUS / "local-6.18-memcg-v1-node.dmesg.log").read_text().splitlines()
REPORT_HEAD = [ln for ln in _REPORT if "oom-kill:" not in ln and "Killed process" not in ln]

# OOMSCOPE_FUZZ_EXAMPLES=5000 for a longer hunt; the default keeps the suite fast.
SETTINGS = settings(
    max_examples=int(os.environ.get("OOMSCOPE_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@st.composite
def mutated(draw: st.DrawFn, pool: list[str] | None = None) -> str:
    line = draw(st.sampled_from(pool or LINES))
    data = bytearray(line.encode())
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["truncate", "insert", "flip", "delete", "digits"]))
        i = draw(st.integers(0, max(0, len(data))))
        if op == "truncate":
            del data[i:]
        elif op == "insert":
            data[i:i] = draw(st.binary(max_size=12))
        elif op == "flip" and data:
            j = min(i, len(data) - 1)
            data[j] ^= 1 << draw(st.integers(0, 7))
        elif op == "delete":
            del data[i:i + draw(st.integers(1, 20))]
        elif op == "digits":
            data[i:i] = str(draw(st.integers(-(10**30), 10**30))).encode()
    return data.decode("utf-8", "replace")


random_lines = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200).map(lambda b: b.decode("utf-8", "replace")),
    mutated(),
)


def _has_kill_wording(line: str) -> bool:
    return any(w in line for w in KILL_WORDING)


def _feed(lines: list[str]) -> list[KillRecord]:
    reader = LogReader("fuzz")
    records = reader.push_many(lines)
    return records + reader.flush()


@SETTINGS
@given(st.lists(random_lines, max_size=30))
def test_parser_never_raises_and_only_names_pids_it_read(lines: list[str]) -> None:
    records = _feed(lines)
    text = "\n".join(lines)
    for rec in records:
        assert rec.killer in ("kernel-global", "kernel-memcg", "systemd-oomd", "earlyoom")
        if rec.pid is not None:
            assert str(rec.pid) in text
        rec.to_json()


@SETTINGS
@given(random_lines)
def test_a_line_without_kill_wording_makes_no_record(line: str) -> None:
    if _has_kill_wording(line):
        return
    assert _feed([line]) == []
    assert _feed([*REPORT_HEAD, line]) == []


@SETTINGS
@given(mutated(KILL_LINES), st.lists(mutated(), max_size=5))
def test_mutated_kill_lines_make_at_most_one_record_each(kill: str, noise: list[str]) -> None:
    noise = [n for n in noise if not _has_kill_wording(n)]
    records = [r for r in _feed([*noise, kill, *noise]) if r.revision == 0]
    assert len(records) <= (2 if "oom-kill:" in kill and "Killed" in kill else 1)


def test_prefilter_keeps_every_kill_line_of_the_corpus() -> None:
    """The fast path may skip only lines that cannot matter; every kill-ish line passes it."""
    for line in LINES:
        if _has_kill_wording(line) or RE_KILLED_HEAD.search(line):
            assert might_matter(line), line
