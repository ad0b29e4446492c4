"""Server-rendered pages against the real store, without a browser (they must work without
JavaScript): a headline per service with provenance, the budget explorer's totals equal to the
store's to the last Rupiah, every kecamatan and village reachable, Indonesian and English formats,
rate limits and an unavailable store."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

import requests

from backbone.net import free_port
from backbone.settings import load_settings
from contract.reference import load_regions
from portal.datasets import SERVICES
from portal.i18n import Formatter, pick_language
from tests.portal.conftest import PortalThread
from tests.sinks.ready_store import D1, D_B

VALUE = re.compile(r'data-value="([^"]*)"')
DRILL = re.compile(r'class="drill" href="([^"]+)"')


def get(published, path: str, **kw) -> requests.Response:
    resp = requests.get(published.url + path, timeout=30, **kw)
    return resp


def test_formats_per_language():
    idn, en = Formatter("id"), Formatter("en")
    assert idn.number(Decimal("1234567.89")) == "1.234.567,89" and en.number(Decimal("1234567.89")) == "1,234,567.89"
    assert idn.date(date(2026, 11, 30)) == "30 Nov 2026"
    assert idn.date(date(2026, 8, 17)) == "17 Agu 2026" and en.date(date(2026, 8, 17)) == "17 Aug 2026"
    assert pick_language(None, None, "en-GB,en;q=0.9,id;q=0.5") == "en"
    assert pick_language(None, None, "fr, id;q=0.3, en;q=0.2") == "id"
    assert pick_language(None, "en", "id") == "en" and pick_language("id", "en", "en") == "id"
    assert pick_language("xx", None, "") == "id"


def test_home_shows_a_headline_per_service_with_its_provenance(published):
    html = get(published, "/").text
    assert html.count('class="headline"') == len(SERVICES)
    for service in SERVICES:
        block = html.split(f'id="headline-{service}"')[1].split("</li>")[0]
        assert 'class="provenance"' in block and 'href="/datasets/' in block, service
    complaints = html.split('id="headline-complaints"')[1].split("</li>")[0]
    assert '<span class="value">12</span>' in complaints  # C2, C3 and ten more open
    assert "Citizen complaint channels" in complaints and re.search(r"\d+ (detik|menit) lalu", complaints)  # just now
    assert "<script" not in html.split("<main")[1].split("</main>")[0]  # the content needs no script


def test_the_licensing_headline_is_this_months_share_decided_within_service_level(published):
    """From the stream's KPI rows (conftest.DECIDED_WITHIN_SLA): this month NIB 5 of 6 (its older row
    replaced), PBG 1 of 4, an emptied SIUP group, last month's SIP left out: 6 of 10, 60 %."""
    block = get(published, "/").text.split('id="headline-licensing"')[1].split("</li>")[0]
    assert '<span class="value">60 %</span>' in block and "6/10" in block
    assert "izin diputuskan dalam standar pelayanan bulan ini" in block
    assert 'href="/datasets/licensing-decided-this-month"' in block
    english = get(published, "/", headers={"Accept-Language": "en"}).text.split('id="headline-licensing"')[1]
    assert '<span class="value">60 %</span>' in english
    assert "permits decided within service level this month" in english


def test_a_service_page_shows_its_figures_over_time_as_a_table(published):
    """The over-time table is there without JavaScript (the chart is drawn from it where JS runs):
    licensing per month of decision from the KPI, last month 7 then this month 10 decided."""
    html = get(published, "/service/licensing").text
    table = html.split('id="over-time"')[1].split("</table>")[0]
    assert 'data-chart="line"' in table and 'data-x="time"' in table
    assert budget_values(html, "over-time") == [Decimal(7), Decimal(7), Decimal(10), Decimal(6)]
    assert "<script" not in html.split("<main")[1].split("</main>")[0]
    for service in ("budget", "education", "village"):
        assert 'data-chart="line"' in get(published, f"/service/{service}").text, service


def test_person_counts_over_time_are_suppressed_with_a_second_month(published):
    """Complaints per month from the KPI: 9, 3, 12; the 3 is below the threshold, and the 9 goes
    with it (else the 3 would follow from the regency's total): only this month's 12 shows. Visits:
    8 and 35 (a day's older row replaced), both shown."""
    complaints = get(published, "/service/complaints").text.split('id="over-time"')[1].split("</table>")[0]
    assert complaints.count('class="num suppressed"') == 2
    shown = [Decimal(v) for v in VALUE.findall(complaints) if v]
    assert shown == [Decimal(12)]
    health = get(published, "/service/health").text.split('id="over-time"')[1].split("</table>")[0]
    assert [Decimal(v) for v in VALUE.findall(health)] == [Decimal(8), Decimal(35)]
    assert "suppressed" not in health


