"""Gold: the business marts served from Cassandra.

`stage` runs the stage; `marts` and `tickets` build the marts; `write` writes only the
partitions whose content changed; `evidence` reconciles Gold with Silver.
"""
