"""A synthetic prediction cache with realistic shapes, for dashboard tests and benchmarks.

    synth_db("data/synth.duckdb", n=100_000, seed=0)
    python -m pipeline.devtools synth-db --n 100000 --db data/synth.duckdb [--seed 0] [--overwrite]

Every table of pipeline/store.py is filled the way a precompute fills it: memes (with JPEG
thumbnails), meme_paths, variants, ocr (two engines, text + boxes), predictions (two CLIP and two
VLM prediction sets, a few unparseable VLM answers), heatmaps (eigencam and gradcam overlays),
embeddings (one EMBEDDING_DIM-dimensional CLIP image vector per meme, see `embeddings`), runs and failures. Rows are built as Arrow columns (numpy draws over all memes, tables made
CHUNK_MEMES memes at a time) and appended with `Store.append_table`, one transaction per chunk, so
memory stays bounded whatever n (1M memes: see docs/benchmarks.md "Scale: 1,000,000 memes").

Images: a dozen captioned memes are drawn once (pipeline.devtools.synthetic_memes) and their
thumbnails are reused; each meme's thumbnail gets a few unique bytes after the JPEG end marker
(decoders ignore them), so blobs are distinct, and meme_id is the SHA-256 of those bytes, as it
would be of a real file's bytes. The OCR text of a meme is the caption really drawn on its
thumbnail and its boxes are where the caption is (in model-input pixel space, as OCR stores them).
Thumbnails (128 px, JPEG quality 65, ~3.3 KB; --thumb-side for others) and overlays (JPEG quality 40)
are smaller than the pipeline's (384 px, quality 85), to keep 1M-meme files and their build time small;
every overlay is distinct too (a few unique bytes after the end marker).

Everything is flagged is_smoke: a synthetic cache is never results.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image

from pipeline import embedding_map, summary
from pipeline.config import MODEL_MAX_SIDE, NON_TOXIC, TOXIC
from pipeline.devtools.synthetic_memes import NEUTRAL_CAPTIONS, TOXIC_CAPTIONS, draw_meme, expected_text, photo_background
from pipeline.faithfulness import (
    FAITHFULNESS_VERSION,
    answer_failure_kind,
    cam_mass_in_boxes,
    caption_quote,
    possible_contradiction,
)
from pipeline.stages.clip import EMBEDDING_NAME, EMBEDDING_STAGE, embedding_variant
from pipeline.stages.clip_prompts import CENTER_CROP
from pipeline.stages.vlm_answer import PARSER_VERSION
from pipeline.store import Store, short_hash
from pipeline.views import CAPTION_ONLY, CAPTION_REMOVED, VIEW_VERSION, caption_only, caption_removed, derived_name

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
# Derived views (pipeline/views.py, the Modality page) of the first CLIP and the first VLM set: how much of
# each set's logit the view keeps (planted: the picture carries less of the decision than the caption).
DERIVED_OF = (0, 2)
VIEW_KEEPS = ((CAPTION_REMOVED, 0.4), (CAPTION_ONLY, 0.8))
OCR_ENGINES = (("tesseract", "5.3.0"), ("easyocr", "1.7.2"))
CAM_GRID = 16
# CLIP image embeddings (issue 17): clustered random unit vectors. Every template has a centre and
# EMBEDDING_SUBCLUSTERS sub-centres (the same picture in a few variations); a meme's vector is its template's
# centre plus a sub-centre plus noise, L2-normalised and rounded to float16 as the CLIP stage stores it
# (cosine ~0.9 within a sub-cluster, ~0.7 within a template, ~0 across templates).
EMBEDDING_DIM = 768
EMBEDDING_SUBCLUSTERS = 20
EMBEDDING_SUB_WEIGHT, EMBEDDING_NOISE = 0.6, 0.35   # lengths of the sub-centre and noise parts (centre: 1)

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


def _templates(thumb_side: int = 128) -> list[dict]:
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
            thumb.thumbnail((thumb_side, thumb_side), Image.Resampling.LANCZOS)
            boxes = _text_boxes(im, bare, top, bottom)
            text = expected_text(top, bottom)
            views = {CAPTION_REMOVED: caption_removed(im, boxes), CAPTION_ONLY: caption_only(text, size)}
            for view, v in views.items():
                v.thumbnail((thumb_side, thumb_side), Image.Resampling.LANCZOS)
                views[view] = _jpeg(v, 65)
            out.append(dict(label=label, size=size, thumb_size=thumb.size, text=text, views=views,
                            boxes=boxes, thumbnail=_jpeg(thumb, 65),
                            overlays={m: _jpeg(_overlay(thumb, m, k), 40) for m in CAM_METHODS},
                            cams={m: _cam_grid(m, k).tobytes() for m in CAM_METHODS}))
        # the faithfulness stage's CAM measure on each template (scale-free: the same for every size of it)
    for t in out:
        t["mass"] = {m: cam_mass_in_boxes(t["cams"][m], t["boxes"], t["size"], view=CENTER_CROP, grid_h=CAM_GRID,
                                          grid_w=CAM_GRID) for m in CAM_METHODS}
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


def _keys(index: np.ndarray) -> pa.Array:
    """memes.meme_key of the memes at these positions: position + 1 (the order a scan would give)."""
    return pa.array(np.asarray(index, dtype=np.int64) + 1, pa.int32())


def _const(value, m: int, type_: pa.DataType | None = None) -> pa.Array:
    return pa.array(np.full(m, value, dtype=object), type=type_)


def _strings(values: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    """An object array of str as an Arrow string array (None / masked entries NULL)."""
    return pa.array(values, type=pa.string(), mask=mask)


def _timestamps(t0: datetime, idx: np.ndarray, ms_per_item: int) -> pa.Array:
    return pa.array(np.datetime64(t0, "ms") + (idx.astype(np.int64) * ms_per_item).astype("timedelta64[ms]"),
                    type=pa.timestamp("us"))


def _interleave(tables: list[pa.Table]) -> pa.Table:
    """Rows of equally long tables meme by meme (A1 B1 A2 B2 ...), as one stage's batches write them."""
    if len(tables) == 1:
        return tables[0]
    n = tables[0].num_rows
    order = np.arange(n * len(tables)).reshape(len(tables), n).T.ravel()
    return pa.concat_tables(tables).take(pa.array(order))



