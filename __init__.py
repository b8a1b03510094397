"""oomscope: watch worker processes' memory and tell why they die."""

__version__ = "0.1.0"
