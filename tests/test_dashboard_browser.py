"""The dashboard in a real browser: `streamlit run` as a subprocess, Debian Chromium driven by Playwright.

Every page loads at its own URL and shows its key content without an exception box; a gallery's
'Open meme' link opens the Meme page; the content warning's 'Show image' works by clicking.
Screenshots go to tests/artifacts/ (git-ignored).
"""
from __future__ import annotations

from pathlib import Path

import pytest
from dashboard_helpers import ARTIFACTS, PAGES, chromium, outcome_count, prediction_sets, serve, sql, wait_idle


@pytest.fixture(scope="module")
def dashboard_db(smoke_db) -> Path:
    """The cache the browser reads: built by the real pipeline with tiny models (conftest.smoke_db)."""
    return smoke_db


@pytest.fixture(scope="module")
def server(dashboard_db):
    with serve(dashboard_db, ARTIFACTS / "browser_server.log") as s:
        yield s.url


@pytest.fixture(scope="module")
def browser_page(server):
    with chromium() as b:
        yield b.page


def open_page(page, server: str, path: str, heading: str, text: str) -> None:
    page.goto(f"{server}/{path}")
    page.get_by_role("heading", name=heading).first.wait_for()
    page.get_by_text(text, exact=False).first.wait_for()
    wait_idle(page)
    assert page.locator('[data-testid="stException"]').count() == 0, f"exception on /{path}"


@pytest.mark.parametrize("path,heading,text", [p[1:] for p in PAGES], ids=[p[2] for p in PAGES])
def test_page_loads_with_its_content(path, heading, text, dashboard_db, server, browser_page):
    meme_id = sql(dashboard_db, "SELECT meme_id FROM memes ORDER BY meme_id LIMIT 1")[0][0]
    if heading == "Meme":
        path = f"{path}?meme={meme_id}"
    open_page(browser_page, server, path, heading, text)
    if heading == "Meme":
        assert browser_page.get_by_text(meme_id).count() >= 1
    if heading in ("Errors", "Heatmaps"):
        assert browser_page.locator('[data-testid="stImage"]').count() > 0
    browser_page.screenshot(path=str(ARTIFACTS / f"dashboard_{heading.lower()}.png"))


def test_overview_has_its_own_address(server, browser_page):
    """/overview is a working link to the Overview (not "Page not found"); the root URL shows the Overview
    too, moving to /overview with its query (?lang=) kept; the sidebar switch changes the language."""
    page = browser_page
    open_page(page, server, "overview", "Overview", "Metrics per model × prompt version")
    assert page.get_by_text("Page not found").count() == 0
    page.goto(f"{server}/?lang=ru")
    page.wait_for_url("**/overview?*lang=ru*")
    page.get_by_role("heading", name="Обзор").first.wait_for()
    wait_idle(page)
    assert page.get_by_text("Page not found").count() == 0
    assert page.locator('[data-testid="stException"]').count() == 0
    page.locator('[data-testid="stSidebar"]').get_by_text("English", exact=True).click()
    page.get_by_role("heading", name="Overview").first.wait_for()
    page.wait_for_url("**lang=en*")
    page.screenshot(path=str(ARTIFACTS / "dashboard_overview_address.png"))


def test_the_browser_language_is_the_default(server, browser_page):
    """A browser that prefers Russian gets the Russian interface without ?lang= (and the URL says so)."""
    import urllib.parse
    context = browser_page.context.browser.new_context(locale="ru-RU", viewport={"width": 1400, "height": 2000})
    try:
        context.route("**/*", lambda route: route.continue_()
                      if urllib.parse.urlsplit(route.request.url).hostname in ("127.0.0.1", "localhost")
                      else route.abort())
        page = context.new_page()
        page.goto(f"{server}/errors")
        page.get_by_role("heading", name="Ошибки").first.wait_for(timeout=60_000)
        page.wait_for_url("**lang=ru*")
        wait_idle(page)
        assert page.locator('[data-testid="stException"]').count() == 0
    finally:
        context.close()


