"""The dashboard, page by page, through streamlit.testing.v1.AppTest.

Against (a) a filled cache (`dashboard_db`: synthetic, switchable to the real-pipeline `smoke_db`
with one line), (b) an empty cache (schema only), (c) a missing file and a non-database file.
Counts shown by the pages are checked against SQL written here (tests/dashboard_helpers.py), not
against pipeline/queries.py. Filters, pagination, links and query params are exercised.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dashboard_helpers import (
    PAGES,
    all_text,
    app_opener,
    build_synth,
    goto,
    holm_by_hand,
    outcome_count,
    prediction_sets,
    sql,
    variant_ids,
    write,
)
from streamlit.testing.v1 import AppTest

COMMAND = "python -m pipeline precompute"
SMOKE = "random-weight smoke run — not results"


@pytest.fixture(scope="module")
def dashboard_db(smoke_db) -> Path:
    """The filled cache these tests read: built by the real pipeline with tiny models (conftest.smoke_db)."""
    return smoke_db


@pytest.fixture(scope="module")
def large_db(tmp_path_factory) -> Path:
    """A synthetic cache big enough to page through (the smoke cache has 12 memes)."""
    return build_synth(tmp_path_factory.mktemp("dashboard") / "synth.duckdb")


@pytest.fixture
def app(monkeypatch):
    """open(db) -> an AppTest of dashboard/app.py reading `db`, after its first (Overview) run."""
    return app_opener(monkeypatch)


def rerun(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metric(at: AppTest, label: str) -> str:
    values = [m.value for m in at.metric if m.label == label]
    assert values, f"no metric {label!r}: {[m.label for m in at.metric]}"
    return values[0]


def links(at: AppTest) -> list[str]:
    """The meme ids of the 'Open meme' links on the page, in order."""
    out = []
    for link in at.page_link:
        assert link.proto.page.endswith("meme"), link.proto.page
        out.append(link.proto.query_string.removeprefix("meme="))
    return out


def codes(at: AppTest) -> list[str]:
    return [c.value for c in at.code]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def copy(db: Path, tmp_path: Path, name: str = "copy.duckdb") -> Path:
    dst = tmp_path / name
    shutil.copy(db, dst)
    return dst


# ======================================================================== every page, filled cache
def test_every_page_renders_its_content_and_never_writes(dashboard_db, app):
    before = sha(dashboard_db)
    at = app(dashboard_db)
    n_memes = sql(dashboard_db, "SELECT count(*) FROM memes WHERE NOT retired")[0][0]
    sets = prediction_sets(dashboard_db)
    for page, _, title, _ in PAGES:
        params = {}
        if page.endswith("meme.py"):
            params["meme"] = sql(dashboard_db, "SELECT meme_id FROM memes ORDER BY meme_id LIMIT 1")[0][0]
        goto(at, page, **params)
        assert at.title[0].value == title
        assert all(e.value.endswith(SMOKE) for e in at.sidebar.error), "only the smoke banner is an error"

        if title == "Overview":
            assert metric(at, "Memes") == f"{n_memes:,}"
            table = next(d.value for d in at.dataframe if "accuracy" in d.value.columns)
            assert len(table) == len(sets)
            for _, row in table.iterrows():
                vid = next(v for v, stage, name in sets if stage == row["stage"] and name == row["prompt"])
                n = sql(dashboard_db, "SELECT count(*) FROM predictions p JOIN memes m USING (meme_id) "
                        "WHERE p.variant_id = ? AND NOT m.retired AND m.label IS NOT NULL", [vid])[0][0]
                assert row["n"] == n
                assert row["accuracy"].endswith(f"n={n:,}")
        elif title == "Errors":
            fp = outcome_count(dashboard_db, sets[0][0], "fp")
            assert metric(at, "False positives") == f"{fp:,}"
            assert len(links(at)) == min(24, fp)
        elif title == "Disagreement":
            n_pair = sql(dashboard_db, """SELECT count(*) FROM predictions a JOIN predictions b USING (meme_id)
                JOIN memes m USING (meme_id) WHERE a.variant_id = ? AND b.variant_id = ? AND NOT m.retired
                AND m.label IS NOT NULL""", [sets[0][0], sets[1][0]])[0][0]
            assert metric(at, "Memes compared") == f"{n_pair:,}"
            assert "McNemar" in all_text(at)
        elif title == "Heatmaps":
            cam = variant_ids(dashboard_db, "cam")[0]
            n_cam = sql(dashboard_db, "SELECT count(*) FROM heatmaps h JOIN memes m USING (meme_id) "
                        "WHERE h.variant_id = ? AND NOT m.retired", [cam])[0][0]
            assert f"of {n_cam:,}" in all_text(at)
            assert len(at.image) == min(24, n_cam)
        elif title == "Meme":
            assert params["meme"] in codes(at)
            n_pred = sql(dashboard_db, "SELECT count(*) FROM predictions WHERE meme_id = ?", [params["meme"]])[0][0]
            answers = next(d.value for d in at.dataframe if "prompt" in d.value.columns)
            assert len(answers) == n_pred
        elif title == "Runs":
            n_runs = sql(dashboard_db, "SELECT count(*) FROM runs")[0][0]
            assert len(at.dataframe[0].value) == n_runs
    assert sha(dashboard_db) == before, "the dashboard changed the cache file"


@pytest.mark.parametrize("kind", ["empty", "missing", "garbage"])
def test_unusable_caches_say_what_is_missing_on_every_page(kind, empty_db, tmp_path, app):
    db = {"empty": empty_db, "missing": tmp_path / "nothing-here.duckdb", "garbage": tmp_path / "garbage.duckdb"}[kind]
    if kind == "garbage":
        db.write_bytes(b"this is not a database\n" * 100)
    at = app(db)
    for page, _, title, _ in PAGES:
        goto(at, page, meme="ab" * 32) if page.endswith("meme.py") else goto(at, page)
        assert at.title[0].value == title
        text = all_text(at)
        if kind == "garbage":
            assert "not a readable VLMemes cache" in text
        else:
            assert any(COMMAND in c for c in codes(at)), f"{title}: no fill command shown"
            if kind == "missing":
                assert "no cache at this path" in text and str(db) in codes(at)
    assert kind != "missing" or not db.exists(), "the dashboard created the missing file"


def test_partial_cache_pages_name_the_missing_stage(dashboard_db, tmp_path, app):
    db = copy(dashboard_db, tmp_path)
    write(db, "DELETE FROM heatmaps")
    at = app(db)
    goto(at, "views/heatmaps.py")
    assert "No heatmaps in this cache yet" in all_text(at)
    assert any(c.endswith("--stages cam") for c in codes(at))
    goto(at, "views/overview.py")            # the rest of the cache still shows
    assert len(at.metric) >= 6


# ======================================================================== errors: filters, search, pages
def test_errors_counts_and_filters_match_sql(dashboard_db, app):
    vlm = next(v for v, stage, _ in prediction_sets(dashboard_db) if stage == "vlm")
    ocr = variant_ids(dashboard_db, "ocr")[-1]
    at = goto(app(dashboard_db), "views/errors.py", set=vlm, ocr=ocr)

    def shown() -> tuple[str, str, str]:
        return metric(at, "False positives"), metric(at, "False negatives"), metric(at, "Unparseable")

    def expected(**kw) -> tuple[str, str, str]:
        return tuple(f"{outcome_count(dashboard_db, vlm, o, ocr=ocr, **kw):,}" for o in ("fp", "fn", "unparsed"))

    assert shown() == expected()
    at.selectbox(key="url:errors:truth").set_value("toxic")
    rerun(at)
    assert shown() == expected(truth="toxic") and shown()[0] == "0"
    assert at.query_params["truth"] == "toxic"
    at.selectbox(key="url:errors:truth").set_value("any")
    at.selectbox(key="url:errors:text").set_value("no")
    rerun(at)
    assert shown() == expected(has_text=False)
    at.selectbox(key="url:errors:text").set_value("any")
    word = sql(dashboard_db, "SELECT split_part(text, ' ', 1) FROM ocr WHERE variant_id = ? AND text <> '' "
               "ORDER BY meme_id LIMIT 1", [ocr])[0][0].lower()
    at.text_input(key="url:errors:q").input(word)
    rerun(at)
    assert shown() == expected(contains=word) and shown() != expected()
    assert at.query_params["q"] == word
    at.text_input(key="url:errors:q").input("%")        # LIKE wildcards are literal characters
    rerun(at)
    assert shown() == expected(contains="%") == ("0", "0", "0")


def test_errors_order_pagination_and_url_state(large_db, app):
    dashboard_db = large_db
    order = {"fp": "p.score DESC, p.meme_id", "fn": "p.score ASC, p.meme_id"}
    cond = {"fp": "p.label = 'toxic' AND m.label = 'non_toxic'", "fn": "p.label = 'non_toxic' AND m.label = 'toxic'"}
    candidates = []
    for vid, _, _ in prediction_sets(dashboard_db):
        for group in ("fp", "fn"):
            ids = [r[0] for r in sql(dashboard_db, f"""
                SELECT p.meme_id FROM predictions p JOIN memes m USING (meme_id)
                WHERE p.variant_id = ? AND NOT m.retired AND {cond[group]} ORDER BY {order[group]}""", [vid])]
            candidates.append((len(ids), vid, group, ids))
    _, vid, group, expected = max(candidates, key=lambda c: c[0])
    if len(expected) <= 12:
        pytest.skip("pagination needs a cache with more than 12 mistakes of one kind")
    at = goto(app(dashboard_db), "views/errors.py", set=vid, group=group, n=12)
    assert links(at) == expected[:12], "most confident mistakes first"
    assert at.selectbox(key="url:errors:n").value == "12"
    at.button(key="url:errors:page:next").click()
    rerun(at)
    assert at.query_params["page"] == "2"
    assert links(at) == expected[12:24]
    last = -(-len(expected) // 12)
    at.number_input(key="url:errors:page").set_value(last)
    rerun(at)
    assert links(at) == expected[12 * (last - 1):]
    assert at.button(key="url:errors:page:next").disabled
    # a link with these params reproduces the view, and changing a filter goes back to page 1
    at2 = goto(app(dashboard_db), "views/errors.py", set=vid, group=group, n=12, page=2)
    assert links(at2) == expected[12:24]
    at2.selectbox(key="url:errors:text").set_value("yes")
    rerun(at2)
    assert "page" not in at2.query_params and at2.number_input(key="url:errors:page").value == 1


def test_unparseable_answers_are_their_own_group(dashboard_db, app):
    vlm = next(v for v, stage, _ in prediction_sets(dashboard_db) if stage == "vlm")
    n = outcome_count(dashboard_db, vlm, "unparsed")
    if n == 0:
        pytest.skip("this cache has no unparseable answers")
    at = goto(app(dashboard_db), "views/errors.py", set=vlm, group="unparsed")
    assert len(links(at)) == min(24, n)
    raw = {r[0] for r in sql(dashboard_db, "SELECT raw_answer FROM predictions WHERE variant_id = ? AND label IS NULL",
                             [vlm])}
    shown = {t.value for t in at.text}
    assert raw & shown, "the raw answers of unparseable replies are shown"


def test_invalid_query_params_fall_back_to_defaults(dashboard_db, app):
    at = goto(app(dashboard_db), "views/errors.py", set="no-such-set", truth="<script>", group="xx", n="999",
              page="-5")
    assert at.selectbox(key="url:errors:set").value == prediction_sets(dashboard_db)[0][0]
    assert at.selectbox(key="url:errors:truth").value == "any"
    assert at.query_params["group"] == "fp" and at.query_params["n"] == "24" and "page" not in at.query_params


# ======================================================================== meme page and links
def test_gallery_link_opens_the_meme_page(dashboard_db, app):
    at = goto(app(dashboard_db), "views/errors.py")
    meme_id = links(at)[0]
    goto(at, "views/meme.py", meme=meme_id)
    assert meme_id in codes(at)
    answers = next(d.value for d in at.dataframe if "prompt" in d.value.columns)
    expected = sql(dashboard_db, "SELECT count(*) FROM predictions WHERE meme_id = ?", [meme_id])[0][0]
    assert len(answers) == expected
    n_ocr = sql(dashboard_db, "SELECT count(*) FROM ocr WHERE meme_id = ?", [meme_id])[0][0]
    assert len(at.tabs) == n_ocr
    raw = [r[0] for r in sql(dashboard_db, "SELECT raw_answer FROM predictions WHERE meme_id = ? AND raw_answer "
                             "IS NOT NULL", [meme_id])]
    assert all(r in codes(at) for r in raw), "every raw VLM answer is shown"
    # a unique prefix finds the meme; unknown and malformed ids say 'not found'
    goto(at, "views/meme.py", meme=meme_id[:12])
    assert meme_id in codes(at)
    for bad in ("0" * 64, "../../etc/passwd", "zz"):
        goto(at, "views/meme.py", meme=bad)
        assert "Meme not found" in all_text(at)
    goto(at, "views/meme.py")
    assert "Open a meme from a gallery" in all_text(at)


def test_meme_page_shows_the_original_only_from_its_recorded_place(dashboard_db, tmp_path, app):
    db = copy(dashboard_db, tmp_path)
    meme_id, rel_path, thumb, root_before = sql(db, """
        SELECT m.meme_id, m.rel_path, m.thumbnail, r.memes_root FROM memes m LEFT JOIN runs r
        ON r.run_id = m.last_seen_run_id WHERE m.label = 'non_toxic' ORDER BY m.meme_id LIMIT 1""")[0]
    original = Path(root_before or "/nonexistent") / rel_path
    data = original.read_bytes() if original.is_file() else thumb   # synthetic caches: thumbnail bytes = file
    if hashlib.sha256(data).hexdigest() != meme_id:
        pytest.skip("no original file with this meme's bytes is available")
    root = tmp_path / "memes"
    (root / rel_path).parent.mkdir(parents=True)
    (root / rel_path).write_bytes(data)
    write(db, "UPDATE runs SET memes_root = ?", [str(root)])
    at = goto(app(db), "views/meme.py", meme=meme_id)
    assert "The original file" in all_text(at)
    (root / rel_path).write_bytes(data + b"changed")           # another file now lies at that path
    goto(at, "views/meme.py", meme=meme_id)
    assert "showing the stored thumbnail" in all_text(at)
    outside = tmp_path / "outside.jpg"                          # a stored path leading out of the folder
    outside.write_bytes(data)
    write(db, "UPDATE memes SET rel_path = '../outside.jpg' WHERE meme_id = ?", [meme_id])
    goto(at, "views/meme.py", meme=meme_id)
    assert "showing the stored thumbnail" in all_text(at)


# ======================================================================== disagreement and heatmaps
def test_disagreement_table_and_cells_match_sql(dashboard_db, app):
    sets = prediction_sets(dashboard_db)
    a, b = sets[0][0], sets[-1][0]
    rows = sql(dashboard_db, """
        SELECT m.label, coalesce(pa.label = m.label, false), coalesce(pb.label = m.label, false)
        FROM predictions pa JOIN predictions pb USING (meme_id) JOIN memes m USING (meme_id)
        WHERE pa.variant_id = ? AND pb.variant_id = ? AND NOT m.retired AND m.label IS NOT NULL""", [a, b])
    cell = {(True, True): "both_right", (True, False): "only_a_right", (False, True): "only_b_right",
            (False, False): "both_wrong"}
    count = {k: 0 for k in cell.values()}
    count_toxic = dict(count)
    for label, ra, rb in rows:
        count[cell[(ra, rb)]] += 1
        if label == "toxic":
            count_toxic[cell[(ra, rb)]] += 1
    at = goto(app(dashboard_db), "views/disagreement.py", a=a, b=b)
    table = at.dataframe[0].value
    assert table.loc["A right", "B right"] == count["both_right"]
    assert table.loc["A right", "B wrong"] == count["only_a_right"]
    assert table.loc["A wrong", "B right"] == count["only_b_right"]
    assert table.loc["A wrong", "B wrong"] == count["both_wrong"]
    assert at.metric[1].value != "—"                             # kappa
    goto(at, "views/disagreement.py", a=a, b=b, cell="both_wrong", truth="toxic")
    assert len(links(at)) == min(24, count_toxic["both_wrong"])
    goto(at, "views/disagreement.py", a=a, b=a)
    assert "same prediction set" in all_text(at)


def test_disagreement_paired_tests_and_holm_match_an_independent_computation(large_db, app):
    """Accuracy and AUROC differences of the chosen pair, and the all-pairs table with Holm-adjusted
    McNemar p-values, against scipy / scikit-learn on rows read with SQL written here."""
    from scipy.stats import binomtest
    from sklearn.metrics import roc_auc_score
    sets = [v for v, _, _ in prediction_sets(large_db)]
    assert len(sets) >= 3
    rows = {v: {m: (t, lab, sc) for m, t, lab, sc in sql(large_db, """
        SELECT p.meme_id, m.label, p.label, p.score FROM predictions p JOIN memes m USING (meme_id)
        WHERE p.variant_id = ? AND NOT m.retired AND m.label IS NOT NULL""", [v])} for v in sets}

    def expected(a, b):
        both = sorted(rows[a].keys() & rows[b].keys())
        only_a = sum(rows[a][m][1] == rows[a][m][0] and rows[b][m][1] != rows[b][m][0] for m in both)
        only_b = sum(rows[b][m][1] == rows[b][m][0] and rows[a][m][1] != rows[a][m][0] for m in both)
        p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else None
        scored = [m for m in both if rows[a][m][2] is not None and rows[b][m][2] is not None]
        y = [rows[a][m][0] == "toxic" for m in scored]
        auc = (roc_auc_score(y, [rows[a][m][2] for m in scored]) - roc_auc_score(y, [rows[b][m][2] for m in scored]))
        return (only_a - only_b) / len(both), p, auc

    a, b = sets[0], sets[2]
    acc, _, auc = expected(a, b)
    at = goto(app(large_db), "views/disagreement.py", a=a, b=b)
    assert metric(at, "Accuracy A − B").startswith(f"{acc:.3f} [")
    assert metric(at, "AUROC A − B").startswith(f"{auc:.3f} [")
    goto(at, "views/disagreement.py", a=b, b=a)                      # the other way round: the sign turns
    assert metric(at, "Accuracy A − B").startswith(f"{-acc:.3f} [")
    assert metric(at, "AUROC A − B").startswith(f"{-auc:.3f} [")

    table = next(d.value for d in at.dataframe if "McNemar p (Holm)" in d.value.columns)
    pairs = [(x, y) for i, x in enumerate(sets) for y in sets[i + 1:]]
    assert len(table) == len(pairs)
    raw = [expected(x, y)[1] for x, y in pairs]
    assert None not in raw
    adjusted = holm_by_hand(raw)
    fmt = (lambda p: f"{p:.3g}" if p >= 0.001 else "< 0.001")
    assert list(table["McNemar p"]) == [fmt(p) for p in raw]
    assert list(table["McNemar p (Holm)"]) == [fmt(p) for p in adjusted]
    assert any(x != y for x, y in zip(raw, adjusted))                # the adjustment really changed something
    assert list(table["accuracy A − B"].str[:6]) == [f"{expected(x, y)[0]:.3f}"[:6] for x, y in pairs]
    assert "Holm-Bonferroni" in all_text(at)


def test_an_interval_that_cannot_be_estimated_says_so(dashboard_db, tmp_path, app):
    """All scores of a set tied: the Overview shows 'not estimable', never a zero-width interval."""
    db = copy(dashboard_db, tmp_path)
    vid = prediction_sets(db)[0][0]
    write(db, "UPDATE predictions SET score = 0.5 WHERE variant_id = ?", [vid])
    at = app(db)
    table = next(d.value for d in at.dataframe if "accuracy" in d.value.columns)
    cells = " ".join(table["auroc"])
    assert "0.500 [not estimable at this n: all scores tied" in cells
    assert "[0.500, 0.500]" not in cells


def test_low_label_mass_is_counted_on_the_overview_and_flagged_on_cards(dashboard_db, tmp_path, app):
    """Tiny random Qwen gives the two label words almost no probability: every VLM score is flagged.
    The counts come from the stored log-probabilities here; a cache written before the label_mass
    column existed (column dropped) shows the same numbers."""
    import math
    sets = prediction_sets(dashboard_db)
    expected = {}
    for vid, stage, _ in sets:
        logits = [json.loads(x) for x, in sql(dashboard_db, """SELECT p.logits FROM predictions p JOIN memes m
            USING (meme_id) WHERE p.variant_id = ? AND NOT m.retired AND m.label IS NOT NULL""", [vid])]
        masses = [math.exp(d["toxic"]) + math.exp(d["non_toxic"]) for d in logits] if stage == "vlm" else []
        expected[vid] = f"{sum(x < 0.5 for x in masses):,} of {len(masses):,}" if masses else "—"
    assert any(v.startswith(("1", "2", "3", "4", "5", "6", "7", "8", "9")) for v in expected.values())
    old = copy(dashboard_db, tmp_path, "old.duckdb")
    write(old, "ALTER TABLE predictions DROP COLUMN label_mass")
    for db in (dashboard_db, old):
        at = app(db)
        table = next(d.value for d in at.dataframe if "accuracy" in d.value.columns)
        assert list(table["low label mass"]) == [expected[v] for v, _, _ in sets]
    vlm = next(v for v, stage, _ in sets if stage == "vlm")
    at = goto(app(dashboard_db), "views/errors.py", set=vlm, group="unparsed")   # random weights: no class stated
    flags = [w.value for w in at.warning if "Low label-token mass" in str(w.value)]
    assert flags and len(flags) == len(links(at))


def test_heatmap_filters_views_and_boxes(dashboard_db, app):
    cam = variant_ids(dashboard_db, "cam")[-1]
    clip = prediction_sets(dashboard_db)[0][0]
    expected = sql(dashboard_db, """SELECT count(*) FROM heatmaps h JOIN memes m USING (meme_id)
        JOIN predictions p ON p.meme_id = h.meme_id AND p.variant_id = ?
        WHERE h.variant_id = ? AND NOT m.retired AND m.label = 'toxic' AND p.label IS DISTINCT FROM m.label""",
                   [clip, cam])[0][0]
    at = goto(app(dashboard_db), "views/heatmaps.py", cam=cam, set=clip, truth="toxic", correct="wrong")
    assert f"of {expected:,}" in all_text(at) and len(at.image) == min(24, expected)
    at.toggle(key="content_warning").set_value(False)
    for view in ("original", "side", "overlay"):
        goto(at, "views/heatmaps.py", cam=cam, set=clip, truth="toxic", correct="wrong", view=view, boxes=1,
             alpha=35)
        assert len(at.image) == min(24, expected)
        assert at.slider(key="url:heatmaps:alpha").value == 35
    goto(at, "views/heatmaps.py", cam=cam, set="none")           # no prediction set: no answer filters
    assert not [s for s in at.selectbox if s.key == "url:heatmaps:correct"]


# ======================================================================== settings, banners, safety
def test_content_warning_blurs_toxic_images_until_clicked(dashboard_db, app):
    clip = prediction_sets(dashboard_db)[0][0]
    at = goto(app(dashboard_db), "views/errors.py", set=clip, group="fn")   # false negatives: toxic memes
    n_cards = len(links(at))
    assert n_cards > 0
    reveal = [b for b in at.button if b.key and b.key.startswith("reveal:")]
    assert len(reveal) == n_cards
    assert all(img.captions == ["content warning: blurred"] for img in at.image)
    reveal[0].click()
    rerun(at)
    assert len([b for b in at.button if b.key and b.key.startswith("reveal:")]) == n_cards - 1
    at.toggle(key="content_warning").set_value(False)
    rerun(at)
    assert not [b for b in at.button if b.key and b.key.startswith("reveal:")]
    goto(at, "views/errors.py", set=clip, group="fp")                      # non-toxic memes are never blurred
    at.toggle(key="content_warning").set_value(True)
    rerun(at)
    assert not [b for b in at.button if b.key and b.key.startswith("reveal:")]


def test_retired_toggle_changes_counts_and_survives_page_changes(dashboard_db, tmp_path, app):
    db = dashboard_db
    if not sql(db, "SELECT count(*) FROM memes WHERE retired")[0][0]:
        db = copy(dashboard_db, tmp_path)
        write(db, "UPDATE memes SET retired = TRUE WHERE meme_id = (SELECT min(meme_id) FROM memes)")
    n_all, n_live = sql(db, "SELECT count(*), count(*) FILTER (NOT retired) FROM memes")[0]
    at = app(db)
    assert metric(at, "Memes") == f"{n_live:,}"
    at.toggle(key="url:retired").set_value(True)
    rerun(at)
    assert metric(at, "Memes") == f"{n_all:,}" and at.query_params["retired"] == "1"
    goto(at, "views/runs.py")                                               # moving on clears the URL...
    assert at.toggle(key="url:retired").value is True and at.query_params["retired"] == "1"


def test_smoke_banner_only_for_smoke_sets(dashboard_db, tmp_path, app):
    at = app(dashboard_db)
    assert any(SMOKE in e.value for e in at.sidebar.error)
    db = copy(dashboard_db, tmp_path)
    for table in ("variants", "predictions", "heatmaps", "runs"):
        write(db, f"UPDATE {table} SET is_smoke = FALSE")
    at = app(db)
    for page in ("views/overview.py", "views/errors.py", "views/heatmaps.py"):
        goto(at, page)
        assert not any(SMOKE in e.value for e in at.sidebar.error) and SMOKE not in all_text(at)


def test_model_and_ocr_text_are_shown_as_plain_text(dashboard_db, tmp_path, app):
    db = copy(dashboard_db, tmp_path)
    hostile = "<img src=x onerror=alert(1)> **bold** [link](javascript:alert(2)) :red[x] $x^2$"
    vid = prediction_sets(db)[0][0]
    meme_id = sql(db, "SELECT p.meme_id FROM predictions p JOIN memes m USING (meme_id) WHERE p.variant_id = ? "
                  "AND p.label = 'toxic' AND m.label = 'non_toxic' AND NOT m.retired ORDER BY p.score DESC LIMIT 1",
                  [vid])[0][0]
    write(db, "UPDATE predictions SET explanation = ? WHERE meme_id = ? AND variant_id = ?", [hostile, meme_id, vid])
    write(db, "UPDATE ocr SET text = ? WHERE meme_id = ?", [hostile, meme_id])
    at = goto(app(db), "views/errors.py", set=vid, q="onerror")
    assert links(at) == [meme_id]
    assert [t.value for t in at.text].count(hostile) == 2          # OCR text and explanation, verbatim
    for md in at.markdown:
        assert "onerror" not in md.value and not md.allow_html
    goto(at, "views/meme.py", meme=meme_id)
    assert hostile in [t.value for t in at.text]
    for md in at.markdown:
        assert "onerror" not in md.value and not md.allow_html


def test_busy_cache_says_retrying_and_recovers(dashboard_db, tmp_path, app, monkeypatch):
    db = copy(dashboard_db, tmp_path, "busy.duckdb")      # a fresh path: nothing of it is memoised yet
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]); c.execute('BEGIN'); "
                               "print('locked', flush=True); sys.stdin.read()", str(db)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        monkeypatch.setenv("VLMEMES_DB_RETRY_SECONDS", "0.3")
        monkeypatch.setenv("VLMEMES_BUSY_RETRIES", "0")
        at = app(db)
        assert "being written" in all_text(at)
        assert "lock" not in all_text(at).lower()
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    at.button(key="busy:retry").click()
    rerun(at)
    assert "being written" not in all_text(at) and metric(at, "Memes")


def test_db_path_comes_from_argv_then_env_then_default():
    from dashboard.db import resolve_db_path
    from pipeline.config import DEFAULT_DB
    assert resolve_db_path(["--db", "a.duckdb"], {"VLMEMES_DB": "b.duckdb"}) == Path("a.duckdb")
    assert resolve_db_path(["--other", "x"], {"VLMEMES_DB": "b.duckdb"}) == Path("b.duckdb")
    assert resolve_db_path([], {}) == Path(DEFAULT_DB)
    assert resolve_db_path(["--d", "x"], {}) == Path(DEFAULT_DB), "no abbreviations of --db"


def test_every_chart_is_valid_vega_lite(dashboard_db, app, monkeypatch):
    """Pages memoise chart specs built without schema validation; here every chart they draw is validated."""
    from dashboard import charts
    drawn = []

    def validated_spec(name, args, language="en"):
        drawn.append(name)
        return charts.BUILDERS[name](*args).to_dict()          # raises on an invalid Vega-Lite spec

    monkeypatch.setattr(charts, "spec", validated_spec)
    at = app(dashboard_db)
    goto(at, "views/disagreement.py")
    goto(at, "views/calibration.py")
    goto(at, "views/faithfulness.py")
    goto(at, "views/map.py")
    assert set(drawn) == set(charts.BUILDERS)


def test_synth_db_fills_every_table_consistently(tmp_path):
    """The synthetic cache the dashboard tests and benchmarks use: shapes as the pipeline writes them."""
    import io

    from PIL import Image

    from pipeline.config import MODEL_MAX_SIDE
    from pipeline.devtools.synth_db import main, synth_db
    db = synth_db(tmp_path / "s.duckdb", 60, seed=5)
    counts = {t: sql(db, f"SELECT count(*) FROM {t}")[0][0]
              for t in ("memes", "meme_paths", "variants", "ocr", "predictions", "heatmaps", "runs", "failures")}
    assert counts["memes"] == 60 and all(counts.values()), counts
    assert sql(db, "SELECT stage, count(*) FROM variants WHERE is_smoke GROUP BY stage ORDER BY stage") == \
        [("cam", 2), ("clip", 4), ("embedding", 1), ("faithfulness", 6), ("ocr", 2), ("views", 2), ("vlm", 4)]
    assert sql(db, "SELECT count(*) FROM variants WHERE NOT is_smoke")[0][0] == 0
    for table in ("ocr", "predictions", "heatmaps", "embeddings"):   # no orphans: every row has its meme and variant
        assert sql(db, f"SELECT count(*) FROM {table} t LEFT JOIN memes m USING (meme_id) "
                       f"LEFT JOIN variants v USING (variant_id) WHERE m.meme_id IS NULL OR v.variant_id IS NULL")[0][0] == 0
    assert sql(db, "SELECT count(*) FROM memes WHERE (label IS NULL) <> label_conflict")[0][0] == 0
    for meme_id, thumb, w, h in sql(db, "SELECT meme_id, thumbnail, width, height FROM memes LIMIT 5"):
        assert hashlib.sha256(thumb).hexdigest() == meme_id
        im = Image.open(io.BytesIO(thumb))
        assert im.format == "JPEG" and abs(im.size[0] / im.size[1] - w / h) < 0.05
    scale = min(1.0, MODEL_MAX_SIDE / max(w, h))
    for (boxes,) in sql(db, "SELECT o.boxes FROM ocr o WHERE o.meme_id = ?", [meme_id]):
        for b in json.loads(boxes):
            x0, y0, x1, y1 = b["box"]
            assert 0 <= x0 < x1 <= w * scale + 1 and 0 <= y0 < y1 <= h * scale + 1
    with pytest.raises(FileExistsError):
        synth_db(db, 10)
    assert main(["--n", "10", "--db", str(db)]) == 2
    assert main(["--n", "10", "--db", str(db), "--overwrite"]) == 0
    assert sql(db, "SELECT count(*) FROM memes")[0][0] == 10
