"""The local stack for the demo, tests and benches: Kafka and Apicurio launchers, local PostgreSQL
and MariaDB, child-process supervision, the demo and its progress display."""
