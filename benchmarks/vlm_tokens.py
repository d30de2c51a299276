"""Tokens per meme that the VLM stage sends and asks for: the input of a cost estimate (docs/scaling.md).

    .venv/bin/python benchmarks/vlm_tokens.py [--memes DIR] [--tokenizer DIR_OR_HF_ID] [--max-pixels N]

Visual tokens are exact: Qwen2.5-VL's smart_resize rule at the stage's pixel budget, one token per
28x28 px (14 px patches merged 2x2), plus the 2 vision start/end tokens. Prompt text tokens are counted
with Qwen2.5-VL's tokenizer when --tokenizer names one (a local folder; the hub is not reachable here),
else estimated as characters / CHARS_PER_TOKEN (said so in the output). Output tokens are the stage's
bound (--max-new-tokens) for explain-first and the class line plus a short explanation for label-first.
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from PIL import Image

from pipeline.config import IMAGE_EXTENSIONS
from pipeline.options import DEFAULTS
from pipeline.stages.vlm_prompts import DEFAULT_PROMPT_VERSIONS, get_prompt

CHARS_PER_TOKEN = 2.6          # assumption for Russian in a byte-level BPE of Qwen2's size (no tokenizer here)
CHAT_OVERHEAD = 20             # <|im_start|>system ... <|im_end|> and role markers, per request


def visual_tokens(width: int, height: int, max_pixels: int) -> int:
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize
    h, w = smart_resize(height, width, factor=28, min_pixels=56 * 56, max_pixels=max_pixels)
    return (h // 28) * (w // 28) + 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--memes", type=Path, default=Path("../shared/memes"))
    ap.add_argument("--tokenizer", default=None)
    ap.add_argument("--max-pixels", type=int, default=DEFAULTS.max_pixels)
    a = ap.parse_args()
    files = sorted(p for p in a.memes.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise SystemExit(f"no images under {a.memes}")
    vis = []
    for p in files:
        with Image.open(p) as im:
            vis.append(visual_tokens(im.width, im.height, a.max_pixels))
    count = None
    if a.tokenizer:
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(a.tokenizer)

        def count(text: str) -> int:
            return len(tok(text)["input_ids"])
    print(f"{len(files)} memes from {a.memes}; max_pixels {a.max_pixels:,}")
    q = statistics.quantiles(vis, n=20)
    print(f"visual tokens per meme: mean {statistics.mean(vis):.0f}, median {statistics.median(vis):.0f}, "
          f"p95 {q[-1]:.0f}, max {max(vis)}")
    total_in = 0.0
    for version in DEFAULT_PROMPT_VERSIONS:
        text = get_prompt(version).render("")
        n = count(text) if count else len(text) / CHARS_PER_TOKEN
        how = "tokenizer" if count else f"estimated: {len(text)} chars / {CHARS_PER_TOKEN}"
        print(f"prompt {version}: {n:.0f} text tokens ({how}) + {CHAT_OVERHEAD} chat-template tokens")
        total_in += n + CHAT_OVERHEAD
    mean_vis = statistics.mean(vis)
    print(f"per meme, {len(DEFAULT_PROMPT_VERSIONS)} prompts: input {2 * mean_vis + total_in:.0f} tokens without "
          f"prefix caching, {mean_vis + total_in:.0f} with it (the image is a shared prefix); output at most "
          f"{DEFAULTS.max_new_tokens} (explain-first) + about 40 (label-first)")


if __name__ == "__main__":
    main()
