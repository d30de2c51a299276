"""CLIP image embeddings (issue 17): stored by the CLIP stage from its own vision pass, cached under their own
key, merged, counted by `vlmemes status`, and the Meme page's similar memes (cosine similarity in DuckDB).

The precompute runs the real CLI with the tiny random CLIP checkpoint (tests/conftest.py `tiny_models`); the
expected vectors are recomputed here with transformers directly (AutoModel / AutoProcessor on the saved folder,
the pad-square view written out independently), not with the stage's helpers. The neighbours expected of the
query are planted vectors, or computed with numpy from the stored ones.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from dashboard_helpers import all_text, app_opener, goto, sql, write
from tiny_model_fixtures import one_torch_thread, padded_square, synthetic_inputs  # noqa: F401 (autouse)

from pipeline import queries as q
from pipeline.cli import main
from pipeline.stages.clip import EMBEDDING_NAME, EMBEDDING_STAGE, EMBEDDING_TABLE, ClipStage
from pipeline.store import Store, connect

N = 6                   # memes of the precompute
# The cache key of the default model's embedding (fp32): adding the variant must not move, and nothing may
# move it silently (the prediction sets' keys are pinned in tests/data/variant_ids.json).
DEFAULT_MODEL_EMBEDDING_ID = "e800af0ecb8b"


def precompute_args(memes, db, model) -> list[str]:
    return ["precompute", "--memes", str(memes), "--db", str(db), "--stages", "clip", "--limit", str(N),
            "--clip-model", str(model), "--precision", "fp32", "--device", "cpu"]


@pytest.fixture(scope="module")
def emb_db(tmp_path_factory, synthetic_memes, tiny_models):
    db = tmp_path_factory.mktemp("emb") / "emb.duckdb"
    assert main(precompute_args(synthetic_memes, db, tiny_models["clip"])) == 0
    return db


@pytest.fixture
def app(monkeypatch):
    return app_opener(monkeypatch)


def stored(db) -> dict[str, np.ndarray]:
    return {m: np.asarray(e, dtype=np.float32) for m, e in sql(db, "SELECT meme_id, embedding FROM embeddings")}


def projected(out) -> torch.Tensor:
    """get_*_features' result: a tensor (transformers 4.x) or an output with .pooler_output (5.x)."""
    return (out if torch.is_tensor(out) else out.pooler_output).float()


# ============================================================================ the precompute
def test_one_unit_float16_embedding_per_meme_and_image_model(emb_db, tiny_models):
    from transformers import AutoConfig
    dim = AutoConfig.from_pretrained(tiny_models["clip"]).projection_dim
    rows = sql(emb_db, "SELECT meme_id, variant_id, model_id, dim, embedding, is_smoke, meme_key FROM embeddings")
    assert len(rows) == N and len({r[0] for r in rows}) == N
    assert {r[1] for r in rows} == {r[0] for r in sql(emb_db, "SELECT variant_id FROM variants WHERE stage = ?",
                                                      [EMBEDDING_STAGE])}
    (vid, stage, name, config), = sql(emb_db, "SELECT variant_id, stage, name, config FROM variants "
                                              "WHERE variant_id = ?", [rows[0][1]])
    assert stage == EMBEDDING_STAGE and name == EMBEDDING_NAME
    assert json.loads(config) == dict(embedding_version="1", dtype="float16", view="pad-square", normalised="l2",
                                      precision="fp32")
    keys = dict(sql(emb_db, "SELECT meme_id, meme_key FROM memes"))
    for meme_id, _, model_id, d, vec, smoke, key in rows:
        v = np.asarray(vec, dtype=np.float32)
        assert model_id == str(tiny_models["clip"]) and smoke and key == keys[meme_id]
        assert d == dim == len(v)
        assert np.linalg.norm(v) == pytest.approx(1.0, abs=2e-3)
        assert np.array_equal(v.astype(np.float16).astype(np.float32), v), "rounded to float16 precision"
    # the prediction sets are there as before, one row per meme each
    assert sql(emb_db, "SELECT count(DISTINCT variant_id), count(*) FROM predictions") == [(4, 4 * N)]


