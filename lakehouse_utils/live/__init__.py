"""Live speed layer: landing files to Bronze and to Cassandra's Q1/Q5 tables within seconds (`live` command)."""