DUPLICATE_EVERY = 40            # synthetic near-duplicates: meme i (i % 40 == 1) is a near copy of meme i - 1


def _planted_hashes(n: int, seed: int) -> np.ndarray:
    """Perceptual hashes (signed int64) of the synthetic memes: random, except that every
    DUPLICATE_EVERY-th meme is a near copy of the one before (its hash with 2 bits flipped), so the
    Overview finds n / DUPLICATE_EVERY near-duplicate pairs, about half of them under both labels.
    Drawn from a generator of their own, so the other synthetic columns stay as they were."""
    rng = np.random.default_rng(seed + 104_729)
    h = rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, n, dtype=np.int64, endpoint=True)
    for i in range(1, n, DUPLICATE_EVERY):
        flip = np.int64(1) << np.int64(rng.integers(0, 62)) | np.int64(1) << np.int64(62)
        h[i] = h[i - 1] ^ flip
    return h

class _Plan:
    """Per-meme draws (numpy arrays over all memes) that every table's rows are built from, a chunk
    of memes at a time (`tables(lo, hi)`), so memory stays bounded whatever `n`."""

    def __init__(self, n: int, seed: int, thumb_side: int = THUMB_SIDE):
        rng = np.random.default_rng(seed)
        self.n, self.seed, self.rng = n, seed, rng
        self.templates = _templates(thumb_side)
        tox_idx = np.array([i for i, t in enumerate(self.templates) if t["label"] == TOXIC])
        non_idx = np.array([i for i, t in enumerate(self.templates) if t["label"] == NON_TOXIC])
        self.toxic = rng.random(n) < 0.5
        self.conflict = rng.random(n) < 0.01
        self.retired = rng.random(n) < 0.01
        self.template = np.where(self.toxic, tox_idx[rng.integers(0, len(tox_idx), n)],
                                 non_idx[rng.integers(0, len(non_idx), n)])
        scales = np.array([1, 1.5, 2, 3, 4, 6, 9])
        self.scale_k = rng.integers(0, len(scales), n)
        self.scale = scales[self.scale_k]
        self.fmt = rng.choice(np.array(["JPEG", "PNG", "WEBP", "GIF"], dtype=object), n, p=[0.7, 0.2, 0.07, 0.03])
        self.text_free = rng.random(n) < 0.15         # OCR finds no text
        self.fail_kind = np.where(rng.random(n) < 0.004, rng.integers(0, len(FAILURE_KINDS), n), -1)
        self.difficulty = rng.normal(0, 1.0, n)       # shared by all prediction sets: they agree more than chance
        self.phash = _planted_hashes(n, seed)
        self.ocr_conf = [np.round(np.clip(rng.normal(0.8 - 0.1 * e, 0.1, n), 0.05, 1.0), 3)
                         for e in range(len(OCR_ENGINES))]
        y = np.where(self.toxic, 1.0, -1.0)
        self.pred_draws = []                          # per prediction set: (logit, unparsed, explanation pick)
        for stage, _model, _prompt, sep in PREDICTION_SETS:
            logit = sep * y + 0.9 * self.difficulty + rng.normal(0, 0.9, n)
            unparsed = (rng.random(n) < 0.03) if stage == "vlm" else np.zeros(n, bool)
            self.pred_draws.append((logit, unparsed, rng.integers(0, 4, n)))
        self.derived = []                             # (base set index, view, name, logit)
        for k in DERIVED_OF:
            for view, keep in VIEW_KEEPS:
                logit = keep * self.pred_draws[k][0] + rng.normal(0, 0.9, n)
                self.derived.append((k, view, derived_name(PREDICTION_SETS[k][2], view), logit))
        self.run_times = [START + timedelta(hours=i) for i in range(4)]
        sizes = np.array([self.templates[k]["size"] for k in range(len(self.templates))])[self.template]
        self.width = np.round(sizes[:, 0] * self.scale).astype(np.int64)
        self.height = np.round(sizes[:, 1] * self.scale).astype(np.int64)
        self.variants: list[dict] = []
        self.variant_keys: dict[tuple, tuple[str, str]] = {}
        for engine, _ in OCR_ENGINES:
            self._add_variant("ocr", engine, engine, {"languages": ["rus", "eng"], "synthetic": True}, 1)
        for stage, model, prompt, _ in PREDICTION_SETS:
            self._add_variant(stage, model, prompt, {"prompt_version": prompt, "synthetic": True},
                              2 if stage == "clip" else 3)
        for method in CAM_METHODS:
            self._add_variant("cam", CLIP_MODEL, method, {"method": method, "synthetic": True}, 4)
        ev = embedding_variant(CLIP_MODEL, "bf16", True)
        self._add_variant(EMBEDDING_STAGE, CLIP_MODEL, EMBEDDING_NAME, dict(ev.config, synthetic=True), 2)
        erng = np.random.default_rng([seed, 17])
        unit = lambda a: a / np.linalg.norm(a, axis=-1, keepdims=True)     # noqa: E731
        self.embedding_centres = unit(erng.standard_normal((len(self.templates), EMBEDDING_DIM)).astype(np.float32))
        self.embedding_subs = EMBEDDING_SUB_WEIGHT * unit(erng.standard_normal(
            (len(self.templates), EMBEDDING_SUBCLUSTERS, EMBEDDING_DIM)).astype(np.float32))
        self.embedding_sub = erng.integers(0, EMBEDDING_SUBCLUSTERS, n)
        tesseract = self.variant_keys[("ocr", OCR_ENGINES[0][0], OCR_ENGINES[0][0])][0]
        view_config = {"view_version": VIEW_VERSION, "ocr_source": tesseract, "synthetic": True}
        for view, _ in VIEW_KEEPS:
            self._add_variant("views", "render", view, dict(view_config, meme_view=view), 1)
        for k, view, name, _ in self.derived:
            stage, model, prompt, _ = PREDICTION_SETS[k]
            self._add_variant(stage, model, name, dict(view_config, prompt_version=prompt, meme_view=view,
                                                       of=self.variant_keys[(stage, model, prompt)][0]),
                              2 if stage == "clip" else 3)

        self.measured = []                            # faithfulness variants: (measure, source stage, model, name)
        for method in CAM_METHODS:
            self.measured.append(("cam", "cam", CLIP_MODEL, method))
        for stage, model, name in [(v["stage"], v["model_id"], v["name"]) for v in self.variants if v["stage"] == "vlm"]:
            self.measured.append(("answer", stage, model, name))
        for measure, stage, model, name in self.measured:
            config = dict(source=self.variant_keys[(stage, model, name)][0], measure=measure, ocr_source=tesseract,
                          faithfulness_version=FAITHFULNESS_VERSION, synthetic=True)
            config.update(view=CENTER_CROP) if measure == "cam" else config.update(parser_version=PARSER_VERSION)
            self._add_variant("faithfulness", model, f"{measure}:{name}", config, 4)

    def _add_variant(self, stage: str, model_id: str, name: str, config: dict, run_id: int) -> None:
        config_hash = short_hash(stage, name, config)
        vid = short_hash(stage, model_id, config_hash, "1")
        self.variants.append(dict(variant_id=vid, stage=stage, model_id=model_id, name=name, config_hash=config_hash,
                                  stage_version="1", config=json.dumps(config, sort_keys=True, ensure_ascii=False),
                                  is_smoke=True, first_run_id=run_id))
        self.variant_keys[(stage, model_id, name)] = (vid, config_hash)

    def _key(self, stage: str, model_id: str, name: str, m: int) -> dict[str, pa.Array]:
        vid, config_hash = self.variant_keys[(stage, model_id, name)]
        return dict(variant_id=_const(vid, m), model_id=_const(model_id, m), config_hash=_const(config_hash, m),
                    stage_version=_const("1", m))

    def kept(self, stage: str, lo: int = 0, hi: int | None = None) -> np.ndarray:
        """Indices (in lo..hi) of memes whose `stage` did not fail."""
        codes = [k for k, f in enumerate(FAILURE_KINDS) if f[0] == stage]
        return lo + np.flatnonzero(~np.isin(self.fail_kind[lo:hi], codes))

    def rel_path(self, i: int) -> str:
        ext = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif"}[self.fmt[i]]
        return f"{'Негативно' if self.toxic[i] else 'Нейтрально'}/мем {i:06d}.{ext}"

    def thumbnails(self, lo: int, hi: int) -> list[bytes]:
        """The template's thumbnail plus a few unique bytes after its end marker (distinct blobs)."""
        thumbs = [t["thumbnail"] for t in self.templates]
        tail = b"synth"
        seed = self.seed.to_bytes(4, "big")
        return [thumbs[k] + tail + i.to_bytes(6, "big") + seed for i, k in zip(range(lo, hi), self.template[lo:hi].tolist())]

    def ids(self, lo: int, hi: int, thumbs: list[bytes] | None = None) -> np.ndarray:
        """meme_id of memes lo..hi: the SHA-256 of their thumbnail bytes (object array of str)."""
        thumbs = thumbs if thumbs is not None else self.thumbnails(lo, hi)
        return np.array([hashlib.sha256(b).hexdigest() for b in thumbs], dtype=object)

    # ------------------------------------------------------------------ one Arrow table per table and chunk
    def tables(self, lo: int, hi: int) -> Iterator[tuple[str, pa.Table]]:
        """(table, rows) of memes lo..hi for every per-meme table, in the order a precompute writes them."""
        thumbs = self.thumbnails(lo, hi)
        ids = self.ids(lo, hi, thumbs)
        yield "memes", self.memes(lo, hi, ids, thumbs)
        del thumbs
        yield "meme_paths", self.meme_paths(lo, hi, ids)
        yield "ocr", _interleave([self.ocr(e, lo, hi, ids) for e in range(len(OCR_ENGINES))])
        yield "view_images", _interleave([self.view_images(view, lo, hi, ids) for view, _ in VIEW_KEEPS])
        for stage in ("clip", "vlm"):
            yield "predictions", _interleave([self.predictions(k, lo, hi, ids) for k, spec in
                                              enumerate(PREDICTION_SETS) if spec[0] == stage])
            yield "predictions", _interleave([self.predictions(k, lo, hi, ids, d) for d, (k, *_) in
                                              enumerate(self.derived) if PREDICTION_SETS[k][0] == stage])
        yield "heatmaps", _interleave([self.heatmaps(method, lo, hi, ids) for method in CAM_METHODS])
        yield "embeddings", self.embeddings(lo, hi, ids)
        for j in range(len(self.measured)):
            yield "faithfulness", self.faithfulness(j, lo, hi, ids)

    def faithfulness(self, j: int, lo: int, hi: int, ids: np.ndarray) -> pa.Table:
        """The faithfulness stage's rows of measure j: for every heatmap / VLM answer of memes lo..hi, the real
        measures (pipeline.faithfulness) of its template's caption, boxes, CAM and explanation, looked up per
        (template, answer) so a million memes cost a few table lookups."""
        measure, stage, model, name = self.measured[j]
        if measure == "cam":
            idx = np.intersect1d(self.kept("cam", lo, hi), self.kept("ocr", lo, hi))
            m = len(idx)
            has = ~self.text_free[idx]
            got = [self.templates[k]["mass"][name] for k in self.template[idx].tolist()]
            cols = {c: pa.array([g[c] for g in got], pa.float64(), mask=~has)
                    for c in ("mass", "area", "ratio", "boxes_seen")}
            data = dict(caption_mass=cols["mass"], caption_area=cols["area"], caption_ratio=cols["ratio"],
                        boxes_seen=cols["boxes_seen"])
        else:
            k_set, d = self._prediction_args(name)
            table = self.predictions(k_set, lo, hi, ids, d)
            idx = table["meme_key"].to_numpy() - 1
            m = len(idx)
            has = ~self.text_free[idx] & np.isin(idx, self.kept("ocr", lo, hi))
            rows, memo = [], {}
            for k, h, lab, expl, raw, prompt in zip(self.template[idx].tolist(), has.tolist(),
                                                    table["label"].to_pylist(), table["explanation"].to_pylist(),
                                                    table["raw_answer"].to_pylist(), table["prompt"].to_pylist()):
                key = (k, h, lab, expl, raw)
                if key not in memo:
                    quote = caption_quote(expl, self.templates[k]["text"]) if h else dict(overlap=None, quotes=None,
                                                                                       quoted_words=[])
                    contra = possible_contradiction(expl, lab)
                    memo[key] = (quote["overlap"], quote["quotes"], json.dumps(quote["quoted_words"], ensure_ascii=False),
                                 contra["flag"], contra["cue"], answer_failure_kind(raw, lab, prompt))
                rows.append(memo[key])
            cols = list(zip(*rows)) if rows else [[]] * 6
            data = dict(quote_overlap=pa.array(cols[0], pa.float64()), quotes_caption=pa.array(cols[1], pa.bool_()),
                        quoted_words=pa.array(cols[2], pa.string()), contradiction=pa.array(cols[3], pa.bool_()),
                        contradiction_cue=pa.array(cols[4], pa.string()), failure_kind=pa.array(cols[5], pa.string()))
        source = self.variant_keys[(stage, model, name)][0]
        return pa.table(dict(
            meme_id=_strings(ids[idx - lo]), meme_key=_keys(idx), **self._key("faithfulness", model, f"{measure}:{name}", m),
            source_variant=_const(source, m), measure=_const(measure, m), has_caption=pa.array(has), **data,
            seconds=pa.array(np.full(m, 0.001)), run_id=pa.array(np.full(m, 4, np.int32)),
            created_at=_timestamps(self.run_times[3], idx, 1)))

    def _prediction_args(self, name: str) -> tuple[int, int | None]:
        """(prediction set index, derived index or None) of the VLM set called `name`."""
        for d, (k, _view, dname, _logit) in enumerate(self.derived):
            if dname == name and PREDICTION_SETS[k][0] == "vlm":
                return k, d
        return next(k for k, spec in enumerate(PREDICTION_SETS) if spec[0] == "vlm" and spec[2] == name), None

    def memes(self, lo: int, hi: int, ids: np.ndarray, thumbs: list[bytes]) -> pa.Table:
        m = hi - lo
        label = np.where(self.toxic[lo:hi], TOXIC, NON_TOXIC).astype(object)
        fmt = self.fmt[lo:hi]
        w, h = self.width[lo:hi], self.height[lo:hi]
        retired = self.retired[lo:hi]
        return pa.table(dict(
            meme_id=_strings(ids), meme_key=_keys(np.arange(lo, hi)), label=_strings(label, mask=self.conflict[lo:hi]),
            label_conflict=pa.array(self.conflict[lo:hi]),
            rel_path=_strings(np.array([self.rel_path(i) for i in range(lo, hi)], dtype=object)),
            width=pa.array(w, pa.int32()), height=pa.array(h, pa.int32()), format=_strings(fmt),
            n_bytes=pa.array((w * h * 0.35).astype(np.int64) + 1000), n_frames=pa.array(np.where(fmt == "GIF", 12, 1), pa.int32()),
            thumbnail=pa.array(thumbs, pa.binary()), thumbnail_mime=_const("image/jpeg", m, pa.string()),
            first_run_id=pa.array(np.ones(m, np.int32)), last_seen_run_id=pa.array(np.where(retired, 1, 4).astype(np.int32)),
            retired=pa.array(retired), phash=pa.array(self.phash[lo:hi], pa.int64())))

    def meme_paths(self, lo: int, hi: int, ids: np.ndarray) -> pa.Table:
        toxic, retired = self.toxic[lo:hi], self.retired[lo:hi]
        main = pa.table(dict(
            meme_id=_strings(ids), meme_key=_keys(np.arange(lo, hi)),
            rel_path=_strings(np.array([self.rel_path(i) for i in range(lo, hi)], dtype=object)),
            label=_strings(np.where(toxic, TOXIC, NON_TOXIC).astype(object)),
            last_seen_run_id=pa.array(np.where(retired, 1, 4).astype(np.int32))))
        c = np.flatnonzero(self.conflict[lo:hi])        # the same bytes also lie in the other label's folder
        other = pa.table(dict(
            meme_id=_strings(ids[c]), meme_key=_keys(lo + c),
            rel_path=_strings(np.array([f"{'Нейтрально' if toxic[j] else 'Негативно'}/копия {lo + j:06d}.jpg" for j in c],
                                       dtype=object)),
            label=_strings(np.where(toxic[c], NON_TOXIC, TOXIC).astype(object)),
            last_seen_run_id=pa.array(np.full(len(c), 4, np.int32))))
        return pa.concat_tables([main, other])

    def ocr(self, e: int, lo: int, hi: int, ids: np.ndarray) -> pa.Table:
        engine, version = OCR_ENGINES[e]
        idx = self.kept("ocr", lo, hi)
        m = len(idx)
        in_scale = np.minimum(1.0, MODEL_MAX_SIDE / np.maximum(self.width[idx], self.height[idx]))
        conf = self.ocr_conf[e][idx]
        free = self.text_free[idx]
        texts = np.array([t["text"] if e == 0 else t["text"].lower() for t in self.templates], dtype=object)
        text = texts[self.template[idx]]
        text[free] = ""
        boxes = np.empty(m, dtype=object)
        cache: dict[tuple, str] = {}
        for j, (i, k, c, s_in) in enumerate(zip(idx.tolist(), self.template[idx].tolist(), conf.tolist(),
                                                in_scale.tolist())):
            if free[j]:
                boxes[j] = "[]"
                continue
            key = (k, int(self.scale_k[i]), c)
            b = cache.get(key)
            if b is None:
                t = self.templates[k]
                s = float(s_in * self.width[i] / t["size"][0])
                b = cache[key] = json.dumps([dict(box, box=[round(v * s, 1) for v in box["box"]], conf=c)
                                             for box in t["boxes"]], ensure_ascii=False)
            boxes[j] = b
        return pa.table(dict(
            meme_id=_strings(ids[idx - lo]), meme_key=_keys(idx), **self._key("ocr", engine, engine, m), engine=_const(engine, m),
            engine_version=_const(version, m), text=_strings(text), boxes=_strings(boxes),
            mean_confidence=pa.array(conf, mask=free), seconds=pa.array(np.full(m, 0.2 + 0.1 * e)),
            run_id=pa.array(np.ones(m, np.int32)), created_at=_timestamps(self.run_times[0], idx, 200)))

    def view_images(self, view: str, lo: int, hi: int, ids: np.ndarray) -> pa.Table:
        """The views stage's rows: memes with OCR text get the derived image of their template (shared blobs)."""
        idx = self.kept("ocr", lo, hi)
        m = len(idx)
        has = ~self.text_free[idx]
        thumbs = np.array([t["views"][view] for t in self.templates], dtype=object)[self.template[idx]]
        return pa.table(dict(
            meme_id=_strings(ids[idx - lo]), meme_key=_keys(idx), **self._key("views", "render", view, m),
            view=_const(view, m), has_caption=pa.array(has),
            n_boxes=pa.array(np.where(has, 2, 0).astype(np.int32)),
            thumbnail=pa.array(np.where(has, thumbs, None).tolist(), pa.binary()),
            thumbnail_mime=_strings(np.full(m, "image/jpeg", dtype=object), mask=~has),
            width=pa.array(np.where(has, self.width[idx], 0).astype(np.int32), mask=~has),
            height=pa.array(np.where(has, self.height[idx], 0).astype(np.int32), mask=~has),
            seconds=pa.array(np.full(m, 0.02)), run_id=pa.array(np.ones(m, np.int32)),
            created_at=_timestamps(self.run_times[0], idx, 20)))

    def predictions(self, k: int, lo: int, hi: int, ids: np.ndarray, derived: int | None = None) -> pa.Table:
        """Prediction set k's rows, or (derived = index into self.derived) its rows on a derived view: only
        the memes with OCR text (the others have no derived view), with that view's own logits."""
        stage, model, prompt, _sep = PREDICTION_SETS[k]
        logit_all, unparsed_all, pick_all = self.pred_draws[k]
        idx = self.kept(stage, lo, hi)
        if derived is not None:
            _, _, prompt, logit_all = self.derived[derived]
            idx = np.intersect1d(idx, self.kept("ocr", lo, hi))
            idx = idx[~self.text_free[idx]]
        m = len(idx)
        logit = logit_all[idx]
        score = np.round(_sigmoid(logit), 5)
        toxic = score >= 0.5
        half = pa.array(np.round(logit / 2, 4))
        logits = pc.binary_join_element_wise('{"toxic": ', pc.cast(half, pa.string()), ', "non_toxic": ',
                                             pc.cast(pc.negate(half), pa.string()), "}", "")
        unparsed = unparsed_all[idx]
        if stage == "vlm":
            prompt_text = f"[{prompt}] Is this meme toxic? Answer with JSON {{label, explanation}}."
            words = np.array([[e for e in EXPLANATIONS[lab]] for lab in (NON_TOXIC, TOXIC)], dtype=object)
            explanation = words[toxic.astype(int), pick_all[idx]]
            answers = np.array([[f'{{"label": "{lab}", "explanation": "{e}"}}' for e in EXPLANATIONS[lab]]
                                for lab in (NON_TOXIC, TOXIC)], dtype=object)
            raw = answers[toxic.astype(int), pick_all[idx]]
            raw[unparsed] = "Не могу однозначно ответить на этот вопрос."
            explanation[unparsed] = None
        else:
            prompt_text = f"[{prompt}] a toxic meme | a harmless meme"
            raw = explanation = np.full(m, None, dtype=object)
        return pa.table(dict(
            meme_id=_strings(ids[idx - lo]), meme_key=_keys(idx), **self._key(stage, model, prompt, m), stage=_const(stage, m),
            prompt_version=_const(prompt, m),
            label=_strings(np.where(toxic, TOXIC, NON_TOXIC).astype(object), mask=unparsed),
            score=pa.array(score), logits=logits, prompt=_const(prompt_text, m), raw_answer=_strings(raw),
            explanation=_strings(explanation), is_smoke=pa.array(np.ones(m, bool)),
            seconds=pa.array(np.full(m, 0.05 if stage == "clip" else 1.3)),
            run_id=pa.array(np.full(m, 2 if stage == "clip" else 3, np.int32)),
            created_at=_timestamps(self.run_times[1 if stage == "clip" else 2], idx, 50)))

    def embedding_vectors(self, lo: int, hi: int) -> np.ndarray:
        """The (hi - lo, EMBEDDING_DIM) float32 vectors of memes lo..hi, unit length, float16-rounded
        (drawn per chunk from (seed, lo): the same whatever else is drawn)."""
        rng = np.random.default_rng([self.seed, 23, lo])
        t, sub = self.template[lo:hi], self.embedding_sub[lo:hi]
        noise = rng.standard_normal((hi - lo, EMBEDDING_DIM), dtype=np.float32)
        noise *= EMBEDDING_NOISE / np.sqrt(EMBEDDING_DIM)
        v = self.embedding_centres[t] + self.embedding_subs[t, sub] + noise
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        return v.astype(np.float16).astype(np.float32)

    def embeddings(self, lo: int, hi: int, ids: np.ndarray) -> pa.Table:
        idx = self.kept("clip", lo, hi)
        m = len(idx)
        vectors = self.embedding_vectors(lo, hi)[idx - lo]
        flat = pa.array(vectors.ravel(), pa.float32())
        lists = pa.ListArray.from_arrays(pa.array(np.arange(0, m * EMBEDDING_DIM + 1, EMBEDDING_DIM, dtype=np.int32)),
                                         flat)
        return pa.table(dict(
            meme_id=_strings(ids[idx - lo]), meme_key=_keys(idx), **self._key(EMBEDDING_STAGE, CLIP_MODEL,
                                                                             EMBEDDING_NAME, m),
            dim=pa.array(np.full(m, EMBEDDING_DIM, np.int32)), embedding=lists,
            is_smoke=pa.array(np.ones(m, bool)), seconds=pa.array(np.full(m, 0.0)),
            run_id=pa.array(np.full(m, 2, np.int32)), created_at=_timestamps(self.run_times[1], idx, 50)))

    def heatmaps(self, method: str, lo: int, hi: int, ids: np.ndarray) -> pa.Table:
        idx = self.kept("cam", lo, hi)
        m = len(idx)
        overlays = [t["overlays"][method] for t in self.templates]
        cams = np.array([t["cams"][method] for t in self.templates], dtype=object)
        return pa.table(dict(
            meme_id=_strings(ids[idx - lo]), meme_key=_keys(idx), **self._key("cam", CLIP_MODEL, method, m), method=_const(method, m),
            grid_h=pa.array(np.full(m, CAM_GRID, np.int32)), grid_w=pa.array(np.full(m, CAM_GRID, np.int32)),
            cam=pa.array(cams[self.template[idx]], pa.binary()),
            overlay=pa.array([overlays[k] + i.to_bytes(6, "big") for i, k in zip(idx.tolist(), self.template[idx].tolist())],
                             pa.binary()),
            is_smoke=pa.array(np.ones(m, bool)), seconds=pa.array(np.full(m, 0.4)),
            run_id=pa.array(np.full(m, 4, np.int32)), created_at=_timestamps(self.run_times[3], idx, 400)))

    def failures(self) -> list[dict]:
        rows = []
        failed = np.flatnonzero(self.fail_kind >= 0)
        ids = {}
        for i in failed.tolist():
            ids[i] = self.ids(i, i + 1)[0]
        for i in failed.tolist():
            stage, etype, msg = FAILURE_KINDS[self.fail_kind[i]]
            run_id = {"scan": 1, "ocr": 1, "vlm": 3, "cam": 4}[stage]
            meme_id, path = ids[i], self.rel_path(i)
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


