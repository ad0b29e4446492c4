"""Adapters and simulators that turn departmental systems' changes into Avro change events."""
