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


def check_query(
    client: Any,
    query: str,
    settings: dict[str, Any],
    parameters: dict[str, str] | None = None,
    public_only: bool = False,
) -> str:
    """The one statement of `query` in canonical form, to run instead of the text as sent; raises
    QueryRefused unless it is a read-only statement that stays inside the tables. `settings` are the
    ones the query will run with: a chDB session keeps readonly=1 once set, so the check must not
    set it before the limits. A syntax error (a second statement included) propagates as the
    engine's own error. `parameters`: values of the query's {name:Type} placeholders. `public_only`
    (the portal's token): a SELECT that reads `public_*` views and nothing else."""
    if len(query.encode()) > MAX_QUERY_BYTES:
        raise QueryRefused(f"query longer than {MAX_QUERY_BYTES} bytes")
    formatted = client.raw_query(f"SELECT formatQuerySingleLine({_literal(query)})", settings=settings, fmt="RawBLOB")
    statement = formatted.decode().strip()
    ast = client.raw_query(
        f"EXPLAIN AST {statement}", settings=settings, parameters=parameters or None, fmt="TabSeparatedRaw"
    ).decode()
    if public_only:
        check_public(ast)
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


PUBLIC_PREFIX = "public_"
# Functions that read a table or dictionary named in a string: not for the portal's scope.
_PUBLIC_DENIED_PREFIXES = ("dictget", "dicthas", "dictisin", "joinget", "hascolumnintable")
_IN_FUNCTIONS = frozenset({"in", "notin", "globalin", "globalnotin", "nullin", "notnullin"})


def check_public(ast: str) -> None:
    """The portal's scope, on a statement's syntax tree: one SELECT whose every table is a `public_*`
    view of the current database; no table functions, no `IN <table>`, no dictionaries."""
    lines = ast.splitlines()
    if not lines or not lines[0].startswith("SelectWithUnionQuery"):
        raise QueryRefused("the portal may only SELECT")
    for i, line in enumerate(lines):
        text = line.strip()
        if text.startswith("TableIdentifier "):
            name = text.split()[1]
            if "." in name or not name.startswith(PUBLIC_PREFIX):
                raise QueryRefused(f"table {name} is not public")
        elif text == "TableExpression" or text.startswith("TableExpression "):
            inner = lines[i + 1].strip() if i + 1 < len(lines) else ""
            if not inner.startswith(("TableIdentifier ", "Subquery")):
                raise QueryRefused("table functions are not available to the portal")
        elif text.startswith("Function "):
            name = text.split()[1].lower()
            if name.startswith(_PUBLIC_DENIED_PREFIXES) or name in DENIED_FUNCTIONS:
                raise QueryRefused(f"function {text.split()[1]}() is not available to the portal")
            if name in _IN_FUNCTIONS and _second_argument(lines, i).startswith(("Identifier ", "TableIdentifier ")):
                raise QueryRefused("IN <table> is not available to the portal")


def _second_argument(lines: list[str], at: int) -> str:
    """The second child of the argument list under the function at line `at` (empty if none)."""
    depth = len(lines[at]) - len(lines[at].lstrip())
    children = []
    for line in lines[at + 2 :]:
        indent = len(line) - len(line.lstrip())
        if indent <= depth + 1:
            break
        if indent == depth + 2:
            children.append(line.strip())
    return children[1] if len(children) > 1 else ""


def public_message(message: str) -> str:
    """The engine's message without server paths or stack traces."""
    first = message.strip().splitlines()[0] if message.strip() else "query failed"
    first = re.sub(r"\s*\(version [^)]*\)", "", first)
    return _PATH.sub("<path>", first)
