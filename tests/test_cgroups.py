"""core/cgroup/limited.py: reading a process's memory cgroup, and making limited cgroups for workers.

Two kinds of test live here:

* Tests marked ``cgroup`` run against the real kernel's cgroup v1 memory controller
  (/sys/fs/cgroup/memory, as root). They create real cgroups with small limits, put only their own
  python3 children in them, provoke one real OOM kill inside a 32 MiB cgroup, and remove every
  cgroup they made, also when they fail. Without a writable v1 memory hierarchy they are skipped,
  with the reason shown by ``-ra``.
* cgroup v2 and systemd-run cannot limit memory on the machine these tests were written on (its
  unified hierarchy has no memory controller; systemd-run has no user bus). Their code paths are
  tested against a faithful directory tree in ``tmp_path``: cgroup files with the exact contents
  and format the kernel writes, a fake ``/proc/PID/cgroup`` and ``/proc/self/mountinfo`` in the
  kernel's format, and a stand-in ``systemd-run`` on PATH. Where the machine's real unified
  hierarchy lacks the memory controller, the refusal is also checked against it.

``--mem-high`` (core/cgroup/high.py) follows the same split: its write of ``memory.high`` and the
``MemoryHigh=`` of a scope are checked on the faithful tree (untested on a real v2 kernel: that
it accepts the value and throttles), its refusal on cgroup v1 against the real v1 hierarchy.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from oomscope.core.cgroup import limited as cgroups
from oomscope.core.cgroup import systemd
from oomscope.core.cgroup.high import parse_mem_high
from oomscope.core.cgroup.limited import LimitedCgroup, MemoryCgroup, cgroup_of, create_limited_cgroup
from oomscope.core.errors import BadInput, CgroupUnavailable, Error

PY = sys.executable
V1_ROOT = "/sys/fs/cgroup/memory"
UNIFIED_ROOT = "/sys/fs/cgroup/unified"
MiB = 1 << 20

# What cgroup v1 shows for "no limit" with 4 KiB pages: LONG_MAX rounded down to a page.
V1_UNLIMITED = "9223372036854771712\n"


def _v1_unusable_reason() -> str | None:
    if not os.path.exists(os.path.join(V1_ROOT, "memory.limit_in_bytes")):
        return f"no cgroup v1 memory hierarchy at {V1_ROOT}"
    if not os.access(V1_ROOT, os.W_OK):
        return f"{V1_ROOT} is not writable (run the tests as root)"
    return None


@pytest.fixture
def v1_root() -> str:
    reason = _v1_unusable_reason()
    if reason is not None:
        print(f"skipping: {reason}")
        pytest.skip(reason)
    return V1_ROOT


class Lab:
    """Real v1 cgroups and the test's own children in them; everything undone at teardown."""

    def __init__(self, root: str, no_v2: str) -> None:
        self.root = root
        self._no_v2 = no_v2
        self.cgroups: list[LimitedCgroup] = []
        self.children: list[subprocess.Popen[str]] = []

    def cgroup(self, limit_bytes: int, name: str = "wtest", high: str | None = None) -> LimitedCgroup:
        # v2 pointed at a directory that does not exist, so the v1 backend is the one under test.
        limited = create_limited_cgroup(
            limit_bytes, name, v2_root=self._no_v2, v1_root=self.root, allow_systemd_run=False,
            high=parse_mem_high(high) if high is not None else None,
        )
        self.cgroups.append(limited)
        return limited

    def spawn(self, argv: list[str]) -> subprocess.Popen[str]:
        child = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.children.append(child)
        return child

    def teardown(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.kill()  # our own child, by its Popen: never anything else
            try:
                child.communicate(timeout=10)
            except (subprocess.TimeoutExpired, ValueError):
                pass
        for limited in self.cgroups:
            try:
                limited.remove()
            except Error:
                if limited.directory is not None and os.path.isdir(limited.directory):
                    os.rmdir(limited.directory)


@pytest.fixture
def lab(v1_root: str, tmp_path: Path) -> Iterator[Lab]:
    lab = Lab(v1_root, str(tmp_path / "no-cgroup2"))
    try:
        yield lab
    finally:
        lab.teardown()


# A python3 child that reports after each step, so the test waits on its words, not on time.
LEAKER = r"""
import sys
chunks = [b"\x01" * (1 << 20) for _ in range(8)]   # touched pages: charged to the cgroup
print("ready", flush=True)
sys.stdin.readline()
while True:
    chunks.append(b"\x01" * (1 << 20))
"""

SLEEPER = r"""
import sys
print("ready", flush=True)
sys.stdin.readline()
"""


def _read(path: str) -> str:
    with open(path, encoding="ascii") as f:
        return f.read()


# --------------------------------------------------------------------------------------------
# Real kernel, cgroup v1


@pytest.mark.cgroup
def test_real_oom_kill_inside_a_32mib_v1_cgroup(lab: Lab) -> None:
    limited = lab.cgroup(32 * MiB, "w3")
    assert limited.backend == "cgroup1"
    assert limited.limit_bytes == 32 * MiB
    assert limited.directory is not None and os.path.isdir(limited.directory)
    assert limited.path == "/oomscope/" + os.path.basename(limited.directory)
    # Swap must not be able to hide the growth.
    assert int(_read(os.path.join(limited.directory, "memory.memsw.limit_in_bytes"))) == 32 * MiB

    reader = limited.reader()
    assert reader is not None
    try:
        assert reader.oom_kill_count() == 0
        child = lab.spawn(limited.wrap_command([PY, "-c", LEAKER]))
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline() == "ready\n"

        found = cgroup_of(child.pid)
        assert found is not None
        with found:
            assert (found.version, found.path, found.directory) == (1, limited.path, limited.directory)
            assert found.limit_bytes() == 32 * MiB
            assert found.effective_limit_bytes() == 32 * MiB
        usage = reader.usage_bytes()
        assert usage is not None and 8 * MiB <= usage <= 32 * MiB
        assert reader.limit_bytes() == 32 * MiB
        assert _read(os.path.join(limited.directory, "cgroup.procs")).split() == [str(child.pid)]

        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.wait(timeout=60) == -9  # SIGKILL, from the kernel: nobody else signals it
        assert reader.oom_kill_count() == 1

        limited.remove()
        assert not os.path.exists(limited.directory)
        # Values of a removed cgroup are "gone", not stale numbers and not exceptions.
        assert reader.usage_bytes() is None
        assert reader.limit_bytes() is None
        assert reader.oom_kill_count() is None
        limited.remove()  # idempotent
        assert limited.reader() is None
    finally:
        reader.close()


@pytest.mark.cgroup
def test_memory_high_is_refused_on_v1_and_the_limit_kept(lab: Lab) -> None:
    """cgroup v1 has no memory.high; its soft limit is no throttle, so nothing stands in for it."""
    limited = lab.cgroup(32 * MiB, "high", high="auto")
    assert limited.backend == "cgroup1" and limited.directory is not None
    assert limited.high_bytes is None
    assert limited.high_refused is not None
    assert limited.high_refused.startswith("memory.high needs cgroup v2: ")
    assert limited.path is not None and limited.path in limited.high_refused
    assert "32.0 MiB" in limited.high_refused
    assert int(_read(os.path.join(limited.directory, "memory.limit_in_bytes"))) == 32 * MiB
    # Not pretended with the soft limit: it stays unlimited, as a new cgroup's is.
    assert _read(os.path.join(limited.directory, "memory.soft_limit_in_bytes")) == V1_UNLIMITED
    # Without --mem-high nothing is refused.
    assert lab.cgroup(32 * MiB, "plain").high_refused is None
    # Bad input is refused before any cgroup is made, on v1 as on v2.
    before = set(os.listdir(os.path.join(lab.root, "oomscope"))) if os.path.isdir(os.path.join(lab.root, "oomscope")) else set()
    with pytest.raises(BadInput, match="not below the memory limit"):
        lab.cgroup(32 * MiB, "over", high="40MiB")
    assert set(os.listdir(os.path.join(lab.root, "oomscope"))) == before


@pytest.mark.cgroup
def test_remove_refuses_while_a_process_remains_then_succeeds(lab: Lab) -> None:
    limited = lab.cgroup(64 * MiB)
    child = lab.spawn(limited.wrap_command([PY, "-c", SLEEPER]))
    assert child.stdout is not None and child.stdin is not None
    assert child.stdout.readline() == "ready\n"
    assert limited.directory is not None

    with pytest.raises(Error, match=str(child.pid)):
        limited.remove()
    assert os.path.isdir(limited.directory)

    child.stdin.write("done\n")
    child.stdin.flush()
    assert child.wait(timeout=10) == 0
    limited.remove()
    assert not os.path.exists(limited.directory)


@pytest.mark.cgroup
def test_wrapper_never_runs_the_command_outside_its_cgroup(lab: Lab) -> None:
    limited = lab.cgroup(64 * MiB)
    limited.remove()
    child = lab.spawn(limited.wrap_command([PY, "-c", "print('ran')"]))
    out, _ = child.communicate(timeout=10)
    assert child.returncode == 125
    assert "ran" not in out


@pytest.mark.cgroup
def test_wrapper_keeps_the_pid(lab: Lab) -> None:
    limited = lab.cgroup(64 * MiB)
    child = lab.spawn(limited.wrap_command([PY, "-c", "import os; print(os.getpid())"]))
    out, _ = child.communicate(timeout=10)
    assert child.returncode == 0
    assert int(out) == child.pid


@pytest.mark.cgroup
def test_cgroup_names_are_unique_and_safe(lab: Lab) -> None:
    first = lab.cgroup(64 * MiB, "w/3 ../x")
    second = lab.cgroup(64 * MiB, "w/3 ../x")
    assert first.directory is not None and second.directory is not None
    assert first.directory != second.directory
    for limited in (first, second):
        assert limited.directory is not None
        assert os.path.dirname(limited.directory) == os.path.join(V1_ROOT, "oomscope")
        leaf = os.path.basename(limited.directory)
        assert "/" not in leaf and " " not in leaf and str(os.getpid()) in leaf
    first.remove()
    # The shared parent stays while another worker's cgroup is in it, and goes with the last.
    assert os.path.isdir(os.path.join(V1_ROOT, "oomscope"))
    second.remove()
    assert not os.path.exists(second.directory)


@pytest.mark.cgroup
def test_cgroup_of_real_processes(lab: Lab) -> None:
    own = cgroup_of(os.getpid())
    assert own is not None
    with own:
        memory_line = [ln for ln in _read("/proc/self/cgroup").splitlines() if ":memory:" in ln]
        assert own.version == 1 and own.path == memory_line[0].split(":", 2)[2]
        assert os.path.isdir(own.directory)
        usage = own.usage_bytes()
        assert usage is not None and usage > 0

    gone = subprocess.Popen([PY, "-c", "pass"])
    gone.wait(timeout=10)
    assert cgroup_of(gone.pid) is None


@pytest.mark.cgroup
def test_v1_root_cgroup_reads_as_unlimited(v1_root: str) -> None:
    with MemoryCgroup(v1_root, 1, "/") as root:
        assert root.limit_bytes() is None
        assert root.effective_limit_bytes() is None
        usage = root.usage_bytes()
        assert usage is not None and usage > 0
    assert root.usage_bytes() is None  # closed


@pytest.mark.cgroup
def test_default_roots_find_a_working_backend(v1_root: str) -> None:
    limited = create_limited_cgroup(16 * MiB, "wdefault", allow_systemd_run=False)
    try:
        unified = os.path.join(UNIFIED_ROOT, "cgroup.controllers")
        if os.path.exists(unified) and "memory" not in _read(unified).split():
            assert limited.backend == "cgroup1"
        reader = limited.reader()
        assert reader is not None
        with reader:
            assert reader.limit_bytes() == 16 * MiB
    finally:
        limited.remove()
    assert limited.directory is not None and not os.path.exists(limited.directory)
    assert cgroups.describe_cgroup_support(allow_systemd_run=False) is None


def test_real_unified_hierarchy_without_memory_is_refused(tmp_path: Path) -> None:
    controllers = os.path.join(UNIFIED_ROOT, "cgroup.controllers")
    if not os.path.exists(controllers) or "memory" in _read(controllers).split():
        pytest.skip(f"{UNIFIED_ROOT} is not a cgroup2 hierarchy without the memory controller")
    with pytest.raises(CgroupUnavailable) as caught:
        create_limited_cgroup(
            16 * MiB, "w1", v2_root=UNIFIED_ROOT, v1_root=str(tmp_path / "none"), allow_systemd_run=False
        )
    assert f"the memory controller is not available in {UNIFIED_ROOT}" in str(caught.value)
    assert not os.path.exists(os.path.join(UNIFIED_ROOT, "oomscope"))


# --------------------------------------------------------------------------------------------
# Faithful trees: cgroup v2, mountinfo, hybrid layouts, systemd-run


V2_EVENTS = "low 0\nhigh 0\nmax {max}\noom {oom}\noom_kill {kill}\noom_group_kill 0\n"
V2_CONTROLLERS = "cpuset cpu io memory hugetlb pids rdma misc\n"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Rewrite in place (same inode), as the kernel's values change under an open fd.
    with open(path, "w", encoding="ascii") as f:
        f.write(text)


def _v2_cgroup(directory: Path, *, current: int, max_: str = "max", oom_kill: int = 0) -> None:
    _write(directory / "cgroup.controllers", "memory pids\n")
    _write(directory / "cgroup.procs", "")
    _write(directory / "memory.current", f"{current}\n")
    _write(directory / "memory.max", f"{max_}\n")
    _write(directory / "memory.events", V2_EVENTS.format(max=oom_kill, oom=oom_kill, kill=oom_kill))


def _v1_cgroup(directory: Path, *, usage: int, limit: str = V1_UNLIMITED, oom_kill: int | None = 0) -> None:
    _write(directory / "cgroup.procs", "")
    _write(directory / "memory.usage_in_bytes", f"{usage}\n")
    _write(directory / "memory.limit_in_bytes", limit)
    control = "oom_kill_disable 0\nunder_oom 0\n"
    if oom_kill is not None:  # kernels before 4.13 have no oom_kill line
        control += f"oom_kill {oom_kill}\n"
    _write(directory / "memory.oom_control", control)


def _escape(path: Path) -> str:
    return str(path).replace("\\", "\\134").replace(" ", "\\040")


def _proc(tmp_path: Path, pid: int, cgroup_lines: str, mountinfo_lines: list[str]) -> Path:
    proc = tmp_path / "proc"
    _write(proc / str(pid) / "cgroup", cgroup_lines)
    _write(proc / "self" / "mountinfo", "".join(line + "\n" for line in mountinfo_lines))
    return proc


def _v2_mount(mount_point: Path, root: str = "/") -> str:
    return (
        f"35 24 0:30 {root} {_escape(mount_point)} rw,nosuid,nodev,noexec,relatime shared:9 "
        "- cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot"
    )


def _v1_memory_mount(mount_point: Path) -> str:
    return f"35 31 0:32 / {_escape(mount_point)} rw,relatime shared:14 - cgroup cgroup rw,memory"


SCOPE = "/user.slice/user-1000.slice/user@1000.service/app.slice/app-worker.scope"


def test_cgroup_of_v2_through_mountinfo(tmp_path: Path) -> None:
    mount = tmp_path / "cgroup two"  # mountinfo escapes the space as \040
    _write(mount / "cgroup.controllers", V2_CONTROLLERS)
    _write(mount / "memory.stat", "anon 0\n")  # the root has no memory.current/max
    _v2_cgroup(mount / "user.slice/user-1000.slice/user@1000.service", current=90 * MiB, max_=str(1 << 30))
    _v2_cgroup(mount / "user.slice/user-1000.slice/user@1000.service/app.slice", current=60 * MiB)
    leaf = mount / SCOPE.lstrip("/")
    _v2_cgroup(leaf, current=30 * MiB)
    proc = _proc(
        tmp_path,
        4242,
        f"0::{SCOPE}\n",
        [
            "24 1 0:22 / /proc rw,nosuid,nodev,noexec,relatime shared:5 - proc proc rw",
            _v2_mount(mount),
        ],
    )
    found = cgroup_of(4242, proc_root=str(proc))
    assert found is not None
    with found:
        assert (found.version, found.path, found.directory) == (2, SCOPE, str(leaf))
        assert found.usage_bytes() == 30 * MiB
        assert found.limit_bytes() is None  # "max"
        assert found.effective_limit_bytes() == 1 << 30  # from user@1000.service
        assert found.oom_kill_count() == 0
        # Fresh values on every read, through the same descriptors.
        _write(leaf / "memory.max", f"{64 * MiB}\n")
        _write(leaf / "memory.current", f"{40 * MiB}\n")
        _write(leaf / "memory.events", V2_EVENTS.format(max=7, oom=1, kill=1))
        assert found.limit_bytes() == 64 * MiB
        assert found.effective_limit_bytes() == 64 * MiB
        assert found.usage_bytes() == 40 * MiB
        assert found.oom_kill_count() == 1


def test_cgroup_of_v2_given_root_and_container_namespace(tmp_path: Path) -> None:
    pod = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice"
    mount = tmp_path / "cg"
    _write(mount / "cgroup.controllers", V2_CONTROLLERS)
    _v2_cgroup(mount / "cri-containerd-abc.scope", current=5 * MiB, max_=str(256 * MiB))
    proc = _proc(
        tmp_path,
        7,
        f"0::{pod}/cri-containerd-abc.scope\n",
        [_v2_mount(mount, root=pod)],  # the mount shows the pod's cgroup, not the root
    )
    found = cgroup_of(7, proc_root=str(proc))
    assert found is not None
    with found:
        assert found.directory == str(mount / "cri-containerd-abc.scope")
        assert found.path == f"{pod}/cri-containerd-abc.scope"
        assert found.limit_bytes() == 256 * MiB

    # A process outside our cgroup namespace: the kernel writes the way up, nothing is mounted.
    _write(proc / "8" / "cgroup", "0::/../../system.slice/cron.service\n")
    assert cgroup_of(8, proc_root=str(proc)) is None

    # With v2_root given, mountinfo is not consulted for v2.
    flat = tmp_path / "flat"
    _v2_cgroup(flat / "w", current=1 * MiB)
    _write(proc / "9" / "cgroup", "0::/w\n")
    found = cgroup_of(9, proc_root=str(proc), v2_root=str(flat))
    assert found is not None
    with found:
        assert found.directory == str(flat / "w") and found.usage_bytes() == 1 * MiB


def test_cgroup_of_hybrid_uses_v1_when_unified_has_no_memory(tmp_path: Path) -> None:
    v1 = tmp_path / "memory"
    unified = tmp_path / "unified"
    _write(v1 / "memory.limit_in_bytes", V1_UNLIMITED)
    _v1_cgroup(v1 / "process_api/6bbf", usage=5 * MiB, oom_kill=3)
    _write(v1 / "process_api/6bbf/memory.stat", "cache 0\nrss 5242880\nhierarchical_memory_limit 9223372036854771712\n")
    # Unified hierarchy without the memory controller: no memory.* files but pressure.
    _write(unified / "cgroup.controllers", "")
    _write(unified / "memory.pressure", "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
    proc = _proc(
        tmp_path,
        100,
        "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/6bbf\n1:cpu,cpuacct:/\n0::/\n",
        [
            "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755",
            "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct",
            _v1_memory_mount(v1),
            "41 31 0:38 / " + _escape(unified) + " rw,relatime - cgroup2 cgroup2 rw",
        ],
    )
    found = cgroup_of(100, proc_root=str(proc))
    assert found is not None
    with found:
        assert (found.version, found.path) == (1, "/process_api/6bbf")
        assert found.usage_bytes() == 5 * MiB
        assert found.limit_bytes() is None  # v1's page-rounded LONG_MAX
        assert found.effective_limit_bytes() is None
        assert found.oom_kill_count() == 3


def test_v1_oom_control_without_oom_kill_line(tmp_path: Path) -> None:
    _v1_cgroup(tmp_path / "old", usage=1 * MiB, limit=f"{32 * MiB}\n", oom_kill=None)
    with MemoryCgroup(str(tmp_path / "old"), 1, "/old") as old:
        assert old.oom_kill_count() is None
        assert old.limit_bytes() == 32 * MiB
        assert old.effective_limit_bytes() == 32 * MiB  # no memory.stat: its own limit


def test_cgroup_of_without_a_readable_memory_cgroup(tmp_path: Path) -> None:
    mount = tmp_path / "cg"
    _write(mount / "cgroup.controllers", V2_CONTROLLERS)
    proc = _proc(tmp_path, 1, "0::/\n", [_v2_mount(mount)])
    assert cgroup_of(1, proc_root=str(proc)) is None  # v2 root cgroup: no memory.current
    assert cgroup_of(2, proc_root=str(proc)) is None  # no such process
    _write(proc / "3" / "cgroup", "0::/system.slice/gone.service\n")
    assert cgroup_of(3, proc_root=str(proc)) is None  # its cgroup vanished
    _write(proc / "4" / "cgroup", "")
    assert cgroup_of(4, proc_root=str(proc)) is None  # a zombie's empty file
    assert cgroup_of(2**22 + 12345) is None  # above pid_max on the real /proc


def test_create_v2_when_subtree_control_has_memory(tmp_path: Path) -> None:
    root = tmp_path / "cgroup2"
    _write(root / "cgroup.controllers", V2_CONTROLLERS)
    _write(root / "cgroup.subtree_control", "cpu io memory pids\n")
    limited = create_limited_cgroup(
        32 * MiB + 100, "w3", v2_root=str(root), v1_root=str(tmp_path / "none"), allow_systemd_run=False
    )
    assert limited.backend == "cgroup2"
    assert limited.limit_bytes == 32 * MiB  # whole pages, as the kernel applies it
    assert limited.directory is not None
    leaf = os.path.basename(limited.directory)
    assert leaf.startswith(f"w3-{os.getpid()}-")
    assert limited.path == f"/oomscope/{leaf}"
    assert _read(str(root / "oomscope" / "cgroup.subtree_control")) == "+memory"
    assert _read(os.path.join(limited.directory, "memory.max")) == str(32 * MiB)

    # The wrapper really runs: it writes its own PID into cgroup.procs, then execs in place.
    child = subprocess.run(
        limited.wrap_command([PY, "-c", "import os; print(os.getpid())"]),
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    assert _read(os.path.join(limited.directory, "cgroup.procs")).strip() == child.stdout.strip()

    _write(Path(limited.directory) / "memory.current", f"{3 * MiB}\n")
    _write(Path(limited.directory) / "memory.events", V2_EVENTS.format(max=0, oom=0, kill=0))
    reader = limited.reader()
    assert reader is not None
    with reader:
        assert (reader.version, reader.usage_bytes(), reader.limit_bytes()) == (2, 3 * MiB, 32 * MiB)
        assert reader.oom_kill_count() == 0

    # The kernel owns the interface files; without a kernel, take them away as rmdir would.
    for directory in (Path(limited.directory), root / "oomscope"):
        for entry in directory.iterdir():
            if entry.is_file():
                entry.unlink()
    limited.remove()
    assert not (root / "oomscope").exists()
    limited.remove()


def _v2_root(tmp_path: Path) -> Path:
    root = tmp_path / "cgroup2"
    _write(root / "cgroup.controllers", V2_CONTROLLERS)
    _write(root / "cgroup.subtree_control", "cpu io memory pids\n")
    return root


@pytest.mark.parametrize(("asked", "expected"), [
    ("auto", int(100 * MiB * 0.9) // 4096 * 4096),
    ("80%", 80 * MiB),
    ("95MiB", 95 * MiB),
    ("90000001", 90000001 // 4096 * 4096),  # whole pages, as the kernel applies it
])
def test_create_v2_sets_memory_high_below_the_limit(tmp_path: Path, asked: str, expected: int) -> None:
    root = _v2_root(tmp_path)
    limited = create_limited_cgroup(100 * MiB, "w3", v2_root=str(root), v1_root=str(tmp_path / "none"),
                                    allow_systemd_run=False, high=parse_mem_high(asked))
    assert limited.backend == "cgroup2" and limited.directory is not None
    assert (limited.high_bytes, limited.high_refused) == (expected, None)
    assert _read(os.path.join(limited.directory, "memory.high")) == str(expected)
    assert _read(os.path.join(limited.directory, "memory.max")) == str(100 * MiB)


def test_create_v2_refuses_memory_high_not_below_the_limit(tmp_path: Path) -> None:
    root = _v2_root(tmp_path)
    for asked in ("100%", "100MiB", "1GiB"):
        with pytest.raises(BadInput, match=r"not below the memory limit \(100.0 MiB\)"):
            create_limited_cgroup(100 * MiB, "w3", v2_root=str(root), v1_root=str(tmp_path / "none"),
                                  allow_systemd_run=False, high=parse_mem_high(asked))
    assert not (root / "oomscope").exists()  # refused before anything was made
    for bad in ("0", "-5MiB", "150%", "0%", "lots"):
        with pytest.raises(BadInput, match="auto"):
            parse_mem_high(bad)
    assert parse_mem_high("off") is None


def test_create_v2_keeps_the_limit_when_memory_high_cannot_be_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel that refuses memory.high (here: a directory where the file would be) leaves the
    worker with its hard limit and a reason to tell, not without a cgroup."""
    root = _v2_root(tmp_path)
    real_make_child = cgroups._make_child

    def make_child_with_a_stuck_high(parent_dir: str, name: str) -> tuple[str, str]:
        leaf, directory = real_make_child(parent_dir, name)
        os.mkdir(os.path.join(directory, "memory.high"))
        return leaf, directory

    monkeypatch.setattr(cgroups, "_make_child", make_child_with_a_stuck_high)
    limited = create_limited_cgroup(100 * MiB, "w3", v2_root=str(root), v1_root=str(tmp_path / "none"),
                                    allow_systemd_run=False, high=parse_mem_high("auto"))
    assert limited.backend == "cgroup2" and limited.limit_bytes == 100 * MiB
    assert limited.high_bytes is None
    assert limited.high_refused is not None and "memory.high" in limited.high_refused


def test_create_v2_refused_without_memory_in_subtree_control(tmp_path: Path) -> None:
    root = tmp_path / "cgroup2"
    _write(root / "cgroup.controllers", V2_CONTROLLERS)
    _write(root / "cgroup.subtree_control", "cpu pids\n")
    with pytest.raises(CgroupUnavailable) as caught:
        create_limited_cgroup(
            32 * MiB, "w3", v2_root=str(root), v1_root=str(tmp_path / "none"), allow_systemd_run=False
        )
    message = str(caught.value)
    assert f"echo +memory > {root}/cgroup.subtree_control" in message
    assert not (root / "oomscope").exists()


def test_create_with_no_backend_lists_every_reason(tmp_path: Path) -> None:
    not_v1 = tmp_path / "plain"
    not_v1.mkdir()
    with pytest.raises(CgroupUnavailable) as caught:
        create_limited_cgroup(
            32 * MiB, "w3", v2_root=str(tmp_path / "none"), v1_root=str(not_v1), allow_systemd_run=False
        )
    lines = str(caught.value).splitlines()
    assert lines[0] == "cannot run the worker under a memory limit:"
    assert lines[1] == f"  - cgroup v2: {tmp_path / 'none'} does not exist"
    assert lines[2] == "  - systemd-run: not tried (disabled)"
    assert lines[3] == f"  - cgroup v1: {not_v1} is not a cgroup v1 memory hierarchy (no memory.limit_in_bytes)"
    assert list(not_v1.iterdir()) == []

    note = cgroups.describe_cgroup_support(
        v2_root=str(tmp_path / "none"), v1_root=str(tmp_path / "none"), allow_systemd_run=False
    )
    assert note is not None and "cgroup v1:" in note and "cgroup v2:" in note


def test_create_rejects_bad_input(tmp_path: Path) -> None:
    for bad in (0, -5, 100, True):
        with pytest.raises(BadInput):
            create_limited_cgroup(bad, "w", v2_root=str(tmp_path), v1_root=str(tmp_path), allow_systemd_run=False)
    limited = LimitedCgroup("cgroup1", 32 * MiB, "/oomscope/w", directory=str(tmp_path / "w"))
    with pytest.raises(BadInput):
        limited.wrap_command([])


FAKE_SYSTEMD_RUN_OK = """#!/bin/sh
# Stands in for systemd-run --scope: drop the options, exec the command in place.
while [ "$1" != "--" ]; do shift; done
shift
exec "$@"
"""

FAKE_SYSTEMD_RUN_NO_BUS = """#!/bin/sh
echo "Failed to connect to bus: No medium found" >&2
exit 1
"""


@pytest.fixture
def fake_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    monkeypatch.setenv("PATH", str(bindir))

    def install(script: str) -> None:
        path = bindir / "systemd-run"
        path.write_text(script)
        path.chmod(stat.S_IRWXU)

    return install


def _own_v2_path() -> str:
    for line in _read("/proc/self/cgroup").splitlines():
        if line.startswith("0::"):
            return line[3:]
    pytest.skip("this process has no cgroup v2 entry in /proc/self/cgroup")


def test_systemd_run_probe(tmp_path: Path, fake_bin: Callable[[str], None]) -> None:
    root = tmp_path / "cgroup2"
    scope = root / _own_v2_path().lstrip("/")

    assert systemd.probe_systemd_run(str(root)) == "systemd-run is not installed"

    fake_bin(FAKE_SYSTEMD_RUN_NO_BUS)
    refusal = systemd.probe_systemd_run(str(root))
    assert refusal is not None
    assert "Failed to connect to bus: No medium found" in refusal and "user session" in refusal

    fake_bin(FAKE_SYSTEMD_RUN_OK)
    _write(scope / "memory.max", "max\n")  # accepted, not enforced: no delegated controller
    refusal = systemd.probe_systemd_run(str(root))
    assert refusal is not None and "does not enforce" in refusal
    _write(scope / "memory.max", f"{64 * MiB}\n")
    assert systemd.probe_systemd_run(str(root)) is None


def test_systemd_run_wrapper_and_reader(tmp_path: Path) -> None:
    unit = "oomscope-w3-4242-1"
    limited = LimitedCgroup("systemd-run", 256 * MiB, None, unit=unit)
    assert limited.wrap_command(["node", "app.js"]) == [
        "systemd-run", "--user", "--scope", "--quiet", "--collect", f"--unit={unit}",
        "-p", f"MemoryMax={256 * MiB}", "-p", "MemorySwapMax=0", "--", "node", "app.js",
    ]  # fmt: skip
    throttled = LimitedCgroup("systemd-run", 256 * MiB, None, unit=unit, high_bytes=230 * MiB)
    assert throttled.wrap_command(["node", "app.js"]) == [
        "systemd-run", "--user", "--scope", "--quiet", "--collect", f"--unit={unit}",
        "-p", f"MemoryMax={256 * MiB}", "-p", f"MemoryHigh={230 * MiB}", "-p", "MemorySwapMax=0",
        "--", "node", "app.js",
    ]  # fmt: skip

    root = tmp_path / "cgroup2"
    _write(root / "cgroup.controllers", V2_CONTROLLERS)
    terminal = "/user.slice/user-1000.slice/session-2.scope"
    _v2_cgroup(root / terminal.lstrip("/"), current=80 * MiB)
    scope = f"/user.slice/user-1000.slice/user@1000.service/app.slice/{unit}.scope"
    _v2_cgroup(root / scope.lstrip("/"), current=2 * MiB, max_=str(256 * MiB))
    proc = tmp_path / "proc"

    assert limited.reader() is None  # no pid, nothing to find

    # Before systemd-run has moved itself, the pid is still where oomscope runs.
    _write(proc / "4242" / "cgroup", f"0::{terminal}\n")
    assert limited.reader(4242, proc_root=str(proc), v2_root=str(root)) is None
    assert limited.path is None

    _write(proc / "4242" / "cgroup", f"0::{scope}\n")
    reader = limited.reader(4242, proc_root=str(proc), v2_root=str(root))
    assert reader is not None
    with reader:
        assert reader.path == scope and reader.limit_bytes() == 256 * MiB
    assert limited.path == scope
    limited.remove()  # systemd collects the scope; nothing to do, nothing raised
