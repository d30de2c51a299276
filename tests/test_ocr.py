"""OCR stage on synthetic memes with known captions: real Tesseract, real CRAFT weights.

Quality is asserted as a character error rate against the drawn caption, not as "some text came
back". The EasyOCR engine cannot read here (its Russian weights are not installed), so only its
fast, actionable failure is tested.
"""
from __future__ import annotations

import io
import os
import time

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pipeline.devtools.synthetic_memes import (  # noqa: E402
    NON_TOXIC_FOLDER,
    TOXIC_FOLDER,
    draw_meme,
    draw_textless,
    expected_text,
    write_meme_folder,
)
from pipeline.images import load_rgb  # noqa: E402
from pipeline.stages.base import MemeInput, StageLoadError  # noqa: E402
from pipeline.stages.ocr import (  # noqa: E402
    PAST_VERSIONS,
    TESSERACT_INSTALL,
    TESSERACT_PARAMS,
    OcrStage,
    TextBox,
    char_error_rate,
    edit_distance,
    merge_line_boxes,
    normalize_text,
    past_version_stage,
    reading_order,
)
from pipeline.stages.ocr_binarize import word_gaps  # noqa: E402

CAPTIONED = [  # (top, bottom, size, seed, style, re-saved as JPEG)
    ("КОГДА ПРИШЁЛ НА РАБОТУ", "А ТАМ ОПЯТЬ СОВЕЩАНИЕ", (400, 300), 11, "outline", False),
    ("ТЫ ПРОСТО НИКТО", "И ЗВАТЬ ТЕБЯ НИКАК", (300, 400), 12, "outline", True),
    (None, "ИДИ ОТСЮДА, НЕУДАЧНИК", (500, 500), 13, "outline", False),
    ("ЧАЙ С ЛИМОНОМ", "ЛУЧШЕЕ ЛЕКАРСТВО", (400, 300), 14, "band", False),
]


def _jpeg(im: Image.Image, quality: int = 60) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _captioned():
    for top, bottom, size, seed, style, jpeg in CAPTIONED:
        im = draw_meme(top, bottom, size=size, seed=seed, style=style)
        yield (_jpeg(im) if jpeg else im), expected_text(top, bottom)


def _total_cer(stage: OcrStage, pairs) -> tuple[float, list[str]]:
    edits = chars = 0
    seen = []
    for im, truth in pairs:
        got = stage.read(im)["text"]
        seen.append(got)
        edits += edit_distance(normalize_text(got), normalize_text(truth))
        chars += len(normalize_text(truth))
    return edits / chars, seen


@pytest.fixture(scope="module")
def craft_stage() -> OcrStage:
    stage = OcrStage(engine="craft-tesseract", device="cpu")
    stage.load()
    return stage


# ----------------------------------------------------------------------------- synthetic memes

def test_write_meme_folder_is_deterministic_and_labelled(tmp_path):
    a = write_meme_folder(tmp_path / "a", n_toxic=3, n_non_toxic=2, seed=5, n_textless=1)
    b = write_meme_folder(tmp_path / "b", n_toxic=3, n_non_toxic=2, seed=5, n_textless=1)
    assert len(a) == 6
    assert [p.relative_to(tmp_path / "a") for p in a] == [p.relative_to(tmp_path / "b") for p in b]
    assert all(pa.read_bytes() == pb.read_bytes() for pa, pb in zip(a, b))
    assert list(a.values()) == list(b.values())
    folders = {p.parent.name for p in a}
    assert folders == {TOXIC_FOLDER, NON_TOXIC_FOLDER}
    assert sum(p.parent.name == TOXIC_FOLDER for p in a) == 3
    assert {p.suffix for p in a} == {".png", ".jpg"}
    assert any(" " in p.name and not p.name.isascii() for p in a)
    assert sum(1 for t in a.values() if t == "") == 1
    for path, text in a.items():
        im = load_rgb(path)
        assert im.size == (400, 300)
        assert text == "" or text.isupper()
    other = write_meme_folder(tmp_path / "c", n_toxic=3, n_non_toxic=2, seed=6)
    assert any(p.read_bytes() != q.read_bytes() for p, q in zip(a, other))


