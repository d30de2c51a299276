"""Defaults and the label-folder mapping."""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MEMES_DIR = Path("memes_project/memes")
DEFAULT_DB = Path("data/vlmemes.duckdb")

TOXIC = "toxic"
NON_TOXIC = "non_toxic"
LABELS = (TOXIC, NON_TOXIC)

# Folder name (case-insensitive) -> label. Override with VLMEMES_LABEL_MAP="folder=label,folder=label".
DEFAULT_LABEL_MAP = {
    "негативно": TOXIC,
    "нейтрально": NON_TOXIC,
    "toxic": TOXIC,
    "non_toxic": NON_TOXIC,
}

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}

# Stored thumbnails (memes.thumbnail): JPEG, longest side <= this, at this quality. The defaults of
# `precompute --thumbnail-side / --thumbnail-quality` (pipeline/options.py); thumbnails are most of a
# cache's size (docs/benchmarks.md "Scale: 1,000,000 memes").
THUMBNAIL_MAX_SIDE = 384
THUMBNAIL_QUALITY = 85
THUMBNAIL_MIN_SIDE = 32
# Decoding bigger images than this is refused as a likely decompression bomb (PIL's own default is 89.5 Mpx).
MAX_IMAGE_PIXELS = 64_000_000
# Models never see more than this many pixels on the long side; huge photos are downscaled on load.
MODEL_MAX_SIDE = 2048


def label_map(spec: str | None = None) -> dict[str, str]:
    """The folder->label mapping; `spec` (or $VLMEMES_LABEL_MAP) is 'folder=label,...'."""
    spec = spec if spec is not None else os.environ.get("VLMEMES_LABEL_MAP", "")
    mapping = dict(DEFAULT_LABEL_MAP)
    for part in filter(None, (p.strip() for p in spec.split(","))):
        folder, _, label = part.partition("=")
        if label not in LABELS:
            raise ValueError(f"label map entry {part!r}: label must be one of {LABELS}")
        mapping[folder.strip().casefold()] = label
    return mapping
