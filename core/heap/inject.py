"""Put the heap reporters into a launched worker's command line and environment.

Node needs the reporter in two places, because each alone misses some worker threads: a Worker
inherits ``--require`` from the parent's command line (``process.execArgv``) unless it is created
with ``execArgv: []``, and it parses ``NODE_OPTIONS`` from its own environment, which a Worker
created with ``env: {}`` does not have. (A Worker created with both is not reached.) The socket
path travels in the environment and, for ``env: {}`` workers, as worker_threads environment data
set by the reporter itself.

Python reads ``sitecustomize`` from the first directory on its path that has one: ours goes first
on ``PYTHONPATH`` and chains the one it hides. ``python -E``, ``-I`` or ``-S`` skip it.
"""

from __future__ import annotations

import importlib.resources
import os
from typing import Final

SOCKET_ENV: Final = "OOMSCOPE_HEAP_SOCKET"
INTERVAL_ENV: Final = "OOMSCOPE_HEAP_INTERVAL_MS"
NODE_NAMES: Final = frozenset({"node", "nodejs"})
# env(1) options that take a value as the next word.
_ENV_OPTS_WITH_ARG: Final = frozenset({"-u", "--unset", "-C", "--chdir"})
_ENV_CLEARS: Final = frozenset({"-i", "--ignore-environment", "-"})


def _resource(*parts: str) -> str:
    # The package maps to a real directory (editable or wheel install); node and python need a path.
    return os.path.abspath(str(importlib.resources.files("oomscope.resources").joinpath(*parts)))


def reporter_path() -> str:
    """Absolute path of the Node.js reporter script."""
    return _resource("node", "reporter.js")


def python_reporter_dir() -> str:
    """The directory that goes first on a Python worker's PYTHONPATH."""
    return _resource("python")


def _interval_ms(interval_s: float) -> str:
    if not interval_s > 0:
        raise ValueError(f"interval_s must be positive, not {interval_s!r}")
    return str(max(1, round(interval_s * 1000)))


def _node_options_quote(word: str) -> str:
    # Node splits NODE_OPTIONS on spaces and honours double quotes with backslash escapes.
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _node_index(argv: list[str]) -> tuple[int | None, int | None, bool]:
    """(index of node, index where env(1)'s assignments start, whether env clears the environment)."""
    if not argv:
        return None, None, False
    name = os.path.basename(argv[0])
    if name in NODE_NAMES:
        return 0, None, False
    if name != "env":
        return None, None, False
    i = 1
    clears = False
    while i < len(argv):
        word = argv[i]
        if word == "--":
            i += 1
            break
        if word in _ENV_CLEARS:
            clears = True
            i += 1
        elif word in _ENV_OPTS_WITH_ARG:
            i += 2
        elif word.startswith("-S") or word.startswith("--split-string"):
            # env -S re-splits a string into words: we cannot place an argument inside it safely.
            return None, None, clears
        elif word.startswith("-"):
            i += 1
        else:
            break
    assignments_at = i
    while i < len(argv) and "=" in argv[i] and not argv[i].startswith("="):
        i += 1
    if i < len(argv) and os.path.basename(argv[i]) in NODE_NAMES:
        return i, assignments_at, clears
    return None, None, clears


def inject_node(argv: list[str], env: dict[str, str], socket_path: str,
                interval_s: float) -> tuple[list[str], dict[str, str]]:
    """The command and environment that run ``argv`` with the Node.js reporter preloaded.

    Neither input is modified. A shell command (``["/bin/sh", "-c", …]``) or any other wrapper
    gets the environment only: NODE_OPTIONS reaches every node it starts.
    """
    path = reporter_path()
    interval_ms = _interval_ms(interval_s)
    new_env = dict(env)
    new_env[SOCKET_ENV] = socket_path
    new_env[INTERVAL_ENV] = interval_ms
    existing = new_env.get("NODE_OPTIONS", "").strip()
    require = f"--require {_node_options_quote(path)}"
    if require not in existing:
        new_env["NODE_OPTIONS"] = f"{existing} {require}" if existing else require

    new_argv = list(argv)
    node_at, assignments_at, clears = _node_index(new_argv)
    if node_at is not None:
        if not _already_required(new_argv[node_at + 1:], path):
            new_argv[node_at + 1:node_at + 1] = ["--require", path]
        if clears and assignments_at is not None:
            # `env -i node …` starts node with nothing of our environment: hand it the socket.
            new_argv[assignments_at:assignments_at] = [f"{SOCKET_ENV}={socket_path}",
                                                       f"{INTERVAL_ENV}={interval_ms}"]
    return new_argv, new_env


def _already_required(args: list[str], path: str) -> bool:
    # Only node's own options count: after the script name the words belong to the app.
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "--":
        a = args[i]
        if a in ("--require", "-r"):
            if i + 1 < len(args) and args[i + 1] == path:
                return True
            i += 2
            continue
        if a in (f"--require={path}", f"-r={path}"):
            return True
        i += 1
    return False


def inject_python(env: dict[str, str], socket_path: str, interval_s: float) -> dict[str, str]:
    """The environment that runs a Python worker with the heap reporter (input not modified)."""
    directory = python_reporter_dir()
    new_env = dict(env)
    new_env[SOCKET_ENV] = socket_path
    new_env[INTERVAL_ENV] = _interval_ms(interval_s)
    existing = new_env.get("PYTHONPATH", "")
    # Empty entries stay: Python reads them as the current directory.
    parts = [p for p in existing.split(os.pathsep) if p != directory] if existing else []
    new_env["PYTHONPATH"] = os.pathsep.join([directory, *parts])
    return new_env
