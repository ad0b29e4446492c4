"""What analysts' SQL may do, decided by ClickHouse's own parser, not by string matching.

The engine enforces most of it: queries run with `readonly=1` set after the limits (see
`sinks.store.read_only_settings`), so writes, DDL, table functions (file, url, mysql, remote, ...)
and any SETTINGS that would lift a limit are refused by ClickHouse itself. readonly=1 still lets a
SELECT write `INTO OUTFILE`, read a file through the scalar `file()` function, reveal server
settings and paths; this guard refuses those from the query's syntax tree (`EXPLAIN AST`).

chDB executes every statement of a multi-statement text, so the text is first handed to the
engine's formatter as a string literal (`formatQuerySingleLine`, which parses without executing and
refuses a second statement); only its single, canonical statement is inspected and then run.
"""

from __future__ import annotations

import re
from typing import Any

# Scalar functions that reach outside the tables: the file system, server settings and paths.
DENIED_FUNCTIONS = frozenset(
    {
        "file",
        "getserversetting",
        "getmergetreesetting",
        "filesystemavailable",
        "filesystemcapacity",
        "filesystemunreserved",
        "getclienthttpheader",
        # table functions that readonly=1 allows but that reach other databases (system.*)
        "merge",
        "cluster",
        "clusterallreplicas",
    }
)
# system.* tables show paths, settings and other sessions' queries; these few are harmless.
ALLOWED_SYSTEM_TABLES = frozenset({"system.one", "system.numbers", "system.zeros"})
# Statement kinds (the root of the syntax tree) an analyst may run.
ALLOWED_STATEMENTS = (
    "SelectWithUnionQuery",
    "DescribeQuery",
    "ExistsTableQuery",
    "ShowCreateTableQuery",
    "ShowTables",
    "ShowColumns",
    "Explain ",
)
MAX_QUERY_BYTES = 64 * 1024

_FUNCTION = re.compile(r"^\s*Function (\S+)", re.MULTILINE)
_TABLE = re.compile(r"^\s*(?:TableIdentifier|Identifier) (\S+)", re.MULTILINE)
_ROOT_LITERAL = re.compile(r"^ Literal ", re.MULTILINE)  # depth 1 under the statement: INTO OUTFILE
_PATH = re.compile(r"(?<![\w:])/(?:[\w.@+-]+/)*[\w.@+-]+")


class QueryRefused(ValueError):
    """The query may not run here; the message says why (never a server path)."""


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def check_query(client: Any, query: str, settings: dict[str, Any]) -> str:
    """The one statement of `query` in canonical form, to run instead of the text as sent; raises
    QueryRefused unless it is a read-only statement that stays inside the tables. `settings` are the
    ones the query will run with: a chDB session keeps readonly=1 once set, so the check must not
    set it before the limits. A syntax error (a second statement included) propagates as the
    engine's own error."""
    if len(query.encode()) > MAX_QUERY_BYTES:
        raise QueryRefused(f"query longer than {MAX_QUERY_BYTES} bytes")
    formatted = client.raw_query(f"SELECT formatQuerySingleLine({_literal(query)})", settings=settings, fmt="RawBLOB")
    statement = formatted.decode().strip()
    ast = client.raw_query(f"EXPLAIN AST {statement}", settings=settings, fmt="TabSeparatedRaw").decode()
    root, _, tree = ast.partition("\n")
    if not root.startswith(ALLOWED_STATEMENTS):
        kind = root.split(" (")[0]
        raise QueryRefused(f"only SELECT, WITH, SHOW, DESCRIBE, EXISTS and EXPLAIN are allowed, not {kind}")
    for name in _FUNCTION.findall(ast):
        if name.lower() in DENIED_FUNCTIONS:
            raise QueryRefused(f"function {name}() is not available to analysts")
    for name in _TABLE.findall(ast):
        lowered = name.lower()
        if lowered.startswith("system.") and lowered not in ALLOWED_SYSTEM_TABLES:
            raise QueryRefused(f"table {name} is not available to analysts")
    if root.startswith("SelectWithUnionQuery") and _ROOT_LITERAL.search(tree):
        raise QueryRefused("INTO OUTFILE is not available: results come back in the response")
    return statement


def public_message(message: str) -> str:
    """The engine's message without server paths or stack traces."""
    first = message.strip().splitlines()[0] if message.strip() else "query failed"
    first = re.sub(r"\s*\(version [^)]*\)", "", first)
    return _PATH.sub("<path>", first)
