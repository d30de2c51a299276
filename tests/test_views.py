"""Counterfactual views of a meme (pipeline/views.py): caption-removed and caption-only, checked with real
Tesseract (lang rus) on a synthetic meme whose caption pixels are known.

The caption's place is not taken from the code under test: `draw_meme` draws the caption over
`photo_background(size, seed)`, so the pixels where the meme and that clean background differ are exactly
the caption's ink (its outline included). Tesseract calls (~0.4 s each) are kept to four.
"""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from pipeline.devtools.synthetic_memes import draw_meme, photo_background
from pipeline.views import (
    BACKGROUND_COLOUR,
    CAPTION_ONLY,
    CAPTION_REMOVED,
    FULL,
    TEXT_COLOUR,
    TEXT_HEIGHT,
    TEXT_WIDTH,
    VIEW_VERSION,
    VIEWS,
    as_boxes,
    caption_mask,
    caption_only,
    caption_removed,
    fit_caption,
    has_caption,
    render_view,
    scale_boxes,
)

TOP, BOTTOM = "ЗАКРОЙ РОТ", "ТУПОЙ КАК ПРОБКА"
SIZE, SEED = (400, 300), 0
CAPTION = f"{TOP}\n{BOTTOM}"
LONG_CAPTION = ("КОГДА ПРИШЁЛ НА РАБОТУ А ТАМ ОПЯТЬ СОВЕЩАНИЕ ДОБРОЕ УТРО ХОРОШЕГО ДНЯ КОТ ПРОСИТ ЕСТЬ В ПЯТЬ "
                "УТРА ПЯТНИЦА НАКОНЕЦ-ТО МАМА, Я ПОКУШАЛ КОГДА СДАЛ ЭКЗАМЕН С ПЕРВОЙ ПОПЫТКИ")


# ----------------------------------------------------------------------------- helpers and fixtures
def _words(text: str | None) -> list[str]:
    """Words as compared here (independent of pipeline.faithfulness): lower case, ё -> е, letter/digit runs."""
    return re.findall(r"[0-9a-zа-я]+", (text or "").lower().replace("ё", "е"))


def _share_read(truth: str, got: str) -> float:
    want, seen = _words(truth), set(_words(got))
    return sum(w in seen for w in want) / len(want)


