"""GPU speed of the pipeline's models at full size, with RANDOM weights (speed and memory only, never results).

    .venv/bin/python benchmarks/gpu_models.py [--n 4] [--max-new-tokens 160] [--out gpu.md]
        [--batch-sizes 1,4,8] [--served-url http://127.0.0.1:8000/v1 --served-model NAME]

One prepared script for a lent CUDA machine (a few minutes): builds random-weight Qwen2.5-VL-3B and CLIP
ViT-L/14 from the published architectures in benchmarks/configs/ (random init directly on the GPU), saves them
with save_pretrained, loads them back through the pipeline's own stages and times, for --n memes:
  - VlmStage, bf16, both default prompts (label-first-v1, explain-first-v1) at max_pixels 640²: prefill, decode
    per token, the score forward, seconds per meme, peak GPU memory;
  - the same with --quantize 4bit when bitsandbytes imports (skipped with the reason otherwise);
  - ClipStage batched (all prompt sets, bf16, batch --clip-batch) and CamStage (EigenCAM, Grad-CAM, fp32);
  - batched generation: VlmStage(batch_size=1, 4, 8, device="cuda") over the same memes, both prompts, seconds
    per meme (--batch-sizes; process_variants, the runner's call);
  - a served backend: ServedVlmStage against --served-url URL --served-model NAME (e.g. a vLLM started by hand on
    that machine: `vllm serve Qwen/Qwen2.5-VL-3B-Instruct`), at --served-concurrency 1,8; skipped (and said so)
    without --served-url. Answers there are not forced (the server's model decides where to stop): the table
    gives the generated tokens it reports.
Generation is forced to exactly --max-new-tokens tokens (eos disabled: random weights stop anywhere), 160 by
default = the pipeline's max_new_tokens, so the VLM time is that of the longest answer the pipeline allows.
Memes: --memes (the real folder, ../shared/memes, when present) or synthetic ones drawn on the spot.
Prints a Markdown table headed by the card's name; --out (or $OUT/gpu_benchmark.md) keeps a copy.

Without a CUDA GPU it stops at once with exit code 2 and says so (`--help` works anywhere).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import models_cpu as mc  # noqa: E402  (the builders and the VLM timing are shared with the CPU benchmark)

NO_CUDA = ("benchmarks/gpu_models.py needs a CUDA GPU, and torch sees none here (torch.cuda.is_available() is "
           "False). For CPU numbers run benchmarks/models_cpu.py.")


def require_cuda():
    try:
        import torch
    except ImportError:
        print(NO_CUDA.replace("torch sees none here", "torch is not installed"), file=sys.stderr)
        raise SystemExit(2) from None
    if not torch.cuda.is_available():
        print(NO_CUDA, file=sys.stderr)
        raise SystemExit(2)
    return torch


def memes_for(a, work: Path):
    if a.memes and a.memes.is_dir():
        return mc.meme_inputs(a.memes, a.n), f"{a.n} real memes from {a.memes}"
    from pipeline.devtools.synthetic_memes import write_meme_folder
    folder = work / "synthetic-memes"
    write_meme_folder(folder, n_toxic=max(1, a.n // 2), n_non_toxic=max(1, a.n - a.n // 2), seed=0)
    return mc.meme_inputs(folder, a.n), f"{a.n} synthetic memes (no real meme folder here)"


def clip_rows(torch, clip_dir: Path, memes, batch: int) -> list[list]:
    from pipeline.stages.cam import CamStage
    from pipeline.stages.clip import ClipStage
    rows = []
    stage = ClipStage(model=str(clip_dir), device="cuda", batch_size=batch)
    stage.ocr_source = "bench"
    for m in memes:
        m.ocr_text = "пример текста мема, который распознал OCR"   # fixed: the OCR prompt sets get a caption
    stage.load()
    warm = list(memes[:2])
    for v in stage.variants():
        stage.process(warm, v)
    stage._image_cache.clear()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for v in stage.variants():
        for i in range(0, len(memes), batch):
            stage.process(memes[i:i + batch], v)
    torch.cuda.synchronize()
    s = time.perf_counter() - t0
    rows.append([f"CLIP ViT-L/14, ClipStage, {mc_precision(stage)}, batch {batch}, {len(stage.variants())} prompt sets",
                 f"{s / len(memes):.3f}", f"{torch.cuda.max_memory_allocated() / 1024 ** 3:.1f}", ""])
    cam = CamStage(model=str(clip_dir), device="cuda", batch_size=8)
    cam.load()
    for v in cam.variants():
        cam.process(warm, v)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for i in range(0, len(memes), 8):
            cam.process(memes[i:i + 8], v)
        torch.cuda.synchronize()
        s = time.perf_counter() - t0
        rows.append([f"CAM {v.name}, fp32, batch 8", f"{s / len(memes):.3f}",
                     f"{torch.cuda.max_memory_allocated() / 1024 ** 3:.1f}", ""])
    return rows


def mc_precision(stage) -> str:
    return stage._precision_name()


def vlm_rows(torch, qwen_dir: Path, memes, quantize: str, max_new: int) -> list[list]:
    rows, meta = mc.vlm_table(qwen_dir, memes, [640 * 640], ["label-first-v1", "explain-first-v1"], "bf16", max_new,
                              (), device="cuda", quantize=quantize)
    out = []
    by_prompt: dict[str, list] = {}
    for r in rows:
        by_prompt.setdefault(r[1], []).append(r)
    for prompt, rs in by_prompt.items():
        mean = lambda i: sum(float(str(r[i]).split()[0]) for r in rs) / len(rs)   # noqa: E731
        peak = max(float(r[-1]) for r in rs)
        out.append([f"Qwen2.5-VL-3B, VlmStage, {'bf16' if quantize == 'none' else quantize + ' (bnb nf4, bf16 compute)'}, "
                    f"{prompt}, 640²", f"{mean(10):.3g}", f"{peak:.1f}",
                    f"prefill {mean(6):.3g} s, decode {mean(7) * 1000:.3g} ms/tok, score {mean(9):.3g} s, "
                    f"{max_new} tok; weights {meta['gpu_weights_gb'] or 0:.1f} GB; load {meta['load_s']:.0f} s"])
    return out


def batched_rows(torch, qwen_dir: Path, memes, batch_sizes: list[int], max_new: int) -> list[list]:
    """VlmStage.process_variants (both default prompts) at each batch size: seconds per meme, peak memory."""
    from pipeline.stages.vlm import VlmStage
    rows = []
    for bs in batch_sizes:
        stage = VlmStage(model=str(qwen_dir), prompt_versions=["label-first-v1", "explain-first-v1"], device="cuda",
                         precision="bf16", max_new_tokens=max_new, max_pixels=640 * 640, batch_size=bs)
        stage.load()
        variants = stage.variants()
        stage.max_new_tokens = 2
        stage.process_variants(memes[:min(len(memes), bs)], variants)        # warm-up
        stage.max_new_tokens = max_new
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for i in range(0, len(memes), bs):
            out = stage.process_variants(memes[i:i + bs], variants)
        torch.cuda.synchronize()
        s = time.perf_counter() - t0
        errors = sum(isinstance(r, Exception) for rs in out.values() for r in rs)
        rows.append([f"Qwen2.5-VL-3B, VlmStage batch_size={bs}, bf16, both prompts, 640²", f"{s / len(memes):.3g}",
                     f"{torch.cuda.max_memory_allocated() / 1024 ** 3:.1f}",
                     f"{len(memes)} memes, {max_new} tok forced" + (f"; {errors} failed item(s) in the last batch" if errors else "")])
        stage.model = None
        del stage
        torch.cuda.empty_cache()
    return rows


def served_rows(a, memes) -> tuple[list[list], str | None]:
    """ServedVlmStage against a server started by hand (--served-url); (rows, None) or ([], why skipped)."""
    if not a.served_url:
        return [], "served backend: skipped (no --served-url; start e.g. vLLM and pass --served-url/--served-model)"
    from pipeline.stages.vlm_served import ServedVlmStage
    rows = []
    for conc in a.served_concurrency:
        stage = ServedVlmStage(url=a.served_url, model=a.served_model, prompt_versions=["label-first-v1", "explain-first-v1"],
                               max_new_tokens=a.max_new_tokens, max_pixels=640 * 640, concurrency=conc,
                               prefill="continue", timeout=600, retries=1)
        try:
            stage.load()
            variants = stage.variants()
            stage.process(memes[:1], variants[0])                            # warm-up
            t0 = time.perf_counter()
            failed = 0
            for v in variants:
                failed += sum(isinstance(r, Exception) for r in stage.process(memes, v))
            s = time.perf_counter() - t0
        except Exception as e:  # noqa: BLE001 - reported, the other rows still count
            return rows, f"served backend at {a.served_url}: failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
        rows.append([f"served {a.served_model} at {a.served_url}, concurrency {conc}, both prompts", f"{s / len(memes):.3g}",
                     "(server)", f"{len(memes)} memes, prefill scoring" + (f"; {failed} failed" if failed else "")])
    return rows, None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--memes", type=Path, default=mc.DEFAULT_MEMES)
    p.add_argument("--n", type=int, default=4, help="memes per model (fixed, the same for every row)")
    p.add_argument("--max-new-tokens", type=int, default=160, help="forced answer length (pipeline default 160)")
    p.add_argument("--clip-batch", type=int, default=32)
    p.add_argument("--cache", type=Path, default=None, help="where the random checkpoints go (default: a temp dir)")
    p.add_argument("--qwen-tokenizer", default=None, help="folder with the real Qwen2.5 tokenizer files")
    p.add_argument("--skip-4bit", action="store_true")
    p.add_argument("--batch-sizes", type=lambda s: [int(x) for x in s.split(",") if x], default=[1, 4, 8],
                   help="VlmStage batch sizes for the batched-generation rows (empty string: none)")
    p.add_argument("--served-url", default=None, help="an OpenAI-compatible server's /v1 URL (e.g. a vLLM started by hand)")
    p.add_argument("--served-model", default="Qwen/Qwen2.5-VL-3B-Instruct", help="the model name that server knows")
    p.add_argument("--served-concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8])
    p.add_argument("--out", type=Path, default=None, help="also write the table here (default $OUT/gpu_benchmark.md)")
    a = p.parse_args(argv)
    torch = require_cuda()
    tmp = tempfile.TemporaryDirectory(prefix="vlmemes-gpu-bench-")
    work = a.cache or Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    memes, memes_note = memes_for(a, work)
    for m in memes:
        m.image  # noqa: B018 - decoded once, outside the timed regions

    tok_dir = mc.find_qwen_tokenizer(a.qwen_tokenizer)
    t0 = time.perf_counter()
    qwen_dir = mc.build_full_qwen(work / "qwen25vl-3b-random", tok_dir, "bf16", init_device="cuda")
    clip_dir = mc.build_full_clip(work / "clip-vit-large-patch14-random")
    torch.cuda.empty_cache()
    build_s = time.perf_counter() - t0

    rows = vlm_rows(torch, qwen_dir, memes, "none", a.max_new_tokens)
    notes = []
    if a.skip_4bit:
        notes.append("4-bit: skipped (--skip-4bit)")
    else:
        try:
            import bitsandbytes  # noqa: F401
            rows += vlm_rows(torch, qwen_dir, memes, "4bit", a.max_new_tokens)
        except ImportError as e:
            notes.append(f"4-bit: bitsandbytes does not import here ({e}); not measured")
        except Exception as e:  # noqa: BLE001 - reported, the other rows still count
            notes.append(f"4-bit: failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
    if a.batch_sizes:
        try:
            rows += batched_rows(torch, qwen_dir, memes, a.batch_sizes, a.max_new_tokens)
        except Exception as e:  # noqa: BLE001 - reported, the other rows still count
            notes.append(f"batched generation: failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
    served, why = served_rows(a, memes)
    rows += served
    if why:
        notes.append(why)
    rows += clip_rows(torch, clip_dir, memes, a.clip_batch)

    from importlib import metadata
    versions = ", ".join(f"{d} {metadata.version(d)}" for d in ("torch", "transformers", "bitsandbytes")
                         if _installed(metadata, d))
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        print(f"### GPU: {torch.cuda.get_device_name(0)} ({mc.RANDOM_NOTE})\n")
        print(f"{torch.cuda.get_device_name(0)}, {torch.cuda.get_device_properties(0).total_memory / 1024 ** 3:.0f} GB; "
              f"CUDA {torch.version.cuda}; {versions}; host {mc._lscpu_model()}, {os.cpu_count()} cores. {memes_note}; "
              f"tokenizer: {'real Qwen2.5 BPE' if tok_dir else 'tiny per-letter BPE (Russian prompts ~2.7x longer than real)'}; "
              f"random checkpoints built in {build_s:.0f} s.\n")
        mc.table(["model / stage", "s/meme", "peak GPU memory GB", "details"], rows)
        for n in notes:
            print(f"\n{n}")
    text = buf.getvalue()
    print(text)
    out = a.out or (Path(os.environ["OUT"]) / "gpu_benchmark.md" if os.environ.get("OUT") else None)
    if out:
        out.write_text(text)
    tmp.cleanup()
    return 0


def _installed(metadata, dist: str) -> bool:
    try:
        metadata.version(dist)
        return True
    except metadata.PackageNotFoundError:
        return False


if __name__ == "__main__":
    sys.exit(main())
