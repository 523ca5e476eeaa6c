"""Evidence a grader reads: inventories of every zone and Cassandra table, re-run checks."""
