"""Shared package of the Cloud Provider Analytics lakehouse.

Stage subpackages, in pipeline order: `bronze` (CSV masters in batch, the event feed
as a stream), `silver`, `gold`, `serving` (Cassandra model, loader, demo queries).
Beside them: `cassandra_server` (the local node), `generator` (synthetic landing data),
`evidence` (inventories a grader reads). Shared modules: `config` (settings), `paths`
(every location), `spark` (the session factory), `io` (table I/O), `contracts` (the
schema of every zone table), `quality` (rules as data), `report` (counts and their
reconciliation), `lock`, `pipeline`, `notebook`; `benchmark` (figures for docs/performance.md).
"""

__version__ = "0.1.0"
