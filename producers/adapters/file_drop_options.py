"""Settings of a file_drop adapter (the catalog's `adapter:` mapping; see producers.adapters.file_drop).
What depends on the system's entities (entity names, the op column) is checked by the adapter."""

from __future__ import annotations

import codecs
from datetime import UTC, tzinfo
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator, NonNegativeFloat, NonNegativeInt, PositiveInt, field_validator
from pydantic_core import PydanticCustomError

from producers.adapters.file_drop_rows import ParseOptions
from producers.adapters.options import AdapterOptions


def _refused(why: str) -> PydanticCustomError:
    return PydanticCustomError("file_drop_setting", why)


def _present(value: Any) -> Any:
    if value is None:  # `folder:` left empty counts as missing
        raise PydanticCustomError("missing", "Field required")
    return value


def time_zone(name: str) -> tzinfo:
    return UTC if name.upper() == "UTC" else ZoneInfo(name)


class FileDropOptions(AdapterOptions):
    folder: Annotated[str, BeforeValidator(_present)]
    entity: str | None = None
    entities: dict[str, str] | None = None
    delimiter: str = ","
    encoding: str = "utf-8"
    op_column: str = "op"
    timestamp_column: str | None = None
    timezone: str = "UTC"
    sheet: str | None = None
    settle_seconds: NonNegativeFloat = 2.0
    poll_seconds: NonNegativeFloat = 1.0
    batch_rows: PositiveInt = 500
    remember_files: NonNegativeInt = 1000

    @field_validator("folder")
    @classmethod
    def _folder(cls, value: str) -> str:
        if not value.strip():
            raise _refused("expected a folder path")
        return value

    @field_validator("delimiter")
    @classmethod
    def _delimiter(cls, value: str) -> str:
        if len(value) != 1 or value in '\r\n"':
            raise _refused("expected one character (not a quote or line break)")
        return value

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise _refused("unknown encoding (e.g. utf-8, cp1252, latin-1)") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            time_zone(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise _refused("unknown time zone (e.g. UTC, Asia/Jakarta)") from None
        return value

    def parse_options(self) -> ParseOptions:
        return ParseOptions(
            delimiter=self.delimiter,
            encoding=self.encoding,
            op_column=self.op_column,
            timestamp_column=self.timestamp_column,
            sheet=self.sheet,
            timezone=time_zone(self.timezone),
        )