# ----------------------------------------------------------------------------- craft-tesseract

def test_craft_tesseract_reads_known_captions(craft_stage):
    cer, seen = _total_cer(craft_stage, _captioned())
    assert cer <= 0.05, seen


def test_craft_tesseract_row_has_boxes_in_image_pixels(craft_stage):
    im = draw_meme("ПЯТНИЦА", "НАКОНЕЦ-ТО", size=(480, 360), seed=21)
    row = craft_stage.read(im)
    assert set(row) == {"engine_version", "text", "boxes", "mean_confidence"}
    assert "tesseract" in row["engine_version"] and "craft" in row["engine_version"]
    assert char_error_rate(row["text"], "ПЯТНИЦА НАКОНЕЦ-ТО") <= 0.1, row
    assert len(row["boxes"]) >= 2
    for b in row["boxes"]:
        x0, y0, x1, y1 = b["box"]
        assert 0 <= x0 < x1 <= 480 and 0 <= y0 < y1 <= 360
        assert 0 < b["conf"] <= 1 and b["text"] in row["text"]
    top = min(row["boxes"], key=lambda b: b["box"][1])
    assert top["box"][3] < 180 and "ПЯТНИЦА" in top["text"]  # the top caption is in the top half
    assert row["text"].splitlines()[0].startswith("ПЯТНИЦА")  # reading order: top caption first
    assert 0 < row["mean_confidence"] <= 1


def test_craft_tesseract_text_free_pictures_give_almost_nothing(craft_stage):
    for seed in (1, 2):
        row = craft_stage.read(draw_textless(seed, (400, 300)))
        assert len("".join(row["text"].split())) <= 5, row["text"]


def test_process_returns_errors_in_their_slot(craft_stage, tmp_path):
    good = tmp_path / "мем 1.png"
    draw_meme("ЗАКРОЙ РОТ", None, seed=3).save(good)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff not really a jpeg")
    memes = [MemeInput(meme_id=p.name, path=p, rel_path=p.name, label=None) for p in (good, bad)]
    rows = craft_stage.process(memes, craft_stage.variants()[0])
    assert len(rows) == 2
    assert isinstance(rows[0], dict) and char_error_rate(rows[0]["text"], "ЗАКРОЙ РОТ") <= 0.1
    assert isinstance(rows[1], Exception)


# ----------------------------------------------------------------------------- tesseract alone

def test_tesseract_engine_reads_known_captions():
    stage = OcrStage(engine="tesseract")
    stage.load()
    pairs = [(im, t) for (im, t), c in zip(_captioned(), CAPTIONED) if c[4] == "band" or c[3] == 11]
    cer, seen = _total_cer(stage, pairs)
    assert cer <= 0.1, seen
    assert len("".join(stage.read(draw_textless(4))["text"].split())) <= 5


def test_missing_tesseract_binary_says_how_to_install(monkeypatch, tmp_path):
    import pytesseract
    monkeypatch.setattr(pytesseract.pytesseract, "tesseract_cmd", str(tmp_path / "no-tesseract"))
    with pytest.raises(StageLoadError) as e:
        OcrStage(engine="tesseract").load()
    assert TESSERACT_INSTALL in str(e.value) and "\n" not in str(e.value)


def test_missing_russian_traineddata_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("TESSDATA_PREFIX", str(tmp_path))  # a tessdata folder without rus.traineddata
    with pytest.raises(StageLoadError) as e:
        OcrStage(engine="craft-tesseract").load()
    assert "rus" in str(e.value) and TESSERACT_INSTALL in str(e.value)


# ----------------------------------------------------------------------------- engine choice

def test_auto_uses_craft_tesseract_without_easyocr_weights(monkeypatch, tmp_path):
    monkeypatch.setenv("EASYOCR_MODULE_PATH", str(tmp_path))
    stage = OcrStage()  # engine="auto"
    assert stage.engine == "craft-tesseract"
    (variant,) = stage.variants()
    assert variant.model_id == variant.name == "craft-tesseract"
    assert variant.config["tesseract"]["lang"] == "rus"
    assert "auto" in stage.describe() and "cyrillic_g2.pth" in stage.describe()


