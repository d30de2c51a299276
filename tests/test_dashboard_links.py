"""Links and names (issue 14, part 3): the Overview at its own address, the Meme page's search by file
name, and model ids given as local folders shown by their last part with the whole id on hover.

The expected search results are computed here in Python from the rows (not by pipeline/queries.py).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from dashboard_helpers import app_opener, build_synth, goto, sql, write

from pipeline.names import is_local_path, public_name

LOCAL_QWEN = "/tmp/x/tiny-random-qwen25vl"


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return build_synth(tmp_path_factory.mktemp("links") / "synth.duckdb", n=80, seed=5)


@pytest.fixture
def app(monkeypatch):
    return app_opener(monkeypatch)


# ============================================================================ names
@pytest.mark.parametrize("model_id,shown,local", [
    ("/tmp/x/tiny-random-qwen25vl", "tiny-random-qwen25vl", True),
    ("/tmp/x/tiny-random-qwen25vl/", "tiny-random-qwen25vl", True),
    ("./models/tiny-clip", "tiny-clip", True),
    ("../tiny-clip", "tiny-clip", True),
    ("~/models/siglip", "siglip", True),
    ("models/google/siglip2-base-patch16-224", "siglip2-base-patch16-224", True),
    (r"C:\models\qwen", "qwen", True),
    ("Qwen/Qwen2.5-VL-3B-Instruct", "Qwen/Qwen2.5-VL-3B-Instruct", False),
    ("served:qwen2.5-vl-3b", "served:qwen2.5-vl-3b", False),
    ("tesseract", "tesseract", False),
    ("", "", False),
    (None, "", False),
])
def test_public_name(model_id, shown, local):
    assert public_name(model_id) == shown
    assert is_local_path(model_id) is local


def _with_local_vlm(db: Path, tmp_path: Path) -> Path:
    """A copy of `db` whose VLM is given as a local folder."""
    import shutil
    copy = tmp_path / "local.duckdb"
    shutil.copy(db, copy)
    write(copy, "UPDATE variants SET model_id = ? WHERE stage = 'vlm'", [LOCAL_QWEN])
    write(copy, "UPDATE predictions SET model_id = ? WHERE stage = 'vlm'", [LOCAL_QWEN])
    return copy


def _headers(frame) -> dict[str, dict]:
    return json.loads(frame.proto.columns or "{}")


def test_local_model_folders_are_shown_by_their_name_with_the_whole_id_on_hover(synth, tmp_path, app):
    db = _with_local_vlm(synth, tmp_path)
    at = app(db)
    # Overview: the metrics table and the cache contents name the folder, the header's help the whole id
    goto(at, "views/overview.py")
    table = next(d for d in at.dataframe if "accuracy" in d.value.columns)
    models = set(table.value["model"])
    assert "tiny-random-qwen25vl" in models and LOCAL_QWEN not in models
    assert "Qwen/Qwen2.5-VL-3B-Instruct" not in models
    assert "openai/clip-vit-large-patch14" in models, "a hub id stays as it is"
    assert LOCAL_QWEN in _headers(table)["model"]["help"]
    contents = next(d for d in at.dataframe if "n_rows" in d.value.columns)
    assert LOCAL_QWEN not in set(contents.value["model_id"]) and "tiny-random-qwen25vl" in set(contents.value["model_id"])
    assert LOCAL_QWEN in _headers(contents)["model_id"]["help"]
    # Errors: the set picker's options use the name, its help gives the whole id
    goto(at, "views/errors.py")
    picker = at.selectbox(key="url:errors:set")
    assert any("tiny-random-qwen25vl" in o for o in picker.options)
    assert not any("/tmp/x" in o for o in picker.options)
    assert LOCAL_QWEN in picker.help
    # Disagreement: the A/B pickers and the table of every pair
    goto(at, "views/disagreement.py")
    assert LOCAL_QWEN in at.selectbox(key="url:disagreement:a").help
    pairs = next(d for d in at.dataframe if "McNemar p (Holm)" in d.value.columns)
    assert not any("/tmp/x" in str(v) for v in pairs.value["A"]) and LOCAL_QWEN in _headers(pairs)["A"]["help"]
    # Meme: the answers table
    meme_id = sql(db, "SELECT meme_id FROM predictions WHERE stage = 'vlm' ORDER BY meme_id LIMIT 1")[0][0]
    goto(at, "views/meme.py", meme=meme_id)
    answers = next(d for d in at.dataframe if "p(toxic)" in d.value.columns)
    assert "tiny-random-qwen25vl" in set(answers.value["model"]) and LOCAL_QWEN in _headers(answers)["model"]["help"]


def test_hub_ids_get_no_hover_text(synth, app):
    at = app(synth)
    goto(at, "views/errors.py")
    assert not at.selectbox(key="url:errors:set").help


# ============================================================================ search by file name
def _expected(db: Path, text: str, include_retired: bool = False) -> list[str]:
    """Meme ids whose rel_path or any meme_paths path contains `text` (case-insensitive), in the page's order."""
    rows = sql(db, "SELECT meme_id, rel_path, retired FROM memes")
    paths: dict[str, list[str]] = {}
    for meme_id, path in sql(db, "SELECT meme_id, rel_path FROM meme_paths"):
        paths.setdefault(meme_id, []).append(path)
    hits = []
    for meme_id, rel_path, retired in rows:
        matching = sorted(p for p in {rel_path, *paths.get(meme_id, [])} if p and text.lower() in p.lower())
        if matching and (include_retired or not retired):
            hits.append((matching[0], meme_id))
    return [m for _p, m in sorted(hits)]


