"""Files and helpers of the project's local single-node Apache Cassandra 5.0.

`pom.xml` (the server's classpath, fetched from Maven Central), `cassandra.yaml`
(template), `logback.xml` and `jvm17-server.options` are the server's resources;
`node` assembles and configures a node, `process` launches and watches it, and
`manage` is the entry point (`ensure_running`, the `cassandra` command).
"""
