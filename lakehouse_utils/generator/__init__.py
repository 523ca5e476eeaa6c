"""Deterministic synthetic landing data with the course's contract, plus optional faults.

`landing.generate` writes a dataset; `masters` and `events` shape the rows, `faults`
injects duplicates, malformed lines and late files, `ledger` states what Bronze and
Silver must produce from them.
"""
