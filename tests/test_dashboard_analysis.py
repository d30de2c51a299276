"""The dashboard's metrics come from counts made in SQL (pipeline/summary.py, pipeline/queries.py): they must equal
pipeline.metrics run on the meme-level rows, on a real DuckDB file with label conflicts, retired
memes, unparseable answers and answers without a score."""
from __future__ import annotations

import duckdb
import pytest

from pipeline import metrics, summary
from pipeline import queries as q
from pipeline.devtools.synth_db import synth_db


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    db = synth_db(tmp_path_factory.mktemp("analysis") / "s.duckdb", 800, seed=3)
    con = duckdb.connect(str(db))
    # answers without a score (an engine that gives none) and an unparseable answer with a score
    con.execute("""UPDATE predictions SET score = NULL
                   WHERE meme_id IN (SELECT meme_id FROM memes ORDER BY meme_id LIMIT 40)""")
    con.execute("""UPDATE predictions SET label = NULL
                   WHERE meme_id IN (SELECT meme_id FROM memes ORDER BY meme_id DESC LIMIT 7)""")
    con.close()
    con = duckdb.connect(str(db), read_only=True)
    yield con
    con.close()


def _rows(con, variant_id: str, include_retired: bool):
    """Meme-level rows, every meme (no true label or retired included), for the row-level functions."""
    return con.execute("""
        SELECT m.label, p.label, p.score, m.retired FROM predictions p JOIN memes m USING (meme_id)
        WHERE p.variant_id = ? ORDER BY p.meme_id""", [variant_id]).fetchall()


@pytest.mark.parametrize("include_retired", [False, True])
def test_classification_from_sql_counts_equals_row_metrics(synth, include_retired):
    counts = summary.prediction_counts(synth, include_retired)
    sets = [r[0] for r in synth.execute("SELECT DISTINCT variant_id FROM predictions ORDER BY 1").fetchall()]
    assert sorted(counts) == sets
    n_conflicts, n_retired = synth.execute(
        "SELECT count(*) FILTER (label IS NULL), count(*) FILTER (retired) FROM memes").fetchall()[0]
    assert n_conflicts > 0 and n_retired > 0                  # the cases the SQL must leave out
    for v in sets:
        rows = [r for r in _rows(synth, v, include_retired) if include_retired or not r[3]]
        expected = metrics.classification_metrics([r[0] for r in rows], [r[1] for r in rows],
                                                  [r[2] for r in rows]).as_dict()
        sc = metrics.ScoreCounts(*counts[v]["scores"])
        got = metrics.classification_from_counts(counts[v]["answers"], sc).as_dict()
        assert got == expected
        assert (counts[v]["answers"] == metrics.answer_table(
            (r[0], r[1], 1) for r in rows if r[0] is not None)).all()
        assert got["n"] == sum(r[0] is not None for r in rows)
        assert got["auroc"]["n"] == sum(r[0] is not None and r[2] is not None for r in rows)
        assert metrics.roc_points_from_counts(sc) == \
            metrics.roc_curve_points([r[0] for r in rows], [r[2] for r in rows])
    assert any(counts[v]["answers"][:, 0].sum() > 0 for v in sets), "no unparseable answer tested"


def test_pair_counts_equal_row_agreement(synth):
    sets = q.prediction_sets(synth)              # full-view sets: a derived view has no answer on text-free memes
    a, b = sets[0], sets[-1]
    rows = synth.execute("""
        SELECT m.label, pa.label, pb.label FROM predictions pa JOIN predictions pb USING (meme_id)
        JOIN memes m USING (meme_id) WHERE pa.variant_id = ? AND pb.variant_id = ? AND NOT m.retired""",
                         [a, b]).fetchall()
    expected = metrics.agreement(*zip(*rows)).as_dict()
    got = metrics.agreement_from_counts(metrics.answer_table(q.pair_answer_counts(synth, a, b, False))).as_dict()
    assert got == expected and got["n"] > 700


def test_a_set_without_scores_and_a_foreign_label(tmp_path):
    db = tmp_path / "noscore.duckdb"
    synth_db(db, 50, seed=1)
    con = duckdb.connect(str(db))
    v, other = (r[0] for r in con.execute("SELECT DISTINCT variant_id FROM predictions ORDER BY 1 LIMIT 2").fetchall())
    con.execute("UPDATE predictions SET score = NULL WHERE variant_id = ?", [v])
    counts = summary.prediction_counts(con, False)
    assert counts[v]["scores"] is None and counts[v]["answers"].sum() > 0
    assert counts[other]["scores"] is not None
    con.execute("UPDATE predictions SET label = 'maybe' WHERE variant_id = ? AND meme_id = "
                "(SELECT min(meme_id) FROM memes WHERE label IS NOT NULL AND NOT retired)", [other])
    with pytest.raises(ValueError, match="label other than"):
        summary.prediction_counts(con, False)
    con.close()


# ======================================================================== stored summary (pipeline/summary.py)
def test_precompute_stores_the_metrics_the_dashboard_would_compute(smoke_db):
    """The real pipeline (tiny models) ends each run by storing every set's metrics, both settings."""
    con = duckdb.connect(str(smoke_db), read_only=True)
    try:
        latest = con.execute("SELECT max(run_id) FROM runs").fetchall()[0][0]
        sets = {r[0] for r in con.execute("SELECT DISTINCT variant_id FROM predictions").fetchall()}
        assert len(sets) >= 2
        for retired in (False, True):
            stored = q.stored_metrics(con, retired)
            assert stored is not None and stored["run_id"] == latest
            assert set(stored["sets"]) == sets
            assert stored["sets"] == summary.metrics_summary(con, retired)   # as the dashboard computes it
    finally:
        con.close()


