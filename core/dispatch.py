"""One way to route an event to its handler: a table from event class to handler, built once.

Every consumer of engine events (the GUI bridge and window, the ``watch`` printers, the recorder
and its reader, the metrics exporter) used to carry its own ``isinstance`` chain or hand-made
dict, and each silently dropped an event class it had not heard of. A :class:`Dispatcher` names
what it handles and what it deliberately ignores; anything else raises :class:`UnhandledEvent`
(or goes to an explicit ``fallback``), and :func:`event_classes` lets a test prove that every
event class is covered by every dispatcher.

Subclasses follow their nearest registered base along the MRO (``RestartCancelled`` is a
``Notice``), unless registered themselves; the lookup is cached per concrete class.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

from .events import Event

R = TypeVar("R")

Handler = Callable[[Any], R]


class UnhandledEvent(LookupError):
    """An event class the dispatcher was never told about: a new event kind needs a handler.

    A bug, not a user's mistake (hence not a core ``Error``): the coverage test catches it first.
    """


def event_classes() -> list[type[Event]]:
    """Every kind of event the engine emits: the classes of ``core.events`` with a ``kind`` of
    their own (``Event`` and ``WorkerEvent`` are only bases).

    Subclasses defined elsewhere (a test's own) are left out: they are not the engine's."""
    module = sys.modules[Event.__module__]
    out: list[type[Event]] = []
    todo: list[type[Event]] = list(Event.__subclasses__())
    seen: set[type[Event]] = set()
    while todo:
        cls = todo.pop(0)
        # ``dataclass(slots=True)`` makes a new class: the one it replaced lingers among the
        # subclasses until collected. The module's own name for it is the real one.
        if cls in seen or cls.__module__ != Event.__module__ or getattr(module, cls.__name__, None) is not cls:
            continue
        seen.add(cls)
        todo.extend(cls.__subclasses__())
        if "kind" in cls.__dict__:
            out.append(cls)
    return out


class Dispatcher(Generic[R]):
    """Calls the handler registered for an event's class (or its nearest registered base).

    ``ignore``: classes deliberately not handled (the call returns None). ``fallback``: what to
    do with any other class; without one such an event raises :class:`UnhandledEvent`.
    """

    def __init__(self, handlers: Mapping[type[Event], Handler[R]], *,
                 ignore: Iterable[type[Event]] = (),
                 fallback: Handler[R] | None = None, name: str = "dispatcher") -> None:
        self._table: dict[type[Event], Handler[R] | None] = dict(handlers)
        for cls in ignore:
            if cls in self._table:
                raise ValueError(f"{name}: {cls.__name__} is both handled and ignored")
            self._table[cls] = None
        self._registered = frozenset(self._table)
        self._fallback = fallback
        self.name = name

    def handler_for(self, cls: type[Event]) -> Handler[R] | None:
        """The handler for ``cls``; None when it is ignored. Raises UnhandledEvent without a
        handler, an ignore entry or a fallback."""
        try:
            return self._table[cls]
        except KeyError:
            pass
        base = next((c for c in cls.__mro__[1:] if c in self._registered), None)
        if base is not None:
            handler = self._table[base]
        elif self._fallback is not None:
            handler = self._fallback
        else:
            raise UnhandledEvent(f"{self.name}: no handler for {cls.__name__} events "
                                 f"(register one, or list it as ignored)")
        self._table[cls] = handler
        return handler

    def covers(self, cls: type[Event]) -> bool:
        """Whether ``cls`` is handled or deliberately ignored (by itself or a registered base)."""
        return any(c in self._registered for c in cls.__mro__)

    def __call__(self, ev: Event) -> R | None:
        handler = self.handler_for(type(ev))
        return None if handler is None else handler(ev)
