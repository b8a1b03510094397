"""``oomscope export``: a session file as CSV (one file per table) or as one JSON document.

CSV: ``samples.csv`` holds every sample decoded (:data:`SAMPLE_COLUMNS`); every other table is
its rows with the engine's worker id (``w3``) in a ``worker`` column. Lists and objects (a
command line, evidence, settings) are JSON text in their cell; an unknown value is an empty cell.

JSON: ``{"format": "oomscope-session", "schema": N, "sessions": [...], "damaged": [...]}``
(``damaged``: what the file holds that could not be read, in words; empty for a sound file);
each session has its
fields, ``workers``, ``samples`` by worker id as columns (``{"w1": {"t": [...], "rss": [...]}}``)
and ``events``: every other event in the ``watch --json`` shape, in the order it happened,
including the kernel's lines (``kernel_line``) and the workers' output (``output``).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from ..errors import BadInput
from . import schema
from .reader import SessionFile
from .rowevents import export_columns
from .samplecodec import FIELDS, TENTHS_FIELDS

SAMPLE_COLUMNS: tuple[str, ...] = ("session_id", "worker", "pid", "t") + FIELDS
# Every table but the ticks (their times are in samples.csv).
CSV_TABLES: tuple[schema.Table, ...] = tuple(t for t in schema.TABLES if t is not schema.TICKS)


def csv_name(table: schema.Table) -> str:
    return f"{table.name}.csv"


def csv_header(table: schema.Table) -> tuple[str, ...]:
    return SAMPLE_COLUMNS if table is schema.SAMPLES else export_columns(table)


def write_samples_csv(data: Mapping[str, Any] | Iterable[Mapping[str, Any]], out: TextIO, *,
                      header: bool = True) -> int:
    """Samples as CSV rows of :data:`SAMPLE_COLUMNS`; returns the number of rows.

    ``data`` is either columns (a mapping of column name to a sequence or numpy array, or to
    one value for every row, e.g. ``{"worker": "w3", "t": ts, "rss": rss}``) or rows (mappings).
    A column not given, None and NaN are empty cells. Sizes are whole bytes, ``t`` Unix
    seconds to the microsecond, the trend and ETAs to a tenth.
    """
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow(SAMPLE_COLUMNS)
    if isinstance(data, Mapping):
        lengths = {len(v) for v in data.values() if _is_column(v)}
        if len(lengths) > 1:
            raise ValueError(f"columns of different lengths: {sorted(lengths)}")
        n = lengths.pop() if lengths else 0
        cells = []
        for name in SAMPLE_COLUMNS:
            value = data.get(name)
            if isinstance(value, np.ndarray):
                value = value.tolist()
            if isinstance(value, (list, tuple)):
                cells.append([_cell(name, v) for v in value])
            else:
                cells.append([_cell(name, value)] * n)
        writer.writerows(zip(*cells))
        return n
    count = 0
    for row in data:
        writer.writerow([_cell(name, row.get(name)) for name in SAMPLE_COLUMNS])
        count += 1
    return count


def _is_column(value: Any) -> bool:
    return isinstance(value, (np.ndarray, list, tuple))


def _cell(name: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, str):
        return value
    if name == "t":
        return f"{float(value):.6f}"
    if name in TENTHS_FIELDS:
        return f"{float(value):.1f}"
    return str(int(value))


# ------------------------------------------------------------------ CSV

def export_csv(f: SessionFile, directory: Path, *, session_id: int | None = None, force: bool = False) -> list[Path]:
    """One CSV per table into ``directory`` (made if missing). Existing files are left alone
    unless ``force``: the message names them."""
    targets = [directory / csv_name(t) for t in CSV_TABLES]
    if directory.exists() and not directory.is_dir():
        raise BadInput(f"{directory} exists and is not a directory: give a directory for the CSV files")
    present = [p.name for p in targets if p.exists()]
    if present and not force:
        raise BadInput(f"{directory} already holds {', '.join(present)}: give another directory, "
                       "or --force to overwrite them")
    directory.mkdir(parents=True, exist_ok=True)
    for table, target in zip(CSV_TABLES, targets):
        with open(target, "w", newline="", encoding="utf-8") as out:
            if table is schema.SAMPLES:
                _samples_csv(f, session_id, out)
                continue
            names, rows = f.export_rows(table, session_id)
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(names)
            for row in rows:
                writer.writerow(["" if v is None else v for v in row])
    return targets


def _samples_csv(f: SessionFile, session_id: int | None, out: TextIO) -> None:
    header = True
    for s in _sessions(f, session_id):
        for w in f.workers(s.id):
            columns: dict[str, Any] = dict(f.worker_samples(s.id, w.worker_id))
            columns.update(session_id=s.id, worker=w.ref.id, pid=w.ref.pid)
            write_samples_csv(columns, out, header=header)
            header = False
    if header:
        write_samples_csv([], out)


def _sessions(f: SessionFile, session_id: int | None) -> list[Any]:
    return f.sessions() if session_id is None else [f.session(session_id)]


# ------------------------------------------------------------------ JSON

def export_json(f: SessionFile, out: TextIO, *, session_id: int | None = None) -> None:
    """One JSON document, written piece by piece (an hour of samples never sits in memory as
    Python objects all at once)."""
    out.write('{"format": "oomscope-session", "schema": %d, "file": %s, "sessions": ['
              % (schema.SCHEMA_VERSION, json.dumps(str(f.path))))
    for i, s in enumerate(_sessions(f, session_id)):
        head = {"id": s.id, "host": s.host, "kernel": s.kernel, "started": s.started, "ended": s.ended,
                "last_t": s.last_t, "oomscope_version": s.oomscope_version, "pid": s.pid,
                "events_lost": s.events_lost, "command_line": s.command_line, "settings": s.settings}
        out.write(("," if i else "") + "\n" + json.dumps(head)[:-1])
        workers = f.workers(s.id)
        out.write(', "workers": ' + json.dumps([
            dict(w.ref.to_json(), event=w.event, parent_pid=w.parent_pid, cgroup=w.cgroup,
                 cgroup_limit=w.cgroup_limit, output_dropped=w.output_dropped) for w in workers]))
        out.write(', "samples": {')
        for j, w in enumerate(workers):
            arrays = f.worker_samples(s.id, w.worker_id)
            columns = {"t": [round(v, 6) for v in arrays["t"].tolist()]}
            for name in FIELDS:
                columns[name] = _json_values(name, arrays[name])
            out.write(("," if j else "") + "\n" + json.dumps(w.ref.id) + ": " + json.dumps(columns))
        out.write('}, "events": [')
        for j, ev in enumerate(f.events(s.id, samples=False)):
            out.write(("," if j else "") + "\n" + json.dumps(ev.to_json()))
        out.write("]}")
    # Last: only now is everything read, and with it all the damage met on the way.
    out.write('\n], "damaged": %s}\n' % json.dumps(f.damage))


def _json_values(name: str, values: np.ndarray[Any, Any]) -> list[Any]:
    tenths = name in TENTHS_FIELDS
    return [None if math.isnan(v) else (round(v, 1) if tenths else int(v)) for v in values.tolist()]
