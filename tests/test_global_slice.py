"""The slice of every page (issue 17, part 6) and the template-cluster slice, on a real synthetic cache.

The sidebar's ?slice=KEY=VALUE narrows every page to the memes of one slice value: the reader's cursor has
temporary views of the meme tables (pipeline.store.slice_views) and the file is never written. Expected numbers
here come from plain SQL over the file, not from pipeline/queries.py."""
from __future__ import annotations

import duckdb
import numpy as np
import pytest
from dashboard_helpers import all_text, app_opener, build_synth, goto, sql

from pipeline import embedding_map
from pipeline import queries as q
from pipeline import slices as sl
from pipeline.store import SLICED_TABLES, slice_views


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return build_synth(tmp_path_factory.mktemp("global-slice") / "s.duckdb", n=300, seed=5)


def default_ocr(db) -> str:
    return sql(db, "SELECT variant_id FROM ocr GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1")[0][0]


def test_templates_number_the_planted_clusters_by_size_and_leave_singletons_out():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 64))
    rows, truth = [], []
    for c, size in ((1, 2), (0, 5), (2, 3)):          # cluster sizes 2, 5, 3 (first rows: the smallest)
        for _ in range(size):
            rows.append(centres[c] + 0.05 * rng.normal(size=64))
            truth.append(c)
    rows += list(rng.normal(size=(6, 64)))          # unrelated: in no cluster
    truth += [-1] * 6
    t = embedding_map.templates(np.array(rows, dtype=np.float32))
    by_cluster = {c: set(t[np.array(truth) == c]) for c in (0, 1, 2, -1)}
    assert by_cluster == {0: {1}, 2: {2}, 1: {3}, -1: {0}}       # largest = template 1, singletons 0


def test_the_template_slice_counts_the_stored_clusters(synth):
    variant = sql(synth, "SELECT variant_id FROM maps ORDER BY 1 LIMIT 1")[0][0]
    stored = dict(sql(synth, "SELECT coalesce('template ' || template, 'no template'), count(*) FROM map_points "
                             "JOIN memes USING (meme_key) WHERE variant_id = ? AND NOT retired GROUP BY 1", [variant]))
    assert sum(v for k, v in stored.items() if k != "no template") >= 10          # synth plants clusters
    with duckdb.connect(str(synth), read_only=True) as con:
        values = q.slice_value_counts(con, "template", variant, False)
        assert q.slice_sources(con)["map"] == variant
    counts = dict(values)
    not_embedded = counts.pop(sl.NOT_EMBEDDED, 0)
    assert counts == stored
    assert not_embedded == sql(synth, "SELECT count(*) FROM memes m WHERE NOT retired AND meme_key NOT IN "
                                      "(SELECT meme_key FROM map_points WHERE variant_id = ?)", [variant])[0][0]
    assert [v for v, _ in values][:3] == ["template 1", "template 2", "template 3"]    # natural order, not 1, 10, 11
    assert sl.value_text("template 12", lambda text, **f: text.format(**f)) == "template 12"


def test_slice_views_keep_only_the_slice_in_every_meme_table_and_write_nothing(synth):
    before = synth.stat().st_mtime_ns
    con = duckdb.connect(str(synth), read_only=True)
    try:
        keys = q.slice_meme_keys(con, "format", "PNG", None)
        png = {k for (k,) in sql(synth, "SELECT meme_key FROM memes WHERE format = 'PNG'")}
        assert set(keys.column("meme_key").to_pylist()) == png and png
        stored_current = q.summary_current(con)
        cur = con.cursor()
        slice_views(cur, keys)
        for table in SLICED_TABLES:
            want = sql(synth, f"SELECT count(*) FROM {table} WHERE meme_key IN "
                              "(SELECT meme_key FROM memes WHERE format = 'PNG')")[0][0]
            assert cur.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0] == want, table
        assert con.execute("SELECT count(*) FROM memes").fetchall()[0][0] == sql(synth, "SELECT count(*) FROM memes")[0][0]
        # the stored metrics describe all memes: within a slice they are not current, so pages compute them
        assert stored_current and not q.summary_current(cur)
        # a slice that holds every meme reads the stored ones again (the same data, the same fingerprint)
        everyone = con.cursor()
        slice_views(everyone, con.sql("SELECT meme_key FROM memes").to_arrow_table())
        assert q.summary_current(everyone)
    finally:
        con.close()
    assert synth.stat().st_mtime_ns == before


def test_every_page_reads_the_slice_in_the_url_and_keeps_it_across_pages(synth, monkeypatch):
    at = app_opener(monkeypatch)(synth)
    picker = at.sidebar.selectbox(key="url:slice")
    png = sql(synth, "SELECT count(*) FROM memes WHERE format = 'PNG' AND NOT retired")[0][0]
    assert picker.value == "all" and f"format: PNG · {png:,}" in picker.options
    assert any(o.startswith("template cluster: template 1 · ") for o in picker.options)
    ocr = default_ocr(synth)
    sets = [r[0] for r in sql(synth, "SELECT variant_id FROM variants WHERE stage IN ('clip', 'vlm') AND "
                                     "json_extract_string(config, '$.meme_view') IS NULL ORDER BY variant_id")]
    # the Slices page split by format, within the slice "has text": its counts are those of text memes only
    goto(at, "views/slices.py", slice="has_text=text", by="format")
    assert "Slice: has text: text" in all_text(at)
    table = at.dataframe[0].value
    png = table[table["slice"] == "PNG"]
    first = at.multiselect(key="slices:sets").value[0]
    want = sql(synth, """SELECT count(*) FROM predictions p JOIN memes m USING (meme_key)
                         JOIN ocr o ON o.meme_key = m.meme_key AND o.variant_id = ? AND o.text <> ''
                         WHERE p.variant_id = ? AND m.label IS NOT NULL AND NOT m.retired AND m.format = 'PNG'""",
               [ocr, first])[0][0]
    assert first in sets and want > 0 and int(png["memes"].iloc[0]) == want
    # another page opened without parameters (the navigation clears the URL) keeps the slice and shows it
    goto(at, "views/map.py")
    assert at.query_params.get("slice") in ("has_text=text", ["has_text=text"])
    assert "Slice: has text: text" in all_text(at)
    # a meme outside the slice: said so, not "not found"
    outside = sql(synth, "SELECT m.meme_id FROM memes m WHERE NOT EXISTS (SELECT 1 FROM ocr o WHERE "
                         "o.meme_key = m.meme_key AND o.variant_id = ? AND o.text <> '') LIMIT 1", [ocr])[0][0]
    goto(at, "views/meme.py", meme=outside, slice="has_text=text")
    assert "outside the slice" in all_text(at)
    # all memes again: no banner, the URL loses the parameter
    goto(at, "views/overview.py", slice="all")
    assert "Slice:" not in all_text(at) and "slice" not in at.query_params
