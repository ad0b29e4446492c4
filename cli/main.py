"""The `backbone` command. User mistakes and unreachable services print one line, not a traceback."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated

import requests
import typer
from rich.console import Console
from rich.table import Table

from backbone.errors import UserError
from backbone.gc_tuning import tune_garbage_collector
from backbone.settings import Settings, get_settings, load_settings

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help="Open-government event backbone."
)
err = Console(stderr=True)
out = Console()


def _settings() -> Settings:
    return get_settings()


def _logging(settings: Settings, stage: str, system: str = "") -> None:
    from backbone.logs import configure

    configure(settings.log_level, settings.log_format, stage, system)


@app.command()
def prepare() -> None:
    """Resolve the local stack's jars with Maven (cached outside the repo)."""
    from devstack.stack import prepare as resolve

    classpath, apicurio = resolve(_settings())
    out.print(f"Kafka classpath: {len(classpath.split(':'))} jars; Apicurio Registry: {apicurio}")


@app.command()
def init(
    acls: Annotated[bool, typer.Option(help="grant each stage's Kafka user its ACLs (run as the admin user)")] = False,
) -> None:
    """Create the topics, register the schemas, publish the reference data and migrate the store."""
    from contract.acls import grant_stage_acls
    from contract.bootstrap import bootstrap
    from sinks.migrations import migrate_store

    report = bootstrap(_settings())
    out.print(
        f"topics created: {len(report.topics_created)}; subjects: {len(report.subjects)}; regions: {report.regions}"
    )
    out.print(migrate_store(_settings()))  # every table and view of the catalog
    if acls:
        out.print(f"Kafka ACLs granted: {grant_stage_acls(_settings())}")


@app.command()
def simulate(
    systems: Annotated[list[str], typer.Argument(help="simulated systems or domains (e.g. licensing), or all")],
    rate: Annotated[float, typer.Option(help="changes per second (0 = as fast as possible)")] = 20.0,
    count: Annotated[int | None, typer.Option(help="stop after this many changes")] = None,
    duration: Annotated[float | None, typer.Option(help="stop after this many seconds")] = None,
    bad_ratio: Annotated[float, typer.Option(help="share of deliberately invalid records")] = 0.0,
    seed: Annotated[int, typer.Option(help="random seed")] = 1,
) -> None:
    """Run a simulated departmental system that produces change events."""
    from simulators.simulate import run_simulators

    settings = _settings()
    _logging(settings, "simulator")
    sent = run_simulators(settings, systems, rate=rate, count=count, duration=duration, bad_ratio=bad_ratio, seed=seed)
    for system, n in sent.items():
        err.print(f"{system}: {n} change events acknowledged")


@app.command()
def processor(
    workers: Annotated[
        int | None,
        typer.Option(min=1, max=32, help="worker processes in one consumer group (else BACKBONE_PROCESSOR_WORKERS)"),
    ] = None,
) -> None:
    """Run the Faust worker: validate, enrich and pseudonymise cdc.* into clean.*."""
    settings = _settings()
    n = workers or settings.processor_workers
    if n > 1:
        from devstack.workers import run_processor_workers

        _logging(settings, "processor")
        run_processor_workers(settings, n)
        return
    from stream_processors.service import run_processor

    run_processor(settings)


@app.command()
def kpi() -> None:
    """Run the KPI worker: the KPIs declared in kpis/ from clean.* into kpi.* topics."""
    from stream_processors.kpi_service import run_kpi

    run_kpi(_settings())


@app.command()
def sink() -> None:
    """Run the ClickHouse sink and its read-only query endpoint."""
    from sinks.service import run_sink

    settings = _settings()
    _logging(settings, "sink")
    run_sink(settings)


@app.command()
def portal() -> None:
    """Run the public open-data portal (pages, downloads, DCAT, CKAN API) over the public views."""
    from portal.service import run_portal

    settings = _settings()
    _logging(settings, "portal")
    run_portal(settings)


@app.command()
def replay(
    stage: Annotated[str, typer.Argument(help="whose dead letters: processor or sink (adapter: fix at the source)")],
    reason: Annotated[str, typer.Option(help="only dead letters whose reason contains this text")] = "",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="count what would be replayed, produce nothing")] = False,
) -> None:
    """Produce chosen dead letters again to the topic they came from, after a fix."""
    from contract.replay import replay as run_replay

    report = run_replay(_settings(), stage, lambda text: reason in text, dry_run=dry_run)
    total = sum(report.replayed.values())
    verb = "would replay" if dry_run else "replayed"
    out.print(f"{verb} {total} dead letters" if total else "0 dead letters matched")
    for topic, n in sorted(report.replayed.items()):
        out.print(f"  {topic}: {n}")
    for why, n in sorted(report.skipped.items()):
        out.print(f"  skipped {n}: {why}")


