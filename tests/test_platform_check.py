"""Missing X11 libraries are named before Qt aborts: real ELF files, real ldd.

A library is built with gcc against another one that is then deleted, so ldd reports it the
way it reports a missing libxcb-cursor on a minimal machine.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from oomscope.gui.platform_check import debian_package, display_problem, missing_libraries, uses_xcb, xcb_plugin

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("ldd") is None,
                               reason="needs gcc and ldd to build a library with a missing dependency")


def _plugin_missing(tmp_path: Path, *sonames: str) -> Path:
    """A shared library linked against ``sonames``, which are then removed."""
    for soname in sonames:
        (tmp_path / "dep.c").write_text("int dep_%s(void) { return 1; }\n" % soname.split(".")[0].replace("-", "_"))
        subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(tmp_path / soname), f"-Wl,-soname,{soname}",
                        str(tmp_path / "dep.c")], check=True)
    (tmp_path / "plugin.c").write_text("int plugin(void) { return 0; }\n")
    plugin = tmp_path / "libqxcb.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(plugin), str(tmp_path / "plugin.c"),
                    "-Wl,--no-as-needed", *[str(tmp_path / s) for s in sonames]], check=True)
    for soname in sonames:
        (tmp_path / soname).unlink()
    return plugin


@needs_gcc
def test_every_missing_library_is_named_with_one_install_line(tmp_path: Path) -> None:
    # Names no machine has (this one has the real xcb libraries, which ldd would find).
    plugin = _plugin_missing(tmp_path, "liboomscope-gone.so.0", "liboomscope-gone-x11.so.0")
    assert missing_libraries(plugin) == ["liboomscope-gone.so.0", "liboomscope-gone-x11.so.0"]
    text = display_problem({"QT_QPA_PLATFORM": "xcb"}, plugin)
    assert text is not None
    assert "liboomscope-gone.so.0, liboomscope-gone-x11.so.0" in text
    assert "sudo apt-get install liboomscope-gone0 liboomscope-gone-x11-0" in text
    # Not on X11 (offscreen, Wayland): the xcb plugin is not loaded, nothing to say.
    assert display_problem({"QT_QPA_PLATFORM": "offscreen"}, plugin) is None


@needs_gcc
def test_a_library_with_everything_present_is_fine(tmp_path: Path) -> None:
    (tmp_path / "ok.c").write_text("int ok(void) { return 0; }\n")
    lib = tmp_path / "libok.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(lib), str(tmp_path / "ok.c")], check=True)
    assert missing_libraries(lib) == []
    assert display_problem({"DISPLAY": ":0"}, lib) is None


def test_debian_package_names() -> None:
    assert debian_package("libxcb-icccm.so.4") == "libxcb-icccm4"
    assert debian_package("libxcb-render-util.so.0") == "libxcb-render-util0"
    assert debian_package("libxkbcommon-x11.so.0") == "libxkbcommon-x11-0"
    assert debian_package("libdbus-1.so.3") == "libdbus-1-3"
    assert debian_package("libGL.so.1") == "libgl1"
    assert debian_package("weird") == "weird"


def test_which_platform_qt_will_use() -> None:
    assert uses_xcb({"DISPLAY": ":0"}) and uses_xcb({"QT_QPA_PLATFORM": "xcb"})
    assert not uses_xcb({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"})
    assert not uses_xcb({"DISPLAY": ":0", "QT_QPA_PLATFORM": "offscreen"})
    assert not uses_xcb({})


def test_the_installed_plugin_is_found() -> None:
    plugin = xcb_plugin()
    assert plugin is not None and plugin.name == "libqxcb.so" and plugin.is_file()
