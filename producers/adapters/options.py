"""Adapter settings (the catalog's `adapter:` mapping) validated by one pydantic model per adapter
kind. A bad value gives one line naming the catalog file (and line, where known), the field and the
value, never a traceback:

    class PushOptions(AdapterOptions):
        port: NonNegativeInt = 0
        max_body_bytes: PositiveInt = 1_048_576

    self.options = load_options(PushOptions, system)
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from backbone.errors import ConfigError
from contract.catalog import SourceSystem

Model = TypeVar("Model", bound="AdapterOptions")


class AdapterOptions(BaseModel):
    """Base of every adapter's settings model: strict types (a string is not a number, 1 is not
    True), immutable after loading. Unknown keys are kept for the catalog's own fields (`kind`)."""

    model_config = ConfigDict(strict=True, frozen=True, extra="allow")

    kind: str = ""


def _where(system: SourceSystem, field: str) -> str:
    lines: dict[str, int] = getattr(system, "adapter_lines", None) or {}
    line = lines.get(field) or lines.get(field.split(".", 1)[0])
    return f"{system.catalog_file}:{line}" if line else str(system.catalog_file)


def load_options(model: type[Model], system: SourceSystem, values: dict[str, Any] | None = None) -> Model:
    """Validate `system.adapter` (or `values`) into `model`; the first problem becomes a ConfigError
    such as `catalog/x.yaml:12: field 'adapter.port' has value -1: Input should be >= 0`."""
    raw = system.adapter if values is None else values
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        field = ".".join(str(part) for part in error["loc"])
        message = error["msg"]
        if not field:  # a check across fields
            raise ConfigError(f"{system.catalog_file}: field 'adapter': {message}") from None
        if error["type"] == "missing":
            raise ConfigError(f"{_where(system, field)}: field 'adapter.{field}' is missing") from None
        value = error.get("input")
        raise ConfigError(f"{_where(system, field)}: field 'adapter.{field}' has value {value!r}: {message}") from None
