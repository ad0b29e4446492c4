"""Everything that must exist before anything produces: topics, schemas, reference data."""

from __future__ import annotations

from dataclasses import dataclass

from backbone.errors import ServiceUnavailable
from backbone.settings import Settings
from contract.catalog import catalog_for
from contract.codec import Registry
from contract.departments import load_departments
from contract.reference import load_regions, publish_regions
from contract.subjects import register_catalog
from contract.topics import REF_DEPARTMENTS, REF_REGIONS, check_broker, ensure_topics, named, topic_plan


@dataclass
class BootstrapReport:
    topics_created: list[str]
    subjects: list[str]
    regions: int
    departments: int = 0


def preflight(settings: Settings, registry: bool = True) -> None:
    """Check that Kafka (and the registry) answer before a long-running stage starts."""
    check_broker(settings)
    if registry:
        Registry.for_settings(settings).subjects()


def bootstrap(settings: Settings) -> BootstrapReport:
    if not settings.kafka_bootstrap or not settings.registry_url:
        raise ServiceUnavailable(
            "no Kafka or registry address", hint="set BACKBONE_KAFKA_BOOTSTRAP and BACKBONE_REGISTRY_URL"
        )
    catalog = catalog_for(settings)
    created = ensure_topics(settings, topic_plan(catalog, settings), settings.topic_replication)
    reports = register_catalog(Registry.for_settings(settings), catalog, settings)
    regions = publish_regions(settings, named(settings, REF_REGIONS), load_regions(settings.regions_csv))
    # publish_regions writes any code -> attributes mapping to a compacted topic as JSON.
    departments = publish_regions(settings, named(settings, REF_DEPARTMENTS), load_departments())
    return BootstrapReport(created, [r.subject for r in reports], regions, departments)
