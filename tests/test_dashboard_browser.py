"""The dashboard, the record list and a record's page in a real browser: Debian's headless chromium
driven by playwright (installed by .ci/browser), logged in with a session cookie, on a real deploy
history (see tests/records.py). Screenshots go to test-artifacts/screenshots/ (git-ignored; CI keeps
them), in the admin's light and dark themes."""

from __future__ import annotations

import os
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.utils import timezone

from tests.fixtures.environment import skip_or_fail
from tests.records import history

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

CHROMIUM = os.environ.get("DEPLOY_OPS_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", Path(__file__).resolve().parent.parent / "test-artifacts")) / "screenshots"
WIDTH = 1280


@pytest.fixture(scope="module")
def browser():
    if not shutil.which(CHROMIUM):
        skip_or_fail(f"no chromium at {CHROMIUM} (bash .ci/browser installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("the playwright package is not installed (requirements-dev.txt)")
    # Playwright's sync API keeps an event loop in this thread, and Django then refuses ORM calls in
    # it (the test's own records and teardown); none of them runs concurrently with the loop.
    allowed = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            yield launched
            launched.close()
    finally:
        if allowed is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = allowed


@pytest.fixture
def operator_page(browser, live_server, admin_user, ops_dirs):
    """A 1280 px wide page logged into the admin, over a deploy history, in the light theme."""
    now = timezone.now().replace(microsecond=0)
    records = history(ops_dirs, now)
    (ops_dirs / "backups").mkdir()
    for days_ago, size in ((6, 180_000), (4, 240_000), (1, 310_000)):
        (ops_dirs / "backups" / f"backup_{now - timedelta(days=days_ago):%Y%m%d_%H%M%S}.sql.gz").write_bytes(b"x" * size)
    client = Client()
    client.force_login(admin_user)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def open_page(color_scheme="light"):
        context = browser.new_context(viewport={"width": WIDTH, "height": 900}, color_scheme=color_scheme)
        host = live_server.url.split("//", 1)[1].split(":")[0]
        context.add_cookies(
            [
                {
                    "name": django_settings.SESSION_COOKIE_NAME,
                    "value": client.cookies[django_settings.SESSION_COOKIE_NAME].value,
                    "domain": host,
                    "path": "/",
                }
            ]
        )
        return context.new_page()

    return live_server.url, records, open_page


def fits_the_width(page) -> bool:
    """Nothing scrolls sideways: neither the page nor the admin's scrolling box around the list."""
    boxes = page.evaluate("[document.documentElement, ...document.querySelectorAll('.results')].map(b => b.scrollWidth - b.clientWidth)")
    return page.evaluate("document.documentElement.scrollWidth") <= WIDTH and all(overflow <= 0 for overflow in boxes)


def test_dashboard_shows_the_metrics_and_charts_in_light_and_dark(operator_page):
    url, _records, open_page = operator_page
    for theme in ("light", "dark"):
        page = open_page(theme)
        page.goto(f"{url}/admin/")
        page.get_by_role("link", name="Delivery dashboard").click()
        page.get_by_role("link", name="7 days").click()
        metrics = page.locator("#do-metrics")
        assert metrics.get_by_role("row", name="Change failure rate").inner_text().split("\t")[1].strip() == "75 % (3 of 4)"
        assert "1 not restored yet" in metrics.get_by_role("row", name="Time to restore (median)").inner_text()
        assert page.get_by_role("img", name="Deploy history by outcome").is_visible()
        assert page.get_by_role("img", name="Duration per stage, recent deploys").is_visible()
        assert page.get_by_role("img", name="Backup sizes over time").locator("rect").count() == 3
        # Chart text takes the theme's colour: light text on the dark theme, dark on the light one.
        label_colour = page.locator(".do-axis-label").first.evaluate("node => getComputedStyle(node).fill")
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert label_colour != background
        assert fits_the_width(page)
        page.screenshot(path=ARTIFACTS / f"dashboard-{theme}.png", full_page=True)
        page.context.close()


def test_record_list_tells_each_outcome_by_words_and_fits_1280_px(operator_page):
    url, _records, open_page = operator_page
    page = open_page()
    page.goto(f"{url}/admin/deploy_ops/deploymentrecord/")
    page.screenshot(path=ARTIFACTS / "record-list.png", full_page=True)
    badges = page.locator("#result_list .do-badge").all_inner_texts()
    for outcome in ("✓ succeeded", "↺ rolled back", "‼ rollback failed", "⚡ interrupted", "⊘ refused"):
        assert outcome in badges
    rolled_back = page.get_by_role("row").filter(has_text="Rename the customer table")
    assert "migrate" in rolled_back.inner_text() and 'ProgrammingError: relation "customer" does not exist' in rolled_back.inner_text()
    assert "1 min 41 s" in rolled_back.inner_text()
    assert rolled_back.locator("svg.do-stagebar").is_visible()
    assert fits_the_width(page)
    page.context.close()


def test_record_page_shows_the_error_once_and_walks_to_its_neighbours(operator_page):
    url, records, open_page = operator_page
    page = open_page()
    page.goto(f"{url}/admin/deploy_ops/deploymentrecord/{records['rollback_failed'].pk}/change/")
    assert page.locator(".do-badge").first.inner_text() == "‼ rollback failed"
    assert page.get_by_text("The rollback failed too: the database restore failed").count() == 1
    assert fits_the_width(page)
    page.screenshot(path=ARTIFACTS / "record-rollback-failed.png", full_page=True)
    page.get_by_role("link", name="Next record").click()
    assert page.locator(".do-badge").first.inner_text() == "✓ succeeded"
    page.get_by_role("link", name="Previous record").click()
    page.get_by_role("link", name="Previous record").click()
    assert page.locator(".do-badge").first.inner_text() == "↺ rolled back"
    page.context.close()


def test_the_dashboard_and_the_record_list_in_spanish_read_spanish_and_fit_1280_px(operator_page, settings):
    settings.LANGUAGE_CODE = "es"
    url, _records, open_page = operator_page
    page = open_page()
    page.goto(f"{url}/admin/deploy_ops/deliverydashboard/?days=7")
    metrics = page.locator("#do-metrics")
    assert metrics.get_by_role("row", name="Tasa de fallos de cambios").inner_text().split("\t")[1].strip() == "75 % (3 de 4)"
    assert page.get_by_role("img", name="Historial de despliegues por resultado").is_visible()
    assert fits_the_width(page)
    page.screenshot(path=ARTIFACTS / "dashboard-es.png", full_page=True)
    page.goto(f"{url}/admin/deploy_ops/deploymentrecord/")
    # The record list's own link (the admin's sidebar names the dashboard's model too, now in Spanish).
    assert page.locator("#content-main").get_by_role("link", name="Panel de entregas").is_visible()
    assert fits_the_width(page)
    page.screenshot(path=ARTIFACTS / "record-list-es.png", full_page=True)
    page.context.close()
