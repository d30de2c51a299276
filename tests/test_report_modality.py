"""The report's Modality section (issue 16) and the derived-view sets in the report.

On the synthetic cache (pipeline/devtools/synth_db.py: derived sets of the first CLIP and the first VLM set,
their views rows, a retired meme): every number the section shows (coverage, the drivers' shares and k/n, the
three-way table of decisions by true label, the paired view tests and their readings) equals what is counted
here with plain SQL and Python from the `variants`, `memes`, `predictions` and `ocr` tables; retired memes are
left out; the derived sets are not prediction sets of their own (no section, chart row, pair, gallery, name);
the --models filter applies; model text stays escaped; and a cache without derived views (the synthetic one
with them deleted, and the real pipeline's smoke cache) gets the note with the command that computes them.
"""
from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path

import duckdb
import pytest
from markupsafe import escape
from scipy.stats import binomtest

from pipeline import export, i18n, modality
from pipeline.views import has_caption

VIEWS = ("full", "caption-removed", "caption-only")
TRUTHS = ("toxic", "non_toxic")


# ============================================================================ counted here, independently
def _sql(db: Path, query: str, params: list | None = None) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(query, params or []).fetchall()
    finally:
        con.close()


def derived_sets(db: Path) -> dict[str, dict]:
    """{full set id: {"caption-removed": id, "caption-only": id, "ocr": OCR variant id}} from the variants' configs,
    only derived sets that have predictions (as the report's source query asks)."""
    out: dict[str, dict] = {}
    for vid, of, view, ocr in _sql(db, """
            SELECT variant_id, json_extract_string(config, '$.of'), json_extract_string(config, '$.meme_view'),
                   json_extract_string(config, '$.ocr_source')
            FROM variants WHERE stage IN ('clip', 'vlm') AND json_extract_string(config, '$.meme_view') IS NOT NULL
              AND variant_id IN (SELECT variant_id FROM predictions)"""):
        out.setdefault(of, {})[view] = vid
        out[of]["ocr"] = ocr
    return {k: v for k, v in out.items() if "caption-removed" in v and "caption-only" in v}


def full_sets(db: Path) -> set[str]:
    return {v for (v,) in _sql(db, "SELECT variant_id FROM variants WHERE stage IN ('clip', 'vlm') "
                                   "AND json_extract_string(config, '$.meme_view') IS NULL")}


def expected(db: Path, full: str, ids: dict, include_retired: bool = False) -> dict:
    """The section's numbers for one set, from the raw rows: answers per meme, joined in Python."""
    truth = {m: lab for m, lab, retired in _sql(db, "SELECT meme_id, label, retired FROM memes")
             if lab is not None and (include_retired or not retired)}
    answers = {}
    for view, vid in (("full", full), ("caption-removed", ids["caption-removed"]), ("caption-only", ids["caption-only"])):
        answers[view] = dict(_sql(db, "SELECT meme_id, label FROM predictions WHERE variant_id = ?", [vid]))
    text = dict(_sql(db, "SELECT meme_id, text FROM ocr WHERE variant_id = ?", [ids["ocr"]]))
    answered = [m for m in answers["full"] if m in truth]
    three = [m for m in answered if all(m in answers[v] for v in VIEWS[1:])]
    no_text = [m for m in answered if not has_caption(text.get(m))]
    cells = Counter((truth[m], *(answers[v][m] for v in VIEWS)) for m in three)

    drivers = {}
    for t in ("any", *TRUTHS):
        called = [m for m in three if answers["full"][m] == "toxic" and t in ("any", truth[m])]
        image = [m for m in called if answers["caption-removed"][m] == "toxic"]
        text_ = [m for m in called if answers["caption-removed"][m] != "toxic" and answers["caption-only"][m] == "toxic"]
        drivers[t] = {"image-driven": (len(image), len(called)), "text-driven": (len(text_), len(called)),
                      "needs both": (len(called) - len(image) - len(text_), len(called))}

    tests = []
    for a, b in (("full", "caption-removed"), ("full", "caption-only"), ("caption-removed", "caption-only")):
        only_a = sum(answers[a][m] == "toxic" and answers[b][m] != "toxic" for m in three)
        only_b = sum(answers[b][m] == "toxic" and answers[a][m] != "toxic" for m in three)
        p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else None
        tests.append(dict(a=a, b=b, n=len(three), toxic_a=sum(answers[a][m] == "toxic" for m in three),
                          toxic_b=sum(answers[b][m] == "toxic" for m in three), only_a=only_a, only_b=only_b,
                          decision_p=p))
    # Holm (step-down) over the three pairs, by hand
    ranked = sorted((t for t in tests if t["decision_p"] is not None), key=lambda t: t["decision_p"])
    running = 0.0
    for i, t in enumerate(ranked):
        running = max(running, min(1.0, (len(ranked) - i) * t["decision_p"]))
        t["decision_p_holm"] = running
    for t in tests:
        t.setdefault("decision_p_holm", None)
    return dict(coverage={"full": len(answered), "three": len(three), "no_text": len(no_text),
                          "pending": len(answered) - len(three) - len(no_text)},
                cells=cells, drivers=drivers, tests=tests)


