"""The integer key (memes.meme_key): assigned by the store in scan order, stable across reruns, copied
into every table that holds meme rows, given to caches from before it (a writer migrates, a reader sees
`meme_id AS meme_key`), and renumbered by `vlmemes merge` so the merged cache's keys are its own."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from dashboard_helpers import build_synth, sql, write

from pipeline import queries
from pipeline.cli import main
from pipeline.store import KEYED_TABLES, Store, connect


def _precompute(memes: Path, db: Path) -> None:
    assert main(["precompute", "--memes", str(memes), "--db", str(db), "--stages", "ocr",
                 "--ocr-engine", "tesseract"]) == 0


def _keys_consistent(db: Path) -> None:
    """Every meme has a distinct key; every keyed row carries its meme's key."""
    n, distinct, nulls = sql(db, "SELECT count(*), count(DISTINCT meme_key), count(*) - count(meme_key) FROM memes")[0]
    assert n and distinct == n and nulls == 0
    for table in KEYED_TABLES:
        wrong = sql(db, f"SELECT count(*) FROM {table} t LEFT JOIN memes m USING (meme_id) "
                        f"WHERE t.meme_key IS DISTINCT FROM m.meme_key")[0][0]
        assert wrong == 0, table


PRE_KEY_TABLES = ("memes", "meme_paths", "ocr", "predictions", "heatmaps")   # the tables caches had before the key


def _drop_keys(db: Path) -> None:
    """Make `db` look like a cache written before the integer key: the tables it had then lose the column,
    the stage tables added after the key (created with it) are not there."""
    later = {r[0] for r in sql(db, "SELECT table_name FROM information_schema.columns WHERE column_name = 'meme_key'")}
    for table in PRE_KEY_TABLES:
        write(db, f"ALTER TABLE {table} DROP COLUMN meme_key")
    for table in (later | set(KEYED_TABLES)) - set(PRE_KEY_TABLES):        # stage tables, the map's points
        write(db, f"DROP TABLE IF EXISTS {table}")


def test_keys_follow_scan_order_and_stay_across_reruns(tmp_path, synthetic_memes):
    db = tmp_path / "c.duckdb"
    _precompute(synthetic_memes, db)
    _keys_consistent(db)
    first = dict(sql(db, "SELECT meme_id, meme_key FROM memes"))
    assert sorted(first.values()) == list(range(1, len(first) + 1))
    _precompute(synthetic_memes, db)                                     # a cached rerun
    assert dict(sql(db, "SELECT meme_id, meme_key FROM memes")) == first

    from pipeline.devtools.synthetic_memes import write_meme_folder
    more = tmp_path / "more"
    shutil.copytree(synthetic_memes, more)
    write_meme_folder(tmp_path / "new", n_toxic=1, n_non_toxic=1, seed=99)
    for f in (tmp_path / "new").rglob("*.png"):
        shutil.copy(f, more / f.parent.name / f"new-{f.name}")
    _precompute(more, db)
    now = dict(sql(db, "SELECT meme_id, meme_key FROM memes"))
    assert {k: now[k] for k in first} == first                           # old memes keep their keys
    added = sorted(v for k, v in now.items() if k not in first)
    assert added == [len(first) + 1, len(first) + 2]                     # new ones come after
    _keys_consistent(db)


def test_a_writer_gives_an_old_cache_its_keys(tmp_path):
    db = build_synth(tmp_path / "old.duckdb", n=120)
    _drop_keys(db)
    assert "meme_key" not in {r[0] for r in sql(db, "SELECT column_name FROM information_schema.columns")}
    filled = Store.fill_meme_keys  # the migration runs when a writer opens the file
    Store(db)
    _keys_consistent(db)
    assert sql(db, "SELECT count(*) FROM memes")[0][0] == 120
    con = connect(db, read_only=False)
    try:
        assert filled(con) == {}                                          # nothing left to fill
    finally:
        con.close()


