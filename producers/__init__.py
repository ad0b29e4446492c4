"""Capture: the adapters that turn departmental systems' changes into Avro change events, the
emitter they share, and the adapter service entry point."""
