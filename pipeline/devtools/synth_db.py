"""A synthetic prediction cache with realistic shapes, for dashboard tests and benchmarks.

    synth_db("data/synth.duckdb", n=100_000, seed=0)
    python -m pipeline.devtools synth-db --n 100000 --db data/synth.duckdb [--seed 0] [--overwrite]

Every table of pipeline/store.py is filled the way a precompute fills it: memes (with JPEG
thumbnails), meme_paths, variants, ocr (two engines, text + boxes), predictions (two CLIP and two
VLM prediction sets, a few unparseable VLM answers), heatmaps (eigencam and gradcam overlays),
runs and failures. It is written through `Store.insert_rows`, in bulk, one transaction per table
(100k memes: about 30 s and 1.4 GB on two shared CPU cores; peak memory about 2.4 GB).

Images: a dozen captioned memes are drawn once (pipeline.devtools.synthetic_memes) and their
thumbnails are reused; each meme's thumbnail gets a few unique bytes after the JPEG end marker
(decoders ignore them), so blobs are distinct, and meme_id is the SHA-256 of those bytes, as it
would be of a real file's bytes. The OCR text of a meme is the caption really drawn on its
thumbnail and its boxes are where the caption is (in model-input pixel space, as OCR stores them).
Thumbnails (128 px) and overlays (JPEG quality 40) are smaller than the pipeline's (384 px), to
keep 100k-meme files and their build time small; every overlay is distinct too.

Everything is flagged is_smoke: a synthetic cache is never results.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import itertools
import json
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline import summary
from pipeline.config import MODEL_MAX_SIDE, NON_TOXIC, TOXIC
from pipeline.devtools.synthetic_memes import NEUTRAL_CAPTIONS, TOXIC_CAPTIONS, draw_meme, expected_text, photo_background
from pipeline.store import Store, short_hash

THUMB_SIDE = 128                   # smaller than the pipeline's 384 px: keeps 100k-meme files small
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
                            boxes=_text_boxes(im, bare, top, bottom), thumbnail=_jpeg(thumb, 65),
                            overlays={m: _jpeg(_overlay(thumb, m, k), 40) for m in CAM_METHODS},
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


class _Plan:
    """Per-meme draws (numpy arrays, one entry per meme) that every table's rows are built from."""

    def __init__(self, n: int, seed: int):
        rng = np.random.default_rng(seed)
        self.n, self.seed, self.rng = n, seed, rng
        self.templates = _templates()
        tox_idx = np.array([i for i, t in enumerate(self.templates) if t["label"] == TOXIC])
        non_idx = np.array([i for i, t in enumerate(self.templates) if t["label"] == NON_TOXIC])
        self.toxic = rng.random(n) < 0.5
        self.conflict = rng.random(n) < 0.01
        self.retired = rng.random(n) < 0.01
        self.template = np.where(self.toxic, tox_idx[rng.integers(0, len(tox_idx), n)],
                                 non_idx[rng.integers(0, len(non_idx), n)])
        self.scale = rng.choice(np.array([1, 1.5, 2, 3, 4, 6, 9]), n)
        self.fmt = rng.choice(np.array(["JPEG", "PNG", "WEBP", "GIF"]), n, p=[0.7, 0.2, 0.07, 0.03])
        self.text_free = rng.random(n) < 0.15         # OCR finds no text
        self.fail_kind = np.where(rng.random(n) < 0.004, rng.integers(0, len(FAILURE_KINDS), n), -1)
        self.difficulty = rng.normal(0, 1.0, n)       # shared by all prediction sets: they agree more than chance
        self.run_times = [START + timedelta(hours=i) for i in range(4)]
        self.thumbs = [self.templates[self.template[i]]["thumbnail"] + b"synth" + i.to_bytes(6, "big")
                       + seed.to_bytes(4, "big") for i in range(n)]
        self.ids = [hashlib.sha256(b).hexdigest() for b in self.thumbs]
        sizes = np.array([self.templates[k]["size"] for k in range(len(self.templates))])[self.template]
        self.width = np.round(sizes[:, 0] * self.scale).astype(int)
        self.height = np.round(sizes[:, 1] * self.scale).astype(int)
        ext = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif"}
        self.rel_paths = [f"{'Негативно' if self.toxic[i] else 'Нейтрально'}/мем {i:06d}.{ext[str(self.fmt[i])]}"
                          for i in range(n)]
        self.variants: list[dict] = []
        self.variant_keys: dict[tuple, tuple[str, str]] = {}
        for engine, _ in OCR_ENGINES:
            self._add_variant("ocr", engine, engine, {"languages": ["rus", "eng"], "synthetic": True}, 1)
        for stage, model, prompt, _ in PREDICTION_SETS:
            self._add_variant(stage, model, prompt, {"prompt_version": prompt, "synthetic": True},
                              2 if stage == "clip" else 3)
        for method in CAM_METHODS:
            self._add_variant("cam", CLIP_MODEL, method, {"method": method, "synthetic": True}, 4)

    def _add_variant(self, stage: str, model_id: str, name: str, config: dict, run_id: int) -> None:
        config_hash = short_hash(stage, name, config)
        vid = short_hash(stage, model_id, config_hash, "1")
        self.variants.append(dict(variant_id=vid, stage=stage, model_id=model_id, name=name, config_hash=config_hash,
                                  stage_version="1", config=json.dumps(config, sort_keys=True, ensure_ascii=False),
                                  is_smoke=True, first_run_id=run_id))
        self.variant_keys[(stage, model_id, name)] = (vid, config_hash)

    def key(self, stage: str, model_id: str, name: str) -> dict:
        vid, config_hash = self.variant_keys[(stage, model_id, name)]
        return dict(variant_id=vid, model_id=model_id, config_hash=config_hash, stage_version="1")

    def kept(self, stage: str) -> np.ndarray:
        """Indices of memes whose `stage` did not fail."""
        codes = [k for k, f in enumerate(FAILURE_KINDS) if f[0] == stage]
        return np.flatnonzero(~np.isin(self.fail_kind, codes))

    def times(self, run_id: int, idx: np.ndarray, ms_per_item: int) -> list[datetime]:
        t0 = self.run_times[run_id - 1]
        return [t0 + timedelta(milliseconds=ms_per_item * int(i)) for i in idx]

    # ------------------------------------------------------------------ one function per table
    def memes(self) -> Iterator[dict]:
        for i in range(self.n):
            w, h = int(self.width[i]), int(self.height[i])
            yield dict(meme_id=self.ids[i], label=None if self.conflict[i] else (TOXIC if self.toxic[i] else NON_TOXIC),
                       label_conflict=bool(self.conflict[i]), rel_path=self.rel_paths[i], width=w, height=h,
                       format=str(self.fmt[i]), n_bytes=int(w * h * 0.35) + 1000,
                       n_frames=12 if self.fmt[i] == "GIF" else 1, thumbnail=self.thumbs[i],
                       thumbnail_mime="image/jpeg", first_run_id=1, last_seen_run_id=1 if self.retired[i] else 4,
                       retired=bool(self.retired[i]))

    def meme_paths(self) -> Iterator[dict]:
        for i in range(self.n):
            label = TOXIC if self.toxic[i] else NON_TOXIC
            yield dict(meme_id=self.ids[i], rel_path=self.rel_paths[i], label=label,
                       last_seen_run_id=1 if self.retired[i] else 4)
            if self.conflict[i]:        # the same bytes also lie in the other label's folder
                other_folder, other = ("Нейтрально", NON_TOXIC) if self.toxic[i] else ("Негативно", TOXIC)
                yield dict(meme_id=self.ids[i], rel_path=f"{other_folder}/копия {i:06d}.jpg", label=other,
                           last_seen_run_id=4)

    def ocr(self) -> Iterator[dict]:
        idx = self.kept("ocr")
        in_scale = np.minimum(1.0, MODEL_MAX_SIDE / np.maximum(self.width, self.height))
        for e, (engine, version) in enumerate(OCR_ENGINES):
            key = self.key("ocr", engine, engine)
            conf = np.round(np.clip(self.rng.normal(0.8 - 0.1 * e, 0.1, self.n), 0.05, 1.0), 3).tolist()
            times = self.times(1, idx, 200)
            box_cache: dict[tuple, str] = {}
            for j, i in enumerate(idx.tolist()):
                t = self.templates[self.template[i]]
                if self.text_free[i]:
                    text, boxes, mean_conf = "", "[]", None
                else:
                    s = float(in_scale[i] * self.width[i] / t["size"][0])
                    ck = (int(self.template[i]), round(s, 4), conf[i])
                    boxes = box_cache.get(ck)
                    if boxes is None:
                        boxes = json.dumps([dict(b, box=[round(v * s, 1) for v in b["box"]], conf=conf[i])
                                            for b in t["boxes"]], ensure_ascii=False)
                        box_cache[ck] = boxes
                    text = t["text"] if e == 0 else t["text"].lower()
                    mean_conf = conf[i]
                yield dict(meme_id=self.ids[i], **key, engine=engine, engine_version=version, text=text,
                           boxes=boxes, mean_confidence=mean_conf, seconds=0.2 + 0.1 * e, run_id=1, created_at=times[j])

    def predictions(self, stage: str, model: str, prompt: str, sep: float) -> Iterator[dict]:
        n, rng = self.n, self.rng
        y = np.where(self.toxic, 1.0, -1.0)
        logit = sep * y + 0.9 * self.difficulty + rng.normal(0, 0.9, n)
        score = _sigmoid(logit)
        label = np.where(score >= 0.5, TOXIC, NON_TOXIC).tolist()
        unparsed = ((rng.random(n) < 0.03) if stage == "vlm" else np.zeros(n, bool)).tolist()
        expl_pick = rng.integers(0, 4, n).tolist()
        score_l = np.round(score, 5).tolist()
        half = np.round(logit / 2, 4).tolist()
        run_id = 2 if stage == "clip" else 3
        key = self.key(stage, model, prompt)
        idx = self.kept(stage)
        times = self.times(run_id, idx, 50)
        if stage == "vlm":
            prompt_text = f"[{prompt}] Is this meme toxic? Answer with JSON {{label, explanation}}."
        else:
            prompt_text = f"[{prompt}] a toxic meme | a harmless meme"
        for j, i in enumerate(idx.tolist()):
            lab, raw, explanation = label[i], None, None
            if stage == "vlm":
                if unparsed[i]:
                    lab, raw = None, "Не могу однозначно ответить на этот вопрос."
                else:
                    explanation = EXPLANATIONS[lab][expl_pick[i]]
                    raw = f'{{"label": "{lab}", "explanation": "{explanation}"}}'
            yield dict(meme_id=self.ids[i], **key, stage=stage, prompt_version=prompt, label=lab,
                       score=score_l[i], logits=f'{{"toxic": {half[i]}, "non_toxic": {-half[i]}}}',
                       prompt=prompt_text, raw_answer=raw, explanation=explanation, is_smoke=True,
                       seconds=0.05 if stage == "clip" else 1.3, run_id=run_id, created_at=times[j])

    def heatmaps(self, method: str) -> Iterator[dict]:
        key = self.key("cam", CLIP_MODEL, method)
        idx = self.kept("cam")
        times = self.times(4, idx, 400)
        return (dict(meme_id=self.ids[i], **key, method=method, grid_h=CAM_GRID, grid_w=CAM_GRID,
                     cam=self.templates[self.template[i]]["cams"][method],
                     overlay=self.templates[self.template[i]]["overlays"][method] + i.to_bytes(6, "big"),
                     is_smoke=True, seconds=0.4,
                     run_id=4, created_at=times[j]) for j, i in enumerate(idx.tolist()))

    def failures(self) -> list[dict]:
        rows = []
        for i in np.flatnonzero(self.fail_kind >= 0).tolist():
            stage, etype, msg = FAILURE_KINDS[self.fail_kind[i]]
            run_id = {"scan": 1, "ocr": 1, "vlm": 3, "cam": 4}[stage]
            meme_id, path = self.ids[i], self.rel_paths[i]
            if stage == "scan":             # a broken file beside this meme: it never became a meme
                meme_id, path = None, path.rsplit("/", 1)[0] + f"/битый {i:06d}.jpg"
            rows.append(dict(run_id=run_id, stage=stage, meme_id=meme_id, path=path, error_type=etype, message=msg,
                             created_at=self.run_times[run_id - 1] + timedelta(seconds=i % 3000)))
        rows.append(dict(run_id=3, stage="vlm:load", meme_id=None, path=None, error_type="StageLoadError",
                         message="checkpoint not found (synthetic example of a load failure)",
                         created_at=self.run_times[2]))
        return rows

    def runs(self) -> list[dict]:
        n = self.n
        n_fail = {stage: int(np.sum(self.fail_kind == k)) for k, (stage, _, _) in enumerate(FAILURE_KINDS)}

        def counts(stage: str, model: str, per_set: int, n_sets: int, sec: float) -> str:
            done = n_sets * (n - n_fail.get(stage, 0))
            return json.dumps({stage: dict(model=model, done=done, cached=0, failed=n_sets * n_fail.get(stage, 0),
                                           seconds=round(per_set * n_sets * sec, 1), error=None)})

        versions = json.dumps({"python": "3.11.7", "torch": "2.14.1", "transformers": "5.23.0", "duckdb": "2.0.0",
                               "synthetic": "pipeline.devtools.synth_db"})
        common = dict(command="precompute", memes_root=MEMES_ROOT, versions=versions, device="cpu: synthetic",
                      git_commit="0" * 40, is_smoke=True)
        t = self.run_times
        ocr_models = ", ".join(e for e, _ in OCR_ENGINES)
        return [
            dict(common, run_id=1, started_at=t[0], finished_at=t[0] + timedelta(minutes=40), status="failed",
                 args=json.dumps({"stages": ["ocr"], "synthetic": True, "n": n, "seed": self.seed}),
                 counts=counts("ocr", ocr_models, n, len(OCR_ENGINES), 0.25), models=json.dumps({"ocr": ocr_models}),
                 error=None),
            dict(common, run_id=2, started_at=t[1], finished_at=t[1] + timedelta(minutes=20), status="ok",
                 args=json.dumps({"stages": ["clip"], "synthetic": True}), counts=counts("clip", CLIP_MODEL, n, 2, 0.05),
                 models=json.dumps({"clip": CLIP_MODEL}), error=None),
            dict(common, run_id=3, started_at=t[2], finished_at=t[2] + timedelta(minutes=55), status="failed",
                 args=json.dumps({"stages": ["vlm"], "synthetic": True}), counts=counts("vlm", VLM_MODEL, n, 2, 1.3),
                 models=json.dumps({"vlm": VLM_MODEL}), error=None),
            dict(common, run_id=4, started_at=t[3], finished_at=None, status="interrupted",
                 args=json.dumps({"stages": ["cam"], "synthetic": True}), counts=counts("cam", CLIP_MODEL, n, 2, 0.4),
                 models=json.dumps({"cam": CLIP_MODEL}), error="KeyboardInterrupt (synthetic example)"),
        ]