def test_auto_picks_easyocr_when_its_weights_are_there(monkeypatch, tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "cyrillic_g2.pth").write_bytes(b"not the real weights")
    monkeypatch.setenv("EASYOCR_MODULE_PATH", str(tmp_path))
    stage = OcrStage()
    assert stage.engine == "easyocr" and stage.variants()[0].model_id == "easyocr"
    with pytest.raises(StageLoadError) as e:  # a corrupt file is reported, never re-downloaded
        stage.load()
    assert "cyrillic_g2.pth" in str(e.value) and "\n" not in str(e.value)


def test_easyocr_without_weights_fails_fast_with_actionable_message(monkeypatch, tmp_path):
    monkeypatch.setenv("EASYOCR_MODULE_PATH", str(tmp_path))
    stage = OcrStage(engine="easyocr")
    t0 = time.monotonic()
    with pytest.raises(StageLoadError) as e:
        stage.load()
    assert time.monotonic() - t0 < 5
    msg = str(e.value)
    assert "cyrillic_g2.pth" in msg and str(tmp_path / "model") in msg and "\n" not in msg


def test_variants_differ_per_engine_and_reject_unknown_engines(monkeypatch, tmp_path):
    monkeypatch.setenv("EASYOCR_MODULE_PATH", str(tmp_path))
    ids = {e: OcrStage(engine=e).variants()[0] for e in ("tesseract", "craft-tesseract", "easyocr")}
    assert len({v.variant_id for v in ids.values()}) == 3
    assert all(v.stage == "ocr" and v.model_id == e for e, v in ids.items())
    assert ids["easyocr"].config["easyocr"]["languages"] == ["ru", "en"]
    with pytest.raises(ValueError):
        OcrStage(engine="paddle")


# ----------------------------------------------------------------------------- helpers

def test_character_error_rate_normalises_case_yo_and_whitespace():
    assert edit_distance("kitten", "sitting") == 3
    assert normalize_text("  ПРИШЁЛ\nна   работу ") == "пришел на работу"
    assert char_error_rate("КОГДА пришёл", "когда\nпришел") == 0.0
    assert char_error_rate("когда пришол", "когда пришел") == pytest.approx(1 / 12)
    assert char_error_rate("", "") == 0.0 and char_error_rate("абв", "") == 1.0


def test_line_boxes_merge_and_read_top_to_bottom_left_to_right():
    # A word cut into a straight and a slanted piece by the detector is one line again.
    assert merge_line_boxes([(10, 10, 60, 40), (55, 8, 120, 42), (10, 100, 90, 130)]) == \
        [(10, 8, 120, 42), (10, 100, 90, 130)]
    boxes = [TextBox((200, 12, 260, 40), "ТЕБЕ", 0.9), TextBox((10, 200, 90, 230), "НИЗ", 0.9),
             TextBox((10, 10, 180, 42), "ЗАЧЕМ", 0.9)]
    lines = reading_order(boxes)
    assert [[b.text for b in line] for line in lines] == [["ЗАЧЕМ", "ТЕБЕ"], ["НИЗ"]]


# ----------------------------------------------------------------------------- real memes (v2: the toxic punchline)
# tests/data/ocr_transcriptions.json is a by-eye transcription of ../shared/memes (text only; the
# pictures are never committed). The tests that read the pictures skip where the folder is missing.

from pipeline.stages.ocr_quality import REAL_MEMES, changed_files, load_transcriptions, score, words  # noqa: E402

# The v3 levels on the 51 real memes (docs/ocr.md; v2: corpus 0.145, toxic 0.169, obscene recall 0.67;
# v1: 0.188, 0.230, 0.64), with a little slack. The targets (corpus <= 0.10, obscene recall
# >= 0.90) are not reached yet.
CORPUS_CER_MAX, TOXIC_CER_MAX, OBSCENE_RECALL_MIN = 0.14, 0.16, 0.75

