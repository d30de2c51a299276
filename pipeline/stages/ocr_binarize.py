"""Meme-aware binarisation for the OCR stage: a caption crop -> black letters on white, several ways.

Memes write captions as white letters in a black outline, black letters on a light strip, or white
text on a dark picture; Tesseract reads black on white. meme_binarizations() gives one candidate mask
per way (outlined / contrast / light) and pipeline.stages.ocr reads them in turn (docs/ocr.md).
Every parameter (`p`) is OcrStage's TESSERACT_PARAMS, part of the OCR variant's cache key.
"""
from __future__ import annotations

from typing import Any

import numpy as np

# ----------------------------------------------------------------------------- preprocessing

def otsu_minority_ink(grey: np.ndarray) -> np.ndarray:
    """Otsu binarisation with the minority class as black ink on white."""
    import cv2
    _, bw = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    ink_is_white = (bw > 0).mean() < 0.5
    return 255 - bw if ink_is_white else bw


def letter_ink(rgb: np.ndarray, p: dict[str, Any], text: str, require_outline: bool,
                line_crop: bool = True, open_sides: tuple[bool, bool] = (False, False)) -> np.ndarray:
    """Letters of one colour -> black ink on white, keeping only letter-like blobs.

    text="light": white-ish letters (the classic meme caption, outlined in black); text="dark":
    black letters (outlined in white, or on a light strip). Blobs running into the crop's edge are
    background unless letter-sized (a caption at the picture's edge is cut by it). With
    require_outline a blob must also be mostly rimmed by pixels of the opposite tone, as outlined
    captions are; that drops white clouds, faces and highlights. Blobs are labelled after a 1-px
    erosion, so a broken outline does not join letters to a background of the same tone.
    line_crop=False (a whole picture): only large blobs running into its edge are dropped.
    open_sides (left, right): that side of the crop is the picture's edge, so letters cut by it
    are kept like those cut by the top/bottom."""
    import cv2
    lo, hi = rgb.min(axis=2), rgb.max(axis=2)
    if text == "light":
        mask = (lo >= p["light_min"]) & ((hi - lo) <= p["light_chroma_max"])
        rim_ok = hi <= p["dark_max"]
    else:
        mask = hi <= p["dark_max"]
        rim_ok = lo >= p["light_min"]
    mask = mask.astype(np.uint8)
    cut = cv2.erode(mask, np.ones((3, 3), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(cut, connectivity=4)
    if n <= 1:
        return np.full(mask.shape, 255, np.uint8)
    # Grow labels back over the eroded pixel (within the mask).
    labels = np.where(mask > 0, cv2.dilate(labels.astype(np.float32), np.ones((3, 3), np.uint8)), 0).astype(np.int32)
    H, W = mask.shape
    x, y, w, h = stats[:, 0] - 1, stats[:, 1] - 1, stats[:, 2] + 2, stats[:, 3] + 2
    if line_crop:
        # CRAFT boxes have side margins, so no letter reaches the crop's left/right edge; a caption
        # cut by the top/bottom of the picture can reach those, if letter-sized.
        touches_left, touches_right = x <= 0, x + w >= W
        touches_side = (touches_left & ~open_sides[0]) | (touches_right & ~open_sides[1])
        touches_end = (y <= 0) | (y + h >= H) | touches_left | touches_right
        keep = ~touches_side & ~(touches_end & ((w > 1.2 * H) | (h > 0.9 * H)))
        keep &= stats[:, 4] >= p["min_blob_area"] * H * H  # specks of texture, JPEG noise
        if p.get("thin_blob"):  # slivers of background caught between two letters' outlines
            keep &= ~((stats[:, 2] < p["thin_blob"] * H) & (stats[:, 3] > 2 * stats[:, 2]))
        if p.get("end_speck"):  # bits of outline where the picture's edge cuts a caption
            keep &= ~(((y <= 0) | (y + h >= H)) & (stats[:, 3] < p["end_speck"] * H))
    else:  # a whole picture: light regions running into its edge are background unless small
        touches = (x <= 0) | (y <= 0) | (x + w >= W) | (y + h >= H)
        keep = ~(touches & ((w > 0.15 * W) | (h > 0.15 * H))) & (stats[:, 4] >= 12)
    if require_outline:
        # The rim: a ring 2..4 px outside each blob (past the anti-aliased edge), each rim pixel
        # taking the label of the blob next to it.
        grown = cv2.dilate(labels.astype(np.float32), np.ones((9, 9), np.uint8)).astype(np.int32)
        near = cv2.dilate((labels > 0).astype(np.uint8), np.ones((3, 3), np.uint8))
        rim = (near == 0) & (grown > 0)
        rim_total = np.bincount(grown[rim], minlength=n)
        rim_good = np.bincount(grown[rim & rim_ok], minlength=n)
        keep &= rim_good >= p["outline_min_fraction"] * np.maximum(rim_total, 1)
    keep[0] = False
    return np.where(keep[labels], 0, 255).astype(np.uint8)


def solidity(ink: np.ndarray) -> float:
    """Ink / (ink + the holes it encloses): about 1 for letters, under 0.6 for outlines drawn round letters."""
    import cv2
    m = (ink == 0).astype(np.uint8)
    area = int(m.sum())
    if not area:
        return 0.0
    outside = np.pad(1 - m, 1, constant_values=1)
    ff = np.zeros((outside.shape[0] + 2, outside.shape[1] + 2), np.uint8)
    cv2.floodFill(outside, ff, (0, 0), 2)
    holes = int((outside[1:-1, 1:-1] == 1).sum())
    return area / (area + holes)


def meme_binarizations(rgb: np.ndarray, p: dict[str, Any],
                       open_sides: tuple[bool, bool] = (False, False)) -> dict[str, np.ndarray]:
    """Black-on-white candidates for one line crop, most usual meme caption style first.

    Of the two outlined styles (light letters rimmed by dark, dark rimmed by light) only one is
    kept: the outline round white letters passes as dark letters, and the holes of black letters
    as light ones. Outlines enclose what they are drawn round (low solidity), so the style whose
    blobs are not ring-like wins; if both or neither are, the one with more ink."""
    import cv2
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    light = letter_ink(rgb, p, "light", True, open_sides=open_sides)
    dark = letter_ink(rgb, p, "dark", True, open_sides=open_sides)
    ring_light, ring_dark = solidity(light) < p["ring_solidity"], solidity(dark) < p["ring_solidity"]
    if ring_light != ring_dark:
        outlined = dark if ring_light else light
    else:
        outlined = light if (light == 0).sum() >= (dark == 0).sum() else dark
    return {"outlined": outlined, "contrast": otsu_minority_ink(grey),
            "light": letter_ink(rgb, p, "light", False, open_sides=open_sides)}


def scale_to_height(rgb: np.ndarray, height: int) -> tuple[np.ndarray, float]:
    """Resize so the crop is `height` px tall (factor clipped to 0.25..6)."""
    import cv2
    scale = float(np.clip(height / max(rgb.shape[0], 1), 0.25, 6.0))
    if abs(scale - 1) > 0.02:
        interp = cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA
        rgb = cv2.resize(rgb, (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale))),
                         interpolation=interp)
    return rgb, scale


