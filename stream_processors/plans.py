"""How the processor cleans the events of one (topic, schema id): the entity, its rules read once
from the writer schema, the clean schema registered, the pseudonymisation key of its scope; and the
entities the catalog's schemas reference (whose existence the processor keeps)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import fastavro

from backbone.errors import InputError, ServiceUnavailable
from contract.catalog import Catalog, Entity
from contract.codec import Registry, SchemaRejected, UndecodableMessage, subject_for
from contract.rules import PayloadRules, full_name, scope_secret
from contract.subjects import payload_of

# A refused plan (schema of another subject, clean schema refused) is asked again after this long,
# so a fix in the registry is picked up without a restart; meanwhile its events are dead-lettered
# without a network round trip.
REFUSAL_RETRY_SECONDS = 60.0


class PlanRefused(Exception):
    """The events of one (topic, schema id) cannot be cleaned; the message is the reason."""


@dataclass
class Plan:
    """How to clean events written with one schema id on one topic."""

    entity: Entity
    rules: PayloadRules
    clean_id: int
    clean_parsed: Any
    secret: bytes  # the pseudonymisation key of the entity's scope
    adapter_kind: str  # how the source's positions order its changes (contract/positions.py)


class Planner:
    """The plans of a worker, made once per (topic, schema id); a refused one is asked again later."""

    def __init__(self, catalog: Catalog, registry: Registry, secret: bytes, dq_rules: bool = True) -> None:
        self.catalog = catalog
        self.registry = registry
        self.secret = secret  # the master key; each scope's is derived from it
        self.dq_rules = dq_rules
        self.plans: dict[tuple[str, int], Plan] = {}
        # (topic, schema id) -> (reason, when refused, on time.monotonic()).
        self.refused: dict[tuple[str, int], tuple[str, float]] = {}
        self._owners: dict[str, list[Entity]] | None = None

    def _referenced(self) -> dict[str, str]:
        """cdc topic -> "domain.entity" of every entity some schema of the catalog references."""
        by_name = {f"{e.domain}.{e.name}": e for e in self.catalog.entities}
        out: dict[str, str] = {}
        for entity in self.catalog.entities:
            try:
                rules = PayloadRules.from_schema(entity.payload_schema())
            except (InputError, OSError, ValueError, KeyError):
                continue
            for ref in rules.references:
                target = by_name.get(ref.qualified(entity.domain))
                if target is not None:
                    out[target.cdc_topic] = ref.qualified(entity.domain)
        return out

    def _owners_of(self, payload_name: str) -> list[Entity]:
        """The catalog entities whose payload record has this full name (read once from the schemas)."""
        if self._owners is None:
            owners: dict[str, list[Entity]] = {}
            for entity in self.catalog.entities:
                try:
                    owners.setdefault(full_name(entity.payload_schema()), []).append(entity)
                except (InputError, OSError, ValueError, KeyError):
                    continue
            self._owners = owners
        return self._owners.get(payload_name, [])

    def plan_for(self, topic: str, schema_id: int) -> Plan:
        plan = self.plans.get((topic, schema_id))
        if plan is not None:
            return plan
        refused = self.refused.get((topic, schema_id))
        if refused is not None and time.monotonic() - refused[1] < REFUSAL_RETRY_SECONDS:
            raise PlanRefused(refused[0])
        try:
            plan = self._make_plan(topic, schema_id)
        except PlanRefused as exc:
            self.refused[(topic, schema_id)] = (str(exc), time.monotonic())
            raise
        self.refused.pop((topic, schema_id), None)
        self.plans[(topic, schema_id)] = plan
        return plan

    def _make_plan(self, topic: str, schema_id: int) -> Plan:
        entity = self.catalog.entity_for_topic(topic)
        writer, _ = self.registry.schema_by_id(schema_id)
        try:
            payload = payload_of(writer)
        except (ValueError, KeyError, TypeError, StopIteration) as exc:
            raise UndecodableMessage(f"schema id {schema_id} is not a change-event envelope: {exc}") from None
        try:
            rules = PayloadRules.from_schema(payload, extended=self.dq_rules)
        except InputError as exc:  # a rule declared wrongly (an unknown severity, a bad pattern)
            raise PlanRefused(f"schema id {schema_id}: {exc}") from None
        except (ValueError, KeyError, TypeError, StopIteration) as exc:
            raise UndecodableMessage(f"schema id {schema_id} is not a change-event envelope: {exc}") from None
        expected = subject_for(entity.cdc_topic)
        name = full_name(payload)
        owners = self._owners_of(name)
        if entity not in owners:
            # Framed with the schema id of another entity (or of a record no entity of the catalog
            # has): its clean schema must never reach this entity's clean subject.
            belongs = (
                " and ".join(repr(subject_for(o.cdc_topic)) for o in owners)
                if owners
                else f"no subject of the catalog (record {name})"
            )
            subjects = "subject " if len(owners) <= 1 else "subjects "
            raise PlanRefused(
                f"schema id {schema_id} belongs to {subjects if owners else ''}{belongs}, not {expected!r}"
            )
        clean_subject = subject_for(entity.clean_topic)
        try:
            clean = rules.clean_schema()
            clean_parsed = fastavro.parse_schema(clean)
            clean_id = self.registry.register(clean_subject, clean)
        except ServiceUnavailable:
            raise
        except (SchemaRejected, InputError) as exc:
            raise PlanRefused(f"clean schema of schema id {schema_id} for subject {clean_subject!r}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - fastavro's SchemaParseError and kin: the writer schema's fault
            raise PlanRefused(
                f"clean schema of schema id {schema_id} for subject {clean_subject!r} is not valid Avro: "
                f"{exc.__class__.__name__}: {exc}"
            ) from None
        kind = str(self.catalog.system(entity.system).adapter.get("kind", ""))
        return Plan(entity, rules, clean_id, clean_parsed, scope_secret(self.secret, entity.scope), kind)
