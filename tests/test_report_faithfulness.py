"""The report's faithfulness parts (issue 16): unparseable answers by kind per VLM set, and the Faithfulness
section (CAM mass on the caption, explanation quotes and possible contradictions), against plain SQL counts
on a real cache (synth-db: measures made with pipeline.faithfulness), escaped model text, and the note of a
cache without measures."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import duckdb
import pytest

from pipeline import export

KINDS = ("refusal", "hedge", "template echo", "empty or cut off", "other")


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    from pipeline.devtools.synth_db import synth_db
    return synth_db(tmp_path_factory.mktemp("faith-report") / "synth.duckdb", n=150, seed=5)


def _sql(db: Path, q: str, params=None) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(q, params or []).fetchall()


def _html(db: Path, out: Path, **kw) -> str:
    return export.export_html(db, out, images=False, **kw).read_text(encoding="utf-8")


def _section(html: str, element_id: str) -> str:
    start = html.index(f'id="{element_id}"')
    return html[start:html.index("</section>", start)]


def test_unparseable_answers_by_kind_equal_a_sql_count(cache, tmp_path):
    html = _html(cache, tmp_path / "r.html")
    want = {(v, k): n for v, k, n in _sql(cache, """
        SELECT f.source_variant, f.failure_kind, count(*) FROM faithfulness f JOIN memes m USING (meme_id)
        WHERE f.failure_kind IS NOT NULL AND m.label IS NOT NULL AND NOT m.retired GROUP BY ALL""")}
    unparsed = dict(_sql(cache, """SELECT p.variant_id, count(*) FROM predictions p JOIN memes m USING (meme_id)
        JOIN variants v USING (variant_id) WHERE p.stage = 'vlm' AND p.label IS NULL AND m.label IS NOT NULL
        AND NOT m.retired AND json_extract_string(v.config, '$.meme_view') IS NULL GROUP BY ALL"""))
    assert sum(want.values()) > 0 and unparsed
    table = html[html.index('class="failure-kinds"'):]
    table = table[:table.index("</table>")]
    rows = dict(re.findall(r'<tr data-variant-id="(\w+)">(.*?)</tr>', table, re.S))
    assert set(rows) == set(unparsed)
    for vid, row in rows.items():
        cells = dict(re.findall(r'data-kind="([^"]+)">(\d+)<', row))
        assert int(cells["unparseable"]) == unparsed[vid]
        for k in KINDS:
            assert int(cells[k]) == want.get((vid, k), 0), (vid, k)
        assert int(cells["not measured"]) == unparsed[vid] - sum(want.get((vid, k), 0) for k in KINDS)


def test_cam_and_answer_tables_equal_sql_counts(cache, tmp_path):
    html = _html(cache, tmp_path / "r.html")
    for vid, in _sql(cache, "SELECT variant_id FROM variants WHERE stage = 'cam'"):
        n, above = _sql(cache, """SELECT count(*), count(*) FILTER (caption_mass > caption_area) FROM faithfulness f
            JOIN memes m USING (meme_id) WHERE f.source_variant = ? AND f.has_caption AND f.caption_area > 0
            AND f.caption_mass IS NOT NULL AND m.label IS NOT NULL AND NOT m.retired""", [vid])[0]
        row = re.search(r'<tr data-group="all">(.*?)</tr>', _section(html, f"faith-cam-{vid}"), re.S).group(1)
        assert re.search(r'data-cell="n">(\d+)<', row).group(1) == str(n) and n > 20
        assert f"{above}/{n}" in row
    vlm = _sql(cache, "SELECT variant_id FROM variants WHERE stage = 'vlm' AND json_extract_string(config, "
                      "'$.meme_view') IS NULL ORDER BY name")
    for vid, in vlm:
        quotes, with_caption, contra, with_class = _sql(cache, """
            SELECT count(*) FILTER (f.quotes_caption), count(*) FILTER (f.has_caption),
                   count(*) FILTER (f.contradiction), count(*) FILTER (p.label IS NOT NULL)
            FROM faithfulness f JOIN memes m USING (meme_id)
            JOIN predictions p ON p.meme_id = f.meme_id AND p.variant_id = f.source_variant
            WHERE f.source_variant = ? AND m.label IS NOT NULL AND NOT m.retired""", [vid])[0]
        row = re.search(r'<tr data-group="all">(.*?)</tr>', _section(html, f"faith-answer-{vid}"), re.S).group(1)
        assert f"{quotes}/{with_caption}" in row and f"{contra}/{with_class}" in row


def test_a_flagged_explanation_is_shown_escaped(cache, tmp_path):
    db = tmp_path / "hostile.duckdb"
    shutil.copy(cache, db)
    vid = _sql(db, "SELECT variant_id FROM variants WHERE stage = 'vlm' AND name = 'v1'")[0][0]
    meme = _sql(db, "SELECT f.meme_id FROM faithfulness f JOIN memes m USING (meme_id) JOIN predictions p "
                    "ON p.meme_id = f.meme_id AND p.variant_id = f.source_variant WHERE f.source_variant = ? "
                    "AND m.label IS NOT NULL AND NOT m.retired AND p.label = 'toxic' LIMIT 1", [vid])[0][0]
    with duckdb.connect(str(db)) as con:
        con.execute("UPDATE predictions SET explanation = '<script>alert(1)</script> Мем безобидный.' "
                    "WHERE meme_id = ? AND variant_id = ?", [meme, vid])
        con.execute("UPDATE faithfulness SET contradiction = TRUE, contradiction_cue = '<b>безобидный</b>' "
                    "WHERE meme_id = ? AND source_variant = ?", [meme, vid])
    html = _html(db, tmp_path / "r.html")
    part = _section(html, f"faith-answer-{vid}")
    assert f'data-meme-id="{meme}"' in part
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in part
    assert "<b>безобидный</b>" not in part and "&lt;b&gt;безобидный" in part


def test_a_cache_without_measures_says_how_to_fill_it(cache, tmp_path):
    db = tmp_path / "none.duckdb"
    shutil.copy(cache, db)
    with duckdb.connect(str(db)) as con:
        con.execute("DELETE FROM faithfulness")
        con.execute("DELETE FROM variants WHERE stage = 'faithfulness'")
    for lang in ("en", "ru"):
        html = _html(db, tmp_path / f"r-{lang}.html", lang=lang)
        note = re.search(r'<p id="faithfulness-none">(.*?)</p>', html, re.S).group(1)
        assert "--stages ocr,cam,vlm,faithfulness" in note
        for row in re.findall(r'<tr data-variant-id="\w+">(.*?)</tr>', html, re.S):
            if 'data-kind="not measured"' in row:       # nothing measured: every unparseable answer is "not yet"
                cells = dict(re.findall(r'data-kind="([^"]+)">(\d+)<', row))
                assert cells["not measured"] == cells["unparseable"] != "0"
