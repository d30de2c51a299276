"""Dashboard safety: hostile model/OCR text, hostile query parameters, no paths from visitors.

Everything runs against a copy of `smoke_db` (the cache built by the real pipeline) into which the
test writes hostile text with plain DuckDB: OCR text, OCR box text, VLM raw answers and
explanations, a prompt-version name, the OCR engine's name and a run's error message hold
`<script>`, `<img onerror>`, markdown links/images to evil.example and a 20,000-character line.

* In real Chromium (`streamlit run` as a subprocess): every page that shows that text shows it as
  literal characters; `window.__pwned` stays undefined; no <img> with src x / an evil host, no
  element with an onerror attribute, no link to evil.example; every request the browser makes goes
  to the local server; the long line does not widen the page.
* Query parameters and the search box with SQL fragments, quotes, LIKE wildcards, 10k characters
  and percent-encoded non-UTF-8 bytes change nothing but the filter: no exception box, counts equal
  an independent count, and the file (hash and row counts) is unchanged afterwards.
* `?db=...` cannot pick another file; the original-image feature never follows a stored rel_path
  (or a symlink) out of runs.memes_root, even when the bytes there would match.

The server and browser (`serve`, `chromium`) come from dashboard_helpers.py; the page helpers at the
top are shared with test_dashboard_concurrency.py and test_share_copy.py.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
from dashboard_helpers import (
    ARTIFACTS,
    PAGES,
    REPO,
    Browser,
    all_text,
    app_opener,
    chromium,
    goto,
    prediction_sets,
    serve,
    sql,
    variant_ids,
    wait_idle,
    write,
)

TABLES = ("meta", "runs", "failures", "memes", "meme_paths", "variants", "ocr", "predictions", "heatmaps",
          "summaries")
LOCK_WORDS = ("Could not set lock", "Conflicting lock", "IO Error", "Traceback")


# ======================================================================== shared helpers
def problems(page) -> list[str]:
    """Exception boxes and lock / traceback wording visible on the page."""
    found = [f"exception box: {t[:300]}" for t in page.locator('[data-testid="stException"]').all_inner_texts()]
    body = page.locator("body").inner_text()
    found += [f"text {w!r}" for w in LOCK_WORDS if w in body]
    return found


def open_page(page, url: str, heading: str, text: str | None = None) -> None:
    """Go to url, wait for the heading (and a text that shows once the data is in), fail on problems."""
    page.goto(url)
    page.get_by_role("heading", name=heading).first.wait_for()
    if text:
        page.get_by_text(text, exact=False).first.wait_for()
    wait_idle(page)
    assert not problems(page), (url, problems(page))


def images(page) -> list[dict]:
    return page.evaluate("""() => Array.from(document.images).map(i => ({
        src: i.getAttribute('src'), complete: i.complete, w: i.naturalWidth, h: i.naturalHeight}))""")


def metric_values(page) -> dict[str, str]:
    """{label: value} of the st.metric boxes on the page."""
    return page.evaluate("""() => Object.fromEntries(Array.from(
        document.querySelectorAll('[data-testid="stMetric"]')).map(m => [
            m.querySelector('[data-testid="stMetricLabel"]').innerText.trim(),
            m.querySelector('[data-testid="stMetricValue"]').innerText.trim()]))""")


def file_fingerprint(db: Path) -> tuple[str, dict[str, int]]:
    counts = {t: sql(db, f"SELECT count(*) FROM {t}")[0][0] for t in TABLES}
    return hashlib.sha256(db.read_bytes()).hexdigest(), counts


# ======================================================================== hostile cache
SCRIPT = "<script>window.__pwned=1</script>"
IMG = '<img src=x onerror="window.__pwned=1">'
LINK = "[click](http://evil.example/x)"
MD_IMG = "![t](http://evil.example/a.png)"
HOSTILE = "\n".join([SCRIPT, IMG, f"{LINK} {MD_IMG}"])
LONG = "Ж" * 20_000                                   # one 20,000-character line, no spaces
HOSTILE_NAME = f'v1 <img src=x onerror="window.__pwned=1"> {LINK} {MD_IMG} **b**'


@dataclass
class Hostile:
    db: Path
    meme_id: str
    vlm: str                      # the VLM prediction set with the hostile name
    clip: str
    ocr: str
    fingerprint: tuple


@pytest.fixture(scope="module")
def hostile(smoke_db, tmp_path_factory) -> Hostile:
    """A copy of smoke_db with hostile text on one non-toxic meme (and in names shown as labels)."""
    db = tmp_path_factory.mktemp("hostile") / "hostile.duckdb"
    shutil.copy(smoke_db, db)
    vlm = next(v for v, stage, _ in prediction_sets(db) if stage == "vlm")
    clip = next(v for v, stage, _ in prediction_sets(db) if stage == "clip")
    ocr = variant_ids(db, "ocr")[0]
    meme_id = sql(db, "SELECT meme_id FROM memes WHERE label = 'non_toxic' AND NOT retired ORDER BY meme_id")[0][0]
    text = HOSTILE + "\n" + LONG
    con = duckdb.connect(str(db))
    try:
        con.execute("UPDATE ocr SET text = ?, boxes = ? WHERE meme_id = ?",
                    [text, json.dumps([{"box": [1, 2, 30, 40], "text": HOSTILE, "conf": 0.5}]), meme_id])
        con.execute("UPDATE predictions SET raw_answer = ?, explanation = ? WHERE meme_id = ?",
                    [HOSTILE, HOSTILE, meme_id])
        con.execute("UPDATE predictions SET raw_answer = ?, explanation = ? WHERE meme_id = ? AND variant_id = ?",
                    [text, text, meme_id, vlm])      # the long line in the hostile set's answers (and OCR text)
        con.execute("UPDATE predictions SET label = NULL, score = NULL WHERE meme_id = ? AND variant_id = ?",
                    [meme_id, vlm])                   # unparseable: the Errors card shows the raw answer
        con.execute("UPDATE variants SET name = ? WHERE variant_id IN (?, ?)", [HOSTILE_NAME, vlm, ocr])
        con.execute("UPDATE predictions SET prompt_version = ? WHERE variant_id = ?", [HOSTILE_NAME, vlm])
        con.execute("UPDATE runs SET error = ?", [HOSTILE])
    finally:
        con.close()
    return Hostile(db, meme_id, vlm, clip, ocr, file_fingerprint(db))


@pytest.fixture(scope="module")
def server(hostile, tmp_path_factory):
    with serve(hostile.db, tmp_path_factory.mktemp("logs") / "streamlit.log") as s:
        yield s


@pytest.fixture(scope="module")
def browser(server):
    with chromium() as b:
        yield b


def assert_inert(b: Browser, where: str) -> None:
    page = b.page
    assert page.evaluate("() => typeof window.__pwned") == "undefined", f"{where}: script ran"
    srcs = [i["src"] or "" for i in images(page)]
    assert not [s for s in srcs if s == "x" or "evil" in s], f"{where}: injected <img>: {srcs}"
    assert page.locator("[onerror]").count() == 0, f"{where}: an element with onerror"
    assert page.locator('a[href*="evil"]').count() == 0, f"{where}: a link to evil.example"
    assert page.locator("script:not([src])").evaluate_all(
        "els => els.filter(e => e.textContent.includes('__pwned')).length") == 0, f"{where}: injected <script>"
    assert not b.external(), f"{where}: requests to other hosts: {b.external()}"


def assert_page_not_widened(page, where: str) -> None:
    width = page.evaluate("() => document.documentElement.scrollWidth")
    viewport = page.viewport_size["width"]
    assert width <= viewport + 2, f"{where}: the long line widened the page to {width} px (viewport {viewport})"


def visible_literal(page, text: str) -> bool:
    loc = page.get_by_text(text, exact=False)
    return any(loc.nth(i).is_visible() for i in range(loc.count()))


# ======================================================================== 1. hostile text in the browser
def test_hostile_text_on_the_meme_page_is_literal_and_inert(hostile, server, browser):
    page = browser.page
    open_page(page, f"{server.url}/meme?meme={hostile.meme_id}", "Meme", "Model answers")
    for summary in page.locator('[data-testid="stExpander"] summary').all():
        summary.click()
    wait_idle(page)
    assert_inert(browser, "Meme")
    for literal in (SCRIPT, IMG, LINK, MD_IMG):
        assert visible_literal(page, literal), f"Meme page: {literal!r} is not shown as text"
    assert visible_literal(page, "Ж" * 200), "the long line is shown"
    assert_page_not_widened(page, "Meme")
    # the hostile prompt-version name is an expander label: shown as written (markdown escaped, bare
    # URLs broken by an invisible word joiner so they are not turned into links)
    labels = [t.replace("\u2060", "") for t in page.locator('[data-testid="stExpander"] summary').all_inner_texts()]
    assert any(HOSTILE_NAME in " ".join(t.split()) for t in labels), labels
    tabs = [t.replace("\u2060", "") for t in page.get_by_role("tab").all_inner_texts()]
    assert any(HOSTILE_NAME in " ".join(t.split()) for t in tabs), tabs         # the OCR engine's name
    page.screenshot(path=str(ARTIFACTS / "safety_meme_hostile.png"), full_page=True)


def test_hostile_text_in_galleries_and_other_pages_is_literal_and_inert(hostile, server, browser):
    page = browser.page
    # Errors: the unparseable group of the hostile set, filtered to the hostile meme by the search box
    open_page(page, f"{server.url}/errors?set={hostile.vlm}&group=unparsed&q=pwned&ocr={hostile.ocr}",
              "Errors", "Unparseable answers")
    assert page.get_by_role("link", name="Open meme").count() == 1
    assert_inert(browser, "Errors")
    for literal in (SCRIPT, IMG, LINK, MD_IMG):
        assert visible_literal(page, literal), f"Errors card: {literal!r} is not shown as text"
    assert visible_literal(page, "Ж" * 100), "the card shows the start of the long line (cut at 300 characters)"
    assert_page_not_widened(page, "Errors")
    page.screenshot(path=str(ARTIFACTS / "safety_errors_hostile.png"), full_page=True)

    # Disagreement: the cell the hostile meme is in (B = the hostile set, whose answer is unparseable)
    right_a = sql(hostile.db, "SELECT p.label = m.label FROM predictions p JOIN memes m USING (meme_id) "
                  "WHERE meme_id = ? AND variant_id = ?", [hostile.meme_id, hostile.clip])[0][0]
    cell = "only_a_right" if right_a else "both_wrong"
    open_page(page, f"{server.url}/disagreement?a={hostile.clip}&b={hostile.vlm}&cell={cell}&truth=non_toxic",
              "Disagreement", "Memes per cell")
    assert visible_literal(page, SCRIPT) and visible_literal(page, MD_IMG)
    assert_inert(browser, "Disagreement")

    # pages that show the hostile names only as labels, and the run error on Runs (Overview: next test)
    for path, heading, text in [(f"heatmaps?set={hostile.vlm}", "Heatmaps", "Overlay opacity (%)"),
                                ("runs", "Runs", "Counts per stage")]:
        open_page(page, f"{server.url}/{path}", heading, text)
        assert_inert(browser, heading)
        assert_page_not_widened(page, heading)
    assert visible_literal(page, SCRIPT), "the run's error is shown as text on Runs"
    assert len(browser.requests) > 10 and all("127.0.0.1" in u for u in browser.requests if u.startswith("http"))
    assert file_fingerprint(hostile.db) == hostile.fingerprint


# ======================================================================== 2. hostile parameters
ODD_VALUES = {
    "sql-or": "' OR 1=1 --",
    "sql-drop": '"; DROP TABLE memes; --',
    "percent": "%",
    "underscore": "_",
    "quotes": "'\"`\\",
    "long": "x" * 10_000,
    "replacement": "\ufffd\ufffe",          # what %FF%FE becomes once a browser decodes it
    "encoded": "%FF%FE",
    "path": "../../etc/passwd",
}
PARAMS = ("set", "truth", "text", "q", "ocr", "group", "n", "page", "a", "b", "cell", "cam", "view", "alpha",
          "boxes", "answer", "correct", "meme", "run", "frun", "fstage", "fpage", "retired", "db")


def outcomes(db: Path, variant: str, ocr: str, search: str | None) -> dict[str, int]:
    """fp / fn / unparsed / right of a set under a search, counted in Python (independent of queries.py)."""
    rows = sql(db, """SELECT m.label, p.label, o.text, p.explanation, p.raw_answer FROM predictions p
        JOIN memes m USING (meme_id) LEFT JOIN ocr o ON o.meme_id = p.meme_id AND o.variant_id = ?
        WHERE p.variant_id = ? AND NOT m.retired AND m.label IS NOT NULL""", [ocr, variant])
    out = {"fp": 0, "fn": 0, "unparsed": 0, "right": 0}
    for truth, pred, *texts in rows:
        if search and not any(search.lower() in (t or "").lower() for t in texts):
            continue
        key = "unparsed" if pred is None else "right" if pred == truth else "fp" if pred == "toxic" else "fn"
        out[key] += 1
    return out


def shown_outcomes(metrics: dict[str, str]) -> dict[str, int]:
    names = {"fp": "False positives", "fn": "False negatives", "unparsed": "Unparseable", "right": "Right"}
    return {k: int(metrics[v].replace(",", "")) for k, v in names.items()}


@pytest.fixture
def app(monkeypatch):
    return app_opener(monkeypatch)


@pytest.mark.parametrize("name", list(ODD_VALUES))
def test_odd_values_in_every_parameter_of_every_page_change_only_the_filter(name, hostile, app):
    value = ODD_VALUES[name]
    at = app(hostile.db)
    for page, _, title, _ in PAGES:
        goto(at, page, **{p: value for p in PARAMS})
        assert at.title[0].value == title
        assert str(hostile.db) in [c.value for c in at.sidebar.code], "?db= must not change the cache"
        if title == "Meme":
            assert "Meme not found" in all_text(at)
    # the search box: the result equals a parameterised count of the same text
    goto(at, "views/errors.py", set=hostile.vlm, ocr=hostile.ocr, q=value)
    search = value[:200].strip()
    metrics = {m.label: m.value for m in at.metric}
    assert shown_outcomes(metrics) == outcomes(hostile.db, hostile.vlm, hostile.ocr, search)
    assert at.text_input(key="url:errors:q").value == value[:200]
    assert file_fingerprint(hostile.db) == hostile.fingerprint, "the cache file changed"


def test_wildcards_and_sql_in_search_are_literal(hostile, app):
    """The independent counts above only prove something if the fragments would match more as SQL/LIKE."""
    every = outcomes(hostile.db, hostile.vlm, hostile.ocr, None)
    total = sum(every.values())
    assert sum(outcomes(hostile.db, hostile.vlm, hostile.ocr, "' OR 1=1 --").values()) == 0
    assert sum(outcomes(hostile.db, hostile.vlm, hostile.ocr, "%").values()) == 0 < total
    assert sum(outcomes(hostile.db, hostile.vlm, hostile.ocr, "_").values()) == 1 < total   # window.__pwned
    at = goto(app(hostile.db), "views/errors.py", set=hostile.vlm, ocr=hostile.ocr, q="_")
    assert sum(shown_outcomes({m.label: m.value for m in at.metric}).values()) == 1


def test_percent_encoded_garbage_and_sql_in_the_real_url(hostile, server, browser):
    """What a browser sends for raw bytes and SQL in a link (the AppTest cases above cover the rest)."""
    page = browser.page
    base = f"{server.url}/errors?set={hostile.vlm}&ocr={hostile.ocr}&q="
    for raw, decoded in [("%FF%FE", "\ufffd\ufffd"), ("%27%20OR%201%3D1%20--%20%25_", "' OR 1=1 -- %_")]:
        open_page(page, base + raw, "Errors", "False positives")
        assert shown_outcomes(metric_values(page)) == outcomes(hostile.db, hostile.vlm, hostile.ocr, decoded), raw
    for bad in ("..%2F..%2Fetc%2Fpasswd", "%FF%FE%00"):
        open_page(page, f"{server.url}/meme?meme={bad}&db=%2Fetc%2Fpasswd", "Meme")
        assert page.get_by_text("Meme not found").count() == 1, bad
        sidebar = page.locator('[data-testid="stSidebar"]').inner_text()
        assert str(hostile.db) in sidebar and "passwd" not in sidebar
    assert_inert(browser, "odd URLs")
    assert file_fingerprint(hostile.db) == hostile.fingerprint


# ======================================================================== 3. no paths from visitors
def test_db_query_parameter_cannot_choose_the_file(hostile, server, browser, tmp_path):
    other = tmp_path / "other.duckdb"                     # a real cache with 1 meme: if ?db= were used, it shows
    shutil.copy(hostile.db, other)
    write(other, "DELETE FROM memes WHERE meme_id <> (SELECT min(meme_id) FROM memes)")
    n_memes = sql(hostile.db, "SELECT count(*) FROM memes WHERE NOT retired")[0][0]
    page = browser.page
    value = urllib.parse.quote(str(other), safe="")
    open_page(page, f"{server.url}/?db={value}&VLMEMES_DB={value}&path={value}", "Overview", "Metrics per model")
    assert metric_values(page)["Memes"] == f"{n_memes:,}" != "1"
    sidebar = page.locator('[data-testid="stSidebar"]').inner_text()
    assert str(hostile.db) in sidebar and str(other) not in sidebar
    assert_inert(browser, "Overview")                     # hostile set names in tables and chart titles
    assert_page_not_widened(page, "Overview")


def test_only_the_command_line_or_environment_names_the_cache():
    """Static guard: URL parameters are read in components.py (and ?lang= in lang.py, checked against the
    known languages) only, and the db path only from argv/env."""
    code = {p: p.read_text(encoding="utf-8") for p in (REPO / "dashboard").rglob("*.py")}
    readers = sorted(str(p.relative_to(REPO)) for p, text in code.items() if "query_params" in text)
    assert readers == ["dashboard/components.py", "dashboard/lang.py"], readers
    calls = [(str(p.relative_to(REPO)), m.group(0)) for p, text in code.items()
             for m in re.finditer(r"(?<!def )resolve_db_path\([^)]*\)", text)]
    assert calls == [("dashboard/app.py", "resolve_db_path()")], calls


def _original_fixture(smoke_db: Path, tmp_path: Path) -> tuple[Path, str, str, bytes, Path]:
    """A copy of the cache whose run points at tmp/memes; one non-toxic meme's bytes for placing."""
    db = tmp_path / "orig.duckdb"
    shutil.copy(smoke_db, db)
    meme_id, rel_path, root = sql(db, """SELECT m.meme_id, m.rel_path, r.memes_root FROM memes m
        JOIN runs r ON r.run_id = m.last_seen_run_id WHERE m.label = 'non_toxic' ORDER BY m.meme_id LIMIT 1""")[0]
    data = (Path(root) / rel_path).read_bytes()
    assert hashlib.sha256(data).hexdigest() == meme_id
    memes = tmp_path / "a" / "b" / "memes"
    memes.mkdir(parents=True)
    write(db, "UPDATE runs SET memes_root = ?", [str(memes)])
    return db, meme_id, rel_path, data, memes


