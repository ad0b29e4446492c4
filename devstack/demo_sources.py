"""The demo's departmental systems as real sources: the simulators write into PostgreSQL and
MariaDB databases, drop CSV files and call the push endpoint, and the source adapters capture
the changes from there, as they would in a regency office.

Which system uses which adapter is the ARRANGEMENT below; the demo writes a catalog for it
(var/demo-catalog/, the repo's catalog files with their `adapter:` replaced). The databases live
in var/sources/ and stay between runs, like the adapters' checkpoints."""

from __future__ import annotations

import os
import secrets
from typing import Any

import yaml

from backbone.settings import Settings
from contract.catalog import SourceSystem, catalog_for

# domain -> adapter kind in the demo
ARRANGEMENT = {
    "licensing": "postgres_cdc",
    "education": "postgres_cdc",
    "infrastructure": "postgres_cdc",
    "budget": "postgres_cdc",
    "health": "mariadb_binlog",
    "village_finance": "file_drop",
    "participation": "http_push",
}
PG_DSN_ENV = "BACKBONE_DEMO_PG_DSN"
MARIADB_PASSWORD_ENV = "BACKBONE_DEMO_MARIADB_PASSWORD"
MARIADB_WRITER_PASSWORD_ENV = "BACKBONE_DEMO_MARIADB_WRITER_PASSWORD"
PUSH_TOKEN_ENV = "BACKBONE_DEMO_PUSH_TOKEN"


class DemoSources:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.folder = settings.run_dir / "sources"
        self.catalog_dir = settings.run_dir / "demo-catalog"
        self.postgres: Any = None
        self.mariadb: Any = None
        self.env: dict[str, str] = {}

    def start(self) -> dict[str, str]:
        """Start the databases, create the source tables, write the demo catalog; returns the
        environment the adapters and the simulated offices need."""
        from devstack.mariadb import LocalMariaDB
        from devstack.postgres import LocalPostgres

        self.postgres = LocalPostgres(self.folder / "postgres")
        self.postgres.start()
        dsn = self.postgres.create_database("departments")
        self.mariadb = LocalMariaDB(self.folder / "mariadb", database="health")
        maria = self.mariadb.start()
        self.env = {
            PG_DSN_ENV: dsn,
            MARIADB_PASSWORD_ENV: maria["password"],
            MARIADB_WRITER_PASSWORD_ENV: maria["writer_password"],
            PUSH_TOKEN_ENV: secrets.token_hex(16),
            "BACKBONE_CATALOG_DIR": str(self.catalog_dir),
        }
        os.environ.update(self.env)  # the tables below are created with the same settings
        self.catalog_dir.mkdir(parents=True, exist_ok=True)
        for system in catalog_for(self.settings).systems:
            kind = ARRANGEMENT.get(system.domain)
            if kind is None:
                continue
            self._write_catalog(system, kind, maria)
        self._create_tables()
        return self.env

    def _adapter(self, system: SourceSystem, kind: str, maria: dict[str, Any]) -> dict[str, Any]:
        tables = {e.name: e.name for e in system.entities}
        if kind == "postgres_cdc":
            return {"kind": kind, "dsn_env": PG_DSN_ENV, "slot": f"demo_{system.domain}", "tables": tables}
        if kind == "mariadb_binlog":
            return {
                "kind": kind,
                "host": "127.0.0.1",
                "port": maria["port"],
                "database": maria["database"],
                "user": maria["user"],
                "password_env": MARIADB_PASSWORD_ENV,
                "server_id": 5401,
                "tables": tables,
                "writer_user": maria["writer_user"],
                "writer_password_env": MARIADB_WRITER_PASSWORD_ENV,
            }
        if kind == "file_drop":
            folder = self.folder / "drops" / system.domain
            return {
                "kind": kind,
                "folder": str(folder),
                "settle_seconds": 1,
                "entities": {f"{e.name}-*.csv": e.name for e in system.entities},
            }
        return {"kind": kind, "token_env": PUSH_TOKEN_ENV, "port": 0}

    def _write_catalog(self, system: SourceSystem, kind: str, maria: dict[str, Any]) -> None:
        doc = yaml.safe_load(system.catalog_file.read_text())
        adapter = self._adapter(system, kind, maria)
        adapter["simulator"] = system.adapter.get("simulator")  # what the simulated office runs
        doc["adapter"] = adapter
        doc["title"] = f"{doc.get('title', system.system)} via {kind}"
        (self.catalog_dir / system.catalog_file.name).write_text(
            "# Written by `backbone demo` (devstack/demo_sources.py); changes are overwritten.\n"
            + yaml.safe_dump(doc, sort_keys=False)
        )

    def _create_tables(self) -> None:
        from simulators.offices import writers_for

        settings = self.settings.model_copy(update={"catalog_dir": self.catalog_dir})
        for system in catalog_for(settings).systems:
            for writer in writers_for(settings, system, create=True).values():
                close = getattr(writer, "close", None)
                if close is not None:
                    close()

    def stop(self) -> None:
        for server in (self.mariadb, self.postgres):
            if server is not None:
                server.stop()