def test_the_embedding_is_the_image_features_the_prediction_was_computed_from(emb_db, tiny_models):
    """Recomputed with transformers: the stored vector is the pad-square view's normalised image features
    (float16-rounded), and the stored ru-v1+pad logits are exactly those features against the prompt texts."""
    from transformers import AutoModel, AutoProcessor
    folder = tiny_models["clip"]
    model, proc = AutoModel.from_pretrained(folder).eval(), AutoProcessor.from_pretrained(folder)
    vectors = stored(emb_db)
    rows = sql(emb_db, "SELECT m.meme_id, m.rel_path, r.memes_root, p.logits FROM memes m JOIN runs r "
                       "ON r.run_id = m.first_run_id JOIN predictions p ON p.meme_id = m.meme_id "
                       "WHERE p.prompt_version = 'ru-v1+pad'")
    assert len(rows) == N
    from pipeline.images import load_rgb
    text = proc.tokenizer(["токсичный мем", "нейтральный мем"], padding=True, return_tensors="pt")
    with torch.no_grad():
        t = torch.nn.functional.normalize(projected(model.get_text_features(**text)), dim=-1)
    for meme_id, rel_path, root, logits in rows:
        image = padded_square(load_rgb(Path(root) / rel_path), proc.image_processor.image_mean)
        with torch.no_grad():
            f = model.get_image_features(**proc.image_processor(images=[image], return_tensors="pt"))
        f = torch.nn.functional.normalize(projected(f), dim=-1)[0]
        # float16 rounding of the same features (a value at a rounding boundary may land one float16 step away:
        # the stage encoded the memes as one batch)
        assert np.abs(vectors[meme_id] - f.to(torch.float16).float().numpy()).max() <= 2 ** -11
        assert np.abs(vectors[meme_id] - f.numpy()).max() < 1e-3
        expected = (model.logit_scale.exp() * (f @ t.T)).tolist()
        got = json.loads(logits)
        assert [got["toxic"], got["non_toxic"]] == pytest.approx(expected, abs=1e-4)


def test_one_vision_pass_serves_every_prompt_set_and_the_embedding(tiny_models, tmp_path, monkeypatch):
    """A batch with all its variants (as the runner hands it: shares_meme_across_variants) encodes each image
    once, and the embedding is the tensor the pad-square sets scored."""
    stage = ClipStage(str(tiny_models["clip"]), precision="fp32", embeddings=True)
    assert stage.shares_meme_across_variants
    stage.load()
    seen = []
    real = stage._model.get_image_features

    def spy(**kw):
        seen.append(kw["pixel_values"].shape[0])
        return real(**kw)

    monkeypatch.setattr(stage._model, "get_image_features", spy)
    memes = synthetic_inputs(tmp_path, 3)
    variants = stage.variants()
    assert [v.table for v in variants] == [None] * 4 + [EMBEDDING_TABLE]
    out = stage.process_variants(memes, variants)
    assert sum(seen) == 3, "one image encoding per meme, not one per variant"
    assert stage._image_cache == {}, "the batch's encodings are let go"
    rows = out[variants[-1].variant_id]
    assert all(set(r) == {"dim", "embedding"} and r["dim"] == len(r["embedding"]) for r in rows)


def test_a_rerun_computes_nothing_and_an_old_cache_gets_only_the_embeddings(emb_db, synthetic_memes, tiny_models,
                                                                             tmp_path, capsys):
    db = tmp_path / "rerun.duckdb"
    shutil.copy(emb_db, db)
    before = sql(db, "SELECT meme_id, variant_id, run_id, embedding FROM embeddings ORDER BY ALL")
    capsys.readouterr()
    assert main(precompute_args(synthetic_memes, db, tiny_models["clip"])) == 0
    out = capsys.readouterr().out
    assert f"all {5 * N} results cached, nothing to compute" in out
    assert sql(db, "SELECT meme_id, variant_id, run_id, embedding FROM embeddings ORDER BY ALL") == before

    # a cache from before the embeddings: no table, no variant. The rerun computes the embeddings only;
    # every prediction stays the row it was (same run, same key)
    write(db, "DROP TABLE embeddings")
    write(db, "DELETE FROM variants WHERE stage = ?", [EMBEDDING_STAGE])
    predictions = sql(db, "SELECT meme_id, variant_id, run_id, score FROM predictions ORDER BY ALL")
    assert main(precompute_args(synthetic_memes, db, tiny_models["clip"])) == 0
    assert f"{N} to compute, {4 * N} cached" in capsys.readouterr().out
    assert sql(db, "SELECT meme_id, variant_id, run_id, score FROM predictions ORDER BY ALL") == predictions
    assert sorted((m, v, e) for m, v, _, e in before) == \
        sql(db, "SELECT meme_id, variant_id, embedding FROM embeddings ORDER BY ALL")


