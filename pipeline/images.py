"""Safe image decoding and the small encodings the cache stores (thumbnails, overlays).

Every image the pipeline reads goes through `load_rgb`, so EXIF rotation, palette/CMYK/16-bit
modes, animated GIFs, decompression bombs and huge photos are handled in one place.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline.config import MAX_IMAGE_PIXELS, MODEL_MAX_SIDE, THUMBNAIL_MAX_SIDE, THUMBNAIL_QUALITY
from pipeline.near_duplicates import perceptual_hash

Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS  # PIL raises DecompressionBombError above 2x this


class BadImage(ValueError):
    """The file is not an image we can read; the message says why in plain words."""


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    format: str
    frames: int
    phash: int | None = None        # perceptual hash of the first frame (pipeline.near_duplicates), signed 64-bit


def probe(data: bytes) -> ImageInfo:
    """Read the header and decode the first frame fully, so truncated files are caught here."""
    if not data:
        raise BadImage("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Our own limit below refuses these; PIL's DecompressionBombWarning would only add noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
        with im:
            w, h = im.size
            if w * h > MAX_IMAGE_PIXELS:
                raise BadImage(f"image declares {w}x{h} pixels (> {MAX_IMAGE_PIXELS:,}); refused as a possible decompression bomb")
            fmt = im.format or "unknown"
            frames = getattr(im, "n_frames", 1)
            _reduce_for_decode(im, MODEL_MAX_SIDE)
            im.load()
            phash = perceptual_hash(im)
    except BadImage:
        raise
    except Image.DecompressionBombError as e:
        raise BadImage(f"refused as a possible decompression bomb: {e}") from None
    except UnidentifiedImageError:
        raise BadImage(f"not a readable image: {_sniff(data)}") from None
    except Exception as e:  # PIL raises many types for broken files
        raise BadImage(f"not a readable image ({type(e).__name__}: {e})") from None
    return ImageInfo(w, h, fmt, frames, phash)


def phash_of(data: bytes) -> int:
    """The perceptual hash of an image's first frame, as probe computes it (for memes stored before it did)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        im = Image.open(io.BytesIO(data))
    with im:
        _reduce_for_decode(im, MODEL_MAX_SIDE)
        im.load()
        return perceptual_hash(im)


_SIGNATURES = ((b"%PDF", "a PDF document"), (b"PK\x03\x04", "a ZIP archive (or .docx/.xlsx/.odt)"),
               (b"\x1f\x8b", "a gzip archive"), (b"Rar!", "a RAR archive"), (b"7z\xbc\xaf", "a 7-Zip archive"),
               (b"<", "an HTML/XML/SVG text file (SVG is not supported)"))


def _sniff(data: bytes) -> str:
    """What a file Pillow cannot identify most likely is, in words."""
    for magic, what in _SIGNATURES:
        if data.startswith(magic):
            return f"unknown format, the bytes look like {what}"
    if data[4:8] == b"ftyp":
        return "unknown format, an ISO media file (HEIC/AVIF photo or MP4 video): convert photos to JPEG or PNG"
    head = data[:4096]
    try:
        head.decode("utf-8")
        is_text = b"\x00" not in head
    except UnicodeDecodeError as e:
        is_text = e.start >= len(head) - 3 and b"\x00" not in head   # a character cut at the 4 KB mark
    if is_text:
        return "unknown format, the bytes look like a text file"
    return f"unknown or unsupported format (file starts with {data[:8].hex(' ')})"


def _reduce_for_decode(im: Image.Image, max_side: int) -> None:
    """For JPEGs, let the decoder downscale by 1/2..1/8 while decoding (saves memory on huge photos)."""
    if im.format == "JPEG" and max(im.size) > 2 * max_side:
        im.draft("RGB", (max_side, max_side))


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        hi = arr.max() or 1.0
        im = Image.fromarray((arr * (255.0 / hi)).clip(0, 255).astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


def load_rgb(source: bytes | str | Path, max_side: int = MODEL_MAX_SIDE) -> Image.Image:
    """Decode to an upright RGB image no larger than `max_side` on its long side (first frame of animations)."""
    data = Path(source).read_bytes() if isinstance(source, (str, Path)) else source
    probe(data)
    with Image.open(io.BytesIO(data)) as im:
        _reduce_for_decode(im, max_side)
        im.seek(0)
        im = ImageOps.exif_transpose(im)
        im = _to_rgb(im)
    if max(im.size) > max_side:
        im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return im


def encode_jpeg(im: Image.Image, max_side: int = THUMBNAIL_MAX_SIDE, quality: int = 85) -> bytes:
    """A JPEG no larger than `max_side` on its long side (the thumbnail / overlay format of the cache)."""
    im = im.copy()
    im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.convert("RGB").save(buf, "JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def thumbnail(source: bytes | str | Path, max_side: int = THUMBNAIL_MAX_SIDE, quality: int = THUMBNAIL_QUALITY) -> bytes:
    """The stored thumbnail of an image file (or its bytes): upright RGB JPEG, longest side <= `max_side`
    (the precompute's --thumbnail-side), at JPEG `quality` (--thumbnail-quality). Decoded at twice the
    side first (JPEG draft mode), so huge photos are never decoded in full for it."""
    return encode_jpeg(load_rgb(source, max_side=max(2 * max_side, 768)), max_side=max_side, quality=quality)
