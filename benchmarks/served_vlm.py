"""Served VLM (llama.cpp llama-server, quantized GGUF) vs in-process transformers on CPU, prefix reuse, and the
CPU's physical limits. Full-size Qwen2.5-VL-3B with RANDOM weights (speed only, never results).

    .venv/bin/python benchmarks/served_vlm.py prepare    # random checkpoint -> GGUF f16 + mmproj f16 -> Q8_0, Q4_K_M
    .venv/bin/python benchmarks/served_vlm.py cpu        # transformers fp32 (reuse off/on), bf16 (reuse on),
                                                         #   llama-server Q4_K_M / Q8_0 at concurrency 1 and 2
    .venv/bin/python benchmarks/served_vlm.py limits     # peak FLOP/s (fp32, bf16 matmul), memory bandwidth,
                                                         #   FLOPs per prompt and bytes per token -> lower bounds

The checkpoint is models_cpu's (benchmarks/models_cpu.py: build_full_qwen, cached under --cache, marked as random
weights so the GGUF converter answers "qwen2" to its pre-tokenizer check, see pipeline/devtools/gguf.py). The
GGUFs go to --cache/gguf/. `cpu` runs every backend in ONE invocation on the same memes and the same prompts
(both defaults: label-first-v1, explain-first-v1), answers forced to exactly --max-new-tokens tokens: eos
disabled for transformers (the checkpoint's generation_config), `"ignore_eos": true` in llama-server's payload
(a ServedVlmStage subclass here, benchmark only). The served backend reads the score by prefill
(--vlm-prefill continue: a second request, 1 token, with `...Класс:` prefilled), as transformers runs its score
forward: both sides do the same work. Server start and one warm-up meme are excluded from the timings.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import models_cpu as mc  # noqa: E402

PROMPTS = ["label-first-v1", "explain-first-v1"]
QTYPES = ["Q4_K_M", "Q8_0"]
SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "amx_int8")


# =========================================================================== machine
def cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "flags unknown"
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    return "CPU flags: " + ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in SPEED_FLAGS)


def header(title: str, extra: str = "") -> None:
    mc.header(title, (cpu_flags() + ". " + extra).strip())


def gguf_dir(a) -> Path:
    return a.cache / "gguf"


def checkpoint(a) -> tuple[Path, Path | None]:
    tok = mc.find_qwen_tokenizer(a.qwen_tokenizer)
    return mc._qwen_dirs(a, tok), tok


def gguf_paths(a) -> dict[str, tuple[Path, Path]]:
    """{'f16' | 'Q8_0' | 'Q4_K_M': (text model gguf, mmproj f16 gguf)}."""
    model_dir, _ = checkpoint(a)
    name = model_dir.name
    g = gguf_dir(a)
    mmproj = g / f"mmproj-{name}-f16.gguf"
    out = {"f16": (g / f"{name}-f16.gguf", mmproj)}
    for q in QTYPES:
        out[q] = (g / f"{name}-{q}.gguf", mmproj)
    return out


def _gb(path: Path) -> str:
    return f"{path.stat().st_size / 1024 ** 3:.2f} GiB" if path.exists() else "missing"


# =========================================================================== prepare
def section_prepare(a) -> None:
    from pipeline.devtools.gguf import convert_checkpoint, quantize
    from pipeline.hf import is_random_weights
    model_dir, tok = checkpoint(a)
    header("Served VLM: preparing the GGUF files (full-size random Qwen2.5-VL-3B)")
    rows = []
    with mc.Timer() as t:
        mc.build_full_qwen(model_dir, tok, "bf16")
    assert is_random_weights(str(model_dir)), f"{model_dir} is not marked as random weights"
    size = sum(p.stat().st_size for p in model_dir.glob("*.safetensors"))
    rows.append(["HF checkpoint (bf16 safetensors, random, marked)", str(model_dir), f"{size / 1024 ** 3:.2f} GiB",
                 f"{t.s:.0f} (0 = cached)"])
    paths = gguf_paths(a)
    f16, mmproj = paths["f16"]
    with mc.Timer() as t:
        if not (f16.exists() and mmproj.exists()):
            convert_checkpoint(model_dir, gguf_dir(a), outtype="f16")
    rows.append(["GGUF f16 text model", f16.name, _gb(f16), f"{t.s:.0f} (both conversions; 0 = cached)"])
    rows.append(["GGUF f16 mmproj (vision tower + merger)", mmproj.name, _gb(mmproj), ""])
    for q in QTYPES:
        out = paths[q][0]
        with mc.Timer() as t:
            fallbacks = ()
            if not out.exists():
                fallbacks = quantize(f16, out, q, threads=os.cpu_count() or 2).fallbacks
        rows.append([f"GGUF {q} text model", out.name, _gb(out),
                     f"{t.s:.0f}" + (f"; {len(fallbacks)} fallback line(s)" if fallbacks else "")])
    mc.table(["file", "name", "size", "seconds"], rows)
    mc.footer()


# =========================================================================== transformers timing
def _vlm_stage(model_dir: Path, precision: str, reuse: bool, max_new: int, max_pixels: int):
    from pipeline.stages.vlm import VlmStage
    return VlmStage(model=str(model_dir), prompt_versions=PROMPTS, device="cpu", precision=precision,
                    max_new_tokens=max_new, max_pixels=max_pixels, reuse_prefix=reuse, batch_size=1)


def time_transformers(stage, memes) -> dict:
    """process_meme per meme (both prompts). The first prompt's time runs from the start (both encodes, the
    shared prefix when reused, prompt 1's generate + score) to prompt 2's generate; the second's is the rest."""
    original = stage._generate
    marks: list[float] = []

    def marked(*args, **kwargs):
        marks.append(time.perf_counter())
        return original(*args, **kwargs)
    stage._generate = marked
    per_meme, first, second, prompt_tokens = [], [], [], []
    try:
        variants = stage.variants()
        for m in memes:
            marks.clear()
            t0 = time.perf_counter()
            res = stage.process_meme(m, variants)
            t1 = time.perf_counter()
            errors = [r for r in res.values() if isinstance(r, Exception)]
            if errors:
                raise errors[0]
            per_meme.append(t1 - t0)
            first.append(marks[1] - t0)
            second.append(t1 - marks[1])
            print(f"  {m.meme_id}: {t1 - t0:.1f} s ({first[-1]:.1f} + {second[-1]:.1f})", file=sys.stderr, flush=True)
    finally:
        del stage._generate
    return dict(per_meme=per_meme, first=first, second=second, prompt_tokens=prompt_tokens)


