"""``oomscope export FILE.db [--csv DIR] [--json [FILE]] [--session ID] [--force]``.

Without ``--csv``/``--json`` it lists the file's sessions. Exit status 0; 1 when parts of the
file are damaged (an altered value, a sample blob that does not decode): the rest is exported
and each damaged part named on standard error; 2 with a message for a file that is not a
session file this oomscope reads, an unknown session, or a target that exists (``--force``
overwrites) or cannot be written.

Example::

    $ oomscope export run.db
    SESSION  STARTED              ENDED                            WORKERS  HOST
    1        2026-11-29 10:42:01  2026-11-29 10:47:13                    3  build-7
    2        2026-11-29 11:02:40  (crashed: last data 11:03:12)          2  build-7
    $ oomscope export run.db --csv out/ --session 2
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ..errors import Error
from ..printable import printable

if TYPE_CHECKING:
    from .reader import SessionFile


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE.db", help="a session file (oomscope watch --record FILE.db)")
    p.add_argument("--csv", metavar="DIR", help="write one CSV file per table into DIR (made if missing)")
    p.add_argument("--json", metavar="FILE", nargs="?", const="-",
                   help="write one JSON document to FILE (default: standard output)")
    p.add_argument("--session", metavar="ID", type=int, help="only this session (default: every session)")
    p.add_argument("--force", action="store_true", help="overwrite files that exist")


def run(args: argparse.Namespace, stdout: TextIO = sys.stdout, stderr: TextIO = sys.stderr) -> int:
    from .export import export_csv, export_json  # numpy: only when a file is read
    from .reader import SessionFile

    try:
        with SessionFile.open(args.file) as f:
            if args.session is not None:
                f.session(args.session)  # an unknown id is said before anything is written
            if args.csv is None and args.json is None:
                _list_sessions(f, stdout)
                return _damage(f, stderr)
            if args.csv is not None:
                paths = export_csv(f, Path(args.csv), session_id=args.session, force=args.force)
                print(f"wrote {len(paths)} CSV files to {args.csv}", file=stderr)
            if args.json == "-":
                export_json(f, stdout, session_id=args.session)
            elif args.json is not None:
                target = Path(args.json)
                if target.exists() and not args.force:
                    raise Error(f"{target} exists: give another file, or --force to overwrite it")
                with open(target, "w", encoding="utf-8") as out:
                    export_json(f, out, session_id=args.session)
            return _damage(f, stderr)
    except Error as e:
        print(f"oomscope export: {e}", file=stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (``| head``): not an error of ours; keep the interpreter from
        # complaining about the closed pipe at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as e:
        where = f" {e.filename}" if e.filename else ""
        print(f"oomscope export: cannot write{where}: {e.strerror or e}", file=stderr)
        return 2


def _damage(f: SessionFile, stderr: TextIO) -> int:
    """Name what was damaged and left out; 1 if anything was, else 0."""
    for what in f.damage:
        print(f"oomscope export: {f.path} is damaged: {printable(what)}", file=stderr)
    if f.damage:
        print(f"oomscope export: the rest of {f.path} was read (exit status 1: parts are damaged)", file=stderr)
    return 1 if f.damage else 0


def _list_sessions(f: SessionFile, out: TextIO) -> None:
    def stamp(t: float) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))

    out.write(f"{'SESSION':<8} {'STARTED':<20} {'ENDED':<32} {'WORKERS':>7}  HOST\n")
    for s in f.sessions():
        if s.ended is not None:
            ended = stamp(s.ended)
        else:
            last = time.strftime("%H:%M:%S", time.localtime(s.last_t)) if s.last_t else "none"
            ended = f"(crashed: last data {last})"
        # The host is whatever the file says: escapes in it must not act on the terminal.
        out.write(f"{s.id:<8} {stamp(s.started):<20} {ended:<32} {len(f.workers(s.id)):>7}  {printable(s.host or '')}\n")
