"""Avro in the Confluent wire format (magic byte, 4-byte schema id, body), with fastavro on the
hot path and the registry's Confluent-compatible API for schemas."""

from __future__ import annotations

import io
import json
import struct
import threading
from typing import Any

import fastavro
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from backbone.errors import ServiceUnavailable, UserError
from backbone.settings import Settings

_HEADER = struct.Struct(">bI")
DEFAULT_COMPATIBILITY = "BACKWARD_TRANSITIVE"


class SchemaRejected(UserError):
    """The registry refused a schema (usually: incompatible with the subject's history)."""


class UndecodableMessage(ValueError):
    """Bytes that are not a Confluent-framed Avro message of a known schema."""


def subject_for(topic: str) -> str:
    return f"{topic}-value"


class Registry:
    """Schema registry client with the caches the hot path needs (id -> parsed schema)."""

    def __init__(self, url: str, username: str = "", password: str = "", ca_file: str | None = None) -> None:
        if not url:
            raise UserError("no schema registry address", hint="set BACKBONE_REGISTRY_URL or run `backbone demo`")
        self.url = url
        conf: dict[str, Any] = {"url": url, "timeout": 10}
        if username:
            conf["basic.auth.user.info"] = f"{username}:{password}"
        if ca_file:
            conf["ssl.ca.location"] = ca_file
        self._client = SchemaRegistryClient(conf)
        self._parsed: dict[int, tuple[dict[str, Any], Any]] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_settings(cls, settings: Settings) -> Registry:
        """The registry of the settings, with its basic auth and CA (BACKBONE_REGISTRY_*)."""
        ca = str(settings.registry_ca_file) if settings.registry_ca_file is not None else None
        return cls(settings.registry_url, settings.registry_username, settings.registry_password.get_secret_value(), ca)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SchemaRegistryError:
            raise
        except Exception as exc:  # connection refused, timeouts, DNS
            raise ServiceUnavailable(
                f"schema registry at {self.url} is unreachable while trying to {what}: {exc.__class__.__name__}",
                hint="check BACKBONE_REGISTRY_URL and that the registry runs",
            ) from None

    def register(self, subject: str, schema: dict[str, Any], compatibility: str = DEFAULT_COMPATIBILITY) -> int:
        """Register (idempotently) and return the schema id; refuse incompatible changes."""
        text = json.dumps(schema, separators=(",", ":"))
        try:
            schema_id = self._call("register " + subject, self._client.register_schema, subject, Schema(text, "AVRO"))
        except SchemaRegistryError as exc:
            if exc.http_status_code == 409:
                raise SchemaRejected(
                    f"schema for subject {subject!r} refused by the registry: {exc.error_message}"
                ) from None
            if exc.http_status_code is not None and exc.http_status_code >= 500:
                # The registry failed, it did not judge the schema: a retry may succeed.
                raise ServiceUnavailable(
                    f"schema registry at {self.url} failed to register {subject!r}: {exc.error_message}"
                ) from None
            raise SchemaRejected(f"registry error for subject {subject!r}: {exc.error_message}") from None
        try:
            current = self._client.get_compatibility(subject)
        except SchemaRegistryError:
            current = None
        if current != compatibility:
            self._call("set compatibility of " + subject, self._client.set_compatibility, subject, compatibility)
        return schema_id

    def check(self, subject: str, schema: dict[str, Any]) -> tuple[bool, str]:
        """(compatible, message) for a candidate schema against the subject's registered history."""
        text = json.dumps(schema, separators=(",", ":"))
        try:
            ok = self._call("check " + subject, self._client.test_compatibility, subject, Schema(text, "AVRO"))
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                return True, "new subject"
            return False, exc.error_message
        return bool(ok), "compatible" if ok else "incompatible with the registered versions"

    def subjects(self) -> list[str]:
        return list(self._call("list subjects", self._client.get_subjects))

    def schema_by_id(self, schema_id: int) -> tuple[dict[str, Any], Any]:
        """(schema as a dict, fastavro-parsed schema), cached for the life of the process."""
        cached = self._parsed.get(schema_id)
        if cached is not None:
            return cached
        with self._lock:
            if schema_id not in self._parsed:
                try:
                    text = self._call(f"fetch schema {schema_id}", self._client.get_schema, schema_id).schema_str
                except SchemaRegistryError as exc:
                    raise UndecodableMessage(
                        f"schema id {schema_id} unknown to the registry: {exc.error_message}"
                    ) from None
                raw = json.loads(text)
                self._parsed[schema_id] = (raw, fastavro.parse_schema(raw))
            return self._parsed[schema_id]


def encode(schema_id: int, parsed_schema: Any, record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    buf.write(_HEADER.pack(0, schema_id))
    fastavro.schemaless_writer(buf, parsed_schema, record)
    return buf.getvalue()


def schema_id_of(data: bytes | None) -> int:
    if not data or len(data) < 5 or data[0] != 0:
        raise UndecodableMessage("not Confluent-framed Avro (missing magic byte 0 and schema id)")
    return _HEADER.unpack_from(data)[1]


def decode(registry: Registry, data: bytes | None) -> tuple[int, dict[str, Any]]:
    schema_id = schema_id_of(data)
    _, parsed = registry.schema_by_id(schema_id)
    body = io.BytesIO(memoryview(data)[5:])
    try:
        record = fastavro.schemaless_reader(body, parsed, None)
    except Exception as exc:  # fastavro raises EOFError, ValueError, UnicodeDecodeError...
        raise UndecodableMessage(
            f"Avro body does not match schema id {schema_id}: {exc.__class__.__name__}: {exc}"
        ) from None
    trailing = len(data) - 5 - body.tell()
    if trailing:
        # The record ended before the message did: the bytes were not written with this schema alone.
        raise UndecodableMessage(
            f"Avro body does not match schema id {schema_id}: {trailing} trailing byte(s) after the record"
        )
    return schema_id, record
