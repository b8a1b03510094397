"""Memory cgroups: finding a process's cgroup and reading it (``read``), creating the limited
cgroup a launched worker runs in (``limited``), the engine's shared readers (``pool``), and the
kernel's notifications when usage crosses a level (``notify``). cgroup v1 and v2 alike."""