def run_transformers(model_dir: Path, memes, precision: str, reuse: bool, a) -> dict:
    import torch
    stage = _vlm_stage(model_dir, precision, reuse, a.max_new_tokens, a.max_pixels)
    mc.reset_peak_rss()
    with mc.Timer() as t_load:
        stage.load()
    # warm-up on a tiny image, 2 tokens (first-call allocations, oneDNN kernel selection)
    stage.max_pixels, stage.max_new_tokens = 56 * 56 * 4, 2
    stage.process_meme(memes[0], stage.variants())
    stage.max_pixels, stage.max_new_tokens = a.max_pixels, a.max_new_tokens
    load_avg_before = mc.load_avg()
    r = time_transformers(stage, memes)
    from pipeline.stages.vlm_prompts import get_prompt
    inputs = [stage.encode(memes[0].image, get_prompt(p).render(memes[0].ocr_text)) for p in PROMPTS]
    r.update(load_s=t_load.s, peak_rss=mc.peak_rss_gb(), threads=torch.get_num_threads(),
             prompt_tokens=[int(x["input_ids"].shape[1]) for x in inputs],
             load_before=load_avg_before, load_after=mc.load_avg())
    stage.model = None
    del stage
    gc.collect()
    return r


# =========================================================================== llama-server timing
class _Recorder:
    """The `timings` / `usage` of every llama-server answer, per thread-safe list."""

    def __init__(self):
        self.lock = threading.Lock()
        self.items: list[dict] = []

    def session(self, api_key=None):
        import requests
        recorder = self

        class RecordingSession(requests.Session):
            def post(self, *args, **kwargs):
                r = super().post(*args, **kwargs)
                try:
                    body = r.json()
                    item = dict(timings=body.get("timings") or {}, usage=body.get("usage") or {},
                                max_tokens=(kwargs.get("json") or {}).get("max_tokens"))
                    with recorder.lock:
                        recorder.items.append(item)
                except ValueError:
                    pass
                return r
        s = RecordingSession()
        if api_key:
            s.headers["Authorization"] = f"Bearer {api_key}"
        return s


