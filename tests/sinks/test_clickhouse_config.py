"""The production ClickHouse server's access control (infra/clickhouse/users.d/backbone.xml) and its
mount in docker-compose.yml, checked without a server: the XML parses, every grant parses as
ClickHouse SQL (chDB's own parser), every setting is one ClickHouse knows, and the roles grant what
they should and nothing else."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import clickhouse_connect
import pytest
import yaml

from backbone.settings import PROJECT_ROOT

USERS_XML = PROJECT_ROOT / "infra" / "clickhouse" / "users.d" / "backbone.xml"
COMPOSE = PROJECT_ROOT / "docker-compose.yml"
ROOT = ET.parse(USERS_XML).getroot()


def grants(path: str) -> list[str]:
    return [q.text.strip() for q in ROOT.findall(f"{path}/grants/query")]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    c = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path_factory.mktemp('ch')}/ch")
    yield c
    c.close()


def test_the_file_has_the_roles_profiles_quotas_and_the_writer():
    assert ROOT.tag == "clickhouse"
    assert {r.tag for r in ROOT.find("roles")} == {"analyst", "operator", "public"}
    assert {p.tag for p in ROOT.find("profiles")} == {"writer", "analyst", "operator", "public"}
    assert {q.tag for q in ROOT.find("quotas")} >= {"analyst", "operator", "public"}
    assert {u.tag for u in ROOT.find("users")} == {"writer", "query_api", "grafana", "portal"}
    # Readers get a role's grants, nothing of their own: analysts' SQL and Grafana the analyst role, the
    # portal the public role.
    readers = (
        ("query_api", "CLICKHOUSE_QUERY_PASSWORD", "analyst"),
        ("grafana", "CLICKHOUSE_GRAFANA_PASSWORD", "analyst"),
        ("portal", "CLICKHOUSE_PORTAL_PASSWORD", "public"),
    )
    for user, variable, role in readers:
        reader = ROOT.find(f"users/{user}")
        assert reader.find("password").get("from_env") == variable
        assert reader.find("password").text is None
        assert (reader.findtext("profile"), reader.findtext("quota")) == (role, role)
        assert grants(f"users/{user}") == [f"GRANT {role}"]
    writer = ROOT.find("users/writer")
    assert writer.find("password").get("from_env") == "CLICKHOUSE_WRITER_PASSWORD"
    assert writer.find("password").text is None  # never a password in the file
    assert writer.findtext("profile") == "writer" and writer.findtext("quota") == "writer"


def test_every_grant_parses_as_clickhouse_sql(client):
    queries = [
        q
        for path in ["roles/analyst", "roles/operator", "roles/public", *(f"users/{u.tag}" for u in ROOT.find("users"))]
        for q in grants(path)
    ]
    assert queries
    for query in queries:
        full = f"{query} {'FROM' if query.startswith('REVOKE') else 'TO'} someone"
        formatted = client.query("SELECT formatQuery({q:String})", parameters={"q": full}).result_rows[0][0]
        assert formatted.split()[0] in ("GRANT", "REVOKE"), (query, formatted)


def test_every_setting_of_the_profiles_is_a_clickhouse_setting(client):
    known = {r[0] for r in client.query("SELECT name FROM system.settings").result_rows}
    for profile in ROOT.find("profiles"):
        names = [s.tag for s in profile if s.tag != "constraints"]
        names += [c.tag for c in profile.findall("constraints/*")]
        assert set(names) <= known, (profile.tag, set(names) - known)


def test_readers_are_read_only_and_cannot_lift_their_limits():
    for role in ("analyst", "operator", "public"):
        profile = ROOT.find(f"profiles/{role}")
        assert profile.findtext("readonly") == "1"
        assert profile.find("constraints/readonly/const") is not None
        limit = int(profile.findtext("max_execution_time"))
        assert int(profile.findtext("constraints/max_execution_time/max")) == limit
        assert profile.findtext("result_overflow_mode") == "throw"


def test_role_grants():
    analyst, operator, public = grants("roles/analyst"), grants("roles/operator"), grants("roles/public")
    assert analyst == ["GRANT SELECT ON backbone.*", "REVOKE SELECT ON backbone.dead_letters"]
    assert "GRANT SELECT ON backbone.dead_letters_masked" in operator
    assert "GRANT SELECT ON backbone.dead_letters" not in operator  # the raw table: only through the view
    assert not any(q.startswith("GRANT SELECT ON backbone.*") for q in operator)
    assert public == ["GRANT SELECT ON backbone.public_*", "GRANT SELECT ON backbone.ready_*"]
    every = " ".join(analyst + operator + public + grants("users/writer")).upper()
    # No sources (table functions), no temporary tables, no writes for the readers, no drops for the writer.
    for word in ("FILE", "URL", "REMOTE", "S3", "SOURCES", "TEMPORARY", "DROP TABLE", "ALL", "DELETE", "TRUNCATE"):
        assert word not in every.replace("ALTER", "").replace("MATERIALIZE", ""), word
    assert all("INSERT" not in q and "CREATE" not in q and "ALTER" not in q for q in analyst + operator + public)


def test_compose_mounts_the_file_and_the_sink_writes_as_writer_and_answers_queries_as_query_api():
    compose = yaml.safe_load(COMPOSE.read_text())
    clickhouse, sink = compose["services"]["clickhouse"], compose["services"]["sink"]
    assert (
        "./infra/clickhouse/users.d/backbone.xml:/etc/clickhouse-server/users.d/backbone.xml:ro"
        in (clickhouse["volumes"])
    )
    assert "CLICKHOUSE_WRITER_PASSWORD" in clickhouse["environment"]
    assert sink["environment"]["BACKBONE_CLICKHOUSE_DSN"] == "http://writer@clickhouse:8123/backbone"
    assert "CLICKHOUSE_WRITER_PASSWORD" in sink["environment"]["BACKBONE_CLICKHOUSE_PASSWORD"]
    assert "CLICKHOUSE_QUERY_PASSWORD" in clickhouse["environment"]
    assert sink["environment"]["BACKBONE_QUERY_CLICKHOUSE_DSN"] == "http://query_api@clickhouse:8123/backbone"
    assert "CLICKHOUSE_QUERY_PASSWORD" in sink["environment"]["BACKBONE_QUERY_CLICKHOUSE_PASSWORD"]
    # The portal's queries run as `portal` (public role), and the portal reaches them through the sink.
    assert sink["environment"]["BACKBONE_PORTAL_CLICKHOUSE_DSN"] == "http://portal@clickhouse:8123/backbone"
    assert "CLICKHOUSE_PORTAL_PASSWORD" in clickhouse["environment"]
    portal = compose["services"]["portal"]
    assert portal["command"] == ["portal"] and portal["environment"]["BACKBONE_PORTAL_QUERY_URL"] == "http://sink:8124/"
    assert portal["environment"]["BACKBONE_PORTAL_TOKEN"] == sink["environment"]["BACKBONE_PORTAL_TOKEN"]


def test_the_query_endpoint_connects_with_its_own_user_when_one_is_named(tmp_path):
    """On a server, analysts' SQL must not run with the writer's grants: the reader client uses the
    query DSN and password; without one (the embedded store) it uses the sink's."""
    from backbone.errors import ServiceUnavailable
    from backbone.net import free_port
    from backbone.settings import load_settings
    from sinks.store import connect

    port = free_port()  # nothing listens: the error names the DSN the client used
    settings = load_settings(
        run_dir=tmp_path,
        clickhouse_dsn=f"http://writer@127.0.0.1:{port}/backbone",
        query_clickhouse_dsn=f"http://query_api@127.0.0.1:{port}/backbone",
        query_clickhouse_password="reader-secret",
    )
    with pytest.raises(ServiceUnavailable, match="query_api@127.0.0.1"):
        connect(settings, reader=True)
    with pytest.raises(ServiceUnavailable, match="writer@127.0.0.1"):
        connect(settings)
    portal = load_settings(
        run_dir=tmp_path,
        clickhouse_dsn=f"http://writer@127.0.0.1:{port}/backbone",
        portal_clickhouse_dsn=f"http://portal@127.0.0.1:{port}/backbone",
    )
    with pytest.raises(ServiceUnavailable, match="portal@127.0.0.1"):
        connect(portal, portal=True)
    shared = load_settings(run_dir=tmp_path, clickhouse_dsn=f"http://writer@127.0.0.1:{port}/backbone")
    with pytest.raises(ServiceUnavailable, match="writer@127.0.0.1"):
        connect(shared, reader=True)