CHUNK_MEMES = 50_000     # memes per write transaction: memory stays bounded whatever n


def synth_db(path: str | Path, n: int, seed: int = 0, overwrite: bool = False, thumb_side: int = THUMB_SIDE,
             with_map: bool = True) -> Path:
    """Write a synthetic cache of `n` memes to `path` (refuses an existing file unless overwrite).
    `thumb_side`: the long side of the thumbnails and overlays (the pipeline's is 384 px); `with_map`: store
    the Map page's layout of the embeddings too (pipeline/embedding_map.py), as a precompute does."""
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
    plan = _Plan(n, seed, thumb_side)
    store = Store(path)
    with store.transaction() as con:
        Store.insert_rows(con, "runs", plan.runs())
        Store.insert_rows(con, "variants", plan.variants)
    for lo in range(0, n, CHUNK_MEMES):
        with store.transaction() as con:
            for table, data in plan.tables(lo, min(n, lo + CHUNK_MEMES)):
                Store.append_table(con, table, data)
    with store.transaction() as con:
        Store.insert_rows(con, "failures", plan.failures())
        Store.insert_rows(con, "meta", [dict(key="synthetic", value=json.dumps({"n": n, "seed": seed,
                                                                              "thumb_side": thumb_side}))])
    summary.write(store, max(r["run_id"] for r in plan.runs()))     # as a precompute does at its end
    if with_map:                       # the Map page's layout (UMAP: ~4 s at 1,000 memes, plus numba's compilation)
        embedding_map.write(store, max(r["run_id"] for r in plan.runs()))
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.devtools synth-db",
                                description="Write a synthetic prediction cache (is_smoke: never results).")
    p.add_argument("--n", type=int, default=1000, help="number of memes (default 1000)")
    p.add_argument("--db", required=True, help="the DuckDB file to write")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.add_argument("--thumb-side", type=int, default=THUMB_SIDE,
                   help=f"long side of thumbnails and overlays in px (default {THUMB_SIDE}; the pipeline's: 384)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    try:
        out = synth_db(args.db, args.n, seed=args.seed, overwrite=args.overwrite, thumb_side=args.thumb_side)
    except (FileExistsError, ValueError) as e:
        print(f"synth-db: {e}", file=sys.stderr)
        return 2
    size = out.stat().st_size
    print(f"wrote {args.n} synthetic memes to {out} ({size / 2**20:.1f} MiB) in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