def test_original_image_never_leaves_the_memes_folder(smoke_db, tmp_path, app):
    from dashboard.imaging import original_image, original_path
    db, meme_id, rel_path, data, memes = _original_fixture(smoke_db, tmp_path)
    outside = tmp_path / "a" / "outside.png"              # the right bytes, but outside the memes folder
    outside.write_bytes(data)
    at = app(db)
    ORIGINAL, THUMB = "The original file, at up to 1600 px.", "showing the stored thumbnail"

    def meme_page() -> str:
        goto(at, "views/meme.py", meme=meme_id)
        return all_text(at)

    # control: the original inside the folder is offered
    (memes / rel_path).parent.mkdir(parents=True)
    (memes / rel_path).write_bytes(data)
    assert ORIGINAL in meme_page()
    assert original_path(str(memes), rel_path) == (memes / rel_path).resolve()
    # a symlink inside the folder that leads out of it (to a file with the very same bytes)
    (memes / rel_path).unlink()
    (memes / rel_path).symlink_to(outside)
    assert original_path(str(memes), rel_path) is None
    assert THUMB in meme_page()
    (memes / rel_path).unlink()
    # stored rel_paths that escape (written into memes and meme_paths as a tampered cache would)
    escapes = ["../../outside.png", "Нейтрально/../../../outside.png", str(outside), "../../etc/passwd",
               "../../../../../../../../etc/passwd", "/etc/passwd",
               f"{rel_path}\x00.png", "x/" * 3000 + "y.png"]
    for bad in escapes:
        write(db, "UPDATE memes SET rel_path = ? WHERE meme_id = ?", [bad, meme_id])
        write(db, "UPDATE meme_paths SET rel_path = ? WHERE meme_id = ?", [bad, meme_id])
        assert original_image(str(memes), bad, meme_id) is None, bad
        assert THUMB in meme_page(), bad
    # and a memes_root that is not a plain folder name
    for root in ("/", f"{memes}\x00", "relative/memes"):
        write(db, "UPDATE runs SET memes_root = ?", [root])
        write(db, "UPDATE memes SET rel_path = ? WHERE meme_id = ?", ["etc/passwd", meme_id])
        assert THUMB in meme_page(), root