def _links(at) -> list[str]:
    return [link.proto.query_string.removeprefix("meme=") for link in at.main.get("page_link")]


def test_meme_page_searches_by_file_name(synth, app):
    at = app(synth)
    goto(at, "views/meme.py")
    assert at.text_input(key="url:meme:file").label == "Search by file name"
    name = sql(synth, "SELECT rel_path FROM memes WHERE NOT retired ORDER BY rel_path LIMIT 1")[0][0]
    stem = name.rsplit("/", 1)[-1].split(".")[0]                # e.g. "мем 000001"
    goto(at, "views/meme.py", file=stem.upper())                # case-insensitive
    assert _links(at) == _expected(synth, stem) and _links(at)
    shown = [t.value for t in at.text]
    assert name in shown, "each match shows its path as plain text"
    # a folder name matches every meme under it, listed up to the limit
    from pipeline.queries import SEARCH_LIMIT
    goto(at, "views/meme.py", file="Нейтрально")
    expected = _expected(synth, "Нейтрально")
    assert _links(at) == expected[:SEARCH_LIMIT]
    # the user's % and _ are literal, not wildcards
    goto(at, "views/meme.py", file="%")
    assert _links(at) == [] and "No meme has a file name or folder containing this text." in [i.value for i in at.info]
    # the link opens the meme
    goto(at, "views/meme.py", meme=expected[0])
    assert at.code[0].value == expected[0]


def test_search_follows_the_retired_setting(synth, tmp_path, app):
    import shutil
    db = tmp_path / "retired.duckdb"
    shutil.copy(synth, db)
    meme_id, path = sql(db, "SELECT meme_id, rel_path FROM memes WHERE NOT retired ORDER BY meme_id LIMIT 1")[0]
    write(db, "UPDATE memes SET retired = TRUE WHERE meme_id = ?", [meme_id])
    at = app(db)
    goto(at, "views/meme.py", file=path)
    assert meme_id not in _links(at)
    goto(at, "views/meme.py", file=path, retired="1")
    assert meme_id in _links(at)


def test_search_finds_other_paths_of_a_meme(synth, tmp_path, app):
    """A meme found under a second path is found by that path's name too."""
    import shutil
    db = tmp_path / "paths.duckdb"
    shutil.copy(synth, db)
    meme_id, label = sql(db, "SELECT meme_id, label FROM memes WHERE NOT retired ORDER BY meme_id LIMIT 1")[0]
    write(db, "INSERT INTO meme_paths (meme_id, rel_path, label, last_seen_run_id) VALUES (?, 'копии/unique_copy_name.png', ?, 1)", [meme_id, label])
    at = app(db)
    goto(at, "views/meme.py", file="UNIQUE_copy")
    assert _links(at) == [meme_id]


# ============================================================================ /overview
def test_root_shows_the_overview_and_keeps_the_query(synth, monkeypatch):
    """The root URL (the hidden default page) runs the Overview through its own page, /overview,
    keeping the query (?lang=)."""
    from dashboard_helpers import APP
    from streamlit.testing.v1 import AppTest
    monkeypatch.setenv("VLMEMES_DB", str(synth))
    at = AppTest.from_file(str(APP), default_timeout=90)
    at.query_params["lang"] = "ru"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Обзор"
    assert at.query_params["lang"] == "ru"
    assert at.metric[0].label == "Мемы"
