"""The three views in the real pipeline (issue 16): `precompute --views all` with real Tesseract and tiny random
CLIP / Qwen2.5-VL on synthetic memes with known captions plus one meme without text; the stored views, the
derived prediction sets, the Modality page's numbers against counts made here, and its links to the Meme
page, which shows the three views."""
from __future__ import annotations

import io
import shutil
from collections import Counter
from pathlib import Path

import pytest
from dashboard_helpers import app_opener, goto, sql
from PIL import Image

from pipeline.cli import main
from pipeline.views import CAPTION_ONLY, CAPTION_REMOVED

NO_TEXT = "Нейтрально/без текста.png"


def _words(text: str) -> set[str]:
    return {w for w in "".join(ch if ch.isalpha() else " " for ch in (text or "").upper()).split() if len(w) >= 3}


@pytest.fixture(scope="module")
def views_db(tmp_path_factory, tiny_models) -> tuple[Path, list[str], str]:
    from pipeline.devtools.synthetic_memes import photo_background, write_meme_folder
    root = tmp_path_factory.mktemp("views")
    write_meme_folder(root / "memes", n_toxic=3, n_non_toxic=3, seed=4)
    photo_background((400, 300), 7).save(root / "memes" / NO_TEXT)
    db = root / "c.duckdb"
    argv = ["precompute", "--memes", str(root / "memes"), "--db", str(db), "--clip-model", str(tiny_models["clip"]),
            "--vlm-model", str(tiny_models["qwen"]), "--ocr-engine", "tesseract", "--max-new-tokens", "24",
            "--max-pixels", str(112 * 112), "--precision", "fp32", "--device", "cpu", "--views", "all"]
    assert main(argv) == 0
    return db, argv, str(root)


def test_derived_sets_exist_for_the_sets_without_ocr_text_and_skip_memes_without_text(views_db):
    db, _, _ = views_db
    sets = dict(sql(db, "SELECT prompt_version, count(*) FROM predictions GROUP BY ALL"))
    n_memes = sql(db, "SELECT count(*) FROM memes")[0][0]
    with_text = sql(db, "SELECT count(*) FROM ocr WHERE regexp_matches(text, '[\\pL\\pN]')")[0][0]
    assert n_memes == 7 and with_text == 6
    for base in ("ru-v1+pad", "en-v1+pad", "label-first-v1", "explain-first-v1"):
        assert sets[base] == n_memes
        assert sets[f"{base}/{CAPTION_REMOVED}"] == sets[f"{base}/{CAPTION_ONLY}"] == with_text
    assert not any(k.startswith(("ru-ocr-v1+pad/", "en-ocr-v1+pad/")) for k in sets)     # they fold OCR text in
    no_text = sql(db, "SELECT meme_id FROM meme_paths WHERE rel_path = ?", [NO_TEXT])[0][0]
    assert sql(db, "SELECT count(*) FROM predictions WHERE meme_id = ? AND prompt_version LIKE '%/caption-%'",
               [no_text])[0][0] == 0
    assert sql(db, "SELECT view, has_caption, thumbnail IS NULL FROM view_images WHERE meme_id = ? ORDER BY view",
               [no_text]) == [(CAPTION_ONLY, False, True), (CAPTION_REMOVED, False, True)]
    # the full sets keep the cache keys they had before views existed: nothing in their config names a view
    assert sql(db, "SELECT count(*) FROM variants WHERE stage IN ('clip', 'vlm') AND name NOT LIKE '%/caption-%' "
                   "AND config LIKE '%meme_view%'")[0][0] == 0


def test_the_vlm_gets_the_caption_alone_as_text(views_db):
    db, _, _ = views_db
    rows = sql(db, "SELECT o.text, p.prompt FROM predictions p JOIN ocr o USING (meme_id) "
                   "WHERE p.prompt_version = 'label-first-v1/caption-only'")
    assert len(rows) == 6
    for text, prompt in rows:
        assert "без картинки" in prompt and f"«{' '.join(text.split())}»" in prompt
    assert all("без картинки" not in p for (p,) in sql(db, "SELECT prompt FROM predictions "
                                                          "WHERE prompt_version = 'label-first-v1/caption-removed'"))


