"""Faithfulness measures (pipeline/faithfulness.py): CAM mass in the OCR boxes, caption quotes, possible
contradictions and the failure taxonomy of answers without a class.

The CAM measure is checked against a brute-force reference written here from the stated grid mapping (the
grid upsampled to whole pixels of the region it covers, the meme and the boxes rasterised), and against
cases computed by hand; the text rules against tables of Russian and English explanations and answers.
"""
from __future__ import annotations

import json
import zlib
from collections import Counter

import numpy as np
import pytest

from pipeline.config import NON_TOXIC, TOXIC
from pipeline.faithfulness import (
    FAILURE_KINDS,
    FAITHFULNESS_VERSION,
    FULL_IMAGE,
    GRID_VIEWS,
    answer_failure_kind,
    cam_grid,
    cam_mass_in_boxes,
    caption_quote,
    failure_kinds,
    grid_region,
    normalise_words,
    possible_contradiction,
    words_match,
)
from pipeline.stages.clip_prompts import CENTER_CROP, DEFAULT_VIEW, PAD_SQUARE
from pipeline.stages.vlm_prompts import PROMPTS


# =========================================================================== 1. CAM mass in the OCR boxes
def _reference(cam: np.ndarray, boxes, size, view) -> dict:
    """Brute force at pixel resolution, for integer boxes and a grid region of whole pixels per cell.

    The region the grid covers, in meme pixels: pad-square the centred square of the long side (integer
    offsets, the extra pixel of an odd band on the right/bottom), center-crop the centred min(w, h) square,
    full-image the meme. Mass and area are taken over the region's pixels that lie on the meme."""
    w, h = size
    if view == PAD_SQUARE:
        side = max(w, h)
        rx0, ry0, rw, rh = -((side - w) // 2), -((side - h) // 2), side, side
    elif view == CENTER_CROP:
        s = min(w, h)
        assert (w - s) % 2 == 0 and (h - s) % 2 == 0
        rx0, ry0, rw, rh = (w - s) // 2, (h - s) // 2, s, s
    else:
        rx0, ry0, rw, rh = 0, 0, w, h
    gh, gw = cam.shape
    assert rw % gw == 0 and rh % gh == 0, "the reference needs whole pixels per cell"
    up = np.repeat(np.repeat(cam.astype(float), rh // gh, axis=0), rw // gw, axis=1)     # (rh, rw)
    ys, xs = np.mgrid[ry0:ry0 + rh, rx0:rx0 + rw]                                        # meme pixel of each
    on_meme = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
    meme_boxes = np.zeros((h, w), bool)
    for x0, y0, x1, y1 in boxes:
        meme_boxes[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = True
    in_box = np.zeros_like(on_meme)
    in_box[on_meme] = meme_boxes[ys[on_meme], xs[on_meme]]
    total = up[on_meme].sum()
    mass = up[in_box].sum() / total if total > 0 else None
    area = in_box.sum() / on_meme.sum()
    return dict(mass=mass, area=area, ratio=mass / area if mass is not None and area > 0 else None,
                boxes_seen=in_box.sum() / meme_boxes.sum() if meme_boxes.any() else None)


def _close(got: dict, want: dict, tol: float = 1e-9) -> None:
    assert set(got) == {"mass", "area", "ratio", "boxes_seen"}
    for key, value in want.items():
        if value is None:
            assert got[key] is None, (key, got)
        else:
            assert got[key] == pytest.approx(value, abs=tol), (key, got, want)


# (view, meme size, grid shape): grids with whole pixels per cell over the region each view covers
CASES = [
    (PAD_SQUARE, (300, 200), (4, 6)),      # square 300: cells 75 x 50; bands of 50 px above and below
    (PAD_SQUARE, (200, 300), (6, 5)),      # bands of 50 px left and right
    (PAD_SQUARE, (301, 200), (7, 7)),      # odd band: 50 px above, 51 below
    (CENTER_CROP, (300, 200), (4, 5)),     # crop x 50..250
    (CENTER_CROP, (200, 300), (5, 4)),     # crop y 50..250
    (FULL_IMAGE, (300, 200), (4, 6)),
    (FULL_IMAGE, (240, 240), (3, 8)),
]


def _random_boxes(rng, size, n):
    w, h = size
    out = []
    for _ in range(n):
        x0, y0 = int(rng.integers(-40, w)), int(rng.integers(-40, h))
        out.append((x0, y0, x0 + int(rng.integers(5, w // 2)), y0 + int(rng.integers(5, h // 2))))
    return out


@pytest.mark.parametrize("view, size, shape", CASES)
def test_cam_mass_matches_a_brute_force_reference(view, size, shape):
    rng = np.random.default_rng(zlib.crc32(repr((view, size, shape)).encode()))     # fixed per case
    for trial in range(6):
        cam = rng.integers(0, 256, shape).astype(np.uint8)
        boxes = _random_boxes(rng, size, int(rng.integers(1, 5)))       # overlapping, partly outside the meme
        _close(cam_mass_in_boxes(cam, boxes, size, view=view), _reference(cam, boxes, size, view))


@pytest.mark.parametrize("view", GRID_VIEWS)
@pytest.mark.parametrize("size", [(300, 200), (173, 311), (500, 500)])
def test_uniform_cam_gives_mass_equal_to_area(view, size):
    rng = np.random.default_rng(7)
    w, h = size
    for grid in ((7, 7), (3, 11), (1, 1)):
        for value in (1, 200, 0.37):
            corners = rng.uniform((-20, -20), (w, h), (3, 2))
            sides = rng.uniform((1, 1), (w / 2, h / 2), (3, 2))
            boxes = [(x, y, x + dx, y + dy) for (x, y), (dx, dy) in zip(corners.tolist(), sides.tolist())]
            got = cam_mass_in_boxes(np.full(grid, value), boxes, size, view=view)
            assert got["area"] > 0 or view == CENTER_CROP
            assert got["mass"] == pytest.approx(got["area"], abs=1e-9)
            if got["area"] > 0:
                assert got["ratio"] == pytest.approx(1.0, abs=1e-9)


def test_uniform_cam_area_is_the_boxes_share_of_the_visible_meme():
    # full image 400 x 300, two disjoint boxes and one inside another (the union counts once)
    boxes = [(0, 0, 100, 30), (200, 100, 260, 200), (210, 110, 250, 150)]
    got = cam_mass_in_boxes(np.ones((5, 5)), boxes, (400, 300), view=FULL_IMAGE)
    assert got["area"] == pytest.approx((100 * 30 + 60 * 100) / (400 * 300), abs=1e-12)
    assert got["boxes_seen"] == pytest.approx(1.0)


@pytest.mark.parametrize("view", GRID_VIEWS)
def test_cam_on_the_box_cells_only_gives_mass_one(view):
    # 400 x 400: every view's grid covers exactly the meme; a 4 x 4 grid has cells of 100 px
    box = (100, 200, 300, 300)                   # cells (row 2, col 1) and (row 2, col 2)
    cam = np.zeros((4, 4), np.uint8)
    cam[2, 1:3] = 255
    got = cam_mass_in_boxes(cam, [box], (400, 400), view=view)
    area = 200 * 100 / (400 * 400)
    _close(got, dict(mass=1.0, area=area, ratio=1 / area, boxes_seen=1.0))


def test_cam_on_the_box_cells_of_a_padded_meme():
    # 400 x 300 padded to 400 x 400: 50 px bands above and below; 4 x 4 cells of 100 px, row k covers meme
    # y in [100k - 50, 100k + 50); the box is cell (row 1, col 1), wholly on the meme
    cam = np.zeros((4, 4))
    cam[1, 1] = 3.5
    got = cam_mass_in_boxes(cam, [(100, 50, 200, 150)], (400, 300), view=PAD_SQUARE)
    area = 100 * 100 / (400 * 300)
    _close(got, dict(mass=1.0, area=area, ratio=1 / area, boxes_seen=1.0))


def test_pad_square_bands_count_neither_as_mass_nor_as_area():
    # A 100 x 200 meme padded to 200 x 200: 50 px bands left and right. A 2 x 2 grid of 100 px cells over
    # the square: column 0 covers meme x in [-50, 50), so only x in [0, 50) of it is meme; column 1 likewise.
    # CAM [[2, 1], [1, 1]]: visible weights 2*50*100, 1*50*100, 1*50*100, 1*50*100 -> total 25000; the box
    # [0, 0, 50, 100] is the visible part of cell (0, 0): mass 10000 / 25000, area 5000 / 20000.
    got = cam_mass_in_boxes(np.array([[2, 1], [1, 1]]), [(0, 0, 50, 100)], (100, 200), view=PAD_SQUARE)
    _close(got, dict(mass=0.4, area=0.25, ratio=1.6, boxes_seen=1.0))
    # Had the bands counted, the mass would be 10000 / 50000 and the area 5000 / 40000.
    assert got["mass"] != pytest.approx(0.2) and got["area"] != pytest.approx(0.125)


def test_pad_square_band_cells_do_not_weigh_at_all():
    # A 100 x 300 meme padded to 300 x 300: a 1 x 3 grid's outer columns lie wholly on the padding.
    # Only the middle column is visible and it is uniform, so mass = area = 0.5 whatever the bands hold.
    for band in (0, 9, 255):
        got = cam_mass_in_boxes(np.array([[band, 1, band]]), [(0, 0, 100, 150)], (100, 300), view=PAD_SQUARE)
        _close(got, dict(mass=0.5, area=0.5, ratio=1.0, boxes_seen=1.0))
    # a CAM that is non-zero on the padding only has no visible mass
    got = cam_mass_in_boxes(np.array([[5, 0, 5]]), [(0, 0, 100, 150)], (100, 300), view=PAD_SQUARE)
    _close(got, dict(mass=None, area=0.5, ratio=None, boxes_seen=1.0))


def test_a_box_outside_the_centre_crop_is_not_seen():
    # 300 x 100: CLIP's centre crop keeps x in [100, 200)
    cam = np.arange(1, 17).reshape(4, 4)
    got = cam_mass_in_boxes(cam, [(10, 10, 90, 50)], (300, 100), view=CENTER_CROP)
    _close(got, dict(mass=0.0, area=0.0, ratio=None, boxes_seen=0.0))
    # half of this box is cropped away: visible part [150, 200) x [0, 50) of the 100 x 100 crop
    got = cam_mass_in_boxes(np.ones((4, 4)), [(150, 0, 250, 50)], (300, 100), view=CENTER_CROP)
    _close(got, dict(mass=0.25, area=0.25, ratio=1.0, boxes_seen=0.5))


def test_center_crop_seen_fractions():
    cam = np.random.default_rng(3).random((6, 6))
    boxes = [(120, 20, 330, 90), (10, 150, 390, 190)]
    default = cam_mass_in_boxes(cam, boxes, (400, 200), view=CENTER_CROP)
    same = cam_mass_in_boxes(cam, boxes, (400, 200), view=CENTER_CROP, seen=(0.25, 0.0, 0.75, 1.0))
    assert default == same
    # a squashing processor (seen = the whole image) is the full-image grid
    squash = cam_mass_in_boxes(cam, boxes, (400, 200), view=CENTER_CROP, seen=(0.0, 0.0, 1.0, 1.0))
    _close(squash, {k: v for k, v in cam_mass_in_boxes(cam, boxes, (400, 200), view=FULL_IMAGE).items()})


def test_grid_region_by_hand():
    assert grid_region((300, 200), PAD_SQUARE) == (0.0, -50.0, 300.0, 250.0)
    assert grid_region((301, 200), PAD_SQUARE) == (0.0, -50.0, 301.0, 251.0)
    assert grid_region((200, 300), PAD_SQUARE) == (-50.0, 0.0, 250.0, 300.0)
    assert grid_region((300, 200), CENTER_CROP) == (50.0, 0.0, 250.0, 200.0)
    assert grid_region((300, 200), CENTER_CROP, seen=(0.1, 0.2, 0.5, 1.0)) == pytest.approx((30, 40, 150, 200))
    assert grid_region((300, 200), FULL_IMAGE) == (0.0, 0.0, 300.0, 200.0)
    assert DEFAULT_VIEW in GRID_VIEWS
    with pytest.raises(ValueError, match="unknown CAM view"):
        grid_region((300, 200), "letterbox")


def test_default_view_is_pad_square():
    cam = np.random.default_rng(5).random((3, 3))
    boxes = [(0, 0, 150, 40)]
    assert cam_mass_in_boxes(cam, boxes, (300, 200)) == cam_mass_in_boxes(cam, boxes, (300, 200), view=PAD_SQUARE)


def test_stored_blob_equals_the_array_form():
    rng = np.random.default_rng(11)
    cam = rng.integers(0, 256, (3, 5)).astype(np.uint8)
    boxes = [(20, 30, 200, 90), (0, 150, 120, 199)]
    want = cam_mass_in_boxes(cam, boxes, (300, 200), view=PAD_SQUARE)
    blob = cam.tobytes()                                      # a heatmaps row: uint8, row-major
    for form in (blob, bytearray(blob), memoryview(blob)):
        assert cam_mass_in_boxes(form, boxes, (300, 200), view=PAD_SQUARE, grid_h=3, grid_w=5) == want
    assert cam_mass_in_boxes(cam.tolist(), boxes, (300, 200), view=PAD_SQUARE) == want
    assert np.array_equal(cam_grid(blob, 3, 5), cam.astype(float))
    # row-major: the transposed reading is another map
    assert cam_mass_in_boxes(blob, boxes, (300, 200), view=PAD_SQUARE, grid_h=5, grid_w=3) != want


def test_boxes_in_the_ocr_column_forms_are_the_same():
    cam = np.random.default_rng(2).random((4, 4))
    plain = [(20, 30, 200, 90)]
    dicts = [{"box": [20, 30, 200, 90], "text": "КОТ", "conf": 0.9}]
    want = cam_mass_in_boxes(cam, plain, (300, 200))
    assert cam_mass_in_boxes(cam, dicts, (300, 200)) == want
    assert cam_mass_in_boxes(cam, json.dumps(dicts, ensure_ascii=False), (300, 200)) == want
    assert cam_mass_in_boxes(cam, plain * 3, (300, 200)) == want        # duplicates: one union


def test_no_boxes_and_a_zero_cam():
    got = cam_mass_in_boxes(np.ones((3, 3)), [], (300, 200))
    _close(got, dict(mass=0.0, area=0.0, ratio=None, boxes_seen=None))
    got = cam_mass_in_boxes(np.ones((3, 3)), [(400, 300, 500, 350)], (300, 200))      # off the meme
    _close(got, dict(mass=0.0, area=0.0, ratio=None, boxes_seen=None))
    got = cam_mass_in_boxes(np.zeros((3, 3)), [(0, 0, 100, 100)], (300, 200), view=FULL_IMAGE)
    _close(got, dict(mass=None, area=100 * 100 / (300 * 200), ratio=None, boxes_seen=1.0))


@pytest.mark.parametrize("cam, dims", [
    (b"\x01\x02\x03", (2, 2)),                 # blob of the wrong length
    (b"\x01\x02\x03\x04", (None, None)),       # blob without its grid shape
    (b"\x01\x02\x03\x04", (2, None)),
    (np.ones(9), (None, None)),                # 1-D
    (np.ones((2, 3, 3)), (None, None)),        # 3-D
    (np.ones((0, 4)), (None, None)),           # empty
    (np.ones((4, 6)), (6, 4)),                 # a 2-D array of another shape than the one given
    (np.array([[1.0, -1.0]]), (None, None)),   # negative
    (np.array([[1.0, np.nan]]), (None, None)),
    (np.array([[1.0, np.inf]]), (None, None)),
])
def test_bad_cam_shapes_and_values_raise(cam, dims):
    with pytest.raises(ValueError):
        cam_mass_in_boxes(cam, [(0, 0, 10, 10)], (100, 100), grid_h=dims[0], grid_w=dims[1])


def test_a_grid_region_off_the_meme_raises():
    with pytest.raises(ValueError, match="does not overlap"):
        cam_mass_in_boxes(np.ones((2, 2)), [(0, 0, 10, 10)], (100, 100), view=CENTER_CROP, seen=(1.2, 0, 1.5, 1))
    with pytest.raises(ValueError, match="unknown CAM view"):
        cam_mass_in_boxes(np.ones((2, 2)), [(0, 0, 10, 10)], (100, 100), view="stretch")


# =========================================================================== 2. caption quotes
def test_normalise_words():
    assert normalise_words("Ёлка, ДУРАКОМ! кот-пёс 42ого ок") == ["елка", "дураком", "кот", "пес", "ого"]
    assert normalise_words("Ok, THE cat's toy") == ["the", "cat", "toy"]
    assert normalise_words("да нет", min_len=2) == ["да", "нет"]
    assert normalise_words(None) == [] and normalise_words("") == []


@pytest.mark.parametrize("a, b, same", [
    ("дурак", "дураком", True), ("дураком", "дурак", True), ("работу", "работа", True),
    ("ненавижу", "ненависть", True), ("кот", "кота", True), ("кот", "кот", True),
    ("понедельники", "понедельник", True), ("перетрут", "перетрет", True),
    ("кот", "котлета", False), ("котлета", "кот", False), ("сосед", "сосиска", False), ("кот", "кит", False),
    ("умный", "ум", False), ("cat", "category", False), ("toxic", "toxicity", True),
])
def test_words_match(a, b, same):
    assert words_match(a, b) is same


def test_caption_quote_matches_inflected_cyrillic_words():
    got = caption_quote("Подпись называет человека дураком, который только думает, что умён.",
                        "ОН ДУМАЛ, ЧТО УМНЫЙ\nА ОКАЗАЛСЯ ДУРАКОМ")
    # caption words: думал, умный, оказался, дураком ("что" is a stop word, "он"/"а" too short);
    # the explanation has дураком and думает (думал ~ думает: common prefix "дума", 1 and 2 letters past it)
    assert got["quoted_words"] == ["думал", "дураком"]
    assert got["overlap"] == pytest.approx(2 / 4)
    assert got["quotes"] is True


def test_caption_quote_case_and_yo():
    got = caption_quote("ежик перетрет всё", "ТЕРПЕНИЕ И ТРУД ВСЁ ПЕРЕТРУТ, ЁЖИК")
    # caption words: терпение, труд, перетрут, ежик ("все" is a stop word)
    assert got["quoted_words"] == ["перетрут", "ежик"]
    assert got["overlap"] == pytest.approx(0.5) and got["quotes"] is True


def test_caption_quote_does_not_take_a_longer_word_for_a_short_one():
    got = caption_quote("На тарелке котлета.", "КОТ")
    assert got == dict(overlap=0.0, quoted_words=[], quotes=False)
    got = caption_quote("Кота кормят.", "КОТ")
    assert got == dict(overlap=1.0, quoted_words=["кот"], quotes=True)     # a one-word caption quoted


def test_caption_quote_ignores_stop_words():
    # every caption word is a stop word (или too short): no caption words at all
    assert caption_quote("Это всё, что есть.", "ЭТО ВСЁ, ЧТО ЕСТЬ") == dict(overlap=None, quoted_words=[], quotes=False)
    # stop words shared by caption and explanation do not make a quote
    got = caption_quote("Это мой пёс, когда он голоден.", "ЭТО МОЙ КОТ, КОГДА ОН СЫТ")
    assert got["quoted_words"] == [] and got["overlap"] == 0.0 and got["quotes"] is False


def test_caption_quote_one_word_of_many_is_not_a_quote():
    got = caption_quote("Человек на фото работает.", "КОГДА ПРИШЁЛ НА РАБОТУ\nА ТАМ ОПЯТЬ СОВЕЩАНИЕ")
    # caption words: пришел, работу, опять, совещание; работает ~ работу ("работ" + 2 / + 1)
    assert got["quoted_words"] == ["работу"]
    assert got["overlap"] == pytest.approx(1 / 4) and got["quotes"] is False


def test_caption_quote_keeps_caption_order_and_distinct_words():
    got = caption_quote("пес и кот", "КОТ КОТ ПЁС")
    assert got == dict(overlap=1.0, quoted_words=["кот", "пес"], quotes=True)


@pytest.mark.parametrize("ocr_text", [None, "", "   ", "!!! 12 ?", "А И Я"])
def test_caption_quote_without_caption_words_has_no_overlap(ocr_text):
    assert caption_quote("Мем про кота и собаку.", ocr_text) == dict(overlap=None, quoted_words=[], quotes=False)


def test_caption_quote_without_an_explanation():
    assert caption_quote(None, "ЗАКРОЙ РОТ") == dict(overlap=0.0, quoted_words=[], quotes=False)


# =========================================================================== 3. possible contradictions
# (explanation, flagged with label toxic, flagged with label non_toxic)
STATES_TOXIC = (False, True)          # the explanation says "toxic": a contradiction of non_toxic only
STATES_NON_TOXIC = (True, False)      # it says "not toxic": a contradiction of toxic only
NO_VERDICT = (False, False)
CONTRADICTIONS = [
    # plain statements
    ("Мем токсичный, потому что оскорбляет человека по внешности.", *STATES_TOXIC),
    ("Мем токсичен.", *STATES_TOXIC),
    ("Подпись унизительна для пожилых людей.", *STATES_TOXIC),
    ("Мем нейтральный: это безобидная шутка про работу.", *STATES_NON_TOXIC),
    ("Шутка безобидна.", *STATES_NON_TOXIC),
    ("This meme is toxic because it insults the viewer.", *STATES_TOXIC),
    ("The meme is a harmless joke about Mondays.", *STATES_NON_TOXIC),
    ("Без сомнения, мем оскорбительный.", *STATES_TOXIC),
    ("Мем без всякого сомнения токсичный.", *STATES_TOXIC),
    ("This is no doubt a toxic meme.", *STATES_TOXIC),
    # negations
    ("Мем не содержит оскорблений.", *STATES_NON_TOXIC),
    ("Мем нетоксичный.", *STATES_NON_TOXIC),
    ("Мем совершенно нетоксичен.", *STATES_NON_TOXIC),
    ("Токсичности нет.", *STATES_NON_TOXIC),
    ("Токсичности в нём нет, это просто ирония.", *STATES_NON_TOXIC),
    ("Мем не является токсичным.", *STATES_NON_TOXIC),
    ("Токсичным он не является.", *STATES_NON_TOXIC),
    ("Мем никого не оскорбляет.", *STATES_NON_TOXIC),
    ("В меме нет ни оскорблений, ни унижения.", *STATES_NON_TOXIC),
    ("Ничего оскорбительного в меме нет.", *STATES_NON_TOXIC),
    ("Мем не безобидный.", *STATES_TOXIC),
    ("This meme is not toxic.", *STATES_NON_TOXIC),
    ("The meme is non-toxic.", *STATES_NON_TOXIC),
    ("It isn't offensive in any way.", *STATES_NON_TOXIC),
    ("There are no insults here.", *STATES_NON_TOXIC),
    # «не X, а Y» corrects X
    ("Это не оскорбительный мем, а дружеская шутка.", *STATES_NON_TOXIC),
    ("Токсичности нет, а есть самоирония.", *STATES_NON_TOXIC),
    # a negation that is not the cue's
    ("Мем оскорбительный, и в нём нет ничего смешного.", *STATES_TOXIC),
    ("Мем оскорбительный и в нём нет ничего смешного.", *STATES_TOXIC),
    ("Оскорбительный мем не является шуткой.", *STATES_TOXIC),
    ("Токсичный подтекст не обнаружен.", *STATES_NON_TOXIC),
    # negated toxic-only stems plain are no verdict (they describe what the meme shows)
    ("Мем оскорбляет соседа.", *NO_VERDICT),
    ("The meme insults the neighbour.", *NO_VERDICT),
    # «не только»: the negation is cancelled, the first cue no verdict
    ("Мем не только обидный, но и унизительный.", *STATES_TOXIC),
    ("Мем не просто токсичный.", *NO_VERDICT),
    # quoted caption text is not the model's verdict
    ("Надпись «ты токсичный неудачник» звучит грубо.", *NO_VERDICT),
    ("The caption \"so offensive\" is a quote from a film.", *NO_VERDICT),
    ("В подписи «не оскорбляй меня» видно, что мем токсичный.", *STATES_TOXIC),
    # hypotheticals, concessions, appearances: no verdict
    ("Мем может показаться оскорбительным, но это дружеская шутка.", *NO_VERDICT),
    ("На первый взгляд мем безобидный.", *NO_VERDICT),
    ("Выглядит безобидно, но на деле мем унижает.", *NO_VERDICT),
    ("Мем безобидный, однако подпись грубая.", *NO_VERDICT),
    ("Если бы не подпись, мем был бы безобидным.", *NO_VERDICT),
    ("Я не считаю мем токсичным.", *NO_VERDICT),
    ("It might seem offensive, but it is a joke.", *NO_VERDICT),
    ("At first glance the meme looks harmless.", *NO_VERDICT),
    # questions: no verdict
    ("Является ли мем токсичным?", *NO_VERDICT),
    ("Токсичный ли это мем?", *NO_VERDICT),
    ("Is this meme toxic?", *NO_VERDICT),
    # picture words: a neutral background is not a verdict
    ("На нейтральном фоне крупная надпись.", *NO_VERDICT),
    # both classes stated: a contradiction of either label
    ("Мем нейтральный. Но он токсичный.", True, True),
    ("Мем токсичный. Мем нетоксичный.", True, True),
    # no cue at all
    ("На картинке кот сидит на подоконнике.", *NO_VERDICT),
]


@pytest.mark.parametrize("explanation, if_toxic, if_non_toxic", CONTRADICTIONS)
def test_possible_contradiction_table(explanation, if_toxic, if_non_toxic):
    for label, want in ((TOXIC, if_toxic), (NON_TOXIC, if_non_toxic)):
        got = possible_contradiction(explanation, label)
        assert got["flag"] is want, (label, got)
        if want:                                   # the cue is a wording of the explanation
            low = " ".join(explanation.lower().replace("ё", "е").split())
            assert got["cue"] and got["cue"] in low, got
        else:
            assert got["cue"] is None
    assert possible_contradiction(explanation, None) == dict(flag=False, cue=None)


def test_possible_contradiction_cue_is_the_first_contrary_wording():
    assert possible_contradiction("Мем не содержит оскорблений.", TOXIC)["cue"] == "не содержит оскорблений"
    assert possible_contradiction("Токсичности в нём нет.", TOXIC)["cue"] == "токсичности в нем нет"
    assert possible_contradiction("Мем нетоксичный.", TOXIC)["cue"] == "нетоксичный"
    assert possible_contradiction("This meme is not toxic.", TOXIC)["cue"] == "not toxic"
    got = possible_contradiction("Мем безобидный, хотя и грубоватый. Он не токсичный.", TOXIC)
    assert got == dict(flag=True, cue="безобидный")


@pytest.mark.parametrize("explanation", [None, "", "   ", "Мем токсичный.", "Мем нетоксичный."])
@pytest.mark.parametrize("label", [None, "unknown", ""])
def test_possible_contradiction_needs_a_label_and_an_explanation(explanation, label):
    assert possible_contradiction(explanation, label) == dict(flag=False, cue=None)
    if not (explanation or "").strip():
        assert possible_contradiction(explanation, TOXIC) == dict(flag=False, cue=None)


# =========================================================================== 4. why an answer has no class
PROMPT = PROMPTS["label-first-v1"].render()
# (raw answer, prompt, expected kind)
FAILURES = [
    # empty or cut off
    ("", None, "empty or cut off"),
    ("   \n\t", None, "empty or cut off"),
    (None, None, "empty or cut off"),
    ("На картинке изображён кот, который сидит на", None, "empty or cut off"),
    ("The image shows a man holding a", None, "empty or cut off"),
    ("The caption says that the", None, "empty or cut off"),
    ("Сложно сказать, мем может быть", None, "empty or cut off"),          # cut off before hedge
    # template echo
    ("Класс: <токсичный|нейтральный>", None, "template echo"),
    ("Класс: токсичный|нейтральный\nОбъяснение: ...", None, "template echo"),
    ("«Класс: токсичный» или «Класс: нейтральный».", None, "template echo"),
    ("Label: <toxic|non_toxic>", None, "template echo"),
    ("Answer: {label}", None, "template echo"),
    ("Извините, класс: <toxic or class>", None, "template echo"),          # echo before refusal
    (PROMPT, None, "template echo"),
    ("Ты — модератор контента. Перед тобой мем: картинка и текст на ней. Определи, токсичный он или нейтральный.",
     PROMPT, "template echo"),                                              # the prompt's trigrams given back
    # refusal
    ("Извините, я не могу оценивать такие изображения.", None, "refusal"),
    ("К сожалению, я не буду классифицировать этот мем.", None, "refusal"),
    ("Как ИИ, я не могу выносить такие суждения.", None, "refusal"),
    ("I'm sorry, but I can't help with that.", None, "refusal"),
    ("As an AI, I am unable to classify this image.", None, "refusal"),
    ("Извините, я не могу помочь с этим", None, "refusal"),                # refusal before cut off
    # hedge
    ("Сложно сказать, мем может быть и токсичным, и нейтральным.", None, "hedge"),
    ("Не могу однозначно сказать.", None, "hedge"),
    ("Я не могу точно сказать.", None, "hedge"),
    ("Это зависит от контекста.", None, "hedge"),
    ("Мем скорее токсичен или нейтрален.", None, "hedge"),
    ("It depends on the context.", None, "hedge"),
    ("Hard to say, maybe it is offensive.", None, "hedge"),
    ("I can't say for sure whether it is toxic.", None, "hedge"),
    ("Ты — модератор контента. Перед тобой мем: картинка и текст на ней. Определи, токсичный он или нейтральный.",
     None, "hedge"),                                                        # without the prompt: both class words
    # other
    ("На картинке кот.", None, "other"),
    ("Мем про понедельник и работу.", None, "other"),
    ("The picture shows a dog on a sofa.", None, "other"),
    ("A cat and a dog.", PROMPT, "other"),
    ("Кот сидит на столе (фото).", PROMPT, "other"),
]


@pytest.mark.parametrize("raw, prompt, kind", FAILURES)
def test_answer_failure_kind_table(raw, prompt, kind):
    assert answer_failure_kind(raw, None, prompt) == kind


def test_the_table_has_russian_and_english_examples_of_every_kind():
    russian, english = Counter(), Counter()
    for raw, _, kind in FAILURES:
        low = (raw or "").lower()
        if any("а" <= ch <= "я" for ch in low):
            russian[kind] += 1
        elif any("a" <= ch <= "z" for ch in low):
            english[kind] += 1
    for kind in FAILURE_KINDS:
        assert russian[kind] >= 2 and english[kind] >= 2, kind


@pytest.mark.parametrize("label", [TOXIC, NON_TOXIC])
def test_an_answer_with_a_class_has_no_failure_kind(label):
    for raw, prompt, _ in FAILURES:
        assert answer_failure_kind(raw, label, prompt) is None


def test_failure_kinds_counts_every_kind():
    rows = [dict(raw_answer=raw, label=None, prompt=prompt) for raw, prompt, _ in FAILURES]
    rows += [dict(raw_answer="Класс: токсичный\nОбъяснение: грубо.", label=TOXIC),
             dict(raw_answer="", label=NON_TOXIC, prompt=PROMPT),
             dict(raw_answer="Извините.", label=None)]                      # no prompt key at all: refusal
    want = Counter(kind for _, _, kind in FAILURES)
    want["refusal"] += 1
    got = failure_kinds(rows)
    assert list(got) == list(FAILURE_KINDS)
    assert got == {k: want[k] for k in FAILURE_KINDS}
    assert sum(got.values()) == len(rows) - 2
    assert failure_kinds([]) == dict.fromkeys(FAILURE_KINDS, 0)
    assert failure_kinds(iter([dict(raw_answer="", label=None)])) == {**dict.fromkeys(FAILURE_KINDS, 0),
                                                                     "empty or cut off": 1}


def test_faithfulness_version_is_a_cache_key_part():
    assert isinstance(FAITHFULNESS_VERSION, str) and FAITHFULNESS_VERSION.strip()