def bench_served_stage(url: str, model: str, concurrency: int, max_new: int, max_pixels: int):
    from pipeline.stages.vlm_served import ServedVlmStage

    class IgnoreEosServedVlmStage(ServedVlmStage):
        """ServedVlmStage whose answers run exactly max_tokens (random weights would stop anywhere)."""

        def _payload(self, messages, max_tokens, prefill):
            return {**super()._payload(messages, max_tokens, prefill), "ignore_eos": True}

    stage = IgnoreEosServedVlmStage(url=url, model=model, prompt_versions=PROMPTS, max_new_tokens=max_new,
                                    max_pixels=max_pixels, concurrency=concurrency, prefill="continue",
                                    random_weights=True, timeout=1800, retries=0)
    stage.load()
    rec = _Recorder()
    local = threading.local()

    def session():
        s = getattr(local, "s", None)
        if s is None:
            s = local.s = rec.session()
        return s
    stage.client._session = session
    return stage, rec


def time_served(stage, rec, memes) -> dict:
    """Concurrency 1: each (meme, prompt) through process_one, timed one by one. Concurrency > 1:
    stage.process(memes, variant) for each prompt (its thread pool over the memes), wall time."""
    variants = stage.variants()
    rec.items.clear()
    first, second, per_meme = [], [], []
    if stage.concurrency == 1:
        for m in memes:
            ts = []
            for v in variants:
                t0 = time.perf_counter()
                stage.process_one(m, v)
                ts.append(time.perf_counter() - t0)
            first.append(ts[0])
            second.append(ts[1])
            per_meme.append(sum(ts))
            print(f"  {m.meme_id}: {sum(ts):.1f} s ({ts[0]:.1f} + {ts[1]:.1f})", file=sys.stderr, flush=True)
        wall = sum(per_meme)
    else:
        t0 = time.perf_counter()
        for v in variants:
            tv = time.perf_counter()
            res = stage.process(memes, v)
            errors = [r for r in res if isinstance(r, Exception)]
            if errors:
                raise errors[0]
            (first if v.name == PROMPTS[0] else second).append((time.perf_counter() - tv) / len(memes))
        wall = time.perf_counter() - t0
        per_meme = [wall / len(memes)]
        print(f"  wall {wall:.1f} s for {len(memes)} memes", file=sys.stderr, flush=True)
    t = [i["timings"] for i in rec.items]
    gen = [x for x, i in zip(t, rec.items) if (i["max_tokens"] or 0) > 1]
    score = [x for x, i in zip(t, rec.items) if i["max_tokens"] == 1]
    return dict(per_meme=per_meme, first=first, second=second, wall=wall, requests=len(rec.items),
                gen=gen, score=score)


def _mean(xs) -> float:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else float("nan")


def _timing_summary(items: list[dict]) -> str:
    if not items:
        return "no timings"
    return (f"prompt_n {_mean([i.get('prompt_n') for i in items]):.0f}, cache_n {_mean([i.get('cache_n') for i in items]):.0f}, "
            f"prefill {_mean([i.get('prompt_per_second') for i in items]):.0f} tok/s, "
            f"decode {_mean([i.get('predicted_per_second') for i in items]):.1f} tok/s")


