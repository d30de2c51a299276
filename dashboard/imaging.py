"""Image work for the pages (PIL only): content-warning blur, heatmap blending, OCR boxes, originals.

Inputs are JPEG bytes from the cache (thumbnails, overlays); outputs are JPEG bytes for st.image.
The original file is read only from the folder a run recorded (runs.memes_root) joined with the
meme's stored relative path, only if it stays inside that folder and its SHA-256 still equals
the meme id; nothing a visitor types reaches a file path.
"""
from __future__ import annotations

import hashlib
import io
import json
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

from pipeline.config import MODEL_MAX_SIDE
from pipeline.images import BadImage, load_rgb

MAX_ORIGINAL_BYTES = 200 * 2**20
DISPLAY_MAX_SIDE = 1600          # the full-resolution view is downscaled to this for the browser


def _open(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im.convert("RGB")


def _jpeg(im: Image.Image, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    im.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as im:
        return im.size


@lru_cache(maxsize=512)
def blurred(data: bytes) -> bytes:
    """A strongly blurred copy (content warning): shapes and colours stay, text becomes unreadable."""
    im = _open(data)
    w, h = im.size
    small = im.resize((max(1, w // 16), max(1, h // 16)), Image.Resampling.BILINEAR)
    out = small.resize((w, h), Image.Resampling.BILINEAR).filter(ImageFilter.GaussianBlur(max(2, min(w, h) // 40)))
    return _jpeg(out, 70)


@lru_cache(maxsize=256)
def blend(base: bytes, overlay: bytes, opacity: float) -> bytes:
    """`overlay` over `base` at `opacity` (0 = only base, 1 = only overlay), at base's size."""
    a = _open(base)
    b = _open(overlay)
    if b.size != a.size:
        b = b.resize(a.size, Image.Resampling.BILINEAR)
    return _jpeg(Image.blend(a, b, max(0.0, min(1.0, float(opacity)))))


def model_input_size(width: int, height: int) -> tuple[float, float]:
    """The size OCR boxes refer to: the original downscaled to <= MODEL_MAX_SIDE on its long side."""
    scale = min(1.0, MODEL_MAX_SIDE / max(width, height, 1))
    return width * scale, height * scale


def parse_boxes(boxes_json: str | None) -> list[dict]:
    """OCR boxes from the cache's JSON; malformed entries are skipped."""
    if not boxes_json:
        return []
    try:
        items = json.loads(boxes_json)
    except (TypeError, ValueError):
        return []
    out = []
    for it in items if isinstance(items, list) else []:
        box = it.get("box") if isinstance(it, dict) else None
        if isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box):
            out.append({"box": [float(v) for v in box], "text": str(it.get("text", "")), "conf": it.get("conf")})
    return out


@lru_cache(maxsize=256)
def draw_boxes(data: bytes, boxes_json: str | None, width: int | None, height: int | None) -> bytes:
    """Draw OCR boxes (model-input pixel space of a width x height original) onto a thumbnail/overlay."""
    im = _open(data)
    boxes = parse_boxes(boxes_json)
    if not boxes or not width or not height:
        return _jpeg(im)
    in_w, in_h = model_input_size(width, height)
    sx, sy = im.size[0] / in_w, im.size[1] / in_h
    draw = ImageDraw.Draw(im)
    line = max(1, round(min(im.size) / 150))
    for b in boxes:
        x0, y0, x1, y1 = b["box"]
        draw.rectangle((x0 * sx, y0 * sy, x1 * sx, y1 * sy), outline=(0, 255, 120), width=line)
    return _jpeg(im)


def side_by_side(left: bytes, right: bytes, gap: int = 6) -> bytes:
    a, b = _open(left), _open(right)
    if b.size != a.size:
        b = b.resize(a.size, Image.Resampling.BILINEAR)
    out = Image.new("RGB", (a.size[0] * 2 + gap, a.size[1]), "white")
    out.paste(a, (0, 0))
    out.paste(b, (a.size[0] + gap, 0))
    return _jpeg(out)


def original_path(memes_root: str | None, rel_path: str | None) -> Path | None:
    """memes_root/rel_path if it exists and stays inside memes_root (both come from the cache)."""
    if not memes_root or not rel_path:
        return None
    root = Path(memes_root)
    try:
        root_resolved = root.resolve(strict=True)
        path = (root / rel_path).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):     # ValueError: a NUL byte in a stored path
        return None
    if not path.is_relative_to(root_resolved) or not path.is_file():
        return None
    return path


@lru_cache(maxsize=8)
def _original_cached(path: str, mtime_ns: int, size: int, meme_id: str) -> bytes | None:
    data = Path(path).read_bytes()
    if hashlib.sha256(data).hexdigest() != meme_id:
        return None                           # the file changed since it was scanned: not this meme
    try:
        im = load_rgb(data, max_side=min(MODEL_MAX_SIDE, DISPLAY_MAX_SIDE))
    except BadImage:
        return None
    return _jpeg(im, 90)


def original_image(memes_root: str | None, rel_path: str | None, meme_id: str) -> bytes | None:
    """The meme's original (upright, <= DISPLAY_MAX_SIDE) as JPEG, or None when it is gone or changed."""
    path = original_path(memes_root, rel_path)
    if path is None:
        return None
    stat = path.stat()
    if stat.st_size > MAX_ORIGINAL_BYTES:
        return None
    try:
        return _original_cached(str(path), stat.st_mtime_ns, stat.st_size, meme_id)
    except OSError:
        return None
