"""Thin Qt layer over oomscope.core."""
