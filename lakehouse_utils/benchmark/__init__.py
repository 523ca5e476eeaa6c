"""Benchmarks that print figures and write docs/performance.md.

`stages` times every stage at several data scales (the `benchmark` command).
"""
