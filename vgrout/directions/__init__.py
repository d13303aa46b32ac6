"""Hack directions: pairs, activation capture, extraction, metrics and diagnostics.

`metrics` imports no torch, so saved scores can be re-scored without it (the
pair files themselves are read by `vgrout.env.pairs`).
"""
