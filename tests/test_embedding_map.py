"""The Map page's 2-D map of the memes (issue 17): UMAP (PCA for a few memes) of the stored CLIP embeddings,
computed by a precompute (and synth-db) into `map_points` only when the embeddings changed, and the page that
draws it, colours it and lists the memes in a box.

The clusters expected are the synthetic cache's planted ones (pipeline/devtools/synth_db.py: every picture
template has its own centre, ~0 cosine across templates), read off its plan, not off the map; the points
and colours expected are counted here with SQL on the schema and numpy, not through pipeline/queries.py.
"""
from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pytest
from dashboard_helpers import all_text, app_opener, goto, sql, write
from tiny_model_fixtures import one_torch_thread, synthetic_inputs  # noqa: F401 (autouse)

from pipeline import embedding_map
from pipeline.devtools.synth_db import _Plan, synth_db
from pipeline.store import Store, connect

N_SYNTH, SEED = 300, 3


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return synth_db(tmp_path_factory.mktemp("map") / "map.duckdb", N_SYNTH, seed=SEED)


@pytest.fixture
def app(monkeypatch):
    return app_opener(monkeypatch)


def copy(db, tmp_path):
    import shutil
    out = tmp_path / "copy.duckdb"
    shutil.copy(db, out)
    return out


def variant_of(db) -> str:
    (v,), = sql(db, "SELECT variant_id FROM variants WHERE stage = 'embedding'")
    return v