def _pages(con) -> dict[str, list]:
    """What the pages that join on the key show, without the key itself."""
    clip, vlm = [r[0] for r in con.execute(
        "SELECT variant_id FROM variants WHERE stage IN ('clip', 'vlm') ORDER BY stage, variant_id LIMIT 2").fetchall()]
    cam = con.execute("SELECT variant_id FROM variants WHERE stage = 'cam' LIMIT 1").fetchall()[0][0]
    ocr = con.execute("SELECT variant_id FROM variants WHERE stage = 'ocr' LIMIT 1").fetchall()[0][0]
    meme = con.execute("SELECT meme_id FROM memes ORDER BY meme_id LIMIT 1").fetchall()[0][0]

    def plain(rows):
        return [{k: v for k, v in r.items() if k not in ("meme_key", "thumbnail", "overlay")} for r in rows]
    return json.loads(json.dumps({
        "counts": sorted(queries.prediction_counts(con, False).items()),
        "errors": plain(queries.error_page(con, clip, ocr, None, None, None, False, "fp", 20, 0)),
        "pair": plain(queries.pair_page(con, clip, vlm, False, "only_a_right", None, ocr, 20, 0)),
        "heatmaps": plain(queries.heatmap_page(con, cam, clip, None, None, None, False, ocr, 20, 0)),
        "meme_ocr": plain(queries.meme_ocr(con, meme)),
        "meme_predictions": plain(queries.meme_predictions(con, meme)),
        "ocr_coverage": queries.ocr_coverage(con, False).to_dict("records"),
    }, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))


def test_a_reader_of_an_old_cache_sees_the_same_pages(tmp_path):
    db = build_synth(tmp_path / "new.duckdb", n=120)
    old = tmp_path / "old.duckdb"
    shutil.copy(db, old)
    _drop_keys(old)
    keyed, keyless = connect(db, read_only=True), connect(old, read_only=True)
    try:
        assert _pages(keyless) == _pages(keyed)
        assert keyless.execute("SELECT count(*) FROM memes WHERE meme_key = meme_id").fetchall()[0][0] == 120
    finally:
        keyed.close()
        keyless.close()
    assert "meme_key" not in {r[0] for r in sql(old, "SELECT column_name FROM information_schema.columns")}


def test_merge_gives_the_copied_memes_keys_of_this_cache(tmp_path, synthetic_memes):
    from pipeline.devtools.synthetic_memes import write_meme_folder
    a, b = tmp_path / "a", tmp_path / "b"
    write_meme_folder(a, n_toxic=2, n_non_toxic=2, seed=21)
    write_meme_folder(b, n_toxic=2, n_non_toxic=2, seed=22)
    _precompute(a, tmp_path / "a.duckdb")
    _precompute(b, tmp_path / "b.duckdb")
    assert sorted(r[0] for r in sql(tmp_path / "b.duckdb", "SELECT meme_key FROM memes")) == [1, 2, 3, 4]
    out = tmp_path / "out.duckdb"
    shutil.copy(tmp_path / "a.duckdb", out)
    kept = dict(sql(out, "SELECT meme_id, meme_key FROM memes"))
    assert main(["merge", str(tmp_path / "b.duckdb"), "--db", str(out)]) == 0
    merged = dict(sql(out, "SELECT meme_id, meme_key FROM memes"))
    assert len(merged) == 8 and {k: merged[k] for k in kept} == kept
    assert sorted(merged.values()) == list(range(1, 9))
    _keys_consistent(out)


@pytest.mark.parametrize("table", KEYED_TABLES)
def test_rows_stored_before_their_meme_get_its_key_later(tmp_path, table):
    """A repair, not a path the pipeline takes: a row whose meme arrives later is filled on open."""
    db = build_synth(tmp_path / "c.duckdb", n=20)
    write(db, f"UPDATE {table} SET meme_key = NULL WHERE meme_id = (SELECT min(meme_id) FROM {table})")
    Store(db)
    _keys_consistent(db)