def test_adding_the_embedding_variant_leaves_every_prediction_key_as_it_was():
    for precision in ("fp32", "bf16"):
        for sets in (None, "all"):
            with_emb = ClipStage(precision=precision, prompt_sets=sets, views=("all",), embeddings=True)
            without = ClipStage(precision=precision, prompt_sets=sets, views=("all",))
            for s in (with_emb, without):
                s.ocr_source = "ocr-variant"
            ids = [v.variant_id for v in with_emb.variants()]
            assert ids[:-1] == [v.variant_id for v in without.variants()]
            emb = with_emb.variants()[-1]
            assert emb.table == EMBEDDING_TABLE and emb.stage == EMBEDDING_STAGE and not emb.reads_ocr
            assert with_emb.table_of(emb) == EMBEDDING_TABLE and with_emb.table_of(without.variants()[0]) == "predictions"
    (fp32,) = [v for v in ClipStage(precision="fp32", embeddings=True).variants() if v.table]
    (bf16,) = [v for v in ClipStage(precision="bf16", embeddings=True).variants() if v.table]
    assert fp32.variant_id == DEFAULT_MODEL_EMBEDDING_ID and bf16.variant_id != fp32.variant_id
    # the registry's stage (every precompute) stores the embedding; one built directly only when asked
    from pipeline import stages
    from pipeline.options import Options
    assert stages.build("clip", Options(precision="fp32", device="cpu")).variants()[-1].variant_id == \
        DEFAULT_MODEL_EMBEDDING_ID


# ============================================================================ merge, status, old caches
def test_merge_unites_embeddings_and_reports_a_conflicting_vector(emb_db, tmp_path, capsys):
    out = tmp_path / "out.duckdb"
    assert main(["merge", str(emb_db), "--db", str(out)]) == 0
    cols = "meme_id, variant_id, dim, embedding"
    assert sql(out, f"SELECT {cols} FROM embeddings ORDER BY ALL") == sql(emb_db, f"SELECT {cols} FROM embeddings ORDER BY ALL")
    assert sql(out, "SELECT count(*) FROM embeddings WHERE meme_key IS NULL")[0][0] == 0
    assert main(["merge", str(emb_db), "--db", str(out)]) == 0
    assert sql(out, "SELECT count(*) FROM merge_conflicts")[0][0] == 0
    other = tmp_path / "colleague.duckdb"
    shutil.copy(emb_db, other)
    meme = sql(other, "SELECT meme_id FROM embeddings ORDER BY meme_id LIMIT 1")[0][0]
    write(other, "UPDATE embeddings SET embedding = list_transform(embedding, lambda x: -x) WHERE meme_id = ?", [meme])
    write(other, "UPDATE runs SET started_at = started_at + INTERVAL 1 SECOND")
    assert main(["merge", str(other), "--db", str(out)]) == 0
    (table, key, kept, theirs), = sql(out, "SELECT table_name, key, kept, other FROM merge_conflicts")
    assert table == "embeddings" and json.loads(key)["meme_id"] == meme
    assert json.loads(kept)["embedding"] != json.loads(theirs)["embedding"]     # digests, not 16 numbers
    assert len(json.loads(kept)["embedding"]) == 32
    assert sql(out, "SELECT embedding FROM embeddings WHERE meme_id = ?", [meme]) == \
        sql(emb_db, "SELECT embedding FROM embeddings WHERE meme_id = ?", [meme])      # kept, not overwritten


def test_status_counts_the_embeddings(emb_db, capsys):
    capsys.readouterr()
    assert main(["status", "--db", str(emb_db)]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(EMBEDDING_STAGE))
    assert line.split()[1] == str(N) and EMBEDDING_NAME in line


def test_a_cache_from_before_the_table_opens_read_only(emb_db, tmp_path):
    db = tmp_path / "old.duckdb"
    shutil.copy(emb_db, db)
    write(db, "DROP TABLE embeddings")
    meme = sql(db, "SELECT meme_id FROM memes LIMIT 1")[0][0]
    con = connect(db, read_only=True)
    try:
        assert q.meme_embedding_variants(con, meme) == [] and q.embedding_counts(con) == {}
        assert q.similar_memes(con, meme, "whatever", True) == []
    finally:
        con.close()
    assert "embeddings" not in {r[0] for r in sql(db, "SELECT table_name FROM duckdb_tables()")}, "not written"


# ============================================================================ the similar-memes query
def planted_cache(path):
    """Memes with known vectors (not unit length) of variant v: b..g at known cosines to a's, f retired; h and x
    only of variant w, where a's w-vector is orthogonal to both (a tie, broken by meme key)."""
    store = Store(path)
    cosines = {"b": 0.95, "c": 0.5, "d": 0.8, "e": -0.2, "f": 0.99, "g": 0.8}
    ids = {k: k * 64 for k in "abcdefghx"}
    store.write_rows("memes", [dict(meme_id=ids[k], label="toxic" if k in "bd" else "non_toxic", rel_path=f"{k}.jpg",
                                    retired=k == "f", first_run_id=1) for k in "abcdefghx"])

    def at(cos: float, dim: int = 8) -> list[float]:
        v = np.zeros(dim)
        v[0], v[1] = cos, np.sqrt(1 - cos ** 2)
        return (3 * v).tolist()       # not unit length: cosine, not the dot product, is what counts

    rows = [("a", "v", [3.0] + [0.0] * 7)] + [(k, "v", at(c)) for k, c in cosines.items()]
    rows += [("h", "w", at(1.0)), ("x", "w", [3.0] + [0.0] * 7), ("a", "w", at(0.0))]
    store.save_results({"embeddings": [dict(meme_id=ids[k], variant_id=v, model_id="m", config_hash="c",
                                            stage_version="1", dim=8, embedding=e, is_smoke=False, seconds=0.0,
                                            run_id=1, created_at=None) for k, v, e in rows]}, None, 1, [])
    return ids


