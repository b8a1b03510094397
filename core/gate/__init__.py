"""``oomscope watch`` as a CI gate: a summary built from the engine's events, the exit status a
CI job acts on, and the files and log lines CI systems read (JSON, JUnit XML, GitHub Actions
annotations), optionally against a baseline summary from an earlier run."""