# ============================================================================ read back from the HTML
def section(html: str, full: str) -> str:
    m = re.search(rf'<section class="modality" id="modality-{full}-[^"]*"(.*?)</section>', html, re.S)
    assert m, f"no Modality section for {full}"
    return m.group(1)


def table(html: str, cls: str) -> str:
    m = re.search(rf'<table class="{cls}">(.*?)</table>', html, re.S)
    assert m, cls
    return m.group(1)


def shown(html: str, full: str) -> dict:
    sec = section(html, full)
    coverage = {k: int(v) for k, v in re.findall(r'data-count="(\w+)">(\d+)<', table(sec, "modality-coverage"))}
    cells = Counter()
    for answers, row in re.findall(r'<tr data-answers="([^"]+)">(.*?)</tr>', table(sec, "modality-cells"), re.S):
        combo = tuple(None if a == "none" else a for a in answers.split("|"))
        by_truth = dict(re.findall(r'data-truth="(\w+)">(\d+)<', row))
        assert int(by_truth["any"]) == int(by_truth["toxic"]) + int(by_truth["non_toxic"])
        for t in TRUTHS:
            if int(by_truth[t]):
                cells[(t, *combo)] = int(by_truth[t])
    drivers = {}
    for t, row in re.findall(r'<tr data-truth="(\w+)">(.*?)</tr>', table(sec, "modality-drivers"), re.S):
        drivers[t] = {}
        for key, k, n, text in re.findall(r'data-driver="([^"]+)" data-k="(\d+)" data-n="(\d+)">([^<]*)<', row):
            k, n = int(k), int(n)
            assert text.strip().endswith(f"· {k}/{n}")                   # what is written, not just the attribute
            if n:
                assert text.strip().startswith(f"{k / n:.2f} [")
            drivers[t][key] = (k, n)
    tests = []
    for views, row in re.findall(r'<tr data-views="([^"]+)">(.*?)</tr>', table(sec, "modality-tests"), re.S):
        a, b = views.split("|")
        t = dict(a=a, b=b, **{k: int(v) for k, v in re.findall(r'data-cell="(\w+)">(\d+)<', row)})
        t.update({k: v for k, v in re.findall(r'data-p="([\w-]+)">([^<]*)<', row)})
        tests.append(t)
    readings = dict(re.findall(r'<p class="reading" data-views="([^"]+)">([^<]*)</p>', sec))
    return dict(coverage=coverage, cells=cells, drivers=drivers, tests=tests, readings=readings)


def pval(p: float | None) -> str:
    return "–" if p is None else (f"{p:.3g}" if p >= 0.001 else "< 0.001")


def check_section(db: Path, html: str, lang: str, full: str, ids: dict) -> dict:
    want, got = expected(db, full, ids), shown(html, full)
    assert got["coverage"] == want["coverage"]
    assert got["cells"] == want["cells"] and sum(want["cells"].values()) == want["coverage"]["three"] > 0
    assert got["drivers"] == want["drivers"]
    assert [(t["a"], t["b"]) for t in got["tests"]] == [(t["a"], t["b"]) for t in want["tests"]]
    for g, w in zip(got["tests"], want["tests"]):
        assert {k: g[k] for k in ("n", "toxic_a", "toxic_b", "only_a", "only_b")} == \
               {k: w[k] for k in ("n", "toxic_a", "toxic_b", "only_a", "only_b")}
        assert g["decision"] == pval(w["decision_p"]) and g["decision-holm"] == pval(w["decision_p_holm"])
        # the reading is reading_text of these numbers, in the report's language, escaped
        assert got["readings"][f"{w['a']}|{w['b']}"] == str(escape(modality.reading_text(w, lang)))
    return want


# ============================================================================ fixtures
@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    from pipeline.devtools.synth_db import synth_db
    return synth_db(tmp_path_factory.mktemp("modality") / "synth.duckdb", n=60, seed=3)


@pytest.fixture(scope="module")
def synth_html(synth) -> dict[str, str]:
    return {lang: export.render_html(export.build_report(synth, images=False, lang=lang))[0] for lang in ("en", "ru")}


def _copy(src: Path, dst: Path) -> Path:
    shutil.copy(src, dst)
    return dst


