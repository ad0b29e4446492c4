"""Source adapters: capture changes from departmental systems and emit them as change events.

A system's catalog file names its adapter kind and connection settings (`adapter:`); the kind maps
to a class here. Every adapter builds on producers.adapters.base.SourceAdapter."""

from __future__ import annotations

import importlib

from backbone.errors import InputError

# kind -> module:Class, imported only when used (each brings its own client library).
ADAPTERS = {
    "postgres_cdc": "producers.adapters.postgres_cdc:PostgresCdcAdapter",
    "mariadb_binlog": "producers.adapters.mariadb_binlog:MariaDbBinlogAdapter",
    "query_poll": "producers.adapters.query_poll:QueryPollAdapter",
    "file_drop": "producers.adapters.file_drop:FileDropAdapter",
    "http_push": "producers.adapters.http_push:HttpPushAdapter",
}


def adapter_class(kind: str, catalog_file: object = "") -> type:
    target = ADAPTERS.get(kind)
    if target is None:
        raise InputError(
            f"{catalog_file}: field 'adapter.kind' has value {kind!r}: not one of {', '.join(sorted(ADAPTERS))}"
        )
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)