def _per_request_cache(items: list[dict]) -> str:
    return "; ".join(f"{i.get('cache_n', '?')}/{(i.get('cache_n') or 0) + (i.get('prompt_n') or 0)}" for i in items)


def run_server(paths, qtype: str, np_: int, memes, a, warm) -> dict:
    sys.path.insert(0, str(mc.REPO / "tests"))
    from llama_server import LlamaServer  # tests/llama_server.py
    model, mmproj = paths[qtype]
    log = gguf_dir(a) / f"llama-server-{qtype}-np{np_}.log"
    if log.exists():
        log.unlink()
    ctx = 4096 * np_
    server = LlamaServer(model, mmproj, threads=a.threads, log=log, start_timeout=600,
                         extra_args=["-np", str(np_), "-c", str(ctx)])
    with server:
        stage, rec = bench_served_stage(server.url, str(model), np_, a.max_new_tokens, a.max_pixels)
        # warm-up: another meme (its image must not sit in the server's prompt cache), 2 tokens, both prompts
        stage.max_new_tokens = 2
        for v in stage.variants():
            stage.process_one(warm, v)
        stage.max_new_tokens = a.max_new_tokens
        load_before = mc.load_avg()
        r = time_served(stage, rec, memes)
        r.update(start_s=server.start_seconds, load_before=load_before, load_after=mc.load_avg(), log=log)
    return r


# =========================================================================== cpu section
def _s(x: float) -> str:
    return f"{x:.3g}" if x < 1000 else f"{x:.0f}"


def section_cpu(a) -> None:
    import torch
    torch.set_num_threads(a.threads)
    model_dir, tok = checkpoint(a)
    paths = gguf_paths(a)
    missing = [str(p) for q in QTYPES for p in paths[q] if not p.exists()]
    if not (model_dir / "config.json").exists() or missing:
        sys.exit(f"run `benchmarks/served_vlm.py prepare` first (missing: {missing or model_dir})")
    memes, note = _memes(a)
    warm = _warm_meme(a, memes)
    from pipeline.stages.vlm_prompts import get_prompt
    if any(get_prompt(p).uses_ocr for p in PROMPTS):
        mc.fill_ocr(memes + [warm])
    header(f"Served VLM vs transformers, Qwen2.5-VL-3B on CPU ({mc.RANDOM_NOTE})",
           f"{note}; both default prompts ({', '.join(PROMPTS)}); answers forced to exactly {a.max_new_tokens} "
           f"new tokens; max_pixels {a.max_pixels}; {a.threads} threads everywhere (torch, llama-server -t/-tb); "
           f"tokenizer: {'the real Qwen2.5 BPE' if tok else 'tiny per-letter BPE'}.")
    results: list[tuple[str, dict]] = []
    order = [s.strip() for s in a.backends.split(",") if s.strip()]
    for name in order:
        print(f"[{time.strftime('%H:%M:%S')}] {name} ...", file=sys.stderr, flush=True)
        if name.startswith("tf-"):
            _, precision, reuse = name.split("-")
            r = run_transformers(model_dir, memes, precision, reuse == "reuse", a)
        else:
            qtype, np_ = name.split("-np")
            r = run_server(paths, qtype, int(np_), memes, a, warm)
        results.append((name, r))
        print(f"  -> {name}: {_mean(r['per_meme']):.1f} s/meme ({_mean(r['first']):.1f} + {_mean(r['second']):.1f})",
              file=sys.stderr, flush=True)
        if a.json_out:       # after every backend: a cut-short run keeps what it measured
            a.json_out.write_text(json.dumps({n: {k: v for k, v in x.items() if k != "log"} for n, x in results},
                                             indent=1, default=str))
        gc.collect()
    cpu_table(results, a)
    mc.footer()


