"""Issue 6, "one file carries everything": only the .duckdb file, on a machine without the memes.

The sender's cache is smoke_db (built by the real pipeline) whose run points at the sender's memes
folder (a copy of the synthetic memes; the copy has the same relative paths and bytes the cache was
built from). The recipient gets only the .duckdb file in an empty folder, made read-only as
docs/sharing.md suggests, and the sender's folder is then renamed away, so runs.memes_root no
longer exists. `streamlit run` serves it with the flags docs/sharing.md §3 recommends, and in
Chromium:

* every page renders with its content, without an exception box;
* every <img> on every page has loaded (naturalWidth > 0); galleries, heatmaps and the Meme page
  have images, all from the file (thumbnails <= 384 px);
* the Meme page shows the thumbnail and says so; once the original folder is back at its recorded
  place, the same page offers the original at full size (its natural width is the file's width);
* the dashboard leaves the recipient's folder as it found it (no .wal, no lock file).
"""
from __future__ import annotations

import io
import shutil
import stat

import pytest
from dashboard_helpers import ARTIFACTS, outcome_count, prediction_sets, sql
from PIL import Image
from test_dashboard_safety import chromium, images, metric_values, open_page, serve, write

# docs/sharing.md §3: serving the dashboard read-only
SERVE_FLAGS = ("--server.address", "127.0.0.1", "--server.enableXsrfProtection", "true",
               "--server.enableCORS", "true", "--client.toolbarMode", "viewer",
               "--client.showErrorDetails", "none", "--browser.gatherUsageStats", "false")
THUMB_CAPTION = "The original file is not at its recorded place (or has changed): showing the stored thumbnail."
ORIGINAL_CAPTION = "The original file, at up to 1600 px."


@pytest.fixture(scope="module")
def shared(smoke_db, synthetic_memes, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("share")
    sender = tmp / "sender" / "memes"
    shutil.copytree(synthetic_memes, sender)
    recipient = tmp / "recipient"
    recipient.mkdir()
    db = recipient / "vlmemes.duckdb"
    shutil.copy(smoke_db, db)                                   # the .duckdb file and nothing else
    write(db, "UPDATE runs SET memes_root = ?", [str(sender)])  # the sender's precompute scanned `sender`
    db.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)       # chmod a-w, as docs/sharing.md suggests
    gone = sender.with_name("memes-moved-away")
    sender.rename(gone)                                         # runs.memes_root no longer exists
    yield db, sender, gone
    db.chmod(stat.S_IRUSR | stat.S_IWUSR)


@pytest.fixture(scope="module")
def server(shared, tmp_path_factory):
    db, _, _ = shared
    with serve(db, tmp_path_factory.mktemp("share-logs") / "streamlit.log", *SERVE_FLAGS) as s:
        yield s


@pytest.fixture(scope="module")
def browser(server):
    with chromium() as b:
        yield b


def assert_images_loaded(page, where: str, at_least: int, timeout_s: float = 20.0) -> list[dict]:
    """The page's images, once at least `at_least` are there and all have loaded (galleries render after
    the page's heading and text: a fresh-clone CI run once looked before the Disagreement gallery came)."""
    import time
    deadline = time.monotonic() + timeout_s
    imgs = images(page)
    while time.monotonic() < deadline and (len(imgs) < at_least or any(not i["complete"] for i in imgs)):
        page.wait_for_timeout(200)
        imgs = images(page)
    broken = [i for i in imgs if not i["complete"] or i["w"] == 0]
    assert not broken, f"{where}: images that did not load: {broken}"
    assert len(imgs) >= at_least, f"{where}: {len(imgs)} images, expected at least {at_least}"
    return imgs


def disagreeing_pair(db) -> tuple[str, str, str]:
    """Two prediction sets and a gallery cell (only_a_right / only_b_right) that has memes in it."""
    rows = sql(db, """
        SELECT a.variant_id, b.variant_id,
               count(*) FILTER (a.label = m.label AND b.label IS DISTINCT FROM m.label) AS only_a,
               count(*) FILTER (b.label = m.label AND a.label IS DISTINCT FROM m.label) AS only_b
        FROM predictions a JOIN predictions b USING (meme_id) JOIN memes m USING (meme_id)
        WHERE a.variant_id < b.variant_id AND m.label IS NOT NULL AND NOT m.retired
        GROUP BY ALL HAVING only_a + only_b > 0 ORDER BY only_a + only_b DESC, 1, 2 LIMIT 1""")
    assert rows, "the smoke cache has no two prediction sets that disagree"
    a, b, only_a, only_b = rows[0]
    return a, b, ("only_a_right" if only_a else "only_b_right")


