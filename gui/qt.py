"""The one module that imports the Qt binding (qutebrowser's ``qt/`` idea).

oomscope pins PySide6; everything else in ``gui/`` imports Qt names from here, so the binding
is decided in one place. pyqtgraph is imported here too, after PySide6 and with its binding
named, so it can never pick another binding that happens to be installed.
"""

from __future__ import annotations

import os

os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")

from PySide6 import QtCore, QtGui, QtWidgets  # noqa: E402
from PySide6.QtCore import (  # noqa: E402
    QAbstractItemModel,
    QItemSelectionModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QPointF,
    QRectF,
    QSettings,
    QSize,
    QSocketNotifier,
    QSortFilterProxyModel,
    Qt,
    QTimer,
    Signal,
)

import pyqtgraph as pg  # noqa: E402

__all__ = [
    "QAbstractItemModel",
    "QItemSelectionModel",
    "QModelIndex",
    "QObject",
    "QPersistentModelIndex",
    "QPointF",
    "QRectF",
    "QSettings",
    "QSize",
    "QSocketNotifier",
    "QSortFilterProxyModel",
    "Qt",
    "QTimer",
    "QtCore",
    "QtGui",
    "QtWidgets",
    "Signal",
    "pg",
]
