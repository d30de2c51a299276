"""The demo set: what the main command runs on when the researcher has no memes of their own yet.

24 synthetic memes with Russian captions (12 mildly rude ones in Негативно/, 12 harmless ones in
Нейтрально/), drawn deterministically by pipeline/devtools/synthetic_memes.py into data/demo_memes/
(outside memes_project/, so they never mix with real memes), with their cache in data/demo.duckdb.
The run is recorded with `demo: true` in `runs.args`, and the dashboard says on every page that it
shows the demo and how to run on one's own memes.
"""
from __future__ import annotations

from pathlib import Path

from pipeline.config import IMAGE_EXTENSIONS

DEMO_DIR = Path("data/demo_memes")
DEMO_DB = Path("data/demo.duckdb")
N_PER_LABEL = 12
SEED = 2026
SIZE = (480, 360)


def count_images(folder: Path) -> int:
    """Image files anywhere under `folder` (0 when it does not exist)."""
    if not folder.is_dir():
        return 0
    return sum(1 for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def write_demo(folder: Path = DEMO_DIR) -> Path:
    """Draw the demo set into `folder` (again, byte for byte the same, when it is incomplete)."""
    from pipeline.devtools.synthetic_memes import write_meme_folder
    folder = Path(folder)
    if count_images(folder) != 2 * N_PER_LABEL:
        folder.mkdir(parents=True, exist_ok=True)
        write_meme_folder(folder, N_PER_LABEL, N_PER_LABEL, seed=SEED, size=SIZE)
    return folder


def intro(memes_dir: Path, demo_dir: Path, db: Path) -> str:
    """What the main command prints before running the demo."""
    return (f"No memes of your own in {memes_dir}/ yet, so this is the DEMO: {2 * N_PER_LABEL} synthetic memes "
            f"with Russian captions, drawn into {demo_dir}/ (cache {db}).\n"
            f"To run on your own memes: put them into {memes_dir}/Негативно/ (toxic) and "
            f"{memes_dir}/Нейтрально/ (neutral), then run scripts/main.sh again.")
