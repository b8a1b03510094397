"""Data that ships with oomscope: the Node.js heap reporter, demo workers, icons."""