def _insert(store: Store, table: str, rows: Iterable[dict], chunk: int = 25_000) -> None:
    """All rows of one table in one transaction, inserted `chunk` at a time as they are generated.

    One transaction per table, not per cache: DuckDB keeps a transaction's appends in memory until
    it commits (all of a 100k-meme cache in one transaction peaked near 4 GB resident, per table
    ~2.4 GB; per chunk saved little more and took 1.7x as long)."""
    rows = iter(rows)
    with store.transaction() as con:
        # DuckDB's DICT_FSST analysis of the JPEG blobs is most of a bulk write's time (for the
        # thumbnails of 100k memes ~10 s of ~13 s); the other string compressions stay on.
        con.execute("SET disabled_compression_methods = 'dict_fsst'")
        while batch := list(itertools.islice(rows, chunk)):
            Store.insert_rows(con, table, batch)


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
    plan = _Plan(n, seed)
    store = Store(path)
    steps = [("runs", plan.runs()), ("variants", plan.variants), ("memes", plan.memes()),
             ("meme_paths", plan.meme_paths()), ("ocr", plan.ocr())]
    steps += [("predictions", plan.predictions(*spec)) for spec in PREDICTION_SETS]
    steps += [("heatmaps", plan.heatmaps(method)) for method in CAM_METHODS]
    steps += [("failures", plan.failures())]
    for table, rows in steps:
        _insert(store, table, rows)
    with store.transaction() as con:
        con.execute("INSERT OR REPLACE INTO meta VALUES ('synthetic', ?)", [json.dumps({"n": n, "seed": seed})])
    summary.write(store, max(r["run_id"] for r in plan.runs()))     # as a precompute does at its end
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
