"""Session files: ``watch --record`` writes one (:func:`open_recorder`), ``open`` and
``export`` read one (:class:`SessionFile`). See ``schema`` for the tables.

The names are loaded on first use: ``oomscope watch`` without ``--record`` (and the CLI's
argument parser) must not pay for numpy and the codec, nor need them.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .schema import SCHEMA_VERSION

if TYPE_CHECKING:
    from .reader import SessionFile, SessionInfo, WorkerInfo
    from .recorder import Recorder, open_recorder

__all__ = ["SCHEMA_VERSION", "Recorder", "SessionFile", "SessionInfo", "WorkerInfo", "open_recorder"]

_WHERE = {"SessionFile": "reader", "SessionInfo": "reader", "WorkerInfo": "reader",
          "Recorder": "recorder", "open_recorder": "recorder"}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{module}", __name__), name)
