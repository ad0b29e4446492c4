"""The change-event envelope (schemas/envelope.avsc) around a payload record, and the deterministic
event id. The payload record sits in `before`/`after`, with the source metadata around it."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PAYLOAD_PLACEHOLDER = "__PAYLOAD__"
ENVELOPE_FILE = "envelope.avsc"
OPS = ("c", "u", "d", "r")


def event_id(system: str, entity: str, key: str, position: str) -> str:
    """Deterministic id: the same change captured twice gets the same id."""
    digest = hashlib.blake2b(digest_size=16)
    for part in (system, entity, key, position):
        digest.update(part.encode())
        digest.update(b"\x00")
    return digest.hexdigest()


def load_envelope_template(schemas_dir: Path) -> dict[str, Any]:
    return json.loads((schemas_dir / ENVELOPE_FILE).read_text())


def compose_envelope(template: Mapping[str, Any], payload: Mapping[str, Any], entity_name: str) -> dict[str, Any]:
    """The topic's value schema: the envelope with the payload record in before/after."""
    envelope = copy.deepcopy(dict(template))
    payload_name = full_name(payload)
    envelope["name"] = f"{payload['name']}Change"
    first = True
    for f in envelope["fields"]:
        if f["type"] == ["null", PAYLOAD_PLACEHOLDER]:
            # A named type is defined once; the second use refers to it by name.
            f["type"] = ["null", copy.deepcopy(dict(payload)) if first else payload_name]
            first = False
    envelope.setdefault("doc", f"Change events of {entity_name}")
    return envelope


def full_name(schema: Mapping[str, Any]) -> str:
    """A named schema's full name (namespace.name)."""
    ns = schema.get("namespace")
    return f"{ns}.{schema['name']}" if ns and "." not in schema["name"] else schema["name"]
