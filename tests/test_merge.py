"""`vlmemes merge`: caches made apart (real precomputes) united; conflicts reported, never overwritten."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dashboard_helpers import sql, write

from pipeline.cli import main

REPO = Path(__file__).resolve().parent.parent


def precompute(memes: Path, db: Path) -> None:
    assert main(["precompute", "--memes", str(memes), "--db", str(db), "--stages", "ocr",
                 "--ocr-engine", "tesseract"]) == 0


@pytest.fixture(scope="module")
def two_caches(tmp_path_factory):
    """A and B computed apart on two folders that share one meme; U: one run over the union of the folders."""
    from pipeline.devtools.synthetic_memes import write_meme_folder
    root = tmp_path_factory.mktemp("merge")
    write_meme_folder(root / "a", n_toxic=2, n_non_toxic=2, seed=11)
    write_meme_folder(root / "b", n_toxic=2, n_non_toxic=2, seed=12)
    shared = next((root / "a" / "Негативно").iterdir())
    shutil.copy(shared, root / "b" / "Негативно" / "общий.png")
    for part in ("a", "b"):
        for f in (root / part).rglob("*.*"):
            target = root / "u" / f.parent.name / f"{part}-{f.name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, target)
    for name in ("a", "b", "u"):
        precompute(root / name, root / f"{name}.duckdb")
    return root


def rows(db: Path, table: str, cols: str) -> set[tuple]:
    return set(sql(db, f"SELECT {cols} FROM {table}"))


def test_merge_unites_and_matches_one_run_over_everything(two_caches, tmp_path, capsys):
    root = two_caches
    out = tmp_path / "out.duckdb"
    assert main(["merge", str(root / "a.duckdb"), str(root / "b.duckdb"), "--db", str(out)]) == 0
    assert "0 conflict(s)" in capsys.readouterr().out
    union = root / "u.duckdb"
    assert rows(out, "memes", "meme_id, label") == rows(union, "memes", "meme_id, label")
    assert len(rows(out, "memes", "meme_id")) == 8                    # 4 + 4 + the shared one
    assert rows(out, "ocr", "meme_id, variant_id, text") == rows(union, "ocr", "meme_id, variant_id, text")
    assert rows(out, "variants", "variant_id") == rows(union, "variants", "variant_id")
    runs = sql(out, "SELECT run_id, command, origin FROM runs ORDER BY run_id")
    assert [(c, o) for _, c, o in runs] == [("merge", None), ("precompute", "a.duckdb: run 1"),
                                            ("precompute", "b.duckdb: run 1")]
    # every result row points at the run (with its new id) that made it
    assert sql(out, "SELECT count(*) FROM ocr WHERE run_id NOT IN (SELECT run_id FROM runs WHERE command = 'precompute')")[0][0] == 0


def test_merging_again_adds_nothing(two_caches, tmp_path):
    root = two_caches
    out = tmp_path / "out.duckdb"
    main(["merge", str(root / "a.duckdb"), "--db", str(out)])
    before = {t: sql(out, f"SELECT count(*) FROM {t}")[0][0] for t in ("runs", "failures", "memes", "ocr", "meme_paths")}
    main(["merge", str(root / "a.duckdb"), "--db", str(out)])
    after = {t: sql(out, f"SELECT count(*) FROM {t}")[0][0] for t in ("runs", "failures", "memes", "ocr", "meme_paths")}
    assert after == {**before, "runs": before["runs"] + 1}            # only the second merge run itself


def test_conflicting_duplicates_are_reported_and_the_first_kept(two_caches, tmp_path, capsys):
    root = two_caches
    other = tmp_path / "colleague.duckdb"
    shutil.copy(root / "a.duckdb", other)
    meme, variant, text = sql(other, "SELECT meme_id, variant_id, text FROM ocr ORDER BY meme_id LIMIT 1")[0]
    write(other, "UPDATE ocr SET text = 'ДРУГОЙ ТЕКСТ' WHERE meme_id = ? AND variant_id = ?", [meme, variant])
    write(other, "UPDATE memes SET label = 'non_toxic' WHERE label = 'toxic'")
    write(other, "UPDATE meme_paths SET label = 'non_toxic' WHERE label = 'toxic'")
    write(other, "UPDATE runs SET started_at = started_at + INTERVAL 1 SECOND")   # a run of its own
    out = tmp_path / "out.duckdb"
    shutil.copy(root / "a.duckdb", out)
    assert main(["merge", str(other), "--db", str(out)]) == 0
    err = capsys.readouterr().err
    assert "conflicting duplicate(s)" in err and "ДРУГОЙ ТЕКСТ" in err
    assert sql(out, "SELECT text FROM ocr WHERE meme_id = ? AND variant_id = ?", [meme, variant])[0][0] == text
    conflicts = sql(out, "SELECT table_name, origin, kept, other FROM merge_conflicts ORDER BY table_name")
    tables = [c[0] for c in conflicts]
    assert tables.count("ocr") == 1 and tables.count("memes") == 2 and tables.count("meme_paths") == 2, tables
    assert all(origin == "colleague.duckdb" for _, origin, _, _ in conflicts)
    assert sql(out, "SELECT count(*) FROM memes WHERE label = 'toxic'")[0][0] == 2    # kept, not overwritten


def test_merge_of_full_caches_keeps_every_stage(smoke_db, tmp_path):
    """All four stages (tiny models): the same cache merged into an empty one is row-for-row the same."""
    out = tmp_path / "out.duckdb"
    assert main(["merge", str(smoke_db), "--db", str(out)]) == 0
    for table, cols in (("predictions", "meme_id, variant_id, label, score, raw_answer"),
                        ("heatmaps", "meme_id, variant_id, md5(cam)"), ("ocr", "meme_id, variant_id, text"),
                        ("failures", "stage, meme_id, message")):
        assert rows(out, table, cols) == rows(smoke_db, table, cols), table
    assert main(["merge", str(smoke_db), "--db", str(out)]) == 0
    assert sql(out, "SELECT count(*) FROM merge_conflicts")[0][0] == 0


def test_bad_sources_are_refused_with_one_line(tmp_path):
    bad = tmp_path / "notes.duckdb"
    bad.write_text("not a database")
    done = subprocess.run([sys.executable, "-m", "pipeline", "merge", str(bad), str(tmp_path / "missing.duckdb"),
                           "--db", str(tmp_path / "out.duckdb")], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 2 and "error:" in done.stderr and "not a DuckDB database file" in done.stderr
    assert not (tmp_path / "out.duckdb").exists()
