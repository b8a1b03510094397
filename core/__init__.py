"""The engine: processes, sampling, cgroups, kernel log, correlation, CLI. Never imports Qt."""
