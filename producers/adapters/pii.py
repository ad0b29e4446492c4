"""Personal data outside the raw `cdc.*` topics: the one helper every adapter masks with.

Fields marked `"pii": true` in an entity's payload schema (NIK, names, phone numbers, addresses) may
travel in clear only in the change events themselves. Everything else an adapter writes or says -
dead-letter reasons and keys, rejects reports, push error answers, logs, the query-poll known-keys
file - shows such a value only as `pii:<keyed hash>`, the processor's pseudonymisation
(contract.rules.pseudonymise with the settings' pii secret, shortened), so the same value is still
recognisable across reports without being readable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from contract.catalog import Entity
from contract.rules import pseudonymise

_SHOWN_HASH = 16  # hex characters of the keyed hash shown in reports
_MIN_REPLACED = 3  # shorter clear values are not searched for in free text (they would mask digits of counts)


def pii_fields(schema: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(f["name"] for f in schema.get("fields", ()) if f.get("pii") is True)


class PiiMask:
    """Masks the pii values of the entities of one system, keyed by entity name."""

    def __init__(self, secret: bytes, entities: Iterable[Entity]) -> None:
        self.secret = secret
        self.fields: dict[str, frozenset[str]] = {}
        self.keys: dict[str, tuple[str, ...]] = {}
        for e in entities:
            self.fields[e.name] = pii_fields(e.payload_schema())
            self.keys[e.name] = tuple(e.key)

    def any(self, entity: str) -> bool:
        """Whether the entity has personal data at all."""
        return bool(self.fields.get(entity))

    def is_pii(self, entity: str, field: str) -> bool:
        return field.split(".")[-1] in self.fields.get(entity, frozenset())

    def key_is_pii(self, entity: str) -> bool:
        return any(k in self.fields.get(entity, frozenset()) for k in self.keys.get(entity, ()))

    def value(self, value: Any) -> str:
        """`pii:<keyed hash>` of a value (stable: the same value always shows the same)."""
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="surrogateescape")
        text = value if isinstance(value, str) else str(value)
        text = text.encode("utf-8", errors="surrogatepass").decode("utf-8", errors="replace")
        return "pii:" + pseudonymise(self.secret, text)[:_SHOWN_HASH]

    def keyed_hash(self, value: str) -> str:
        """The full keyed hash (what a file may store instead of a pii key)."""
        return pseudonymise(self.secret, value.encode("utf-8", errors="surrogatepass").decode("utf-8", "replace"))

    def key(self, entity: str, key: str) -> str:
        """An entity key as it may be shown: masked when one of its fields is pii."""
        return self.value(key) if key and self.key_is_pii(entity) else key

    def cell(self, entity: str, field: str, value: Any) -> Any:
        """One field's value as it may be shown."""
        if value is None or value == "" or not self.is_pii(entity, field):
            return value
        return self.value(value)

    def record(self, entity: str, record: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """A copy of a record with its pii values masked."""
        if record is None:
            return None
        return {k: self.cell(entity, k, v) for k, v in record.items()}

    def message(self, entity: str, field: str, value: Any, message: str) -> str:
        """A problem message about `field` (which may name its value, as contract.coerce does)."""
        if not self.is_pii(entity, field):
            return message
        shown = "pii:(masked)" if value is None or value == "" else self.value(value)
        if message.startswith("value "):  # contract.coerce's "value <repr> is/has ..."
            cut = max(message.rfind(" is "), message.rfind(" has "))
            return f"value {shown}{message[cut:]}" if cut > 0 else f"value {shown} is not valid"
        return message if value is None or value == "" else self.text(message, [value])

    def text(self, text: str, values: Iterable[Any]) -> str:
        """Free text with every occurrence of the clear `values` replaced by their masks."""
        shown = []
        for value in values:
            if value is None or isinstance(value, bool):
                continue
            clear = value if isinstance(value, str) else str(value)
            for form in {clear, clear.strip(), repr(clear)[1:-1], repr(value)}:
                if len(form) >= _MIN_REPLACED:
                    shown.append((form, value))
        for form, value in sorted(shown, key=lambda p: -len(p[0])):
            text = text.replace(form, self.value(value))
        return text

    def record_text(self, entity: str, text: str, *records: Mapping[str, Any] | None) -> str:
        """Free text with the clear pii values of `records` masked."""
        names = self.fields.get(entity, frozenset())
        return self.text(text, [r.get(n) for r in records if r for n in names])

    def errors(self, entity: str, errors: Mapping[str, str], raw: Mapping[str, Any], prefix: str = "") -> str:
        """The reason of a record's field errors (contract.coerce.FieldErrors.errors), pii masked."""
        return "; ".join(
            f"field {prefix + name!r}: {self.message(entity, name, raw.get(name), message)}"
            for name, message in errors.items()
        )
