"""Shared package of the Cloud Provider Analytics lakehouse.

Modules, one concern each: `config` (settings), `paths` (every location),
`spark` (the session factory), `io` (table writes and listings), `report`
(counts and reconciliation), `generator` (synthetic landing data),
`bronze_batch`, `bronze_stream`, `quality`, `anomaly`, `silver`, `gold`,
`serving`, `queries`, `local_cassandra`, `pipeline`, `evidence`.
"""

__version__ = "0.1.0"