# ============================================================================ tests
def test_the_fixture_has_what_the_section_needs(synth):
    sets = derived_sets(synth)
    assert len(sets) == 2                             # the first CLIP and the first VLM set
    stages = dict(_sql(synth, "SELECT variant_id, stage FROM variants"))
    assert sorted(stages[f] for f in sets) == ["clip", "vlm"]
    assert _sql(synth, "SELECT count(*) FROM memes WHERE retired")[0][0] >= 1


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_section_numbers_equal_counts_from_the_predictions(synth, synth_html, lang):
    html = synth_html[lang]
    sets = derived_sets(synth)
    assert len(re.findall(r'<section class="modality" ', html)) == len(sets)
    for full, ids in sets.items():
        want = check_section(synth, html, lang, full, ids)
        assert want["coverage"]["no_text"] > 0                     # the synthetic cache has memes without text
        assert any(n for k, n in want["drivers"]["any"].values())


def test_section_matches_the_pipeline_functions_the_page_uses(synth):
    """build_report's numbers are the Modality page's: queries.modality_* and pipeline.modality.summary."""
    from pipeline import queries
    from pipeline.store import connect
    report = export.build_report(synth, images=False)
    con = connect(synth, read_only=True)
    try:
        for m in report["modality"]["sets"]:
            ids = (m["set"].variant_id, m["removed_id"], m["only_id"])
            summary = modality.summary(modality.three_way_table(queries.modality_counts(con, *ids, False)))
            assert [{k: v for k, v in t.items() if k != "reading_shown"} for t in m["tests"]] == summary["tests"]
            assert m["n"] == summary["n"]
            assert [(c["key"], c["k"], c["n"]) for row in m["drivers"] for c in row["shares"]] == \
                   [(k, round(e.value * e.n) if e.value is not None else 0, e.n)
                    for t in (None, "toxic", "non_toxic") for k, e in summary["drivers"][t].items()]
    finally:
        con.close()


def test_retired_memes_are_left_out(synth, tmp_path):
    """Retire memes of the three-way table (toxic on the full meme): the section's numbers drop with them."""
    db = _copy(synth, tmp_path / "retired.duckdb")
    sets = derived_sets(db)
    clip = next(f for f in sets if _sql(db, "SELECT stage FROM variants WHERE variant_id = ?", [f])[0][0] == "clip")
    ids = sets[clip]
    victims = [m for (m,) in _sql(db, """
        SELECT f.meme_id FROM predictions f
        JOIN predictions r ON r.meme_id = f.meme_id AND r.variant_id = ?
        JOIN predictions o ON o.meme_id = f.meme_id AND o.variant_id = ?
        JOIN memes m ON m.meme_id = f.meme_id
        WHERE f.variant_id = ? AND f.label = 'toxic' AND NOT m.retired ORDER BY f.meme_id LIMIT 4""",
                                 [ids["caption-removed"], ids["caption-only"], clip])]
    assert len(victims) == 4
    con = duckdb.connect(str(db))
    con.execute("UPDATE memes SET retired = TRUE WHERE meme_id IN (SELECT unnest(?))", [victims])
    con.close()
    before, after = expected(db, clip, ids, include_retired=True), expected(db, clip, ids)
    assert after["drivers"]["any"]["image-driven"][1] == before["drivers"]["any"]["image-driven"][1] - 4
    html = export.render_html(export.build_report(db, images=False))[0]
    for full, ids in sets.items():
        check_section(db, html, "en", full, ids)


def test_derived_sets_are_not_prediction_sets_of_their_own(synth, synth_html):
    sets = derived_sets(synth)
    derived = {ids[v] for ids in sets.values() for v in ("caption-removed", "caption-only")}
    names = {n for (n,) in _sql(synth, "SELECT name FROM variants WHERE variant_id IN (SELECT unnest(?))",
                                [sorted(derived)])}
    assert len(derived) == 4 and all("/caption-" in n for n in names)
    report = export.build_report(synth, images=False)
    shown_ids = [sr["set"].variant_id for sr in report["sets"]]
    assert set(shown_ids) == full_sets(synth) and len(shown_ids) == 4
    assert not {v for p in report["pairs"] for v in (p["a"].variant_id, p["b"].variant_id)} & derived
    assert report["n_pairs"] == 6
    for sr in report["sets"]:                        # the chart shows every set's label whole (none cut short)
        assert str(escape(sr["set"].label)) in str(report["metrics_svg"])
    for html in synth_html.values():
        assert len(re.findall(r'<section class="pred-set" ', html)) == 4
        for vid in derived:
            for marker in (f'id="set-{vid}"', f'id="errors-{vid}"', f'data-set="{vid}"', f'href="#set-{vid}"'):
                assert marker not in html
        pairs = re.findall(r'(?:id="(?:pair|disagree)-|data-pair=")([0-9a-f]+)-([0-9a-f]+)"', html)
        assert len(pairs) == 3 * 6 and not {v for p in pairs for v in p} & derived
        for name in names:                           # nowhere: not in a heading, a chart, a pair or a card
            assert name not in html
    # a filter naming only derived sets matches no prediction set
    with pytest.raises(export.ExportError, match="matches no prediction set"):
        export.build_report(synth, models=["caption-only"], images=False)