def test_stored_metrics_are_used_only_while_current(tmp_path):
    from pipeline.store import Store
    db = synth_db(tmp_path / "s.duckdb", 300, seed=2)
    store = Store(db)
    with duckdb.connect(str(db), read_only=True) as con:
        stored = q.stored_metrics(con, False)
        assert stored["run_id"] == 4 and stored["sets"] == q.live_metrics(con, False)
        assert q.stored_metrics(con, True)["sets"] == q.live_metrics(con, True)
        assert q.stored_metrics(con, True)["sets"] != stored["sets"]      # retired memes change the counts
    # a later run that changes nothing the metrics depend on: nothing recomputed, still current
    run = store.start_run("precompute", {}, "/memes", {}, "cpu", None)
    assert summary.write(store, run) == 0
    with duckdb.connect(str(db), read_only=True) as con:
        assert q.stored_metrics(con, False)["run_id"] == 4
    # each kind of change the metrics depend on makes them stale; the live numbers then differ
    changes = ["UPDATE memes SET retired = NOT retired WHERE meme_id = (SELECT min(meme_id) FROM memes WHERE label IS NOT NULL)",
               "UPDATE memes SET label = NULL, label_conflict = TRUE WHERE meme_id = (SELECT max(meme_id) FROM memes WHERE label IS NOT NULL)",
               "UPDATE predictions SET score = 1 - score WHERE meme_id = (SELECT min(meme_id) FROM predictions)",
               "UPDATE predictions SET label = NULL WHERE meme_id = (SELECT max(meme_id) FROM predictions WHERE label IS NOT NULL)",
               "DELETE FROM predictions WHERE meme_id = (SELECT min(meme_id) FROM predictions)"]
    for sql in changes:
        with store.transaction() as con:
            before = summary.fingerprint(con)
            con.execute(sql)
            assert summary.fingerprint(con) != before, sql
        with duckdb.connect(str(db), read_only=True) as con:
            assert q.stored_metrics(con, False) is None, sql
            assert q.stored_metrics(con, True) is None, sql
        assert summary.write(store, run) == 16                         # 8 sets (4 on derived views) x 2 settings
        with duckdb.connect(str(db), read_only=True) as con:
            again = q.stored_metrics(con, True)
            assert again["run_id"] == run and again["sets"] == q.live_metrics(con, True)


def test_metrics_stored_by_older_metrics_code_are_stale(tmp_path, monkeypatch):
    """A summary stored before pipeline.metrics changed a method must not be shown as current."""
    db = synth_db(tmp_path / "s.duckdb", 60, seed=3)
    with duckdb.connect(str(db), read_only=True) as con:
        assert q.stored_metrics(con, False) is not None
        monkeypatch.setattr(q, "METRICS_VERSION", "0")                # as if the code were newer than the summary
        assert q.stored_metrics(con, False) is None
        assert summary.fingerprint(con).startswith("m0:")


def test_a_cache_without_the_summaries_table_computes_live(tmp_path):
    db = synth_db(tmp_path / "old.duckdb", 50, seed=4)
    with duckdb.connect(str(db)) as con:
        con.execute("DROP TABLE summaries")                              # a cache from before the table
        assert q.stored_metrics(con, False) is None
        n_sets = con.execute("SELECT count(DISTINCT variant_id) FROM predictions").fetchall()[0][0]
        assert len(q.live_metrics(con, False)) == n_sets == 8              # 4 sets, 4 of them on derived views


def test_a_failing_summary_never_costs_the_run_its_record(tmp_path, synthetic_memes, monkeypatch, capsys):
    from pipeline import runner
    from pipeline.cli import main
    from pipeline.store import Store

    def broken(store, run_id):
        raise RuntimeError("disk full (simulated)")
    db = tmp_path / "c.duckdb"
    argv = ["precompute", "--memes", str(synthetic_memes), "--db", str(db), "--stages", "ocr", "--ocr-engine", "tesseract"]
    assert main(argv) == 0                            # OCR only: no prediction set, an empty summary
    assert "summary" not in capsys.readouterr().err
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM summaries").fetchall() == [(0,)]
        assert summary.stored_fingerprint(con) == summary.fingerprint(con)
        assert q.stored_metrics(con, False) is None and q.live_metrics(con, False) == {}
        con.close()
    with Store(db).transaction() as con:               # so that the next run has something to recompute
        con.execute("DELETE FROM meta WHERE key = 'summary_fingerprint'")
    monkeypatch.setattr(runner.summary, "write", broken)
    assert main(argv) == 0
    assert "metrics summary not stored (RuntimeError: disk full (simulated))" in capsys.readouterr().err
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT status FROM runs ORDER BY run_id").fetchall() == [("ok",), ("ok",)]
        assert q.stored_metrics(con, False) is None


def test_overview_shows_stored_or_live_metrics_and_the_same_numbers(tmp_path, monkeypatch):
    """The page says where its metrics come from; the table is identical either way."""
    from dashboard_helpers import all_text, app_opener

    from pipeline.store import Store
    db = synth_db(tmp_path / "s.duckdb", 200, seed=6)
    at = app_opener(monkeypatch)(db)
    stored_table = next(d.value for d in at.dataframe if "accuracy" in d.value.columns)
    assert "Stored by run 4; the answers and labels are unchanged since" in all_text(at)
    with Store(db).transaction() as con:                # as if the data had changed after the summary
        con.execute("UPDATE meta SET value = 'stale' WHERE key = 'summary_fingerprint'")
    at = app_opener(monkeypatch)(db)
    assert "Computed now" in all_text(at) and "Stored by run" not in all_text(at)
    live_table = next(d.value for d in at.dataframe if "accuracy" in d.value.columns)
    assert live_table.equals(stored_table) and len(live_table) == 4