def _query_url(settings: Settings) -> str | None:
    from backbone.runstate import read_state

    if settings.query_port:
        return f"http://127.0.0.1:{settings.query_port}/"
    return read_state(settings.run_dir).get("query_url")


def _running_query_url(settings: Settings) -> str:
    url = _query_url(settings)
    if not url:
        raise UserError(
            "no running sink found", hint="start `make demo` (or `backbone sink`) first, or set BACKBONE_QUERY_PORT"
        )
    return url


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help='a read-only statement, e.g. "SELECT count() FROM ..."')],
    raw: Annotated[bool, typer.Option("--raw", help="print tab-separated values instead of a table")] = False,
) -> None:
    """Query the live store through the running sink's read-only endpoint."""
    settings = _settings()
    url = _running_query_url(settings)
    try:
        resp = requests.post(
            url,
            params={"default_format": "TabSeparated" if raw else "JSONCompact"},
            data=query.encode(),
            headers={"Authorization": f"Bearer {settings.query_secret()}"},
            timeout=settings.query_timeout_seconds + 5,
        )
    except requests.ConnectionError:
        raise UserError(f"the query endpoint {url} does not answer", hint="is the demo or the sink running?") from None
    if resp.status_code != 200:
        raise UserError(f"query failed (HTTP {resp.status_code}): {resp.text.strip()}")
    if raw:
        sys.stdout.write(resp.text)
        return
    try:
        data = resp.json()
    except ValueError:  # the query named its own FORMAT
        sys.stdout.write(resp.text)
        return
    table = Table(*[m["name"] for m in data["meta"]], header_style="bold")
    for row in data["data"]:
        table.add_row(*[json.dumps(v, ensure_ascii=False) if isinstance(v, dict | list) else str(v) for v in row])
    out.print(table)
    err.print(f"{data.get('rows', len(data['data']))} rows in {data.get('statistics', {}).get('elapsed', 0):.3f}s")


adapters = typer.Typer(no_args_is_help=True, help="Source adapters of departmental systems.")
app.add_typer(adapters, name="adapters")


@adapters.command("run")
def adapters_run(system: Annotated[str, typer.Argument(help="the system's name in the catalog")]) -> None:
    """Run one system's adapter, as its catalog file configures it, until SIGTERM or Ctrl-C."""
    from producers.service import run_adapter

    settings = _settings()
    _logging(settings, "adapter", system)
    run_adapter(settings, system)


sources = typer.Typer(no_args_is_help=True, help="The source catalog: one file per departmental system.")
schemas = typer.Typer(no_args_is_help=True, help="Schemas in the repo against the registry.")
app.add_typer(sources, name="sources")
app.add_typer(schemas, name="schemas")


@sources.command("validate")
def sources_validate() -> None:
    """Check every catalog file; report each problem with file, line and field."""
    from contract.catalog import validate_catalog

    settings = _settings()
    results = validate_catalog(settings.catalog_dir, settings.schemas_dir)
    for path, problem in results:
        if problem is None:
            out.print(f"[green]ok[/]      {path}", highlight=False)
        else:
            out.print(f"[red]problem[/] {problem}", highlight=False, soft_wrap=True)
    if any(problem for _, problem in results):
        raise typer.Exit(1)


@sources.command("list")
def sources_list() -> None:
    """Every system in the catalog, with its entities and, when Kafka is reachable, its event count."""
    from contract.catalog import catalog_for
    from contract.topics import topic_message_counts

    settings = _settings()
    catalog = catalog_for(settings)
    counts = topic_message_counts(settings, [e.cdc_topic for e in catalog.entities])
    table = Table("system", "domain", "department", "adapter", "entities", "freshness", "status", header_style="bold")
    for system in catalog.systems:
        events = [counts.get(e.cdc_topic) for e in system.entities] if counts else []
        if not counts:
            status = "not connected" if not settings.kafka_bootstrap else "broker unreachable"
        elif any(n is None for n in events):
            status = "topics missing (run backbone init)"
        else:
            status = f"{sum(events):,} events"
        table.add_row(
            system.system,
            system.domain,
            system.department,
            system.adapter.get("kind", "?"),
            ", ".join(e.name for e in system.entities),
            f"{system.freshness_seconds} s",
            status,
        )
    out.print(table)


def _schema_reports(register: bool) -> None:
    from contract.catalog import catalog_for
    from contract.codec import Registry
    from contract.subjects import check_catalog, register_catalog

    settings = _settings()
    registry = Registry.for_settings(settings)
    catalog = catalog_for(settings)
    reports = register_catalog(registry, catalog, settings) if register else check_catalog(registry, catalog, settings)
    for report in reports:
        mark = "[green]ok[/]          " if report.ok else "[red]incompatible[/]"
        out.print(f"{mark} {report.subject}: {report.message}", highlight=False, soft_wrap=True)
    if not all(r.ok for r in reports):
        raise typer.Exit(1)