def test_stored_views_show_what_the_models_saw(views_db):
    """Real Tesseract on the stored thumbnails: the inpainted view has no caption word left, the caption-only
    view reads back as the caption."""
    import pytesseract
    db, _, _ = views_db
    rows = sql(db, "SELECT o.text, i.view, i.thumbnail, i.width, i.height, m.width, m.height FROM view_images i "
                   "JOIN ocr o USING (meme_id) JOIN memes m USING (meme_id) WHERE i.has_caption")
    assert len(rows) == 12
    read_back = []
    for text, view, thumb, w, h, mw, mh in rows:
        im = Image.open(io.BytesIO(thumb))
        assert abs(w / h - mw / mh) < 0.02 and abs(im.size[0] / im.size[1] - w / h) < 0.05
        found = _words(pytesseract.image_to_string(im, lang="rus"))
        caption = _words(text)
        if view == CAPTION_REMOVED:
            assert not (found & caption), (text, found)
        else:
            read_back.append(len(found & caption) / len(caption))
    assert min(read_back) >= 0.5 and sum(read_back) / len(read_back) >= 0.8, read_back


def test_a_cached_rerun_computes_no_view(views_db, capsys):
    db, argv, _ = views_db
    before = sql(db, "SELECT count(*) FROM predictions")[0][0]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "[views] caption-removed, caption-only: all 14 results cached" in out
    assert "without OCR text" in out
    assert sql(db, "SELECT count(*) FROM predictions")[0][0] == before


@pytest.fixture
def app(monkeypatch):
    return app_opener(monkeypatch)


def test_modality_page_counts_and_links(views_db, app):
    db, _, _ = views_db
    at = goto(app(db), "views/modality.py")
    full = sql(db, "SELECT variant_id FROM variants WHERE stage = 'clip' AND name = 'en-v1+pad'")[0][0]
    at = goto(at, "views/modality.py", set=full, cell="image-driven")
    rows = sql(db, """
        SELECT m.label, f.label, r.label, o.label FROM predictions f JOIN memes m USING (meme_id)
        JOIN predictions r ON r.meme_id = f.meme_id AND r.prompt_version = 'en-v1+pad/caption-removed'
        JOIN predictions o ON o.meme_id = f.meme_id AND o.prompt_version = 'en-v1+pad/caption-only'
        WHERE f.variant_id = ?""", [full])
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Memes on all three views"] == str(len(rows)) == "6"
    assert metrics["No OCR text"] == "1" and metrics["Answered on the full meme"] == "7"
    cells = Counter(rows)
    table = at.dataframe[1].value
    got = {tuple(r) for r in table.itertuples(index=False)}
    words = {"toxic": "toxic", "non_toxic": "non-toxic", None: "unparseable"}
    assert got == {(words[t], words[a], words[b], words[c], n) for (t, a, b, c), n in cells.items()}
    image_driven = [r for r in rows if r[1] == "toxic" and r[2] == "toxic"]
    links = [link.proto.query_string.removeprefix("meme=") for link in at.page_link]
    assert len(links) == len(image_driven)
    if links:
        meme = goto(at, "views/meme.py", meme=links[0])
        text = "\n".join(str(e.value) for e in meme.text)
        assert "The three views the models judged" in "\n".join(str(e.value) for e in meme.subheader)
        assert CAPTION_REMOVED in text and CAPTION_ONLY in text
        assert len(meme.image) >= 3


def test_no_derived_views_says_how_to_compute_them(smoke_db, app, tmp_path):
    db = tmp_path / "c.duckdb"
    shutil.copy(smoke_db, db)
    at = goto(app(db), "views/modality.py")
    assert any("--views all" in c.value for c in at.code)