def test_the_file_alone_carries_every_page_and_image(shared, server, browser):
    db, sender, _ = shared
    assert sorted(p.name for p in db.parent.iterdir()) == [db.name]
    assert not sender.exists() and sql(db, "SELECT DISTINCT memes_root FROM runs") == [(str(sender),)]
    # the stored thumbnails are what the pages show: JPEG, longest side <= 384 px
    for (thumb,) in sql(db, "SELECT thumbnail FROM memes"):
        im = Image.open(io.BytesIO(thumb))
        assert im.format == "JPEG" and max(im.size) <= 384
    clip = prediction_sets(db)[0][0]
    group = max(("fp", "fn", "unparsed"), key=lambda g: outcome_count(db, clip, g))
    n_memes = sql(db, "SELECT count(*) FROM memes WHERE NOT retired")[0][0]
    meme_id = sql(db, "SELECT meme_id FROM memes WHERE label = 'toxic' ORDER BY meme_id LIMIT 1")[0][0]
    pair = disagreeing_pair(db)
    page = browser.page
    pages = [("", "Overview", "Metrics per model × prompt version", 0),
             (f"errors?set={clip}&group={group}", "Errors", "False positives", 1),
             (f"disagreement?a={pair[0]}&b={pair[1]}&cell={pair[2]}", "Disagreement", "Cohen's kappa", 1),
             ("heatmaps", "Heatmaps", "Overlay opacity (%)", 1),
             (f"meme?meme={meme_id}", "Meme", "Model answers", 1),
             ("runs", "Runs", "Counts per stage", 0)]
    for path, heading, text, at_least in pages:
        open_page(page, f"{server.url}/{path}", heading, text)
        imgs = assert_images_loaded(page, heading, at_least)
        if heading in ("Errors", "Disagreement"):
            assert all(max(i["w"], i["h"]) <= 384 for i in imgs if "/media/" in (i["src"] or "")), imgs
        if heading == "Overview":
            assert metric_values(page)["Memes"] == f"{n_memes:,}"
        if heading == "Meme":
            assert page.get_by_text(THUMB_CAPTION).count() == 1
        page.screenshot(path=str(ARTIFACTS / f"share_{heading.lower()}.png"))
    assert not browser.external(), browser.external()
    assert sorted(p.name for p in db.parent.iterdir()) == [db.name], "the dashboard wrote next to the file"


def test_meme_page_shows_the_thumbnail_without_the_original_and_the_original_with_it(shared, server, browser):
    db, sender, gone = shared
    meme_id, width, height = sql(db, "SELECT meme_id, width, height FROM memes WHERE label = 'non_toxic' "
                                 "ORDER BY meme_id LIMIT 1")[0]           # non-toxic: never blurred
    assert max(width, height) > 384, "the synthetic originals must be larger than their thumbnails"
    page = browser.page
    url = f"{server.url}/meme?meme={meme_id}"

    def main_image() -> dict:
        return page.locator('[data-testid="stMain"] [data-testid="stImage"] img').first.evaluate(
            "i => ({w: i.naturalWidth, h: i.naturalHeight})")

    open_page(page, url, "Meme", "Model answers")
    assert page.get_by_text(THUMB_CAPTION).count() == 1 and page.get_by_text(ORIGINAL_CAPTION).count() == 0
    shown = main_image()
    assert 0 < max(shown["w"], shown["h"]) <= 384
    assert_images_loaded(page, "Meme without original", 3)
    page.screenshot(path=str(ARTIFACTS / "share_meme_thumbnail.png"))

    gone.rename(sender)                                     # the sender's machine: the original is there
    try:
        open_page(page, url, "Meme", "Model answers")
        assert page.get_by_text(ORIGINAL_CAPTION).count() == 1 and page.get_by_text(THUMB_CAPTION).count() == 0
        assert main_image() == {"w": width, "h": height}, "the original is shown at its own size"
        assert_images_loaded(page, "Meme with original", 3)
        page.screenshot(path=str(ARTIFACTS / "share_meme_original.png"))
    finally:
        sender.rename(gone)
