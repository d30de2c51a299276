"""Helpers shared by tests/test_clip.py, tests/test_embeddings.py and tests/test_cam.py: synthetic memes as
stage inputs, the pad-square view written out independently of the stage (padded_square), and an autouse
fixture (import it into a test module) that runs torch single-threaded in that module.

The tiny random CLIP/SigLIP checkpoints themselves come from the session fixture `tiny_models`
(tests/conftest.py), built with pipeline.devtools.tiny_clip and loaded back with from_pretrained.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from pipeline.devtools.synthetic_memes import NEUTRAL_CAPTIONS, TOXIC_CAPTIONS, draw_meme, expected_text
from pipeline.stages.base import MemeInput


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models run fastest single-threaded; with 2 cores shared by other processes, torch's
    2-thread OpenMP matmuls on 32-wide layers were measured ~60x slower than 1 thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def padded_square(image: Image.Image, mean) -> Image.Image:
    """The pad-square view, written out independently: centred on a square of the processor's mean colour."""
    w, h = image.size
    side = max(w, h)
    canvas = Image.new("RGB", (side, side), tuple(int(round(255 * m)) for m in mean))
    canvas.paste(image.convert("RGB"), ((side - w) // 2, (side - h) // 2))
    return canvas


SIZES = ((400, 300), (240, 420), (300, 300), (520, 180))   # wide, tall, square, very wide


def synthetic_inputs(folder: Path, n: int = 4, with_ocr: bool = True) -> list[MemeInput]:
    """n synthetic memes saved as PNG files, as the runner hands them to a stage (ocr_text = the caption)."""
    folder.mkdir(parents=True, exist_ok=True)
    captions = [c for pair in zip(TOXIC_CAPTIONS, NEUTRAL_CAPTIONS) for c in pair]
    memes = []
    for i in range(n):
        top, bottom = captions[i % len(captions)]
        path = folder / f"meme{i}.png"
        draw_meme(top, bottom, size=SIZES[i % len(SIZES)], seed=i).save(path)
        memes.append(MemeInput(meme_id=f"id{i}", path=path, rel_path=path.name, label=None,
                               ocr_text=expected_text(top, bottom) if with_ocr else None))
    return memes


def broken_input(folder: Path) -> MemeInput:
    path = folder / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return MemeInput(meme_id="broken", path=path, rel_path=path.name, label=None, ocr_text="ТЕКСТ")