def test_meme_link_opens_the_meme_page(server, browser_page):
    open_page(browser_page, server, "errors", "Errors", "False positives")
    link = browser_page.get_by_role("link", name="Open meme").first
    href = link.get_attribute("href")
    assert "meme?meme=" in href
    meme_id = href.split("meme=")[1]
    link.click()
    browser_page.wait_for_url(f"**/meme?meme={meme_id}*")      # and ?lang=, which stays in the URL
    browser_page.get_by_text("Model answers").first.wait_for()
    wait_idle(browser_page)
    assert browser_page.get_by_text(meme_id).count() >= 1
    assert browser_page.locator('[data-testid="stException"]').count() == 0
    browser_page.screenshot(path=str(ARTIFACTS / "dashboard_meme_from_link.png"))


def test_content_warning_reveals_on_click(dashboard_db, server, browser_page):
    from playwright.sync_api import expect
    with_fn = [v for v, _, _ in prediction_sets(dashboard_db) if outcome_count(dashboard_db, v, "fn")]
    if not with_fn:
        pytest.skip("no prediction set misses a toxic meme in this cache")
    open_page(browser_page, server, f"errors?group=fn&set={with_fn[0]}", "Errors", "False negatives")  # toxic memes
    buttons = browser_page.get_by_role("button", name="Show image")
    n = buttons.count()
    assert n > 0
    buttons.first.click()
    expect(buttons).to_have_count(n - 1, timeout=30_000)
    wait_idle(browser_page)
    assert browser_page.locator('[data-testid="stException"]').count() == 0
    browser_page.screenshot(path=str(ARTIFACTS / "dashboard_errors_revealed.png"))


def test_modality_and_faithfulness_pages_with_derived_views(tmp_path, browser_page):
    """A cache with derived views and faithfulness measures (synth-db: thumbnails of the derived images): the
    Modality page's numbers, its three views side by side, and the Faithfulness page's chart, in the browser."""
    from pipeline.devtools.synth_db import synth_db
    db = synth_db(tmp_path / "views.duckdb", n=60, seed=3)
    page = browser_page
    with serve(db, ARTIFACTS / "browser_modality_server.log") as s:
        open_page(page, s.url, "modality", "Modality", "Memes on all three views")
        assert page.get_by_text("Paired tests between the views").count() == 1
        assert page.locator('[data-testid="stImage"]').count() >= 3
        page.screenshot(path=str(ARTIFACTS / "dashboard_modality_views.png"))
        open_page(page, s.url, "faithfulness", "Faithfulness", "Does the VLM's explanation follow the caption?")
        assert page.locator('[data-testid="stVegaLiteChart"]').count() >= 1
        page.screenshot(path=str(ARTIFACTS / "dashboard_faithfulness.png"))


def test_the_slice_of_every_page_is_kept_in_the_url_and_across_pages(dashboard_db, server, browser_page):
    """A link with ?slice= opens the page within that slice (the banner names it); the sidebar's link to another
    page keeps it; choosing "all memes" in the sidebar removes it."""
    page = browser_page
    fmt, n = sql(dashboard_db, "SELECT format, count(*) FROM memes WHERE NOT retired GROUP BY 1 ORDER BY 2 DESC, 1 "
                               "LIMIT 1")[0]
    open_page(page, server, f"overview?slice=format={fmt}", "Overview", f"Slice: format: {fmt} · {n:,} memes")
    page.locator('[data-testid="stSidebarNav"]').get_by_text("Errors", exact=True).click()
    page.get_by_role("heading", name="Errors").first.wait_for()
    page.get_by_text(f"Slice: format: {fmt}", exact=False).first.wait_for()
    page.wait_for_url(f"**slice=format%3D{fmt}*")
    wait_idle(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    picker = page.locator('[data-testid="stSidebar"]').get_by_role("combobox", name="Slice of every page")
    assert picker.input_value() == f"format: {fmt} · {n:,}"
    picker.click()
    page.get_by_role("option", name="all memes", exact=True).click()
    wait_idle(page)
    assert page.get_by_text("Slice: format:", exact=False).count() == 0 and "slice=" not in page.url
