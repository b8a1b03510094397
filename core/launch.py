"""What to launch, and how a launched worker is spawned (optionally inside a memory cgroup)."""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import BadInput


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    """A command as a list (run as is) or a string (run by ``/bin/sh -c``)."""

    command: tuple[str, ...] | str
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    mem_limit_bytes: int | None = None
    name: str | None = None
    heap_reports: bool = True

    def argv(self) -> list[str]:
        if isinstance(self.command, str):
            if not self.command.strip():
                raise BadInput("empty command: give the program to run, e.g. --run 'node app.js'")
            if is_simple_command(self.command):
                # The shell would otherwise stay as the worker with the program as its child:
                # oomscope would watch (and signal) `sh`, whose memory says nothing.
                return ["/bin/sh", "-c", "exec " + self.command]
            return ["/bin/sh", "-c", self.command]
        if not self.command or not self.command[0].strip():
            raise BadInput("empty command: give the program to run, e.g. --run 'node app.js'")
        return list(self.command)

    def display_name(self) -> str:
        """The program's name as the user wrote it (the PID may show ``sh`` until it execs)."""
        if self.name:
            return self.name
        if isinstance(self.command, str):
            try:
                words = shlex.split(self.command)
            except ValueError:
                words = self.command.split()
            # Skip leading VAR=value assignments of a shell command line.
            words = [w for w in words if not ("=" in w and w.split("=", 1)[0].isidentifier())]
            return os.path.basename(words[0]) if words else "sh"
        return os.path.basename(self.command[0])

    def display_cmd(self) -> tuple[str, ...]:
        if isinstance(self.command, str):
            return (self.command,)
        return tuple(self.command)


_SHELL_WORDS = frozenset({
    "cd", "exec", "export", "set", "source", ".", "eval", "if", "for", "while", "until", "case",
    "!", "{", "time", "ulimit", "umask", "trap", "exit", "return", "unset", "alias",
})


def is_simple_command(text: str) -> bool:
    """One program with its arguments (and redirections), which `exec` can replace the shell
    with: no lists, pipes, subshells or background jobs, no leading assignments or builtins."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|()<>")
    lexer.whitespace_split = True
    try:
        words = list(lexer)
    except ValueError:
        return False  # unbalanced quotes: let the shell say so
    if not words or words[0] in _SHELL_WORDS:
        return False
    if "=" in words[0] and words[0].split("=", 1)[0].isidentifier():
        return False
    return not any(w and set(w) <= set(";&|()") for w in words)


@functools.cache
def _setpriv() -> str | None:
    """util-linux's setpriv, if it can set a parent-death signal (2.33 and later)."""
    path = shutil.which("setpriv")
    if path is None:
        return None
    try:
        done = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return path if "--pdeathsig" in done.stdout else None


def dies_with_us(argv: list[str]) -> list[str]:
    """``argv`` run so that the kernel kills it (SIGKILL) when the thread that started it ends,
    oomscope's death by ``kill -9`` included: workers must not outlive the tool that launched
    them. setpriv sets PR_SET_PDEATHSIG and then execs, so the PID stays the worker's; Python's
    ``preexec_fn`` would do it in-process but is unsafe in the engine's thread. Where setpriv
    cannot, the command runs as given (the next oomscope reports what was left)."""
    setpriv = _setpriv()
    return [setpriv, "--pdeathsig", "KILL", "--", *argv] if setpriv else list(argv)


def spawn(spec: LaunchSpec, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start the process with piped output, in a session of its own, to die with its launcher.

    Its own session keeps a terminal's Ctrl-C away from workers: oomscope decides how they
    stop (SIGTERM, grace, SIGKILL) when it is interrupted.
    """
    if spec.cwd is not None and not os.path.isdir(spec.cwd):
        raise BadInput(f"working directory {spec.cwd!r} does not exist")
    if env is None:
        env = dict(os.environ)
        env.update(spec.env)
    _check_executable(argv[0], env.get("PATH", os.defpath), spec.cwd)
    try:
        return subprocess.Popen(
            dies_with_us(argv),
            cwd=spec.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
        )
    except FileNotFoundError:
        raise _not_found(argv[0]) from None  # the checked program went away since
    except PermissionError:
        raise _not_executable(argv[0]) from None


def _check_executable(program: str, path: str, cwd: str | None) -> None:
    """Say "command not found" before the spawn: behind setpriv, a missing program is setpriv's
    exit 127 instead of the exec error Popen raises for it."""
    if "/" in program:
        full = program if os.path.isabs(program) else os.path.join(cwd or os.getcwd(), program)
        if not os.path.exists(full):
            raise _not_found(program)
        if os.path.isdir(full) or not os.access(full, os.X_OK):
            raise _not_executable(program)
    elif shutil.which(program, path=path) is None:
        raise _not_found(program)


def _not_found(program: str) -> BadInput:
    return BadInput(f"command not found: {program!r} (check the spelling, or give the full path)")


def _not_executable(program: str) -> BadInput:
    return BadInput(f"cannot execute {program!r}: permission denied")