def test_similar_memes_are_the_planted_neighbours_in_order(tmp_path):
    db = tmp_path / "planted.duckdb"
    ids = planted_cache(db)
    con = connect(db, read_only=True)
    try:
        got = q.similar_memes(con, ids["a"], "v", False, 8)
        assert [r["meme_id"] for r in got] == [ids[k] for k in "bdgce"]    # d before g: equal cosines, by key
        assert [round(r["similarity"], 6) for r in got] == [0.95, 0.8, 0.8, 0.5, -0.2]
        assert got[0]["label"] == "toxic" and got[0]["rel_path"] == "b.jpg" and "thumbnail" in got[0]
        assert [r["meme_id"] for r in q.similar_memes(con, ids["a"], "v", True, 3)] == [ids[k] for k in "fbd"]
        assert [r["meme_id"] for r in q.similar_memes(con, ids["a"], "w", False)] == [ids["h"], ids["x"]]
        assert q.similar_memes(con, ids["h"], "v", False) == []            # no vector of that variant
        assert [v["variant_id"] for v in q.meme_embedding_variants(con, ids["a"])] == ["v", "w"]
    finally:
        con.close()


def test_similar_memes_of_a_synthetic_cache_equal_a_numpy_scan(tmp_path):
    from pipeline.devtools.synth_db import synth_db
    db = synth_db(tmp_path / "synth.duckdb", 400, seed=2)
    rows = sql(db, "SELECT e.meme_id, e.meme_key, e.variant_id, e.embedding, m.retired FROM embeddings e "
                   "JOIN memes m USING (meme_id) ORDER BY e.meme_key")
    assert len(rows) == 400 and len({r[2] for r in rows}) == 1
    keys = np.array([r[1] for r in rows])
    vectors = np.array([r[3] for r in rows], dtype=np.float64)
    live = ~np.array([r[4] for r in rows])
    con = connect(db, read_only=True)
    try:
        for i in (0, 7, 123):
            sims = vectors @ vectors[i] / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(vectors[i]))
            order = [j for j in np.lexsort((keys, -sims)) if j != i and live[j]][:q.SIMILAR_LIMIT]
            got = q.similar_memes(con, rows[i][0], rows[i][2], False)
            assert [r["meme_id"] for r in got] == [rows[j][0] for j in order]
            assert [r["similarity"] for r in got] == pytest.approx(sims[order].tolist(), abs=1e-5)   # float32 sums
            assert got[0]["similarity"] > 0.5            # planted: its template's cluster (~0; ~0.7; ~0.9)
    finally:
        con.close()


# ============================================================================ the Meme page
def test_the_meme_page_lists_the_similar_memes_with_links(emb_db, app):
    vectors = stored(emb_db)
    meme = sorted(vectors)[0]
    others = sorted((m for m in vectors if m != meme),
                    key=lambda m: -float(vectors[m] @ vectors[meme] / np.linalg.norm(vectors[m])
                                         / np.linalg.norm(vectors[meme])))
    at = goto(app(emb_db), "views/meme.py", meme=meme)
    assert "Similar memes" in [s.value for s in at.subheader]
    links = [link.proto.query_string.removeprefix("meme=") for link in at.main.get("page_link")]
    assert links == others, "every other meme (5 < 8), most similar first, each with its link"
    text = all_text(at)
    assert text.count("similarity ") >= len(others)
    answers = [t.value for t in at.text if t.value.startswith("CLIP ")]
    assert len(answers) == 4 * len(others)           # each neighbour's answer of every prediction set
    goto(at, "views/meme.py", meme=meme, lang="ru")
    assert "Похожие мемы" in [s.value for s in at.subheader]


def test_the_meme_page_of_a_cache_without_embeddings_says_how_to_get_them(emb_db, tmp_path, app):
    db = tmp_path / "old.duckdb"
    shutil.copy(emb_db, db)
    write(db, "DROP TABLE embeddings")
    meme = sql(db, "SELECT meme_id FROM memes ORDER BY meme_id LIMIT 1")[0][0]
    at = goto(app(db), "views/meme.py", meme=meme)
    assert "No image embedding of this meme is stored yet" in all_text(at)
    assert not at.main.get("page_link")
