"""The ``systemd-run --user --scope`` backend of core/cgroup/limited.py: whether it can enforce a
memory limit here (a real probe), and the argv that runs a worker in a limited scope.

It lives apart from the cgroupfs backends because it shares nothing with them but the
mountinfo reading: systemd makes and removes the cgroup, oomscope only asks for properties.
"""

from __future__ import annotations

import functools
import shlex
import shutil
import subprocess

from .read import _v2_mounts

__all__ = ["PROBE_LIMIT_BYTES", "scope_command", "systemd_run_refusal"]

_PROBE_TIMEOUT_S = 5.0
PROBE_LIMIT_BYTES = 64 << 20


def scope_command(unit: str, limit_bytes: int, high_bytes: int | None, argv: list[str]) -> list[str]:
    """``argv`` run by systemd-run in the scope ``unit`` with ``MemoryMax`` (and ``MemoryHigh``).

    --scope makes systemd-run register the scope and exec in place: same PID, same cwd and
    environment. MemorySwapMax=0 so swap cannot hide the growth.
    """
    high = ["-p", f"MemoryHigh={high_bytes}"] if high_bytes is not None else []
    return [
        "systemd-run", "--user", "--scope", "--quiet", "--collect",
        f"--unit={unit}",
        "-p", f"MemoryMax={limit_bytes}",
        *high,
        "-p", "MemorySwapMax=0",
        "--", *argv,
    ]  # fmt: skip


def probe_systemd_run(v2_root: str | None) -> str | None:
    """``None`` if ``systemd-run --user --scope`` can enforce MemoryMax here, else why not.

    Asking systemd-run to accept the property is not enough: without the memory controller
    delegated to the user manager, it accepts MemoryMax and silently enforces nothing. So the
    probe runs a shell in a real scope that reads back its own cgroup's memory.max. (MemoryHigh
    needs the same delegation, so a scope that enforces MemoryMax enforces it too.)
    """
    executable = shutil.which("systemd-run")
    if executable is None:
        return "systemd-run is not installed"
    mounts = _v2_mounts("/proc", v2_root)
    if not mounts:
        return "no cgroup2 filesystem is mounted, so systemd cannot set MemoryMax"
    mount = mounts[0]
    root_parts = [p for p in mount.root.split("/") if p]
    # Strip the mount's root from the path the scope sees, as _directory_in does.
    strip = "/" + "/".join(root_parts) if root_parts else ""
    script = (
        "while IFS= read -r line; do case $line in 0::*) p=${line#0::};; esac; done < /proc/self/cgroup; "
        f'p=${{p#{shlex.quote(strip)}}}; read -r v < {shlex.quote(mount.mount_point)}"$p/memory.max" && echo "$v"'
    )
    command = [
        executable, "--user", "--scope", "--quiet", "--collect",
        "-p", f"MemoryMax={PROBE_LIMIT_BYTES}",
        "--", "/bin/sh", "-c", script,
    ]  # fmt: skip
    try:
        done = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=_PROBE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"systemd-run did not answer within {_PROBE_TIMEOUT_S:g} s"
    except OSError as e:
        return f"systemd-run cannot be started: {e.strerror or e}"
    if done.returncode != 0 and not done.stdout.strip():
        detail = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit status {done.returncode}"
        return (
            f"systemd-run --user --scope failed ({detail}); it needs a running systemd user session: "
            "log in through systemd-logind or run 'loginctl enable-linger $USER', and make sure "
            "XDG_RUNTIME_DIR and DBUS_SESSION_BUS_ADDRESS are set"
        )
    if done.stdout.strip() != str(PROBE_LIMIT_BYTES):
        return (
            "systemd-run accepts MemoryMax but does not enforce it: the memory controller is not "
            "delegated to the systemd user manager (needs cgroup v2 and Delegate=memory on user@.service)"
        )
    return None


@functools.cache
def systemd_run_refusal(v2_root: str | None) -> str | None:
    """:func:`probe_systemd_run`, once per process (it starts a real scope)."""
    return probe_systemd_run(v2_root)