def test_models_filter_applies_to_the_section(synth):
    sets = derived_sets(synth)
    stage = dict(_sql(synth, "SELECT variant_id, stage FROM variants"))
    for needle, want_stage in (("clip", "clip"), ("Qwen", "vlm")):
        report = export.build_report(synth, models=[needle], images=False)
        assert [m["set"].variant_id for m in report["modality"]["sets"]] == [f for f in sets if stage[f] == want_stage]
        html = export.render_html(report)[0]
        for full, ids in sets.items():
            if stage[full] == want_stage:
                check_section(synth, html, "en", full, ids)
            else:
                assert f'id="modality-{full}-' not in html
    report = export.build_report(synth, models=["v2"], images=False)          # sets without derived views
    assert report["modality"]["sets"] == [] and report["modality"]["available"] == 2
    html = export.render_html(report)[0]
    assert '<p id="modality-none">' in html and "No prediction set matching the filter" in html
    assert "--views all" not in html


def _how_to_compute(html: str, db_name: str, lang: str) -> None:
    m = re.search(r'<p id="modality-none">(.*?)</p>', html, re.S)
    assert m, "no note on how to compute the derived views"
    assert f"<code>vlmemes precompute --db {db_name} --stages ocr,views,clip,vlm --views all</code>" in m.group(1)
    intro = i18n.translate("No prediction set has answers on the derived views yet. They are computed by:", lang)
    assert intro in m.group(1)
    assert '<section class="modality" ' not in html and 'class="modality-' not in html


def test_cache_without_derived_views_says_how_to_compute_them(synth, tmp_path):
    db = _copy(synth, tmp_path / "no-views.duckdb")
    con = duckdb.connect(str(db))
    derived = [v for (v,) in con.execute("SELECT variant_id FROM variants WHERE "
                                         "json_extract_string(config, '$.meme_view') IS NOT NULL").fetchall()]
    con.execute("DELETE FROM predictions WHERE variant_id IN (SELECT unnest(?))", [derived])
    con.close()
    for lang in ("en", "ru"):
        report = export.build_report(db, images=False, lang=lang)
        assert report["modality"] == {"sets": [], "available": 0} and len(report["sets"]) == 4
        _how_to_compute(export.render_html(report)[0], db.name, lang)


def test_real_pipeline_cache_without_views_says_how_to_compute_them(smoke_db, tmp_path):
    """The real pipeline's cache (precompute without --views): no derived set, the note, nothing missing in Russian."""
    assert not derived_sets(smoke_db)
    before = set(i18n.MISSING)
    for lang in ("en", "ru"):
        html = export.export_html(smoke_db, tmp_path / f"r-{lang}.html", lang=lang).read_text(encoding="utf-8")
        _how_to_compute(html, smoke_db.name, lang)
    assert set(i18n.MISSING) == before


def test_russian_section_is_russian_with_the_same_numbers(synth_html):
    en, ru = synth_html["en"], synth_html["ru"]
    assert 'href="#modality">Modality: caption or picture?' in en
    assert 'href="#modality">Модальность: подпись или картинка?' in ru
    for cls in ("modality-coverage", "modality-drivers", "modality-cells", "modality-tests"):
        assert re.findall(r"\d+(?:\.\d+)?", table(en, cls)) == re.findall(r"\d+(?:\.\d+)?", table(ru, cls))
    words = re.sub(r"<[^>]+>", " ", table(ru, "modality-drivers") + table(ru, "modality-cells"))   # text, no tags
    assert "за счёт картинки" in words and "нетоксичный" in words
    assert not re.search(r"image|text|driven|both|toxic", words)


def test_model_text_in_the_section_is_escaped(synth, tmp_path):
    db = _copy(synth, tmp_path / "hostile.duckdb")
    full = next(iter(derived_sets(db)))
    ocr = derived_sets(db)[full]["ocr"]
    con = duckdb.connect(str(db))
    con.execute("UPDATE variants SET name = '<script>alert(1)</script>' WHERE variant_id = ?", [full])
    con.execute("UPDATE variants SET name = '<img src=x onerror=alert(2)>' WHERE variant_id = ?", [ocr])
    con.close()
    html = export.render_html(export.build_report(db, images=False))[0]
    sec = section(html, full)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in sec and "&lt;img src=x onerror=alert(2)&gt;" in sec
    assert "<script>" not in html and "<img src=x" not in html
