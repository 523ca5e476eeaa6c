"""Serving: the query-first Cassandra model and its loader.

`cql/` holds the keyspace, one file per table and the demo queries; `model` maps each
Gold mart to its table; `connection` opens sessions (local node or AstraDB); `stage`
streams every mart into its table with `foreachBatch`, `sync` keeps one table equal to
its mart and `writer` runs on the executors; `queries` runs Q1..Q5.
"""
