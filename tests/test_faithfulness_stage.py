"""The faithfulness stage in the real pipeline (issue 16): real Tesseract boxes, tiny random CLIP (CAM) and
Qwen2.5-VL on synthetic memes with known captions plus one meme without text. The stored CAM mass against a
pixel count made here, planted VLM answers measured by the stated rules, the cache key, the Faithfulness page
and the Overview's table of unparseable answers against SQL counts, and an old cache without the table."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pytest
from dashboard_helpers import all_text, app_opener, goto, sql

from pipeline.cli import main
from pipeline.images import load_rgb
from pipeline.stages.clip import pad_box

NO_TEXT = "Нейтрально/без текста.png"


@pytest.fixture(scope="module")
def faith_db(tmp_path_factory, tiny_models) -> tuple[Path, list[str], Path]:
    from pipeline.devtools.synthetic_memes import photo_background, write_meme_folder
    root = tmp_path_factory.mktemp("faith")
    write_meme_folder(root / "memes", n_toxic=2, n_non_toxic=2, seed=5)
    photo_background((400, 300), 8).save(root / "memes" / NO_TEXT)
    db = root / "c.duckdb"
    argv = ["precompute", "--memes", str(root / "memes"), "--db", str(db), "--clip-model", str(tiny_models["clip"]),
            "--vlm-model", str(tiny_models["qwen"]), "--ocr-engine", "tesseract", "--max-new-tokens", "16",
            "--max-pixels", str(112 * 112), "--precision", "fp32", "--device", "cpu",
            "--stages", "ocr,clip,vlm,cam,faithfulness"]
    assert main(argv) == 0
    return db, argv, root / "memes"


def _sources(db: Path, measure: str) -> dict[str, str]:
    """faithfulness variant id -> its source variant id."""
    return {v: json.loads(c)["source"] for v, c in sql(db, "SELECT variant_id, config FROM variants WHERE stage = "
                                                          "'faithfulness'") if json.loads(c)["measure"] == measure}


def test_every_heatmap_and_vlm_answer_is_measured_once(faith_db):
    db, _, _ = faith_db
    cams, answers = _sources(db, "cam"), _sources(db, "answer")
    assert len(cams) == sql(db, "SELECT count(*) FROM variants WHERE stage = 'cam'")[0][0] >= 1
    assert len(answers) == sql(db, "SELECT count(*) FROM variants WHERE stage = 'vlm'")[0][0] >= 2
    for fv, source in {**cams, **answers}.items():
        table = "heatmaps" if fv in cams else "predictions"
        want = {r[0] for r in sql(db, f"SELECT meme_id FROM {table} WHERE variant_id = ?", [source])}
        got = sql(db, "SELECT meme_id, source_variant FROM faithfulness WHERE variant_id = ?", [fv])
        assert {m for m, _ in got} == want and len(got) == len(want) and {s for _, s in got} == {source}
    no_text = sql(db, "SELECT meme_id FROM meme_paths WHERE rel_path = ?", [NO_TEXT])[0][0]
    rows = sql(db, "SELECT has_caption, caption_mass, quote_overlap FROM faithfulness WHERE meme_id = ?", [no_text])
    assert rows and all(r == (False, None, None) for r in rows)


def test_cam_mass_equals_a_pixel_count(faith_db):
    """Each stored CAM measure against this test's own count: the grid blown up to the pad-square's pixels
    (nearest cell), cut to the meme, summed inside the OCR boxes' union."""
    db, _, memes = faith_db
    rows = sql(db, """
        SELECT p.rel_path, h.cam, h.grid_h, h.grid_w, o.boxes, f.caption_mass, f.caption_area, v.config
        FROM faithfulness f JOIN variants v USING (variant_id) JOIN heatmaps h
          ON h.meme_id = f.meme_id AND h.variant_id = f.source_variant
        JOIN ocr o ON o.meme_id = f.meme_id JOIN meme_paths p ON p.meme_id = f.meme_id
        WHERE f.measure = 'cam' AND f.has_caption""")
    assert len(rows) >= 8
    for rel, cam, gh, gw, boxes, mass, area, config in rows:
        assert json.loads(config)["view"] == "pad-square"
        w, h = load_rgb(memes / rel).size
        left, top, side = pad_box(w, h)
        grid = np.frombuffer(cam, np.uint8).reshape(gh, gw).astype(float)
        ys = np.minimum((np.arange(side) * gh) // side, gh - 1)
        xs = np.minimum((np.arange(side) * gw) // side, gw - 1)
        square = grid[ys][:, xs]
        meme = square[top:top + h, left:left + w]
        mask = np.zeros((h, w), bool)
        for b in json.loads(boxes):
            x0, y0, x1, y1 = (int(round(v)) for v in b["box"])
            mask[max(0, y0):min(h, y1), max(0, x0):min(w, x1)] = True
        assert area == pytest.approx(mask.mean(), abs=0.01), rel
        assert mass == pytest.approx(meme[mask].sum() / meme.sum(), abs=0.02), rel
        assert 0 < area < 0.6 and 0 <= mass <= 1


def test_planted_answers_are_measured_by_the_stated_rules(faith_db, tmp_path, capsys):
    """Answers written into a copy of the cache (as a model might give them), their measures deleted, and
    `--stages faithfulness` run: the quote, the possible contradiction and the refusal are found."""
    db0, argv, _ = faith_db
    db = tmp_path / "planted.duckdb"
    shutil.copy(db0, db)
    answers = _sources(db, "answer")
    fv, source = sorted(answers.items())[0]
    memes = sql(db, "SELECT p.meme_id, o.text FROM predictions p JOIN ocr o USING (meme_id) WHERE p.variant_id = ? "
                    "AND o.text <> '' ORDER BY p.meme_id LIMIT 3", [source])
    words = [t.split() for _, t in memes]
    planted = [
        ("toxic", f"Подпись «{' '.join(words[0][:3])}» унижает адресата.", "quote"),
        ("toxic", "Мем безобидный и никого не оскорбляет.", "contradiction"),
        (None, "Извините, я не могу помочь с оценкой этого изображения.", "refusal"),
    ]
    con = duckdb.connect(str(db))
    for (meme_id, _), (label, text, _) in zip(memes, planted):
        con.execute("UPDATE predictions SET label = ?, explanation = ?, raw_answer = ? WHERE meme_id = ? "
                    "AND variant_id = ?", [label, text if label else None, text, meme_id, source])
        con.execute("DELETE FROM faithfulness WHERE meme_id = ? AND variant_id = ?", [meme_id, fv])
    con.close()
    stages_at = argv.index("--stages") + 1
    args = [*argv[:stages_at], "faithfulness", *argv[stages_at + 1:]]
    args[args.index("--db") + 1] = str(db)
    assert main(args) == 0
    assert "3 to compute" in capsys.readouterr().out
    got = {m: sql(db, "SELECT quotes_caption, quoted_words, contradiction, contradiction_cue, failure_kind "
                      "FROM faithfulness WHERE meme_id = ? AND variant_id = ?", [m, fv])[0] for m, _ in memes}
    quote, contra, refusal = (got[m] for m, _ in memes)
    assert quote[0] is True and len(json.loads(quote[1])) >= 2 and quote[2] is False
    assert contra[2] is True and contra[3] == "безобидный"
    assert refusal[4] == "refusal" and refusal[2] is False


def test_a_rerun_is_cached_and_a_new_ocr_engine_is_a_new_measure(faith_db, capsys):
    db, argv, _ = faith_db
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "[faithfulness]" in out and "results cached, nothing to compute" in out.split("[faithfulness]")[1]
    config = json.loads(sql(db, "SELECT config FROM variants WHERE stage = 'faithfulness' LIMIT 1")[0][0])
    ocr = sql(db, "SELECT variant_id FROM variants WHERE stage = 'ocr'")[0][0]
    assert config["ocr_source"] == ocr and config["faithfulness_version"] and "source" in config


@pytest.fixture
def app(monkeypatch):
    return app_opener(monkeypatch)


def test_faithfulness_page_shows_the_counts_of_the_cache(faith_db, app):
    db, _, _ = faith_db
    at = goto(app(db), "views/faithfulness.py")
    assert not at.exception
    cam_table, answer_table = at.dataframe[0].value, at.dataframe[1].value
    box = {s.label: s.value for s in at.selectbox}
    cam_source = box["CAM method"]               # the CAM method shown
    n, above = sql(db, """
        SELECT count(*), count(*) FILTER (f.caption_mass > f.caption_area) FROM faithfulness f
        JOIN memes m USING (meme_id) WHERE f.source_variant = ? AND f.has_caption AND m.label IS NOT NULL
        AND f.caption_area > 0""", [cam_source])[0]
    first = cam_table.iloc[0]
    assert first["n"] == n and first["mass > area"].endswith(f"· {above}/{n}")
    vlm = box["VLM prediction set"]
    n_answers = sql(db, "SELECT count(*) FROM predictions p JOIN memes m USING (meme_id) WHERE p.variant_id = ? "
                        "AND m.label IS NOT NULL", [vlm])[0][0]
    assert answer_table.iloc[0]["answers"] == n_answers


def test_overview_counts_unparseable_answers_by_kind(faith_db, app):
    db, _, _ = faith_db
    at = goto(app(db), "views/overview.py")
    titles = [s.value for s in at.subheader]
    rows = dict(((v, k), n) for v, k, n in sql(db, """
        SELECT f.source_variant, f.failure_kind, count(*) FROM faithfulness f JOIN memes m USING (meme_id)
        WHERE f.failure_kind IS NOT NULL AND m.label IS NOT NULL GROUP BY ALL"""))
    if not rows:                       # the tiny model happened to give every answer a class
        assert "Why answers stated no class" not in titles
        return
    assert "Why answers stated no class" in titles
    table = next(d.value for d in at.dataframe if "empty or cut off" in d.value.columns)
    names = {n: v for v, n in sql(db, "SELECT variant_id, name FROM variants WHERE stage = 'vlm'")}
    for _, r in table.iterrows():
        vid = names[r["prompt"]]
        for kind in ("refusal", "hedge", "template echo", "empty or cut off", "other"):
            assert r[kind] == rows.get((vid, kind), 0)
        assert r["not measured yet"] == 0


def test_a_cache_from_before_the_stage_says_how_to_fill_it(faith_db, tmp_path, app):
    db = tmp_path / "old.duckdb"
    shutil.copy(faith_db[0], db)
    con = duckdb.connect(str(db))
    con.execute("DROP TABLE faithfulness")
    con.close()
    at = goto(app(db), "views/faithfulness.py")
    assert not at.exception
    assert "No faithfulness measures in this cache yet" in all_text(at)
    assert any("faithfulness" in c.value for c in at.code)
    meme = sql(db, "SELECT meme_id FROM memes LIMIT 1")[0][0]
    at = goto(at, "views/meme.py", meme=meme)
    assert not at.exception
