"""OCR quality benchmark on synthetic memes with known captions (a script, not a test).

    .venv/bin/python benchmarks/ocr_quality.py                      # every engine that can run here
    .venv/bin/python benchmarks/ocr_quality.py --engines craft-tesseract --show-errors
    .venv/bin/python benchmarks/ocr_quality.py --engines craft-tesseract-v2,craft-tesseract   # before/after
    .venv/bin/python benchmarks/ocr_quality.py --engines craft-tesseract --read-folder ../shared/memes

Draws (seeded) `--n-captioned` memes (white outlined captions over busy backgrounds, every 5th one
in the "band" layout: black text on a white strip; sizes 300..720 px; every third one re-saved as
a quality-60 JPEG) and `--n-textless` text-free pictures, runs each engine and prints a Markdown table:
  CER          sum of Levenshtein edits / sum of reference characters, over all captioned memes,
               after `pipeline.stages.ocr.normalize_text` (case-folded, ё->е, whitespace runs -> one space);
               punctuation counts.
  halluc/img   non-space characters read from a text-free picture, averaged over them.
  s/img        wall seconds per picture (model loading excluded), on this machine; CPU s/img is
               the CPU time of all threads and of the Tesseract processes (less noisy on a busy box).
`--read-folder` prints what the first engine reads from every picture of a real meme folder (for
looking at failures by eye; never commit that output).
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pipeline.devtools.synthetic_memes import caption_pairs, draw_meme, draw_textless, expected_text  # noqa: E402
from pipeline.images import load_rgb  # noqa: E402
from pipeline.stages.base import StageLoadError  # noqa: E402
from pipeline.stages.ocr import ENGINES, OcrStage, edit_distance, normalize_text, past_version_stage  # noqa: E402

SIZES = ((400, 300), (500, 500), (640, 480), (300, 400), (720, 540))


def _reposted(im: Image.Image, quality: int = 60) -> Image.Image:
    """The picture after one more lossy JPEG save, as memes are after a few reposts."""
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def synthetic_set(n_captioned: int, n_textless: int, seed: int):
    """[(name, image, expected_text, kind)] with kind in outline | band | textless; every third
    picture is re-saved as a quality-60 JPEG."""
    items = []
    for i, (top, bottom) in enumerate(caption_pairs(n_captioned, seed)):
        style = "band" if i % 5 == 4 else "outline"
        im = draw_meme(top, bottom, size=SIZES[i % len(SIZES)], seed=seed * 1000 + i, style=style)
        items.append((f"{style}-{i:02d}", _reposted(im) if i % 3 == 2 else im, expected_text(top, bottom), style))
    for i in range(n_textless):
        im = draw_textless(seed * 1000 + i, SIZES[i % len(SIZES)])
        items.append((f"textless-{i:02d}", _reposted(im) if i % 3 == 2 else im, "", "textless"))
    return items


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the Tesseract runs), all threads."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def make_stage(engine: str) -> OcrStage:
    """craft-tesseract-v1 / -v2: what those OcrStage versions did (PAST_VERSIONS)."""
    if engine.startswith("craft-tesseract-v"):
        return past_version_stage(engine.rsplit("-v", 1)[1])
    return OcrStage(engine=engine)


def evaluate(engine: str, items, show_errors: bool = False) -> dict | str:
    stage = make_stage(engine)
    try:
        stage.load()
    except StageLoadError as e:
        return f"cannot run: {e}"
    edits = {"outline": 0, "band": 0}
    chars = {"outline": 0, "band": 0}
    halluc = []
    t0, c0 = time.perf_counter(), _cpu_seconds()
    for name, im, truth, kind in items:
        got = stage.read(im)["text"]
        if kind == "textless":
            halluc.append(len("".join(got.split())))
            if show_errors and got:
                print(f"  [{engine}] {name}: hallucinated {got!r}")
            continue
        p, r = normalize_text(got), normalize_text(truth)
        d = edit_distance(p, r)
        edits[kind] += d
        chars[kind] += len(r)
        if show_errors and d:
            print(f"  [{engine}] {name}: {d} edits\n      read {p!r}\n      true {r!r}")
    seconds = (time.perf_counter() - t0) / len(items)
    cpu = (_cpu_seconds() - c0) / len(items)
    cer = lambda k: edits[k] / chars[k] if chars[k] else float("nan")  # noqa: E731
    name = engine if engine.startswith("craft-tesseract-v") else stage.describe()
    return dict(engine=f"{name} (v{stage.version})", cer=sum(edits.values()) / max(1, sum(chars.values())),
                cer_outline=cer("outline"), cer_band=cer("band"),
                halluc=sum(halluc) / max(1, len(halluc)), max_halluc=max(halluc, default=0), seconds=seconds,
                cpu=cpu)


def read_folder(engine: str, folder: Path) -> None:
    stage = OcrStage(engine=engine)
    stage.load()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            res = stage.read(load_rgb(path))
        except Exception as e:
            print(f"{path.relative_to(folder)}: ERROR {type(e).__name__}: {e}")
            continue
        print(f"{path.relative_to(folder)}  conf={res['mean_confidence']}  {res['text']!r}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engines", default=",".join(e for e in ENGINES if e != "auto"))
    ap.add_argument("--n-captioned", type=int, default=40)
    ap.add_argument("--n-textless", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--show-errors", action="store_true")
    ap.add_argument("--read-folder", type=Path, help="print what the first engine reads from a real meme folder")
    args = ap.parse_args(argv)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if args.read_folder:
        read_folder(engines[0], args.read_folder)
        return 0
    items = synthetic_set(args.n_captioned, args.n_textless, args.seed)
    print(f"{args.n_captioned} captioned + {args.n_textless} text-free synthetic memes, seed {args.seed}\n")
    print("| engine | CER all | CER outlined | CER band | halluc. chars / text-free img (max) | s / img | CPU s / img |")
    print("|---|---|---|---|---|---|---|")
    for engine in engines:
        r = evaluate(engine, items, args.show_errors)
        if isinstance(r, str):
            print(f"| {engine} | {r} | | | | | |")
            continue
        print(f"| {r['engine']} | {r['cer']:.3f} | {r['cer_outline']:.3f} | {r['cer_band']:.3f} | "
              f"{r['halluc']:.1f} ({r['max_halluc']}) | {r['seconds']:.2f} | {r['cpu']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
