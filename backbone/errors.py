"""Errors meant for people: the CLI prints them as one line, never as a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in configuration or input, with a message that says what and how to fix it."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(UserError):
    """A bad setting, naming the setting (or file and field) and the value."""


class InputError(UserError):
    """Bad input data, naming the file, field and value."""


class ServiceUnavailable(UserError):
    """A service the command needs (Kafka, the registry, ClickHouse) cannot be reached."""