def cpu_table(results: list[tuple[str, dict]], a) -> None:
    """The cpu section's tables from (backend name, result) pairs (also from --json-out files: `table`)."""
    rows = []
    per_of = {name: _mean(r["per_meme"]) for name, r in results}
    ref, ref_reuse = per_of.get("tf-fp32-noreuse"), per_of.get("tf-fp32-reuse")
    for name, r in results:
        per = per_of[name]
        first, second = _mean(r["first"]), _mean(r["second"])
        if name.startswith("tf-"):
            _, precision, reuse = name.split("-")
            label = f"transformers {precision}, reuse_prefix {'on' if reuse == 'reuse' else 'off'}"
            details = (f"load {r['load_s']:.0f} s, peak RSS {r['peak_rss']:.1f} GB, prompt tok {r['prompt_tokens']}")
        else:
            qtype, np_ = name.split("-np")
            label = f"llama-server {qtype}, -t {a.threads}, -np {np_}, client concurrency {np_}"
            details = (f"start {r['start_s']:.1f} s (excluded); generate: {_timing_summary(r['gen'])}; "
                       f"score prefill: {_timing_summary(r['score'])}")
        rows.append([label, _s(per), _s(first), _s(second), f"{second / first:.2f}",
                     f"{ref / per:.2f}x" if ref else "", f"{ref_reuse / per:.2f}x" if ref_reuse else "",
                     f"{r['load_before']} → {r['load_after']}", details])
    mc.table(["backend", "s/meme (both prompts)", "prompt 1 s", "prompt 2 s", "prompt 2 / prompt 1",
              "speed-up vs fp32 no reuse", "vs fp32 reuse", "load avg before → after", "details"], rows)
    print("\nConcurrency 1: per meme = the sum of its two prompts' times (each prompt = generate request + score "
          "request for the server; generate + score forward in-process). Concurrency 2: per meme = wall time of "
          "both prompts over all memes / memes (two memes in flight at once); prompt columns = that prompt's wall "
          "time / memes. transformers prompt 1 includes both encodes and, with reuse, the shared prefix (image + "
          "common opening).")
    print("\nllama-server prompt cache per request (cache_n / prompt tokens; generate then score requests, in order):")
    for name, r in results:
        if not name.startswith("tf-"):
            items = []
            for g, s in zip(r["gen"], r["score"]):
                items += [g, s]
            print(f"- {name}: {_per_request_cache(items) if r['gen'] else 'none'}")


def section_table(a) -> None:
    """The cpu table again from one or more --json-out files (e.g. a run cut short and its continuation)."""
    results: list[tuple[str, dict]] = []
    for path in a.json:
        results += list(json.loads(Path(path).read_text()).items())
    header("Served VLM vs transformers (from " + ", ".join(str(p) for p in a.json) + ")")
    cpu_table(results, a)


def _warm_meme(a, memes):
    """A meme outside the timed set for llama-server's warm-up (a timed meme's image would be cached)."""
    ids = {m.meme_id for m in memes}
    if a.memes and a.memes.is_dir():
        for m in mc.meme_inputs(a.memes, None):
            if m.meme_id not in ids:
                return m
    return memes[0]