# Caption-sized bottom lines in heavy condensed fonts that v1 dropped whole (line confidence < 0.5).
BOTTOM_LINE_MEMES = ("Негативно/764a29419fb69dede342890505ac9898.png",   # Я РЕЗУЛЬТАТ ИНЦЕСТА
                     "Негативно/3dde8f8b4c0df50855155fc7dfb1379a.png",   # ХОХОЛ ЕДЕТ!!!
                     "Негативно/e4ee563595afe00bc23877f26f28c52a.jpg")   # ПИПИСЬКИ


def _real_folder():
    if not REAL_MEMES.is_dir():
        pytest.skip(f"no real memes at {REAL_MEMES}")
    refs = load_transcriptions()
    changed = changed_files(REAL_MEMES, refs)
    assert not changed, f"pictures changed since they were transcribed: {changed}"
    return refs


def test_transcription_is_complete_and_consistent():
    refs = load_transcriptions()
    assert len(refs) == 51
    assert sum(r["label"] == "toxic" for r in refs.values()) == 26
    assert all(k.split("/")[0] in ("Негативно", "Нейтрально") for k in refs)
    assert all(r["label"] == ("toxic" if k.startswith("Негативно") else "neutral") for k, r in refs.items())
    assert all(len(r["sha256"]) == 64 for r in refs.values())
    assert sum(1 for r in refs.values() if r["text"]) == 37
    for k, r in refs.items():
        assert not r["obscene"] or r["text"], k
        read = words(r["text"])
        for w in r["obscene"]:
            assert words(w)[0] in read, (k, w)


def test_scoring_counts_edits_words_and_hallucinations():
    refs = {"a": dict(label="toxic", text="Ты ЕБЛАН\nточно", obscene=["еблан"]),
            "b": dict(label="neutral", text="кот", obscene=[]),
            "c": dict(label="neutral", text="", obscene=[])}
    s = score({"a": "ты точно", "b": "кот", "c": "@1"}, refs)
    assert s["cer_toxic"] == pytest.approx(6 / 14) and s["cer_neutral"] == 0
    assert s["cer"] == pytest.approx(6 / 17)
    assert s["exact"] == 1 and s["captioned"] == 2
    assert s["obscene_recall"] == 0 and s["other_recall"] == 1
    assert s["hallucinated"] == 2 and s["caption_free"] == 1


def test_past_versions_are_distinct_variants(monkeypatch, tmp_path):
    monkeypatch.setenv("EASYOCR_MODULE_PATH", str(tmp_path))
    new = OcrStage(engine="craft-tesseract").variants()[0]
    assert new.stage_version == "3"
    ids = {new.variant_id}
    for version in PAST_VERSIONS:
        old = past_version_stage(version).variants()[0]
        assert old.stage_version == version and old.variant_id not in ids
        ids.add(old.variant_id)


def _letters_image(spans: list[tuple[int, int]], height: int = 88, top: int = 16) -> np.ndarray:
    """Black-on-white line image with a solid 56 px tall 'letter' over each (x0, x1)."""
    im = np.full((height, max(b for _, b in spans) + 16), 255, np.uint8)
    for a, b in spans:
        im[top:top + 56, a:b] = 0
    return im


def test_word_gaps_come_from_the_letter_blobs():
    """Condensed letters 2 px apart, one word gap of 16 px (0.29 x the letter height): only that
    gap counts, even with a sliver of outline standing in it and a remnant of outline below it."""
    p = TESSERACT_PARAMS
    spans = [(16 + 26 * i, 40 + 26 * i) for i in range(4)] + [(134 + 26 * i, 158 + 26 * i) for i in range(5)]
    im = _letters_image(spans)
    assert word_gaps(im, p) == [(118, 134)]
    im[20:70, 125:127] = 0      # a 2 px sliver of outline between the words
    im[74:80, 100:150] = 0      # a short bar of outline under the gap
    assert word_gaps(im, p) == [(118, 134)]
    evenly = _letters_image([(16 + 30 * i, 40 + 30 * i) for i in range(9)])  # 6 px everywhere: no word gap
    assert word_gaps(evenly, p) == []