@schemas.command("check")
def schemas_check() -> None:
    """Compare every schema in the repo with the registry's subjects (compatible or not, and why)."""
    _schema_reports(register=False)


@schemas.command("register")
def schemas_register() -> None:
    """Register every schema (refused with the reason when incompatible)."""
    _schema_reports(register=True)


@app.command()
def status(
    as_json: Annotated[
        bool, typer.Option("--json", help="each stage and system healthy, degraded or down, with the reason")
    ] = False,
) -> None:
    """Show what the running demo serves and each stage's counters (--json: health; exit 0, 1 degraded, 2 down)."""
    settings = _settings()
    if as_json:
        from contract.catalog import catalog_for
        from devstack.status import ORDER, collect_status

        report = collect_status(settings.run_dir, catalog_for(settings))
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        raise typer.Exit(ORDER.index(report["status"]))
    from devstack.progress import collect, render

    out.print(render(collect(settings.run_dir)))


@app.command()
def quality(
    as_json: Annotated[bool, typer.Option("--json", help="the scorecard as JSON, for machines")] = False,
) -> None:
    """Data quality per system: score, entities and the worst rules first (from the running sink's store)."""
    from cli.quality import endpoint_query, show

    settings = _settings()
    url = _running_query_url(settings)
    show(endpoint_query(url, settings.query_secret(), settings.query_timeout_seconds + 5), out, as_json)


@app.command()
def demo(
    duration: Annotated[float | None, typer.Option(help="stop after this many seconds (default: until Ctrl-C)")] = None,
    rate: Annotated[float, typer.Option(help="simulated changes per second")] = 20.0,
    bad_ratio: Annotated[float, typer.Option(help="share of deliberately invalid records")] = 0.02,
    direct: Annotated[bool, typer.Option(help="simulators produce straight to Kafka (no source databases)")] = False,
) -> None:
    """Start the local stack, the departmental sources and the pipeline, with live progress."""
    from devstack.demo import run_demo

    run_demo(_settings(), duration=duration, rate=rate, bad_ratio=bad_ratio, direct=direct)


@app.command()
def health(
    port: Annotated[int, typer.Option(help="the process's metrics port on 127.0.0.1")],
) -> None:
    """Exit 0 while the process on PORT runs and its work loop turns, 1 when it is stopped, stuck or gone
    (the containers' health check: the heartbeat of the work loop, not only the metrics thread)."""
    import time

    from devstack.status import scrape, stage_health

    url = f"http://127.0.0.1:{port}/metrics"
    verdict = stage_health("stage", url, scrape(url), time.time())
    out.print(f"{verdict.status}: {'; '.join(verdict.reasons) or 'ok'}")
    raise typer.Exit(1 if verdict.status == "down" else 0)


@app.command("lag-exporter")
def lag_exporter(
    interval: Annotated[float, typer.Option(help="seconds between passes over every group")] = 15.0,
) -> None:
    """Serve every consumer group's lag (committed offset to high watermark) for Prometheus."""
    from devstack.group_lag import run_lag_exporter

    settings = _settings()
    _logging(settings, "lag-exporter")
    run_lag_exporter(settings, interval=interval)


@app.command()
def up(
    duration: Annotated[float | None, typer.Option(help="stop after this many seconds")] = None,
    webhook: Annotated[str | None, typer.Option(help="base URL of the alert webhooks (<url>/<receiver>)")] = None,
) -> None:
    """The production topology as supervised local processes, with Prometheus and Alertmanager (no Docker)."""
    from devstack.up import run_up

    settings = _settings()
    _logging(settings, "supervisor")
    run_up(settings, duration=duration, webhook=webhook)


@app.command()
def offices(
    rate: Annotated[float, typer.Option(help="changes per second per office")] = 20.0,
    bad_ratio: Annotated[float, typer.Option(help="share of deliberately invalid records")] = 0.0,
    seed: Annotated[int, typer.Option(help="random seed")] = 1,
) -> None:
    """Simulated offices writing into their own systems (databases, drop folder, push endpoint)."""
    from simulators.offices import run_offices

    settings = _settings()
    _logging(settings, "offices")
    run_offices(settings, rate=rate, bad_ratio=bad_ratio, seed=seed)


def main() -> None:
    # Everything this process and its children create (chDB store, keys, logs, run state) is private.
    os.umask(0o077)
    try:
        load_settings()  # bad settings: one clear line before anything starts
        tune_garbage_collector()  # every command moves records; the long-lived ones tune again once built
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:  # click returns a command's typer.Exit code instead of raising it
            sys.exit(code)
    except UserError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:
        # Usage errors of the command line (typer vendors its own click, so match by shape).
        if callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