def _ink_bbox(arr: np.ndarray, background) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) exclusive of the pixels that differ from `background`."""
    ys, xs = np.nonzero((arr != np.asarray(background, np.uint8)).any(-1))
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


@pytest.fixture(scope="module")
def tesseract():
    from pipeline.stages.base import StageLoadError
    from pipeline.stages.ocr import OcrStage, check_tesseract
    try:
        check_tesseract("rus")
    except StageLoadError as e:
        pytest.skip(str(e))
    stage = OcrStage(engine="tesseract")
    stage.load()
    return stage


@pytest.fixture(scope="module")
def meme():
    """(meme, its clean background, the caption's ink mask (h, w), the top and bottom captions' ink boxes)."""
    image = draw_meme(TOP, BOTTOM, size=SIZE, seed=SEED)
    background = photo_background(SIZE, SEED)
    ink = (np.asarray(image) != np.asarray(background)).any(-1)
    w, h = SIZE
    known = []
    for rows in (slice(0, h // 2), slice(h // 2, h)):
        part = np.zeros_like(ink)
        part[rows] = ink[rows]
        ys, xs = np.nonzero(part)
        known.append((int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))
    return image, background, ink, known


@pytest.fixture(scope="module")
def ocr_full(tesseract, meme):
    return tesseract.read(meme[0])


# ----------------------------------------------------------------------------- the synthetic meme itself
def test_the_caption_is_drawn_at_a_known_place(meme):
    image, _, ink, (top_box, bottom_box) = meme
    w, h = SIZE
    assert image.size == SIZE
    assert 0.03 < ink.mean() < 0.3                           # a caption, not the whole picture
    assert top_box[3] <= 0.2 * h and bottom_box[1] >= 0.75 * h  # top and bottom strips, nothing in between
    assert not ink[int(0.2 * h):int(0.75 * h)].any()


# ----------------------------------------------------------------------------- caption-removed, real OCR
def test_tesseract_reads_the_caption_on_the_full_meme(ocr_full, meme):
    known = meme[3]
    assert _share_read(CAPTION, ocr_full["text"]) >= 0.8, ocr_full["text"]
    assert ocr_full["boxes"]
    for b in as_boxes(ocr_full["boxes"]):           # every OCR box sits on a drawn caption
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        assert any(k[0] - 5 <= cx <= k[2] + 5 and k[1] - 5 <= cy <= k[3] + 5 for k in known), b


def test_caption_removed_erases_the_caption_and_nothing_else(tesseract, ocr_full, meme):
    image, background, ink, _ = meme
    boxes = ocr_full["boxes"]
    out = caption_removed(image, boxes)
    assert out.size == image.size and out.mode == "RGB"
    a, o, bg = (np.asarray(x).astype(int) for x in (image, out, background))
    mask = caption_mask(image.size, boxes)
    assert mask.shape == (SIZE[1], SIZE[0]) and mask.dtype == bool
    assert (o[~mask] == a[~mask]).all()                      # outside the mask: the original, byte for byte
    assert (o[mask] != a[mask]).any()                        # inside: inpainted
    assert (ink & mask).sum() >= 0.99 * ink.sum()            # the padded boxes cover the whole caption ...
    assert mask.mean() < 0.4                                 # ... and not the whole picture
    # the caption pixels now look like the picture under them, far more than before
    before, after = np.abs(a - bg)[ink].mean(), np.abs(o - bg)[ink].mean()
    assert after < 0.4 * before, (before, after)
    read = tesseract.read(out)
    assert not set(_words(read["text"])) & set(_words(CAPTION)), read["text"]
    assert sum(ch.isalnum() for ch in read["text"]) <= 4, read["text"]


def test_caption_removed_scales_boxes_of_another_size(ocr_full, meme):
    image = meme[0]
    boxes = as_boxes(ocr_full["boxes"])
    doubled = [{"box": [2 * v for v in b], "text": "x", "conf": 1.0} for b in boxes]
    scaled = caption_removed(image, doubled, source_size=(2 * SIZE[0], 2 * SIZE[1]))
    assert np.array_equal(np.asarray(scaled), np.asarray(caption_removed(image, boxes)))
    assert np.array_equal(caption_mask(image.size, doubled, source_size=(800, 600)), caption_mask(image.size, boxes))


@pytest.mark.parametrize("boxes", [[], None, "", "[]", [[10, 10, 10, 30]], [{"box": [50, 40, 20, 60]}]])
def test_caption_removed_without_a_box_is_refused(meme, boxes):
    with pytest.raises(ValueError, match="no OCR boxes"):
        caption_removed(meme[0], boxes)


def test_caption_removed_rejects_an_unknown_inpainting_method(meme):
    with pytest.raises(ValueError, match="telea"):
        caption_removed(meme[0], [[10, 10, 60, 30]], method="magic")


def test_caption_removed_ns_method_also_keeps_the_outside(meme):
    image = meme[0]
    boxes = [[100, 100, 200, 130]]
    out = np.asarray(caption_removed(image, boxes, method="ns"))
    mask = caption_mask(image.size, boxes)
    assert np.array_equal(out[~mask], np.asarray(image)[~mask])


def test_caption_removed_with_boxes_outside_the_image_changes_nothing(meme):
    image = meme[0]
    out = caption_removed(image, [[500, 400, 600, 450]])
    assert out is not image and np.array_equal(np.asarray(out), np.asarray(image))


def test_caption_removed_of_an_rgba_image_is_rgb(meme):
    rgba = meme[0].convert("RGBA")
    out = caption_removed(rgba, [[100, 100, 200, 130]])
    assert out.mode == "RGB" and out.size == rgba.size


# ----------------------------------------------------------------------------- the mask, by hand
def test_caption_mask_pads_each_box_by_pixels_and_a_share_of_its_height():
    # box 40 x 20 px: pad = 3 + 0.15 x 20 = 6 on each side -> x 4..56, y 14..46 (exclusive)
    mask = caption_mask((100, 80), [(10, 20, 50, 40)], pad_px=3, pad_fraction=0.15, dilate_px=0)
    want = np.zeros((80, 100), bool)
    want[14:46, 4:56] = True
    assert np.array_equal(mask, want)
    # fractional box edges round outwards
    mask = caption_mask((100, 80), [(10.5, 20.5, 49.5, 39.5)], pad_px=0, pad_fraction=0, dilate_px=0)
    want = np.zeros((80, 100), bool)
    want[20:40, 10:50] = True
    assert np.array_equal(mask, want)


def test_caption_mask_dilates_with_an_elliptic_kernel():
    rect = caption_mask((100, 80), [(10, 20, 50, 40)], dilate_px=0)       # x 4..56, y 14..46
    mask = caption_mask((100, 80), [(10, 20, 50, 40)], dilate_px=2)
    grown = np.zeros_like(rect)
    grown[12:48, 2:58] = True
    assert (mask >= rect).all() and (mask <= grown).all()
    assert mask[30, 2] and not mask[30, 1]                  # 2 px to the left, mid-height
    assert mask[12, 30] and not mask[11, 30]                # 2 px up
    assert not mask[12, 2]                                  # not the square's corner: the kernel is round


def test_caption_mask_clips_to_the_image_and_merges_boxes():
    mask = caption_mask((60, 40), [(-20, -10, 10, 8), (50, 30, 90, 70)], pad_px=0, pad_fraction=0, dilate_px=0)
    want = np.zeros((40, 60), bool)
    want[0:8, 0:10] = True
    want[30:40, 50:60] = True
    assert np.array_equal(mask, want)
    assert not caption_mask((60, 40), [], dilate_px=2).any()


# ----------------------------------------------------------------------------- box helpers
def test_as_boxes_accepts_the_ocr_column_forms_and_drops_empty_boxes():
    dicts = [{"box": [1, 2, 30, 40], "text": "КОТ", "conf": 0.9}, {"box": [5, 5, 5, 9], "text": "", "conf": 0}]
    assert as_boxes(dicts) == [(1.0, 2.0, 30.0, 40.0)]
    assert as_boxes(json.dumps(dicts, ensure_ascii=False)) == [(1.0, 2.0, 30.0, 40.0)]
    assert as_boxes([(0, 0, 10, 10), [3, 4, 2, 8]]) == [(0.0, 0.0, 10.0, 10.0)]
    assert as_boxes(np.array([[1, 2, 3, 4]])) == [(1.0, 2.0, 3.0, 4.0)]
    assert as_boxes(None) == [] and as_boxes("") == [] and as_boxes("  ") == []


def test_scale_boxes_maps_between_sizes():
    got = scale_boxes([{"box": [100, 50, 300, 150]}], (400, 200), (200, 100))
    assert got == [(50.0, 25.0, 150.0, 75.0)]
    got = scale_boxes([(10, 10, 20, 40)], (100, 100), (300, 50))
    assert got == [(30.0, 5.0, 60.0, 20.0)]


@pytest.mark.parametrize("text, expected", [
    ("КОТ", True), ("ёж", True), ("2024", True), (" а ", True), ("Hi!", True),
    ("", False), (None, False), ("   \n", False), ("...!?", False), ("— « » -", False),
])
def test_has_caption_needs_a_letter_or_digit(text, expected):
    assert has_caption(text) is expected


# ----------------------------------------------------------------------------- caption-only
def _check_caption_only_layout(im: Image.Image, size):
    w, h = size
    assert im.size == size and im.mode == "RGB"
    arr = np.asarray(im)
    for y, x in ((0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1)):
        assert tuple(arr[y, x]) == BACKGROUND_COLOUR
    assert tuple(arr.reshape(-1, 3).min(0)) == TEXT_COLOUR       # the darkest ink is the text colour
    x0, y0, x1, y1 = _ink_bbox(arr, BACKGROUND_COLOUR)
    slack = 3                                                     # antialiasing, side bearings
    assert x0 >= (1 - TEXT_WIDTH) / 2 * w - slack and x1 <= (1 + TEXT_WIDTH) / 2 * w + slack
    assert y0 >= (1 - TEXT_HEIGHT) / 2 * h - slack and y1 <= (1 + TEXT_HEIGHT) / 2 * h + slack
    assert abs(x0 - (w - x1)) <= 6                                # centred
    assert abs(y0 - (h - y1)) <= 0.1 * h


def test_caption_only_draws_the_caption_readably_at_the_meme_size(tesseract):
    im = caption_only(CAPTION, SIZE)
    _check_caption_only_layout(im, SIZE)
    got = tesseract.read(im)["text"]
    assert _share_read(CAPTION, got) >= 0.8, got


def test_caption_only_shrinks_a_long_caption_to_fit(tesseract):
    short_font, _ = fit_caption(" ".join(CAPTION.split()), SIZE)
    long_font, lines = fit_caption(LONG_CAPTION, SIZE)
    assert long_font.size < short_font.size and len(lines) > 3
    im = caption_only(LONG_CAPTION, SIZE)
    _check_caption_only_layout(im, SIZE)
    got = tesseract.read(im)["text"]
    assert _share_read(LONG_CAPTION, got) >= 0.8, got


@pytest.mark.parametrize("size", [(200, 500), (640, 120)])
def test_caption_only_keeps_other_sizes(size):
    _check_caption_only_layout(caption_only(CAPTION, size), size)


def test_caption_only_joins_ocr_lines_and_is_deterministic():
    a = caption_only("ЗАКРОЙ\n  РОТ ", SIZE)
    b = caption_only("ЗАКРОЙ РОТ", SIZE)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(caption_only("ОТКРОЙ РОТ", SIZE)))


@pytest.mark.parametrize("text", ["", "   ", "\n\t", "...", "«—»!?", None])
def test_caption_only_without_letters_is_refused(text):
    with pytest.raises(ValueError, match="no OCR text"):
        caption_only(text, SIZE)


@pytest.mark.parametrize("size", [(0, 100), (100, 0), (-5, 10)])
def test_caption_only_rejects_an_empty_size(size):
    with pytest.raises(ValueError, match="size"):
        caption_only("КОТ", size)


# ----------------------------------------------------------------------------- render_view
def test_render_view_dispatches_to_each_view(meme):
    image = meme[0]
    boxes = [{"box": [96, 7, 306, 37], "text": TOP, "conf": 0.9}]
    assert VIEWS == (FULL, CAPTION_REMOVED, CAPTION_ONLY)
    assert render_view(FULL, image) is image
    assert np.array_equal(np.asarray(render_view(CAPTION_REMOVED, image, TOP, boxes)),
                          np.asarray(caption_removed(image, boxes)))
    assert np.array_equal(np.asarray(render_view(CAPTION_REMOVED, image, boxes=[(192, 14, 612, 74)],
                                                 source_size=(800, 600))),
                          np.asarray(caption_removed(image, [(96, 7, 306, 37)])))
    only = render_view(CAPTION_ONLY, image, TOP, boxes)
    assert only.size == image.size
    assert np.array_equal(np.asarray(only), np.asarray(caption_only(TOP, image.size)))


def test_render_view_accepts_a_numpy_array_of_boxes(meme):
    image = meme[0]
    boxes = np.array([[96, 7, 306, 37], [29, 247, 370, 277]])
    assert np.array_equal(np.asarray(render_view(CAPTION_REMOVED, image, boxes=boxes)),
                          np.asarray(caption_removed(image, boxes.tolist())))


def test_render_view_refuses_derived_views_without_a_caption_and_unknown_views(meme):
    image = meme[0]
    with pytest.raises(ValueError):
        render_view(CAPTION_REMOVED, image, text=TOP, boxes=None)
    with pytest.raises(ValueError):
        render_view(CAPTION_ONLY, image, text=None, boxes=[[1, 1, 9, 9]])
    with pytest.raises(ValueError):
        render_view(CAPTION_ONLY, image, text="?!")
    with pytest.raises(ValueError, match="unknown view"):
        render_view("caption-blurred", image, TOP, [[1, 1, 9, 9]])


def test_view_version_is_a_cache_key_part():
    assert isinstance(VIEW_VERSION, str) and VIEW_VERSION.strip()
