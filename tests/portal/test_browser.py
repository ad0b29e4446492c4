"""The portal in a real browser: Playwright driving Debian's Chromium (/usr/bin/chromium, headless;
never a downloaded browser), one browser for the module. The home page shows every headline (and is
photographed for the README), axe-core (bundled from npm) finds no serious or critical violation,
the language switch changes texts and number formats, the budget explorer drills down to the
store's totals, service pages draw their over-time tables as charts, and a change written into a
source system appears on the village's page and its service page without a reload (the one test
here that runs the whole pipeline)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import requests
from playwright.sync_api import sync_playwright

from backbone.net import free_port
from backbone.runstate import read_state
from backbone.settings import PROJECT_ROOT
from contract.catalog import catalog_for
from contract.codec import Registry
from portal.datasets import SERVICES
from producers.emitter import Change, ChangeEmitter
from tests.helpers import wait_for
from tests.sinks.ready_store import D_C

CHROMIUM = Path("/usr/bin/chromium")
AXE = PROJECT_ROOT / "portal" / "static" / "vendor" / "axe.min.js"
SCREENSHOT = PROJECT_ROOT / "docs" / "portal-home.png"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    # Installed by scripts/setup.sh (Debian's chromium; npm's axe-core copied into portal/static/vendor).
    assert CHROMIUM.exists() and AXE.exists(), "run scripts/setup.sh: it installs chromium and the portal's assets"
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--disable-gpu"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def context(browser):
    # bypass_csp: the test injects axe-core into pages whose policy allows only the portal's own scripts.
    context = browser.new_context(bypass_csp=True, locale="id-ID", viewport={"width": 1024, "height": 900})
    yield context
    context.close()


@pytest.fixture(scope="module")
def page(context):
    page = context.new_page()
    page.set_default_timeout(15_000)
    return page


def test_home_shows_every_headline_and_is_photographed(page, published):
    page.goto(published.url + "/")
    headlines = page.locator(".headline")
    assert headlines.count() == len(SERVICES)
    for i in range(headlines.count()):
        assert headlines.nth(i).locator(".value").first.inner_text().strip()
        assert headlines.nth(i).locator(".provenance a").get_attribute("href").startswith("/datasets/")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 10_000


@pytest.mark.parametrize("path", ["/", "/budget?year=2025&month=3", "/village/35.22.01.2001", "/service/licensing"])
def test_no_serious_accessibility_violations(page, published, path):
    page.goto(published.url + path)
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("axe.run(document, {runOnly: ['wcag2a', 'wcag2aa', 'wcag21aa']})")
    serious = [
        (v["id"], v["impact"], v["nodes"][0]["target"])
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert serious == [], serious


def test_language_switch_changes_texts_and_number_formats(page, published):
    page.goto(published.url + "/budget?year=2025&month=3")
    assert page.locator("html").get_attribute("lang") == "id"
    assert "3.600" in page.locator("#budget-node").inner_text()
    page.click("#lang-switch")
    page.wait_for_selector("html[lang=en]")
    assert "3,600" in page.locator("#budget-node").inner_text()
    assert "Budget explorer" in page.locator("h1").inner_text()
    page.goto(published.url + "/")  # the choice stays (a cookie)
    assert "budget absorbed" in page.inner_text("main")
    page.context.clear_cookies()


def cells(page, table: str) -> list[Decimal]:
    return [
        Decimal(v)
        for v in page.eval_on_selector_all(f"#{table} td[data-value]", "els => els.map(e => e.dataset.value)")
    ]


def test_budget_explorer_drills_down_to_the_store_totals(page, published):
    page.goto(published.url + "/budget?year=2025&month=3")
    page.wait_for_selector(".chart canvas")  # the bundled chart library drew the monthly series
    for level in ("department", "programme", "activity"):
        assert level in page.locator("#budget-children caption").inner_text() or level == "department"
        page.locator("#budget-children a.drill", has_text=re.compile("DISDIK|1.01")).first.click()
        page.wait_for_load_state()
    node, accounts = cells(page, "budget-node"), cells(page, "budget-children")
    assert "account" in page.locator("#budget-children caption").inner_text()
    store = published.client.query(
        "SELECT sum(coalesce(revised_allocation, allocation)) FROM budget_budget_line_state FINAL "
        "WHERE activity_code = '1.01.02.2.01' AND stage != 'DRAFT'"
    ).result_rows[0][0]
    assert node[0] == Decimal(store) == sum(accounts[0::2]) == Decimal(1600)
    assert node[1] == sum(accounts[1::2]) == Decimal(600)


@pytest.mark.parametrize("service", ["licensing", "budget", "complaints", "health", "education", "village"])
def test_a_service_page_draws_its_over_time_table_as_a_chart(page, published, service):
    """Progressive enhancement: the bundled uPlot draws a canvas from the over-time table, which stays."""
    page.goto(f"{published.url}/service/{service}")
    page.wait_for_selector("#over-time .chart canvas")
    size = page.eval_on_selector("#over-time .chart canvas", "c => [c.width, c.height]")
    assert size[0] > 0 and size[1] > 0
    rows = page.locator("#over-time table[data-chart=line] tbody tr")  # the table stays beside the chart
    assert rows.count() == 2 if service == "licensing" else rows.count() >= 1  # the KPI's two months


def test_a_change_written_into_a_source_appears_on_its_pages_without_a_reload(
    context, pipeline_settings, stage_process
):
    """The whole pipeline: a desa's spending line written into the village finance system's change
    stream (as its adapter emits it) goes through the processor and the sink into the store; the
    portal, a process of its own reading the sink's query endpoint, shows it on the village's page and
    on the village finance page, both already open, without a reload."""
    sink = stage_process(pipeline_settings, "sink")
    processor = stage_process(pipeline_settings, "processor")
    query_url = f"http://127.0.0.1:{sink.env['BACKBONE_QUERY_PORT']}/"
    port = free_port()
    portal = stage_process(
        pipeline_settings,
        "portal",
        BACKBONE_PORTAL_PORT=str(port),
        BACKBONE_PORTAL_QUERY_URL=query_url,
        BACKBONE_PORTAL_CACHE_SECONDS="1",
    )
    url = f"http://127.0.0.1:{port}"
    village_url = f"{url}/village/{D_C}"

    def waiting() -> bool:  # the store migrated and the regions stored: the desa shows as not reported
        try:
            return "Belum melapor" in requests.get(village_url, timeout=10).text
        except requests.ConnectionError:
            return False

    wait_for(waiting, 120, "the portal showing the desa as not reported", alive=(sink, processor, portal))
    assert read_state(pipeline_settings.run_dir)["portal_url"] == url + "/"  # what the demo's display shows
    village, service = context.new_page(), context.new_page()
    village.goto(village_url)
    service.goto(f"{url}/service/village")
    before = service.inner_text("#ds-village-not-reported")
    for p in (village, service):
        p.evaluate("window.notReloaded = true")

    entity = next(e for e in catalog_for(pipeline_settings).entities if e.table == "village_finance_village_spending")
    emitter = ChangeEmitter(entity, pipeline_settings, Registry.for_settings(pipeline_settings))
    now = datetime.now(UTC)
    spending = {
        "spending_id": "LIVE-1",
        "village_code": D_C,
        "fiscal_year": now.year,
        "field": "DEVELOPMENT",
        "activity": "Rabat beton jalan desa",
        "amount": Decimal("12500000.00"),
        "fund_source": "DD",
        "recipient_name": None,
        "spent_at": now,
    }
    emitter.emit(Change("c", "LIVE-1", "00000001", now, after=spending))
    emitter.flush()

    village.wait_for_function("document.querySelector('#report-status').textContent.includes('Sudah')", timeout=60_000)
    service.wait_for_function(
        f"document.querySelector('#ds-village-not-reported').innerText !== {before!r}", timeout=60_000
    )
    assert "12.500.000" in village.inner_text("main")  # the spending month's line
    assert village.evaluate("window.notReloaded") and service.evaluate("window.notReloaded")
    village.close()
    service.close()
