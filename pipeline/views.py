"""Counterfactual views of a meme (issue 16: does the toxicity come from the caption or the picture?).

Three views of one meme are judged by the same models:

  full             the meme as it is (MemeInput.image)
  caption-removed  the picture without its caption: the OCR boxes (padded, dilated) inpainted away with
                   OpenCV (`cv2.inpaint`, Telea); every pixel outside that mask is the original's, byte
                   for byte (`caption_mask` returns the mask, so a caller can show or check it)
  caption-only     the caption without the picture: the OCR text drawn as plain dark text (#202020) on a
                   plain light background (#f5f5f5) at the meme's size, in the synthetic memes' Cyrillic
                   DejaVu font, word-wrapped to the width and centred

Coordinates: the `ocr.boxes` JSON column is a list of {"box": [x0, y0, x1, y1], "text", "conf"} in the pixels
of `MemeInput.image`, i.e. `pipeline.images.load_rgb(path)`: upright (EXIF applied) and at most MODEL_MAX_SIDE
(2048) on its long side, x1/y1 exclusive. (Not the `memes.width`/`height` columns: those are the file's
header size, before EXIF rotation and the downscale.) Pass boxes in the given image's pixels, or give
`source_size` = the (width, height) of the image they were measured on and they are scaled.

A derived view needs a caption: a meme whose OCR text is empty gets no derived views; `has_caption` says
so and the caller reports "no OCR text" rather than computing one (`caption_only` raises ValueError on
such text; `caption_removed` of a meme without boxes would be the full view and is refused too).

Pure: PIL, numpy and OpenCV (imported on first use); no store, no models.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pipeline.devtools.synthetic_memes import caption_font_path, wrap_caption

VIEWS = ("full", "caption-removed", "caption-only")
FULL, CAPTION_REMOVED, CAPTION_ONLY = VIEWS
# Goes into the cache key of every result computed on a derived view: bump it when what a view looks like
# changes (padding, dilation, inpainting method, font, colours, layout).
VIEW_VERSION = "1"

# caption-removed
PAD_PX = 3                  # each OCR box grows by this many pixels on every side ...
PAD_FRACTION = 0.15         # ... plus this x the box's height (letter outlines and strokes stick out of the box)
DILATE_PX = 2               # then the mask is dilated by this radius (elliptic kernel) ...
INPAINT_RADIUS = 5          # ... and inpainted with cv2.INPAINT_TELEA at this radius
INPAINT_METHOD = "telea"    # or "ns" (Navier-Stokes)

# caption-only
TEXT_COLOUR = (0x20, 0x20, 0x20)
BACKGROUND_COLOUR = (0xF5, 0xF5, 0xF5)
TEXT_WIDTH = 0.9            # the text block fits in this share of the width ...
TEXT_HEIGHT = 0.9           # ... and of the height
MAX_FONT_FRACTION = 0.14    # the largest font size tried: this x min(width, height) ...
MIN_FONT_PX = 10            # ... shrinking in steps of 2 px down to this (then drawn even if it overflows)
LINE_SPACING = 1.15         # line step = this x the font's ascent + descent

Box = Sequence[float]
BoxLike = Box | Mapping[str, Any]


# ----------------------------------------------------------------------------- helpers
def has_caption(text: str | None) -> bool:
    """True when the OCR text holds a letter or digit: only such memes get derived views (the others are
    reported as "no OCR text")."""
    return bool(text) and any(ch.isalnum() for ch in text)


def as_boxes(boxes: Iterable[BoxLike] | None) -> list[tuple[float, float, float, float]]:
    """Plain (x0, y0, x1, y1) boxes from `ocr.boxes` dicts ({"box": [...], ...}) or plain 4-sequences; a JSON
    string of the column is accepted too. Boxes with x1 <= x0 or y1 <= y0 are dropped."""
    if boxes is None:
        return []
    if isinstance(boxes, str):
        import json
        boxes = json.loads(boxes) if boxes.strip() else []
    out = []
    for b in boxes:
        coords = b["box"] if isinstance(b, Mapping) else b
        x0, y0, x1, y1 = (float(v) for v in coords)
        if x1 > x0 and y1 > y0:
            out.append((x0, y0, x1, y1))
    return out


def scale_boxes(boxes: Iterable[BoxLike], source_size: tuple[int, int], target_size: tuple[int, int]
                ) -> list[tuple[float, float, float, float]]:
    """Boxes measured on an image of `source_size` (w, h) mapped to one of `target_size` (same picture, resized)."""
    sx, sy = target_size[0] / source_size[0], target_size[1] / source_size[1]
    return [(x0 * sx, y0 * sy, x1 * sx, y1 * sy) for x0, y0, x1, y1 in as_boxes(boxes)]


def caption_mask(size: tuple[int, int], boxes: Iterable[BoxLike], pad_px: float = PAD_PX,
                 pad_fraction: float = PAD_FRACTION, dilate_px: int = DILATE_PX,
                 source_size: tuple[int, int] | None = None) -> np.ndarray:
    """The (height, width) bool mask `caption_removed` inpaints: every box grown by pad_px + pad_fraction x
    its height on each side (outward to whole pixels), dilated by `dilate_px`, clipped to the image."""
    import cv2
    w, h = size
    plain = scale_boxes(boxes, source_size, size) if source_size else as_boxes(boxes)
    mask = np.zeros((h, w), np.uint8)
    for x0, y0, x1, y1 in plain:
        pad = pad_px + pad_fraction * (y1 - y0)
        l, t = max(0, int(np.floor(x0 - pad))), max(0, int(np.floor(y0 - pad)))
        r, b = min(w, int(np.ceil(x1 + pad))), min(h, int(np.ceil(y1 + pad)))
        if r > l and b > t:
            mask[t:b, l:r] = 1
    if dilate_px > 0 and mask.any():
        k = 2 * int(dilate_px) + 1
        mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    return mask.astype(bool)


# ----------------------------------------------------------------------------- caption-removed
def caption_removed(image: Image.Image, boxes: Iterable[BoxLike], pad_px: float = PAD_PX,
                    pad_fraction: float = PAD_FRACTION, dilate_px: int = DILATE_PX,
                    source_size: tuple[int, int] | None = None, radius: int = INPAINT_RADIUS,
                    method: str = INPAINT_METHOD) -> Image.Image:
    """The meme with its caption inpainted away (RGB, same size).

    boxes: `ocr.boxes` dicts or plain [x0, y0, x1, y1], in `image`'s pixels, or in those of an image of
    `source_size` (w, h) of the same picture. The mask is `caption_mask(...)`; pixels outside it are unchanged.
    ValueError when there is no box (a meme without OCR text has no caption-removed view).
    """
    import cv2
    boxes = list(as_boxes(boxes))
    if not boxes:
        raise ValueError("no OCR boxes: a meme without OCR text has no caption-removed view")
    if method not in ("telea", "ns"):
        raise ValueError(f"inpainting method must be 'telea' or 'ns', not {method!r}")
    rgb = np.ascontiguousarray(np.asarray(image.convert("RGB")))
    mask = caption_mask(image.size, boxes, pad_px, pad_fraction, dilate_px, source_size)
    if not mask.any():
        return Image.fromarray(rgb.copy(), "RGB")
    flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS
    filled = cv2.inpaint(rgb, mask.astype(np.uint8) * 255, float(radius), flag)
    out = rgb.copy()
    out[mask] = filled[mask]        # only the mask changes, whatever the inpainting does elsewhere
    return Image.fromarray(out, "RGB")


# ----------------------------------------------------------------------------- caption-only
@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(caption_font_path()), size)


def fit_caption(text: str, size: tuple[int, int]) -> tuple[ImageFont.FreeTypeFont, list[str]]:
    """The font (largest size from MAX_FONT_FRACTION x min(w, h) down to MIN_FONT_PX, step 2) and the wrapped
    lines at which `text` fits TEXT_WIDTH x TEXT_HEIGHT of `size`; at MIN_FONT_PX it is used as it is."""
    w, h = size
    max_w, max_h = TEXT_WIDTH * w, TEXT_HEIGHT * h
    font_px = max(MIN_FONT_PX, int(MAX_FONT_FRACTION * min(w, h)))
    while True:
        font = _font(font_px)
        lines = wrap_caption(text, font, int(max_w))
        asc, desc = font.getmetrics()
        height = len(lines) * (asc + desc) * LINE_SPACING
        if font_px <= MIN_FONT_PX or (height <= max_h and all(font.getlength(li) <= max_w for li in lines)):
            return font, lines
        font_px = max(MIN_FONT_PX, font_px - 2)


def caption_only(text: str, size: tuple[int, int]) -> Image.Image:
    """The caption alone: `text` (OCR lines are joined and re-wrapped) in TEXT_COLOUR on BACKGROUND_COLOUR,
    an RGB image of `size` (w, h), centred. ValueError when the text has no letter or digit."""
    if not has_caption(text):
        raise ValueError("no OCR text: a meme without a caption has no caption-only view")
    w, h = int(size[0]), int(size[1])
    if w < 1 or h < 1:
        raise ValueError(f"size must be positive, not {size!r}")
    words = " ".join(text.split())
    font, lines = fit_caption(words, (w, h))
    asc, desc = font.getmetrics()
    step = (asc + desc) * LINE_SPACING
    block = step * (len(lines) - 1) + asc + desc
    im = Image.new("RGB", (w, h), BACKGROUND_COLOUR)
    draw = ImageDraw.Draw(im)
    y = (h - block) / 2
    for line in lines:
        draw.text(((w - font.getlength(line)) / 2, y), line, font=font, fill=TEXT_COLOUR)
        y += step
    return im


def render_view(view: str, image: Image.Image, text: str | None = None, boxes: Iterable[BoxLike] | None = None,
                source_size: tuple[int, int] | None = None) -> Image.Image:
    """One view of a meme: "full" (the image itself), "caption-removed" (needs `boxes`) or "caption-only" (needs
    `text`). ValueError for a derived view of a meme without OCR text, or an unknown view."""
    if view == FULL:
        return image
    if view == CAPTION_REMOVED:
        # not `boxes or []`: the truth value of a numpy array of boxes is ambiguous (it raised)
        return caption_removed(image, [] if boxes is None else boxes, source_size=source_size)
    if view == CAPTION_ONLY:
        return caption_only(text or "", image.size)
    raise ValueError(f"unknown view {view!r}; known: {', '.join(VIEWS)}")


# ----------------------------------------------------------------------------- views as variants
DERIVED_VIEWS = (CAPTION_REMOVED, CAPTION_ONLY)
VIEW_CONFIG_KEY = "meme_view"       # the view in a variant's config; absent = the full meme (every set before views)
VIEW_NAME_SEPARATOR = "/"           # a derived set's name: "<full set's name>/<view>", e.g. "ru-v1+pad/caption-only"


def selected_views(names: str | Sequence[str] | None) -> list[str]:
    """The views of `--views` in VIEWS order, the full meme always among them: None or () = ["full"];
    "all" = every view. ValueError for an unknown name."""
    if names is None:
        return [FULL]
    items = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n and n.strip()]
    if "all" in items:
        return list(VIEWS)
    unknown = [n for n in items if n not in VIEWS]
    if unknown:
        raise ValueError(f"unknown view(s) {', '.join(unknown)}; known: {', '.join(VIEWS)} (or all)")
    return [v for v in VIEWS if v == FULL or v in items]


def view_of(config: Mapping[str, Any] | None) -> str:
    """The view a variant's config was computed on (FULL when it names none)."""
    return str((config or {}).get(VIEW_CONFIG_KEY) or FULL)


def derived_name(name: str, view: str) -> str:
    return f"{name}{VIEW_NAME_SEPARATOR}{view}"


def base_name(name: str) -> str:
    """The full-view set's name of a derived set's name (a full set's name is its own)."""
    head, sep, tail = name.rpartition(VIEW_NAME_SEPARATOR)
    return head if sep and tail in DERIVED_VIEWS else name
