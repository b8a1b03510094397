"""Before Qt starts on X11: are the libraries its xcb plugin needs on this machine?

Qt aborts inside the plugin ("xcb-cursor0 or libxcb-cursor0 is needed to load the Qt xcb
platform plugin", then SIGABRT) on a minimal machine, which says nothing about the other
libraries missing behind that one. ``ldd`` on the plugin lists them all at once, and Debian's
package names follow from the library names, so the user gets one ``apt-get install`` line.
No Qt import here: this runs before Qt is loaded.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found\s*$", re.M)
_SONAME = re.compile(r"^(?P<base>.+)\.so\.(?P<major>\d+)")


def xcb_plugin() -> Path | None:
    """The Qt xcb platform plugin of the installed PySide6, found without importing it."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    plugin = Path(list(spec.submodule_search_locations)[0]) / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    return plugin if plugin.is_file() else None


def missing_libraries(library: Path) -> list[str]:
    """The shared libraries ``ldd`` cannot find for ``library`` (sonames), in ldd's order."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return []
    try:
        out = subprocess.run([ldd, str(library)], capture_output=True, text=True, timeout=10,
                             check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return list(dict.fromkeys(_NOT_FOUND.findall(out)))


def debian_package(soname: str) -> str:
    """Debian's package for a library: ``libxcb-icccm.so.4`` -> ``libxcb-icccm4``; a name that
    ends in a digit takes a dash (``libxkbcommon-x11.so.0`` -> ``libxkbcommon-x11-0``)."""
    m = _SONAME.match(soname)
    if m is None:
        return soname
    base = m.group("base").lower()
    return f"{base}-{m.group('major')}" if base[-1].isdigit() else f"{base}{m.group('major')}"


def uses_xcb(env: Mapping[str, str]) -> bool:
    """Whether Qt will pick its xcb plugin: asked for, or the default on an X display."""
    platform = env.get("QT_QPA_PLATFORM", "").split(":")[0]
    if platform:
        return platform == "xcb"
    return bool(env.get("DISPLAY")) and not env.get("WAYLAND_DISPLAY")


def display_problem(env: Mapping[str, str] | None = None, plugin: Path | None = None) -> str | None:
    """What to tell the user instead of letting Qt abort, or None when nothing is missing."""
    env = os.environ if env is None else env
    if not uses_xcb(env):
        return None
    plugin = plugin or xcb_plugin()
    if plugin is None:
        return None
    missing = missing_libraries(plugin)
    if not missing:
        return None
    packages = " ".join(dict.fromkeys(debian_package(s) for s in missing))
    return (f"the desktop app cannot start: Qt's X11 plugin needs {', '.join(missing)}, missing on "
            f"this machine. On Debian or Ubuntu: sudo apt-get install {packages}\n"
            "(`oomscope watch` runs without a display meanwhile.)")
