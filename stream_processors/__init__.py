"""Faust stream processors: validate, enrich, pseudonymise change events."""
