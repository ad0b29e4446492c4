"""Core of the open-government event backbone: settings, errors, metrics, run state, Kafka client
factory and retry policies. Imports nothing else of ours."""

__version__ = "0.1.0"
