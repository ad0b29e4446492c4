"""The contract between the stages: envelope and rules, Avro codec and subjects, catalog, topics,
reference data, dead-letter record. Imports only the core (`backbone`)."""