def _memes(a):
    if a.memes and a.memes.is_dir():
        return mc.meme_inputs(a.memes, a.n), f"{a.n} real meme(s) from {a.memes}"
    import tempfile

    from pipeline.devtools.synthetic_memes import write_meme_folder
    folder = Path(tempfile.mkdtemp(prefix="served-vlm-memes-"))
    write_meme_folder(folder, n_toxic=max(1, a.n // 2), n_non_toxic=max(1, a.n - a.n // 2), seed=0)
    return mc.meme_inputs(folder, a.n), f"{a.n} synthetic meme(s)"


# =========================================================================== limits
def _config_params() -> dict:
    cfg = json.loads((mc.CONFIGS / "qwen2_5_vl_3b_instruct.json").read_text())
    t = cfg.get("text_config", cfg)
    h, inter, layers = t["hidden_size"], t["intermediate_size"], t["num_hidden_layers"]
    heads, kv = t["num_attention_heads"], t["num_key_value_heads"]
    hd = h // heads
    vocab = t.get("vocab_size", cfg.get("vocab_size"))
    attn = h * heads * hd + 2 * h * kv * hd + heads * hd * h + (heads + 2 * kv) * hd
    mlp = 3 * h * inter
    layer = attn + mlp + 2 * h
    llm_body = layers * layer
    embed = vocab * h
    v = cfg["vision_config"]
    vh, vinter, vdepth = v["hidden_size"], v["intermediate_size"], v["depth"]
    vlayer = 4 * vh * vh + 4 * vh + 3 * vh * vinter + 2 * vh
    patch_in = 3 * 2 * 14 * 14
    merger = (vh * 4) * (vh * 4) + (vh * 4) * v.get("out_hidden_size", h)
    vision = vdepth * vlayer + patch_in * vh + merger
    return dict(llm_body=llm_body, embed=embed, lm_head=0 if t.get("tie_word_embeddings", cfg.get("tie_word_embeddings")) else embed,
                vision=vision, vision_layer=vlayer, vdepth=vdepth, vh=vh, patch_in=patch_in, merger=merger,
                layers=layers, h=h, kv=kv, hd=hd, tied=bool(t.get("tie_word_embeddings", cfg.get("tie_word_embeddings"))))


def _matmul_flops(torch, dtype, n: int = 2048, seconds: float = 4.0) -> float:
    a = torch.randn(n, n, dtype=dtype)
    b = torch.randn(n, n, dtype=dtype)
    for _ in range(2):
        a @ b
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    return 2 * n ** 3 * reps / (time.perf_counter() - t0)


def _bandwidth(gb: float = 1.0) -> float:
    import numpy as np
    src = np.ones(int(gb * 1024 ** 3 / 8), dtype=np.float64)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best = 0.0
    for _ in range(5):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        s = time.perf_counter() - t0
        best = max(best, 2 * src.nbytes / s)          # read + write
    return best


def section_limits(a) -> None:
    import torch
    torch.set_num_threads(a.threads)
    p = _config_params()
    header("Physical limits of this CPU for Qwen2.5-VL-3B", f"torch threads {torch.get_num_threads()}.")
    f32 = statistics.median(_matmul_flops(torch, torch.float32) for _ in range(3))
    b16 = statistics.median(_matmul_flops(torch, torch.bfloat16) for _ in range(3))
    bw = _bandwidth()
    mc.table(["measure", "value"], [
        ["peak fp32 matmul (2048², torch, median of 3)", f"{f32 / 1e9:.0f} GFLOP/s"],
        ["peak bf16 matmul (2048², torch, median of 3)", f"{b16 / 1e9:.0f} GFLOP/s"],
        ["memory bandwidth (numpy copy of 1 GiB, read + write, best of 5)", f"{bw / 1e9:.1f} GB/s"],
    ])
    visual_tokens, patches = a.visual_tokens, a.visual_tokens * 4
    vision_flops = 2 * (p["vdepth"] * p["vision_layer"] + p["patch_in"] * p["vh"]) * patches + 2 * p["merger"] * visual_tokens
    # attention scores in the vision tower (window 112 px = 8x8 patches for 28 blocks, full for 4): QK^T + AV
    full_blocks = 4
    vision_attn = 2 * 2 * p["vh"] * patches * (full_blocks * patches + (p["vdepth"] - full_blocks) * 64)
    rows = []
    prompt_tok = a.prompt_tokens
    for name, tokens in (("label-first-v1", prompt_tok[0]), ("explain-first-v1", prompt_tok[1])):
        llm = 2 * p["llm_body"] * tokens + 2 * p["h"] * (p["embed"] // p["h"])   # + one lm_head row set
        attn = 2 * 2 * p["layers"] * (p["h"]) * tokens * tokens / 2
        total = llm + attn + vision_flops + vision_attn
        rows.append([name, tokens, f"{llm / 1e12:.2f}", f"{(vision_flops + vision_attn) / 1e12:.2f}",
                     f"{total / 1e12:.2f}", f"{total / f32:.1f}", f"{total / b16:.1f}"])
    print(f"\nParameters from benchmarks/configs/qwen2_5_vl_3b_instruct.json: LLM layers {p['llm_body'] / 1e9:.2f} B, "
          f"embedding {p['embed'] / 1e9:.2f} B ({'tied with lm_head' if p['tied'] else 'lm_head separate'}), "
          f"vision tower + merger {p['vision'] / 1e9:.2f} B. Vision: {visual_tokens} visual tokens = {patches} patches.\n")
    mc.table(["prompt", "prompt tokens", "LLM TFLOP", "vision TFLOP", "total TFLOP", "min prefill s (fp32 peak)",
              "min prefill s (bf16 peak)"], rows)
    sizes = {}
    g = gguf_paths(a)
    for q in QTYPES:
        if g[q][0].exists():
            sizes[q] = g[q][0].stat().st_size
    n_text = p["llm_body"] + p["embed"] + p["lm_head"]
    decode_bytes = {"fp32": 4 * (p["llm_body"] + p["lm_head"] + (p["embed"] if p["tied"] else 0)),
                    "bf16": 2 * (p["llm_body"] + p["lm_head"] + (p["embed"] if p["tied"] else 0))}
    decode_bytes.update(sizes)
    print()
    mc.table(["weights", "bytes read per decoded token", "min s/token at measured bandwidth"],
             [[k, f"{v / 1e9:.2f} GB", f"{v / (bw / 2):.3f}"] for k, v in decode_bytes.items()])
    print(f"\nDecode reads every LLM weight once per token (the lm_head {'= the tied embedding' if p['tied'] else ''} "
          f"included; the GGUF rows are the text-model file sizes). The bandwidth used for s/token is the copy's "
          f"read rate (copy bandwidth / 2: a copy reads and writes each byte). LLM text parameters {n_text / 1e9:.2f} B.")
    mc.footer()


SECTIONS = {"prepare": section_prepare, "cpu": section_cpu, "limits": section_limits, "table": section_table}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sections", nargs="+", choices=list(SECTIONS))
    p.add_argument("--memes", type=Path, default=mc.DEFAULT_MEMES)
    p.add_argument("--cache", type=Path, default=mc.DEFAULT_CACHE)
    p.add_argument("--n", type=int, default=3, help="memes (spread over the folder), the same for every backend")
    p.add_argument("--max-new-tokens", type=int, default=32, help="forced answer length")
    p.add_argument("--max-pixels", type=int, default=640 * 640)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--backends", default="tf-fp32-noreuse,tf-fp32-reuse,tf-bf16-reuse,Q4_K_M-np1,Q4_K_M-np2,Q8_0-np1,Q8_0-np2",
                   help="cpu: what to run, in this order (tf-<fp32|bf16>-<reuse|noreuse>, <Q4_K_M|Q8_0>-np<1|2>)")
    p.add_argument("--prompt-tokens", type=lambda s: [int(x) for x in s.split(",")], default=[766, 788],
                   help="limits: prompt tokens of the two default prompts (from the cpu table)")
    p.add_argument("--visual-tokens", type=int, default=484, help="limits: visual tokens per meme")
    p.add_argument("--json-out", type=Path, default=None, help="cpu: also write the raw results here")
    p.add_argument("--qwen-tokenizer", default=None)
    p.add_argument("--json", nargs="*", default=[], help="table: --json-out files of cpu runs, rendered as one table")
    a = p.parse_args(argv)
    a.cache.mkdir(parents=True, exist_ok=True)
    for name in a.sections:
        SECTIONS[name](a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