def test_language_by_browser_and_by_switch(published):
    assert "serapan APBD" in get(published, "/").text
    english = get(published, "/", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert "budget absorbed" in english.text and '<html lang="en">' in english.text
    switched = get(published, "/budget?year=2025&month=3&lang=en")
    assert switched.cookies.get("lang") == "en" and "16.7 %" in switched.text and "3,600" in switched.text
    assert "16,7 %" in get(published, "/budget?year=2025&month=3").text


def budget_values(html: str, table: str) -> list[Decimal]:
    part = html.split(f'id="{table}"')[1].split("</table>")[0]
    return [Decimal(v) for v in VALUE.findall(part)]


def test_budget_explorer_drills_down_and_matches_the_store_exactly(published):
    url, visited = "/budget?year=2025&month=3", 0
    frontier = [url]
    while frontier:
        page = get(published, frontier.pop())
        assert page.status_code == 200
        node = budget_values(page.text, "budget-node")
        children = budget_values(page.text, "budget-children")
        assert sum(children[0::2]) == node[0] and sum(children[1::2]) == node[1]  # allocation, realised
        frontier += [link.replace("&amp;", "&") for link in DRILL.findall(page.text)]
        visited += 1
    assert visited == 1 + 2 + 2 + 2  # total, 2 departments, their programmes, their activities
    store = published.client.query(
        "SELECT sum(coalesce(revised_allocation, allocation)) FROM budget_budget_line_state FINAL "
        "WHERE stage != 'DRAFT'"
    ).result_rows[0][0]
    realised = published.client.query(
        "SELECT sum(amount) FROM budget_realisation_state FINAL WHERE month <= 3"
    ).result_rows[0][0]
    total = budget_values(get(published, "/budget?year=2025&month=3").text, "budget-node")
    assert total == [Decimal(store), Decimal(realised)] == [Decimal(3600), Decimal(600)]


def test_every_kecamatan_and_village_has_a_page(published):
    regions = load_regions(published.settings.regions_csv)
    kecamatan = [c for c, r in regions.items() if r["level"] == "kecamatan"]
    listed = re.findall(r'href="/kecamatan/([0-9.]+)"', get(published, "/regions").text)
    assert sorted(listed) == sorted(kecamatan) and len(kecamatan) == 28
    villages = set()
    for code in kecamatan:
        page = get(published, f"/kecamatan/{code}")
        assert page.status_code == 200
        villages |= set(re.findall(r'href="/village/([0-9.]+)"', page.text))
    assert len(villages) == 430
    sample = sorted(villages)[::43] + [c for c in villages if c.split(".")[3].startswith("1")][:1]
    for code in sample:
        assert get(published, f"/village/{code}").status_code == 200, code


def test_a_village_page_shows_its_fund_and_whether_it_reported(published):
    regions = load_regions(published.settings.regions_csv)
    reported = get(published, f"/village/{D1}").text
    assert regions[D1]["name"] in reported and "Sudah melapor" in reported
    assert "1.500" in reported  # D1's allocation: 1000 + 500
    assert "Belum melapor" in get(published, f"/village/{D_B}").text


def test_clients_are_rate_limited_and_an_unavailable_store_is_a_503(published):
    settings = load_settings(
        **{
            **published.settings.model_dump(),
            "portal_rate_burst": 3,
            "portal_rate_per_second": 0.01,
            "portal_query_url": f"http://127.0.0.1:{free_port()}/",
        }
    )
    portal = PortalThread(settings)
    url = portal.start()
    try:
        first = requests.get(url + "/", timeout=30)
        assert first.status_code == 503 and "Traceback" not in first.text
        assert requests.get(url + "/healthz", timeout=30).status_code == 200
        assert requests.get(url + "/healthz", timeout=30).status_code == 200
        limited = requests.get(url + "/healthz", timeout=30)
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
    finally:
        portal.stop()


def _limited_portal(published, **extra):
    settings = load_settings(
        **{
            **published.settings.model_dump(),
            "portal_rate_burst": 2,
            "portal_rate_per_second": 0.01,
            "portal_query_url": f"http://127.0.0.1:{free_port()}/",
            **extra,
        }
    )
    portal = PortalThread(settings)
    return portal, portal.start()


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit(published):
    portal, url = _limited_portal(published, portal_trusted_proxies=["127.0.0.1/32"])
    try:
        def status(client: str | None) -> int:
            headers = {"X-Forwarded-For": client} if client else {}
            return requests.get(url + "/", headers=headers, timeout=30).status_code

        assert [status("203.0.113.1") for _ in range(3)] == [503, 503, 429]
        assert status("203.0.113.2") == 503  # another client behind the same proxy is not limited
        assert status(None) == 400  # not through the proxy
        assert status("203.0.113.9, 203.0.113.1") == 400  # more hops than the one trusted proxy
        assert requests.get(url + "/healthz", timeout=30).status_code == 200  # asked directly
    finally:
        portal.stop()


def test_without_a_trusted_proxy_a_forwarded_address_is_ignored(published):
    portal, url = _limited_portal(published)
    try:
        answers = [
            requests.get(url + "/", headers={"X-Forwarded-For": f"203.0.113.{i}"}, timeout=30).status_code
            for i in range(3)
        ]
        assert answers == [503, 503, 429]  # the peer is limited, whatever address it claims
    finally:
        portal.stop()