def test_real_bottom_lines_in_condensed_fonts_are_read(craft_stage):
    """Fails with the v1 settings (tesseract_params=dict(rescue_heights=[])): each of these lost
    its whole bottom line (CER 0.39-0.65)."""
    refs = _real_folder()
    for k in BOTTOM_LINE_MEMES:
        got = craft_stage.read(load_rgb(REAL_MEMES / k))["text"]
        s = score({k: got}, refs)
        assert s["cer"] <= 0.15, (k, got)


# v3: what v2 read (docs/ocr.md) -> the words v3 must find. «пиздел?»: the outlined mask lost it (its
# blobs touch the crop's side) but read the rest at 0.93, so v2 never tried the light mask that has it;
# the others are words run together in condensed fonts, split at the gaps of the line's letter blobs.
V3_LINES = {
    "Негативно/5a81bc801ea77d2dc04732a982310ce9.png": ("че ты там про мать п", ["пиздел"]),
    "Негативно/764a29419fb69dede342890505ac9898.png": ("ярезультатинцеста,", ["я", "результат", "инцеста"]),
    "Негативно/5f26c3d8ad5b93e4768cd4d73b276bda.png": ("зачемттебе", ["зачем", "тебе"]),
    "Негативно/загруженное.png": ("насралив:раковину:", ["насрал", "в", "раковину"]),
}


def test_real_partial_readings_and_run_together_words_are_fixed(craft_stage):
    """Fails with the v2 behaviour (past_version_stage("2")): none of these words is read there."""
    _real_folder()
    for k, (_v2_read, wanted) in V3_LINES.items():
        got = craft_stage.read(load_rgb(REAL_MEMES / k))["text"]
        missing = [w for w in wanted if w not in words(got)]
        assert not missing, (k, got, missing)


@pytest.mark.slow
def test_real_memes_meet_the_v3_levels(craft_stage):
    """All 51 real memes (~2.5 min on 2 idle cores): guards the v3 levels measured in docs/ocr.md."""
    refs = _real_folder()
    readings = {k: craft_stage.read(load_rgb(REAL_MEMES / k))["text"] for k in refs}
    s = score(readings, refs)
    assert s["hallucinated"] == 0, {k: readings[k] for k in refs if not refs[k]["text"] and readings[k]}
    assert s["cer"] <= CORPUS_CER_MAX and s["cer_toxic"] <= TOXIC_CER_MAX, s
    assert s["obscene_recall"] >= OBSCENE_RECALL_MIN, s


def _tight_bottom_caption(im: Image.Image, text: str, size: int = 44, tracking: float = 0.12,
                          cut: float = 0.25) -> Image.Image:
    """White outlined DejaVu caption drawn with negative letter spacing (outlines of neighbouring
    letters merge, as in Impact-style meme captions) so low that the picture's bottom edge cuts
    `cut` x size off it."""
    from PIL import ImageDraw, ImageFont

    from pipeline.devtools.synthetic_memes import caption_font_path
    font = ImageFont.truetype(str(caption_font_path()), size)
    draw = ImageDraw.Draw(im)
    advances = [font.getlength(c) - tracking * size for c in text]
    x, y = (im.width - sum(advances)) / 2, im.height - size + int(cut * size)
    for c, adv in zip(text, advances):
        draw.text((x, y), c, font=font, fill="white", stroke_width=max(2, size // 12), stroke_fill="black", anchor="ls")
        x += adv
    return im


def test_obscene_words_at_the_bottom_edge_are_read(craft_stage):
    """Out-of-dictionary (obscene) words in a tight caption cut by the bottom edge. Note: v1 reads
    these synthetic ones too; what v1 lost were real heavy condensed fonts (the real-meme test above)."""
    for bottom, seed in (("ПИЗДАБОЛ ЕБУЧИЙ", 2), ("ХОХОЛ ЕДЕТ", 2)):
        im = _tight_bottom_caption(draw_meme("ТЫ ПРОСТО", None, size=(400, 300), seed=seed), bottom)
        got = craft_stage.read(im)["text"]
        assert char_error_rate(got, f"ТЫ ПРОСТО\n{bottom}") <= 0.05, got
        assert set(words(bottom)) <= set(words(got)), got
