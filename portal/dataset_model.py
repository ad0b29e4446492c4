"""The model of a published dataset: its columns (with a kind that types downloads and formats pages),
dimensions, licence, sources and person counts. The registry of datasets is portal/datasets.py."""

from __future__ import annotations

from dataclasses import dataclass, field

ODBL = "ODbL-1.0"  # region names come from idn-area-data (ODbL): a derivative stays under it (data/README.md)
CC_BY = "CC-BY-4.0"
LICENCES = {
    ODBL: ("Open Database License 1.0", "https://opendatacommons.org/licenses/odbl/1-0/"),
    CC_BY: ("Creative Commons Attribution 4.0", "https://creativecommons.org/licenses/by/4.0/"),
}
# Column kinds: how a value is typed in downloads and formatted on pages.
KINDS = ("text", "code", "int", "money", "number", "pct", "date", "time", "bool")


@dataclass(frozen=True)
class Column:
    name: str
    kind: str
    en: str
    id: str


@dataclass(frozen=True)
class Dataset:
    slug: str
    view: str
    service: str
    title: dict[str, str]
    description: dict[str, str]
    licence: str
    sources: tuple[str, ...]  # catalog tables behind it (public_freshness.source_table)
    dimensions: tuple[str, ...]  # what a request may filter on
    columns: tuple[Column, ...]
    person_measures: tuple[str, ...] = ()  # counts of persons: cells below portal_min_cell are suppressed
    dependents: dict[str, str] = field(default_factory=dict)  # measure -> person measure it is computed over
    order_by: tuple[str, ...] = ()
    # Its answer changes only with its sources' state (public_freshness tells when), or with the clock
    # (refetched once a minute anyway); False: it reads something else too (a KPI table).
    follows_sources: bool = True

    @property
    def counts_persons(self) -> bool:
        return bool(self.person_measures)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


def col(name: str, kind: str, en: str, id_: str) -> Column:
    assert kind in KINDS, kind
    return Column(name, kind, en, id_)
