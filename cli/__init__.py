"""The `backbone` command line: the one module allowed to import every stage."""
