"""One exception tree for the engine; every message says what the user can do about it."""

from __future__ import annotations


class Error(Exception):
    """Base of every error oomscope raises on purpose. ``str(e)`` is meant for the user."""


class BadInput(Error):
    """A value given by the user (size, percent, PID, command, regex) that cannot be used."""


class WorkerGone(Error):
    """The process has exited (or its PID now belongs to another process)."""


class NotPermitted(Error):
    """The operating system refuses the action (signal, attach, cgroup write)."""


class Refused(Error):
    """oomscope refuses on principle: PID 1, oomscope itself, a zombie."""


class CgroupUnavailable(Error):
    """No memory cgroup could be made for a launched worker; the message lists why, per backend."""


class SourceUnavailable(Error):
    """A kernel log source cannot be read; the message says why and what would fix it."""


class LogFormatError(Error):
    """A log file whose format oomscope does not recognise, or that cannot be read."""
