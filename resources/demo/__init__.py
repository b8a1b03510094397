"""Demo workers for ``oomscope demo`` (Node.js where node exists, Python otherwise)."""