# ============================================================================ the stored map
def test_one_point_per_non_retired_meme_with_an_embedding_and_umap_keeps_the_planted_clusters(synth):
    v = variant_of(synth)
    want = {r[0] for r in sql(synth, "SELECT e.meme_key FROM embeddings e JOIN memes m USING (meme_id) "
                                     "WHERE NOT m.retired AND e.variant_id = ?", [v])}
    rows = sql(synth, "SELECT meme_key, meme_id, x, y, method, map_version FROM map_points WHERE variant_id = ?", [v])
    assert {r[0] for r in rows} == want and len(rows) == len(want)
    assert sql(synth, "SELECT count(*) FROM map_points mp JOIN memes m USING (meme_id) "
                      "WHERE m.meme_key <> mp.meme_key")[0][0] == 0
    assert {r[4] for r in rows} == {"umap"} and {r[5] for r in rows} == {embedding_map.MAP_VERSION}
    (method, n), = sql(synth, "SELECT method, n FROM maps WHERE variant_id = ?", [v])
    assert (method, n) == ("umap", len(want))

    template = _Plan(N_SYNTH, SEED).template               # meme_key k is the plan's meme k - 1
    keys = np.array([r[0] for r in rows])
    xy = np.array([(r[2], r[3]) for r in rows])
    cluster = template[keys - 1]
    d = ((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    same = cluster[d.argmin(axis=1)] == cluster
    assert same.mean() > 0.95, same.mean()                 # each point's nearest map neighbour: its own template
    centres = np.array([xy[cluster == t].mean(axis=0) for t in np.unique(cluster)])
    spread = max(np.sqrt(((xy[cluster == t] - xy[cluster == t].mean(axis=0)) ** 2).sum(1)).mean()
                 for t in np.unique(cluster))
    gaps = np.sqrt(((centres[:, None] - centres[None]) ** 2).sum(-1))[np.triu_indices(len(centres), 1)]
    assert np.median(gaps) > 2 * spread, (np.median(gaps), spread)


def test_a_rerun_with_the_same_embeddings_computes_nothing_and_a_retired_or_returning_meme_recomputes(
        synth, tmp_path, monkeypatch):
    db = copy(synth, tmp_path)
    store, v = Store(db), variant_of(synth)
    calls = []
    real = embedding_map.layout
    monkeypatch.setattr(embedding_map, "layout", lambda vectors: calls.append(len(vectors)) or real(vectors))
    assert embedding_map.write(store, 9) == 0 and calls == []
    n0 = sql(db, "SELECT count(*) FROM map_points")[0][0]

    (gone,), = sql(db, "SELECT meme_id FROM map_points ORDER BY meme_key LIMIT 1")
    write(db, "UPDATE memes SET retired = TRUE WHERE meme_id = ?", [gone])
    assert embedding_map.write(store, 10) == 1 and calls == [n0 - 1]
    assert sql(db, "SELECT count(*), min(run_id), max(run_id) FROM map_points") == [(n0 - 1, 10, 10)]
    assert sql(db, "SELECT count(*) FROM map_points WHERE meme_id = ?", [gone])[0][0] == 0
    assert embedding_map.write(store, 11) == 0 and len(calls) == 1

    back = sql(db, "SELECT m.meme_id FROM memes m JOIN embeddings e USING (meme_id) WHERE m.retired "
                   "AND m.meme_id <> ? ORDER BY m.meme_key LIMIT 1", [gone])[0][0]
    write(db, "UPDATE memes SET retired = FALSE WHERE meme_id = ?", [back])
    assert embedding_map.write(store, 12) == 1 and calls[-1] == n0
    assert sql(db, "SELECT count(*) FROM map_points WHERE meme_id = ?", [back])[0][0] == 1
    assert sql(db, "SELECT run_id FROM maps WHERE variant_id = ?", [v]) == [(12,)]


def test_few_memes_fall_back_to_pca_and_the_method_is_recorded(tmp_path):
    db = synth_db(tmp_path / "few.duckdb", 12, seed=1)
    (method, n), = sql(db, "SELECT method, n FROM maps")
    assert method == "pca" and n == sql(db, "SELECT count(*) FROM map_points WHERE method = 'pca'")[0][0] > 0
    xy = np.array(sql(db, "SELECT x, y FROM map_points"))
    assert np.isfinite(xy).all() and xy.std(axis=0).min() > 0
    assert embedding_map.pca_2d(np.ones((1, 4))).shape == (1, 2)


def test_a_failing_map_is_recorded_and_does_not_fail_the_run(synth, tmp_path, monkeypatch, capsys):
    from pipeline import runner
    db = copy(synth, tmp_path)
    write(db, "DELETE FROM maps")                           # stale: the next write recomputes
    monkeypatch.setattr(embedding_map, "layout", lambda vectors: (_ for _ in ()).throw(MemoryError("no room")))
    runner._write_map(Store(db), 7)
    assert "map of the embeddings not stored (MemoryError: no room)" in capsys.readouterr().err
    assert sql(db, "SELECT stage, error_type, message FROM failures WHERE run_id = 7") == [("map", "MemoryError",
                                                                                              "no room")]


def test_a_cache_from_before_the_map_tables_opens_read_only(synth, tmp_path):
    from pipeline import queries as q
    db = copy(synth, tmp_path)
    write(db, "DROP TABLE map_points")
    write(db, "DROP TABLE maps")
    con = connect(db, read_only=True)
    try:
        assert q.map_variants(con) == [] and q.stored_map_fingerprints(con) == {}
    finally:
        con.close()


# ============================================================================ a real precompute
def test_a_tiny_precompute_stores_the_map_once(tmp_path, synthetic_memes, tiny_models):
    from test_embeddings import N, precompute_args

    from pipeline.cli import main
    db = tmp_path / "run.duckdb"
    assert main(precompute_args(synthetic_memes, db, tiny_models["clip"])) == 0
    assert sql(db, "SELECT method, n, run_id FROM maps") == [("pca", N, 1)]
    assert sql(db, "SELECT count(*) FROM map_points mp JOIN embeddings e USING (meme_key, variant_id)")[0][0] == N
    assert main(precompute_args(synthetic_memes, db, tiny_models["clip"])) == 0      # all cached
    assert sql(db, "SELECT method, n, run_id FROM maps") == [("pca", N, 1)]
    assert sql(db, "SELECT count(*) FROM failures WHERE stage = 'map'")[0][0] == 0


# ============================================================================ the page
def chart_data(at) -> pa.Table:
    charts = [e for e in at.main.get("vega_lite_chart")]
    assert len(charts) == 1
    return pa.ipc.open_stream(io.BytesIO(charts[0].proto.data.data)).read_all()


def test_the_map_page_draws_every_point_coloured_by_truth_and_by_where_two_sets_disagree(synth, app):
    from dashboard import charts
    v = variant_of(synth)
    at = goto(app(synth), "views/map.py")
    assert "Colour by" in all_text(at) or any(r.label == "Colour by" for r in at.radio)
    data = chart_data(at).to_pandas()
    rows = sql(synth, "SELECT m.label FROM map_points mp JOIN memes m USING (meme_id) "
                      "WHERE mp.variant_id = ? AND NOT m.retired", [v])
    assert len(data) == len(rows) and set(data.columns) == {"x", "y", "c"}
    want = {"toxic": sum(r[0] == "toxic" for r in rows), "non-toxic": sum(r[0] == "non_toxic" for r in rows),
            "no label (conflict)": sum(r[0] is None for r in rows)}
    assert data["c"].astype(str).value_counts().to_dict() == {k: n for k, n in want.items() if n}

    (a, _, _), (b, _, _) = sql(synth, "SELECT variant_id, stage, name FROM variants WHERE stage = 'clip' "
                                      "AND json_extract_string(config, '$.meme_view') IS NULL ORDER BY name")[:2]
    at = goto(at, "views/map.py", colour="agree", a=a, b=b)
    got = chart_data(at).to_pandas()["c"].astype(str).value_counts().to_dict()
    cells = sql(synth, """
        SELECT CASE WHEN m.label IS NULL OR pa.meme_id IS NULL OR pb.meme_id IS NULL THEN 'none'
                    WHEN pa.label IS NOT DISTINCT FROM m.label AND pb.label IS NOT DISTINCT FROM m.label THEN 'both_right'
                    WHEN pa.label IS NOT DISTINCT FROM m.label THEN 'only_a_right'
                    WHEN pb.label IS NOT DISTINCT FROM m.label THEN 'only_b_right' ELSE 'both_wrong' END, count(*)
        FROM map_points mp JOIN memes m USING (meme_id)
        LEFT JOIN predictions pa ON pa.meme_id = mp.meme_id AND pa.variant_id = ?
        LEFT JOIN predictions pb ON pb.meme_id = mp.meme_id AND pb.variant_id = ?
        WHERE mp.variant_id = ? AND NOT m.retired GROUP BY 1""", [a, b, v])
    assert got == {str(charts.MAP_AGREE[k]): n for k, n in cells}
    assert "Draw a box on the map to list the memes in it." in all_text(at)
    assert not at.main.get("page_link")


def test_a_box_selection_lists_its_memes_linked_to_the_meme_page(synth, app):
    from dashboard import charts
    v = variant_of(synth)
    pts = sql(synth, "SELECT mp.meme_id, mp.x, mp.y FROM map_points mp JOIN memes m USING (meme_id) "
                     "WHERE mp.variant_id = ? AND NOT m.retired ORDER BY mp.meme_key", [v])
    xs, ys = np.array([p[1] for p in pts]), np.array([p[2] for p in pts])
    x0, x1, y0, y1 = (float(np.quantile(a, q)) for a, q in ((xs, 0.1), (xs, 0.9), (ys, 0.1), (ys, 0.9)))
    inside = [p[0] for p in pts if x0 <= p[1] <= x1 and y0 <= p[2] <= y1]
    assert len(inside) > 24

    event = {"selection": {charts.MAP_BRUSH: {"x": [x1, x0], "y": [y0, y1]}}}    # as the chart reports a drag
    box = charts.box_of(event)
    assert box == pytest.approx((x0, x1, y0, y1))
    import pandas as pd
    df = pd.DataFrame({"meme_id": [p[0] for p in pts], "x": xs, "y": ys})
    assert list(charts.in_box(df, box)["meme_id"]) == inside
    assert charts.box_of({"selection": {charts.MAP_BRUSH: {}}}) is None and charts.box_of(None) is None
    assert charts.parse_box("1,2,x,4") is None and charts.parse_box("2,1,4,3") == (1, 2, 3, 4)

    at = goto(app(synth), "views/map.py", box=f"{x0!r},{x1!r},{y0!r},{y1!r}")
    links = [link.proto.query_string.removeprefix("meme=") for link in at.main.get("page_link")]
    assert links == inside[:24]
    assert all(link.proto.page.endswith("views/meme.py") or "meme" in link.proto.page
               for link in at.main.get("page_link"))
    assert f"1–24 of {len(inside)}" in all_text(at)
    toxic_shown = sql(synth, "SELECT count(*) FROM memes WHERE meme_id IN (SELECT unnest(?)) AND "
                             "(label = 'toxic' OR label IS NULL)", [inside[:24]])[0][0]
    assert sum(b.label == "Show image" for b in at.button) == toxic_shown > 0     # the content warning blurs them


def test_the_report_draws_the_stored_map(synth, tmp_path):
    """The HTML report's Map section: the stored map as an SVG of one mark per laid-out meme (below the sample size)."""
    import re

    from pipeline.export import MAP_POINTS_DRAWN, export_html
    out = tmp_path / "r.html"
    export_html(synth, out, images=False)
    html = out.read_text(encoding="utf-8")
    section = html[html.index('<section id="map">'):html.index('<section id="label-issues">')]
    (n,), = sql(synth, "SELECT n FROM maps")
    assert n <= MAP_POINTS_DRAWN and f'<figure class="chart" data-points="{n}"><svg role="img"' in section
    assert len(re.findall(r"<path[^>]*aria-roledescription|<path ", section)) >= n      # one mark per meme at least
    assert "umap" in section
