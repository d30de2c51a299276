"""A synthetic prediction cache with realistic shapes, for dashboard tests and benchmarks.

    synth_db("data/synth.duckdb", n=100_000, seed=0)
    python -m pipeline.devtools synth-db --n 100000 --db data/synth.duckdb [--seed 0] [--overwrite]

Every table of pipeline/store.py is filled the way a precompute fills it: memes (with JPEG
thumbnails), meme_paths, variants, ocr (two engines, text + boxes), predictions (two CLIP and two
VLM prediction sets, a few unparseable VLM answers), heatmaps (eigencam and gradcam overlays),
runs and failures. It is written through `Store.insert_rows` in one transaction, in bulk.

Images: a dozen captioned memes are drawn once (pipeline.devtools.synthetic_memes) and their
thumbnails are reused; each meme's thumbnail gets a few unique bytes after the JPEG end marker
(decoders ignore them), so blobs are distinct, and meme_id is the SHA-256 of those bytes, as it
would be of a real file's bytes. The OCR text of a meme is the caption really drawn on its
thumbnail and its boxes are where the caption is (in model-input pixel space, as OCR stores them).

Everything is flagged is_smoke: a synthetic cache is never results.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.config import MODEL_MAX_SIDE, NON_TOXIC, TOXIC
from pipeline.devtools.synthetic_memes import (NEUTRAL_CAPTIONS, TOXIC_CAPTIONS, draw_meme, expected_text,
                                               photo_background)
from pipeline.store import Store, short_hash

THUMB_SIDE = 192                   # smaller than the pipeline's 384 px to keep 100k-meme files small
TEMPLATE_SIZES = ((400, 300), (300, 400), (360, 360), (480, 270))
N_TEMPLATES_PER_LABEL = 6
MEMES_ROOT = "/nonexistent/synthetic-memes"   # no originals on disk: the dashboard shows thumbnails
START = datetime(2025, 1, 6, 9, 0, 0)

CLIP_MODEL = "openai/clip-vit-large-patch14"
VLM_MODEL = "Qwen/Qwen2.5-VL-3B-Instruct"
# (stage, model_id, prompt_version, separation of the classes in logit units)
PREDICTION_SETS = (
    ("clip", CLIP_MODEL, "v1", 1.0),
    ("clip", CLIP_MODEL, "v2", 1.4),
    ("vlm", VLM_MODEL, "v1", 1.8),
    ("vlm", VLM_MODEL, "v2", 2.2),
)
CAM_METHODS = ("eigencam", "gradcam")
OCR_ENGINES = (("tesseract", "5.3.0"), ("easyocr", "1.7.2"))
CAM_GRID = 16

EXPLANATIONS = {
    TOXIC: ("Подпись оскорбляет адресата.", "Текст унижает человека.", "Есть грубое обращение.",
            "Мем высмеивает собеседника."),
    NON_TOXIC: ("Безобидная шутка о повседневной жизни.", "Нет оскорблений.", "Дружелюбная подпись.",
                "Юмор без агрессии."),
}
FAILURE_KINDS = (
    ("scan", "BadImage", "not a readable image (UnidentifiedImageError: cannot identify image file)"),
    ("ocr", "TesseractError", "tesseract exited with status 1"),
    ("vlm", "OutOfMemoryError", "CUDA out of memory. Tried to allocate 20.00 MiB"),
    ("cam", "RuntimeError", "grad-cam: no gradient reached the target layer"),
)


# ------------------------------------------------------------------------------------ templates
def _text_boxes(with_text: Image.Image, without: Image.Image, top: str | None, bottom: str | None) -> list[dict]:
    """Boxes around the caption lines: the rows/columns where the captioned picture differs from the bare one."""
    diff = np.abs(np.asarray(with_text, dtype=np.int16) - np.asarray(without, dtype=np.int16)).max(axis=2) > 40
    rows = diff.any(axis=1)
    boxes, y, h = [], 0, diff.shape[0]
    while y < h:
        if not rows[y]:
            y += 1
            continue
        y0 = y
        while y < h and rows[y]:
            y += 1
        cols = np.flatnonzero(diff[y0:y].any(axis=0))
        if y - y0 >= 4 and cols.size:
            text = top if (top and (y0 < h / 2 or not bottom)) else bottom
            boxes.append({"box": [int(cols[0]), y0, int(cols[-1]) + 1, y], "text": text or "", "conf": 0.9})
    return boxes


def _templates() -> list[dict]:
    """Captioned memes of both labels: thumbnail JPEG, the caption as OCR text, boxes in template pixels."""
    out = []
    for label, pool in ((TOXIC, TOXIC_CAPTIONS), (NON_TOXIC, NEUTRAL_CAPTIONS)):
        for k in range(N_TEMPLATES_PER_LABEL):
            top, bottom = pool[k % len(pool)]
            size = TEMPLATE_SIZES[k % len(TEMPLATE_SIZES)]
            seed = 100 * k + (0 if label == TOXIC else 50)
            im = draw_meme(top, bottom, size=size, seed=seed)
            bare = photo_background(size, seed)
            thumb = im.copy()
            thumb.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.LANCZOS)
            out.append(dict(label=label, size=size, thumb_size=thumb.size, text=expected_text(top, bottom),
                            boxes=_text_boxes(im, bare, top, bottom), thumbnail=_jpeg(thumb, 70),
                            overlays={m: _jpeg(_overlay(thumb, m, k), 60) for m in CAM_METHODS},
                            cams={m: _cam_grid(m, k).tobytes() for m in CAM_METHODS}))
    return out


def _jpeg(im: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    im.convert("RGB").save(buf, "JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def _cam_grid(method: str, k: int) -> np.ndarray:
    """A smooth blob (two for gradcam) on a CAM_GRID x CAM_GRID grid, 0..255."""
    yy, xx = np.mgrid[0:CAM_GRID, 0:CAM_GRID].astype(float)
    rng = np.random.default_rng(k * 7 + (1 if method == "gradcam" else 0))
    cam = np.zeros((CAM_GRID, CAM_GRID))
    for _ in range(1 if method == "eigencam" else 2):
        cy, cx = rng.uniform(3, CAM_GRID - 3, 2)
        cam += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * rng.uniform(2, 4) ** 2))
    return (255 * cam / cam.max()).astype(np.uint8)


def _overlay(thumb: Image.Image, method: str, k: int) -> Image.Image:
    """The CAM as a jet-like colour map blended over the thumbnail (what the cam stage stores)."""
    cam = Image.fromarray(_cam_grid(method, k)).resize(thumb.size, Image.Resampling.BILINEAR)
    v = np.asarray(cam, dtype=np.float32) / 255.0
    rgb = np.stack([np.clip(1.5 - abs(4 * v - 3), 0, 1), np.clip(1.5 - abs(4 * v - 2), 0, 1),
                    np.clip(1.5 - abs(4 * v - 1), 0, 1)], axis=-1)
    heat = Image.fromarray((rgb * 255).astype(np.uint8), "RGB")
    return Image.blend(thumb.convert("RGB"), heat, 0.45)


# ------------------------------------------------------------------------------------ rows
def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _model_input_scale(w: int, h: int) -> float:
    return min(1.0, MODEL_MAX_SIDE / max(w, h))


def synth_db(path: str | Path, n: int, seed: int = 0, overwrite: bool = False) -> Path:
    """Write a synthetic cache of `n` memes to `path` (refuses an existing file unless overwrite)."""
    path = Path(path)
    if n < 1:
        raise ValueError("n must be at least 1")
    if path.exists():
        if not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it")
        path.unlink()
        wal = path.with_name(path.name + ".wal")
        if wal.exists():
            wal.unlink()
    rng = np.random.default_rng(seed)
    templates = _templates()
    by_label = {lab: [i for i, t in enumerate(templates) if t["label"] == lab] for lab in (TOXIC, NON_TOXIC)}

    # --- memes: labels, conflicts, retired, sizes ------------------------------------------------
    toxic = rng.random(n) < 0.5
    conflict = rng.random(n) < 0.01
    retired = rng.random(n) < 0.01
    tox_idx, non_idx = np.array(by_label[TOXIC]), np.array(by_label[NON_TOXIC])
    template = np.where(toxic, tox_idx[rng.integers(0, len(tox_idx), n)], non_idx[rng.integers(0, len(non_idx), n)])
    scale = rng.choice(np.array([1, 1.5, 2, 3, 4, 6, 9]), n)
    fmt = rng.choice(np.array(["JPEG", "PNG", "WEBP", "GIF"]), n, p=[0.7, 0.2, 0.07, 0.03])
    text_free = rng.random(n) < 0.15                 # no caption read (OCR finds nothing)

    run_times = [START + timedelta(hours=i) for i in range(4)]
    memes, paths, thumbs, ids = [], [], [], []
    for i in range(n):
        t = templates[template[i]]
        thumb = t["thumbnail"] + b"synth" + i.to_bytes(6, "big") + seed.to_bytes(4, "big")
        meme_id = hashlib.sha256(thumb).hexdigest()
        ids.append(meme_id)
        thumbs.append(thumb)
        label = TOXIC if toxic[i] else NON_TOXIC
        folder = "Негативно" if toxic[i] else "Нейтрально"
        ext = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif"}[str(fmt[i])]
        rel = f"{folder}/мем {i:06d}.{ext}"
        w, h = (int(round(s * scale[i])) for s in t["size"])
        memes.append(dict(meme_id=meme_id, label=None if conflict[i] else label, label_conflict=bool(conflict[i]),
                          rel_path=rel, width=w, height=h, format=str(fmt[i]), n_bytes=int(w * h * 0.35) + 1000,
                          n_frames=12 if fmt[i] == "GIF" else 1, thumbnail=thumb, thumbnail_mime="image/jpeg",
                          first_run_id=1, last_seen_run_id=1 if retired[i] else 4, retired=bool(retired[i])))
        paths.append(dict(meme_id=meme_id, rel_path=rel, label=label, last_seen_run_id=memes[-1]["last_seen_run_id"]))
        if conflict[i]:
            other = "Нейтрально" if toxic[i] else "Негативно"
            paths.append(dict(meme_id=meme_id, rel_path=f"{other}/копия {i:06d}.{ext}",
                              label=NON_TOXIC if toxic[i] else TOXIC, last_seen_run_id=4))

    # --- variants ----------------------------------------------------------------------------------
    variants, variant_ids = [], {}

    def add_variant(stage: str, model_id: str, name: str, config: dict, run_id: int) -> str:
        config_hash = short_hash(stage, name, config)
        vid = short_hash(stage, model_id, config_hash, "1")
        variants.append(dict(variant_id=vid, stage=stage, model_id=model_id, name=name, config_hash=config_hash,
                             stage_version="1", config=json.dumps(config, sort_keys=True, ensure_ascii=False),
                             is_smoke=True, first_run_id=run_id))
        variant_ids[(stage, model_id, name)] = (vid, config_hash)
        return vid

    for engine, version in OCR_ENGINES:
        add_variant("ocr", engine, engine, {"languages": ["rus", "eng"], "synthetic": True}, 1)
    for stage, model, prompt, _ in PREDICTION_SETS:
        add_variant(stage, model, prompt, {"prompt_version": prompt, "synthetic": True}, 2 if stage == "clip" else 3)
    for method in CAM_METHODS:
        add_variant("cam", CLIP_MODEL, method, {"method": method, "synthetic": True}, 4)

    def key(stage: str, model_id: str, name: str, meme_id: str) -> dict:
        vid, ch = variant_ids[(stage, model_id, name)]
        return dict(meme_id=meme_id, variant_id=vid, model_id=model_id, config_hash=ch, stage_version="1")

    # --- failures: a few memes miss some stages ---------------------------------------------------
    fail_kind = np.where(rng.random(n) < 0.004, rng.integers(0, len(FAILURE_KINDS), n), -1)
    failures = []
    for i in np.flatnonzero(fail_kind >= 0):
        stage, etype, msg = FAILURE_KINDS[fail_kind[i]]
        failures.append(dict(run_id={"scan": 1, "ocr": 1, "vlm": 3, "cam": 4}[stage], stage=stage,
                             meme_id=ids[i], path=memes[i]["rel_path"], error_type=etype, message=msg,
                             created_at=run_times[0] + timedelta(seconds=int(i) % 3000)))
    failures.append(dict(run_id=3, stage="vlm:load", meme_id=None, path=None, error_type="StageLoadError",
                         message="checkpoint not found (synthetic example of a load failure)",
                         created_at=run_times[2]))

    def has(stage: str, i: int) -> bool:
        return fail_kind[i] < 0 or FAILURE_KINDS[fail_kind[i]][0] != stage

    # --- ocr -----------------------------------------------------------------------------------------
    ocr = []
    for e, (engine, version) in enumerate(OCR_ENGINES):
        conf = np.clip(rng.normal(0.8 - 0.1 * e, 0.1, n), 0.05, 1.0)
        for i in range(n):
            if not has("ocr", i):
                continue
            t, m = templates[template[i]], memes[i]
            if text_free[i]:
                text, boxes = "", []
            else:
                s = _model_input_scale(m["width"], m["height"]) * m["width"] / t["size"][0]
                boxes = [dict(b, box=[round(v * s, 1) for v in b["box"]], conf=round(float(conf[i]), 3))
                         for b in t["boxes"]]
                text = t["text"] if e == 0 else t["text"].lower()
            ocr.append(dict(key("ocr", engine, engine, ids[i]), engine=engine, engine_version=version, text=text,
                            boxes=json.dumps(boxes, ensure_ascii=False), mean_confidence=None if not boxes else
                            round(float(conf[i]), 3), seconds=0.2 + 0.1 * e, run_id=1,
                            created_at=run_times[0] + timedelta(milliseconds=200 * i)))

    # --- predictions: scores share a per-meme difficulty, so sets agree more than by chance ------
    y = np.where(toxic, 1.0, -1.0)
    difficulty = rng.normal(0, 1.0, n)
    predictions = []
    for stage, model, prompt, sep in PREDICTION_SETS:
        logit = sep * y + 0.9 * difficulty + rng.normal(0, 0.9, n)
        score = _sigmoid(logit)
        unparsed = (rng.random(n) < 0.03) if stage == "vlm" else np.zeros(n, bool)
        run_id = 2 if stage == "clip" else 3
        expl_pick = rng.integers(0, 4, n)
        for i in range(n):
            if not has(stage, i):
                continue
            label = None if unparsed[i] else (TOXIC if score[i] >= 0.5 else NON_TOXIC)
            sc = round(float(score[i]), 5)
            logits = {TOXIC: round(float(logit[i]) / 2, 4), NON_TOXIC: round(-float(logit[i]) / 2, 4)}
            if stage == "vlm":
                if label is None:
                    raw = "Не могу однозначно ответить на этот вопрос."
                    explanation = None
                else:
                    explanation = EXPLANATIONS[label][expl_pick[i]]
                    raw = json.dumps({"label": label, "explanation": explanation}, ensure_ascii=False)
                prompt_text = f"[{prompt}] Is this meme toxic? Answer with JSON {{label, explanation}}."
            else:
                raw, explanation = None, None
                prompt_text = f"[{prompt}] a toxic meme | a harmless meme"
            predictions.append(dict(key(stage, model, prompt, ids[i]), stage=stage, prompt_version=prompt,
                                    label=label, score=sc, logits=json.dumps(logits), prompt=prompt_text,
                                    raw_answer=raw, explanation=explanation, is_smoke=True,
                                    seconds=0.05 if stage == "clip" else 1.3, run_id=run_id,
                                    created_at=run_times[run_id - 1] + timedelta(milliseconds=50 * i)))

    # --- heatmaps ----------------------------------------------------------------------------------
    heatmaps = []
    for method in CAM_METHODS:
        for i in range(n):
            if not has("cam", i):
                continue
            t = templates[template[i]]
            heatmaps.append(dict(key("cam", CLIP_MODEL, method, ids[i]), method=method, grid_h=CAM_GRID,
                                 grid_w=CAM_GRID, cam=t["cams"][method],
                                 overlay=t["overlays"][method] + i.to_bytes(6, "big"), is_smoke=True,
                                 seconds=0.4, run_id=4, created_at=run_times[3] + timedelta(milliseconds=400 * i)))

    # --- runs ----------------------------------------------------------------------------------------
    def counts(stage_rows: dict) -> str:
        return json.dumps({s: dict(model=m, done=d, cached=0, failed=f, seconds=round(d * sec, 1), error=None)
                           for s, (m, d, f, sec) in stage_rows.items()})

    n_fail = {s: sum(1 for f in failures if f["stage"] == s) for s in ("scan", "ocr", "vlm", "cam")}
    versions = json.dumps({"python": "3.11.2", "torch": "2.14.1", "transformers": "5.23.0", "duckdb": "2.0.0",
                           "synthetic": "pipeline.devtools.synth_db"})
    common = dict(command="precompute", memes_root=MEMES_ROOT, versions=versions, device="cpu: synthetic",
                  git_commit="0" * 40, is_smoke=True)
    per_set = n - n_fail["vlm"]
    runs = [
        dict(common, run_id=1, started_at=run_times[0], finished_at=run_times[0] + timedelta(minutes=40),
             status="failed", args=json.dumps({"stages": ["ocr"], "synthetic": True, "n": n, "seed": seed}),
             counts=counts({"ocr": ("tesseract, easyocr", 2 * (n - n_fail["ocr"]), 2 * n_fail["ocr"], 0.25)}),
             models=json.dumps({"ocr": "tesseract, easyocr"}), error=None),
        dict(common, run_id=2, started_at=run_times[1], finished_at=run_times[1] + timedelta(minutes=20),
             status="ok", args=json.dumps({"stages": ["clip"], "synthetic": True}),
             counts=counts({"clip": (CLIP_MODEL, 2 * n, 0, 0.05)}), models=json.dumps({"clip": CLIP_MODEL}), error=None),
        dict(common, run_id=3, started_at=run_times[2], finished_at=run_times[2] + timedelta(minutes=55),
             status="failed", args=json.dumps({"stages": ["vlm"], "synthetic": True}),
             counts=counts({"vlm": (VLM_MODEL, 2 * per_set, 2 * n_fail["vlm"], 1.3)}),
             models=json.dumps({"vlm": VLM_MODEL}), error=None),
        dict(common, run_id=4, started_at=run_times[3], finished_at=None, status="interrupted",
             args=json.dumps({"stages": ["cam"], "synthetic": True}),
             counts=counts({"cam": (CLIP_MODEL, 2 * (n - n_fail["cam"]), 2 * n_fail["cam"], 0.4)}),
             models=json.dumps({"cam": CLIP_MODEL}), error="KeyboardInterrupt (synthetic example)"),
    ]

    store = Store(path)
    with store.transaction() as con:
        for table, rows in (("runs", runs), ("variants", variants), ("memes", memes), ("meme_paths", paths),
                            ("ocr", ocr), ("predictions", predictions), ("heatmaps", heatmaps),
                            ("failures", failures)):
            for start in range(0, len(rows), 50_000):
                Store.insert_rows(con, table, rows[start:start + 50_000])
        con.execute("INSERT OR REPLACE INTO meta VALUES ('synthetic', ?)", [json.dumps({"n": n, "seed": seed})])
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.devtools synth-db",
                                description="Write a synthetic prediction cache (is_smoke: never results).")
    p.add_argument("--n", type=int, default=1000, help="number of memes (default 1000)")
    p.add_argument("--db", required=True, help="the DuckDB file to write")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    try:
        out = synth_db(args.db, args.n, seed=args.seed, overwrite=args.overwrite)
    except (FileExistsError, ValueError) as e:
        print(f"synth-db: {e}", file=sys.stderr)
        return 2
    size = out.stat().st_size
    print(f"wrote {args.n} synthetic memes to {out} ({size / 2**20:.1f} MiB) in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
