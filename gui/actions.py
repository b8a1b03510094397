"""Actions with their shortcut in the tooltip, and the view's own (follow, filter, time window)
that every window over a session has."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .plot import WINDOWS
from .qt import QtGui, QtWidgets
from .session_view import SessionView


def make_action(owner: QtWidgets.QWidget, text: str, tip: str, shortcut: str | Sequence[str] | None,
                slot: Callable[..., Any], name: str) -> QtGui.QAction:
    """An action of ``owner`` (its shortcut works anywhere in owner's window)."""
    action = QtGui.QAction(text, owner)
    action.setObjectName(name)
    if shortcut is not None:
        keys = [shortcut] if isinstance(shortcut, str) else list(shortcut)
        action.setShortcuts([QtGui.QKeySequence(k) for k in keys])
        tip += f" ({', '.join(keys)})"
    action.setToolTip(tip)
    action.setStatusTip(tip)
    action.triggered.connect(slot)
    owner.addAction(action)
    return action


def add_view_actions(owner: QtWidgets.QWidget, view: SessionView) -> None:
    """Space follows the newest samples or stops, Ctrl+F filters the table, 1… pick the time window."""
    make_action(owner, "Follow", "Pause or resume following the newest samples", "Space",
                lambda: view.plot.set_follow(not view.plot.follow), "toggle-follow")
    make_action(owner, "Filter", "Filter the worker table", "Ctrl+F", view.filter_edit.setFocus, "focus-filter")
    for n, (label, _seconds) in enumerate(WINDOWS, 1):
        make_action(owner, f"Window {label}", f"Show the last {label} of history", str(n),
                    lambda _c=False, i=n - 1: view.plot.window_box.setCurrentIndex(i), f"window-{n}")


def fill_menu(menu: QtWidgets.QMenu, actions: Sequence[QtGui.QAction | None]) -> QtWidgets.QMenu:
    """``actions`` in ``menu``; None is a separator."""
    menu.setToolTipsVisible(True)
    for action in actions:
        if action is None:
            menu.addSeparator()
        else:
            menu.addAction(action)
    return menu
