"""Hack directions: pairs, activation capture, extraction, metrics and diagnostics.

`pairs` and `metrics` import no torch, so pair files and saved scores can be
checked without it.
"""
