"""The TCP ports a node process listens on, and which port its inspector would open.

Listeners come from psutil (``psutil.Process(pid).net_connections()`` for the process's own,
``psutil.net_connections()`` for everyone's); both read the tables of oomscope's own network
namespace, so :func:`same_netns` must hold for the target first. A process that vanished is
:class:`WorkerGone`, one we may not read :class:`NotPermitted`: ordinary outcomes, not tracebacks.
"""

from __future__ import annotations

import errno
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final


from ..errors import Error, NotPermitted, Refused, WorkerGone
from ..pidfd import ProcessHandle

DEFAULT_PORT: Final = 9229
NODE_NAMES: Final = frozenset({"node", "nodejs"})

# Addresses a listener on node's 127.0.0.1:PORT would collide with (``::`` is dual-stack unless
# IPV6_V6ONLY, which the tables do not show; assume the collision).
_CLASHING_HOSTS: Final = frozenset(
    {"127.0.0.1", "0.0.0.0", "::", "::ffff:127.0.0.1", "::ffff:0.0.0.0"}
)
# There is no event for "a process opened a port" (inotify does not fire on /proc, sock_diag does
# not notify), so await_listener() polls with a deadline. 10 ms keeps the attach quick (node binds
# within a few ms of SIGUSR1).
POLL_INTERVAL_S: Final = 0.01
_PORT_FLAGS: Final = (
    "--inspect-port", "--debug-port", "--inspect", "--inspect-brk", "--inspect-wait"
)


class PortTaken(Error):
    """Node cannot open its inspector: another process listens on the port it would use."""


@dataclass(frozen=True, slots=True)
class Listener:
    """One listening TCP socket of the target: its address and the target's fd for it."""

    host: str
    port: int
    fd: int


def gone_or_denied(pid: int, what: str, e: OSError) -> Error:
    """The error to raise for an OSError reading ``what`` of PID from /proc."""
    if isinstance(e, (FileNotFoundError, ProcessLookupError)) or e.errno == errno.ESRCH:
        return WorkerGone(f"process {pid} exited")
    if isinstance(e, PermissionError):
        return NotPermitted(f"not permitted to read {what} of PID {pid}: "
                            "run oomscope as its user or as root")
    return Error(f"cannot read {what} of PID {pid}: {e.strerror or e}")


def node_executable(pid: int) -> str:
    """The target's executable if it is node; :class:`Refused` for anything else."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError as e:
        raise gone_or_denied(pid, "/proc/PID/exe", e) from None
    # An upgraded binary still runs as the old, deleted file.
    path = exe.removesuffix(" (deleted)")
    if os.path.basename(path) not in NODE_NAMES:
        raise Refused(
            f"PID {pid} is not node (it runs {path}): SIGUSR1 would kill most programs, "
            "so oomscope does not send it"
        )
    return path


def own_listeners(pid: int) -> list[Listener]:
    """The TCP sockets the process itself listens on."""
    # Imported here, not with the module: the engine imports this module, and oomscope runs
    # where psutil is missing (a system Python, as an unprivileged user) until it inspects a heap.
    import psutil  # type: ignore[import-untyped]

    try:
        conns = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.NoSuchProcess:  # also a zombie: it holds no sockets any more
        raise WorkerGone(f"process {pid} exited") from None
    except psutil.AccessDenied:
        raise NotPermitted(f"not permitted to read the sockets of PID {pid}: "
                           "run oomscope as its user or as root") from None
    return [Listener(c.laddr.ip, c.laddr.port, c.fd) for c in conns
            if c.status == psutil.CONN_LISTEN and c.laddr]


def raise_if_taken(pid: int, port: int) -> None:
    """:class:`PortTaken` if another process listens where node's bind on PORT would fail."""
    # Imported here, not with the module: the engine imports this module, and oomscope runs
    # where psutil is missing (a system Python, as an unprivileged user) until it inspects a heap.
    import psutil

    # Everyone's listeners first, node's own after. Node may be opening the port right now
    # (SIGUSR1 was sent): a listener it opens before the first read is in both; one it opens
    # between them is only in the second, which is harmless. In the other order a listener
    # opened between the reads looked like someone else's (issue #12).
    try:
        clashing = [c for c in psutil.net_connections(kind="tcp")
                    if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
                    and c.laddr.ip in _CLASHING_HOSTS and c.pid != pid]
    except psutil.AccessDenied:
        raise NotPermitted("not permitted to read the listening sockets of this machine: "
                           "run oomscope as root") from None
    if not clashing:
        return
    mine = {(s.host, s.port) for s in own_listeners(pid)}
    others = [c for c in clashing if (c.laddr.ip, c.laddr.port) not in mine]
    if not others:
        return
    # psutil names the owner only where we may read its fds.
    owner = next((c.pid for c in others if c.pid is not None), None)
    who = f"another process (PID {owner})" if owner is not None else "another process"
    raise PortTaken(
        f"port {port} is taken by {who}: node PID {pid} cannot open its inspector there "
        "(it would open nothing); the node process is unharmed; free the port and try again"
    )


