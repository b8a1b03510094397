"""The layers docs/DESIGN.md draws: core never imports Qt; gui never touches /proc or signals."""

from __future__ import annotations

import re
import subprocess

from conftest import PY, REPO


def test_core_imports_no_qt_in_a_fresh_interpreter() -> None:
    code = (
        "import importlib, pkgutil, sys\n"
        "import oomscope.core as core\n"
        "names = [m.name for m in pkgutil.walk_packages(core.__path__, 'oomscope.core.')]\n"
        "for n in names: importlib.import_module(n)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'PyQt5', 'PyQt6', 'pyqtgraph', 'shiboken6'))\n"
        "print(len(names), bad)\n"
    )
    r = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60, cwd="/")
    assert r.returncode == 0, r.stderr
    count, bad = r.stdout.split(" ", 1)
    assert int(count) >= 10  # the walk really imported the engine's modules
    assert bad.strip() == "[]"


def test_installed_as_oomscope_only() -> None:
    code = (
        "import importlib.util as u\n"
        "print(u.find_spec('core'), u.find_spec('gui'), u.find_spec('resources'))\n"
        "import oomscope.core, oomscope.gui, oomscope.resources\n"
        "print(oomscope.core.__file__)\n"
    )
    r = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60, cwd="/")
    assert r.returncode == 0, r.stderr
    first, second = r.stdout.splitlines()
    assert first == "None None None"
    assert second == str(REPO / "core" / "__init__.py")


def test_gui_never_reads_proc_nor_signals() -> None:
    forbidden = re.compile(r"/proc/|os\.kill\b|pidfd_send_signal|send_signal\(|import psutil|from psutil")
    offenders = []
    for path in (REPO / "gui").rglob("*.py"):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if forbidden.search(line):
                offenders.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert offenders == []

