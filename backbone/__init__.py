"""Core of the open-government event backbone: settings, contract, CLI, metrics, local stack."""

__version__ = "0.1.0"