def _port_in(value: str) -> int | None:
    # --inspect-port=9230, --inspect=0.0.0.0:9230, --inspect=[::1]:9230
    m = re.search(r"(?:^|:)(\d+)$", value)
    return int(m.group(1)) if m else None


def configured_port(pid: int) -> int:
    """The port node's inspector opens on SIGUSR1 (or opened at start with ``--inspect``).

    Read from the command line and ``NODE_OPTIONS``; the later flag wins, as in node.
    """
    args: list[str] = []
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        for var in env:
            if var.startswith(b"NODE_OPTIONS="):
                args += var[13:].decode("utf-8", "replace").split()
        args += Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace").split("\0")
    except OSError as e:
        raise gone_or_denied(pid, "the command line", e) from None
    port = DEFAULT_PORT
    it = iter(args)
    for arg in it:
        if arg == "--":
            break  # what follows belongs to the script
        flag, eq, value = arg.partition("=")
        if flag not in _PORT_FLAGS:
            continue
        if not eq and flag in ("--inspect-port", "--debug-port"):
            value = next(it, "")
        p = _port_in(value) if value else None
        if p is not None:
            port = p
    return port


def same_netns(pid: int) -> None:
    """:class:`Refused` unless PID shares oomscope's network namespace: only then is its port
    reachable from here, and only then are the tables psutil reads the ones it listens in."""
    try:
        theirs, ours = os.readlink(f"/proc/{pid}/ns/net"), os.readlink("/proc/self/ns/net")
    except OSError as e:
        raise gone_or_denied(pid, "the network namespace", e) from None
    if theirs != ours:
        raise Refused(
            f"PID {pid} is in another network namespace (a container?): its inspector port would "
            "not be reachable from here, so oomscope does not open it; run oomscope inside that "
            "container"
        )


def await_listener(pid: int, handle: ProcessHandle, before: list[Listener], port: int,
                   deadline: float) -> Listener:
    """The listener node opened after SIGUSR1 (not among ``before``), on PORT if it opened
    several; :class:`PortTaken`, :class:`WorkerGone` or :class:`Error` (none by ``deadline``)."""
    known = set(before)
    while True:
        new = [s for s in own_listeners(pid) if s not in known]
        if new:
            return next((s for s in new if s.port == port), new[0])
        # Another process took the port after our check: node failed to bind ("address
        # already in use" on its stderr) and opens nothing.
        raise_if_taken(pid, port)
        left = deadline - time.monotonic()
        if left <= 0:
            raise Error(f"node PID {pid} opened no inspector port within the time allowed after "
                        "SIGUSR1 (was it built without the inspector, or does it handle SIGUSR1 "
                        "itself?); the process was not otherwise touched")
        if handle.wait_exited(min(POLL_INTERVAL_S, left)):
            raise WorkerGone(f"node process {pid} exited while its inspector was being opened")
