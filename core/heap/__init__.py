"""Heap reports from inside workers: the reporters' socket, their messages, and how they get in.

``server`` owns the Unix socket (one connection per reporting thread), ``messages`` the wire
format and the immutable messages, ``inject`` the command-line and environment changes that load
``resources/node/reporter.js`` and ``resources/python/sitecustomize.py`` into launched workers.
"""