def pad_white(bw: np.ndarray, pad: int) -> np.ndarray:
    return np.pad(bw, pad, constant_values=255)


def word_gaps(bw: np.ndarray, p: dict[str, Any]) -> list[tuple[int, int]]:
    """Word gaps of a black-on-white line image, found from its letter blobs, not from a dictionary:
    column runs free of letter blobs at least `word_gap` x the letter height wide and at least
    `word_gap_ratio` x the line's median letter gap.

    Letter blobs are the solid ones at least 0.4 x as tall as the line's letters (their median
    height) and not thinner than `gap_min_stroke` x that height: remnants of the outline above or
    below the letters, slivers of background caught between two words and specks do not bridge a
    gap. Heavy condensed caption fonts set letters 0-15 % of their height apart and words 30-45 %,
    which Tesseract's LSTM often runs together («ЯРЕЗУЛЬТАТИНЦЕСТА»). Returns (x0, x1) pairs: the
    right end of one letter blob and the left end of the next."""
    import cv2
    ink = (bw == 0).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    if n <= 2:
        return []
    x, w, h, area = stats[1:, 0], stats[1:, 2], stats[1:, 3], stats[1:, 4]
    band = h.max()
    solid = area >= p["min_blob_area"] * band * band
    if not solid.any():
        return []
    letter_h = float(np.median(h[solid & (h >= 0.5 * h[solid].max())]))
    letters = solid & (h >= 0.4 * letter_h) & (w >= p["gap_min_stroke"] * letter_h)
    spans = sorted((int(a), int(a + b)) for a, b in zip(x[letters], w[letters]))
    runs, right = [], None
    for a, b in spans:
        if right is not None and a > right:
            runs.append((right, a))
        right = b if right is None else max(right, b)
    if len(runs) < 2:
        return []
    typical = float(np.median([b - a for a, b in runs]))
    least = max(p["word_gap"] * letter_h, p["word_gap_ratio"] * typical)
    return [(a, b) for a, b in runs if b - a >= least]
