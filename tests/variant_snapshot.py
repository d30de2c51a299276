"""Variant ids of every stage for a fixed set of option combinations: the cache keys a refactor must keep.

`python tests/variant_snapshot.py` writes tests/data/variant_ids.json from the code as it is now;
tests/test_variant_ids.py compares the code with that recording. Regenerate it only in a commit that
changes a cache key on purpose, and say so in that commit.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
RECORDING = Path(__file__).resolve().parent / "data" / "variant_ids.json"
OCR_SOURCE = "ocr-variant-id-of-the-run"      # what the runner sets on stages that read OCR text

CLIP_MODELS = ("openai/clip-vit-large-patch14", "openai/clip-vit-base-patch32")
VLM_MODELS = ("Qwen/Qwen2.5-VL-3B-Instruct", "Qwen/Qwen2.5-VL-7B-Instruct")
COMBOS = {
    "ocr": [dict(engine=e) for e in ("tesseract", "craft-tesseract", "easyocr")],
    "clip": [dict(model=m, prompt_sets=p, device=d, precision=x)
             for m in CLIP_MODELS for p in (None, "all", ["ru-v1", "en-ocr-v1"])
             for d in ("cpu", "cuda") for x in ("auto", "fp32", "bf16")],
    "vlm": [dict(model=m, prompt_versions=p, device=d, precision=x, quantize=qz, **extra)
            for m in VLM_MODELS for p in (None, ["label-first-v1", "explain-first-v1"])
            for d in ("cpu", "cuda") for x in ("auto", "fp32", "bf16") for qz in ("none", "4bit")
            for extra in ({}, dict(max_pixels=112 * 112, max_new_tokens=24))],
    "cam": [dict(model=m, methods=me, view=v) for m in CLIP_MODELS for me in (None, "eigencam", "gradcam")
            for v in (None, "all", "center-crop")],
}


def build(stage: str, options: dict):
    """The stage object for these options (construction only: no model is loaded)."""
    from pipeline import stages
    from pipeline.cli import build_parser
    from pipeline.options import Options
    argv = ["precompute"]
    if stage == "ocr":
        argv += ["--ocr-engine", options["engine"]]
    else:
        if stage in ("clip", "cam"):
            argv += ["--clip-model", options["model"]]
        if stage == "vlm":
            argv += ["--vlm-model", options["model"], "--quantize", options["quantize"]]
            if options.get("prompt_versions"):
                argv += ["--vlm-prompts", ",".join(options["prompt_versions"])]
            for key in ("max_pixels", "max_new_tokens"):
                if key in options:
                    argv += [f"--{key.replace('_', '-')}", str(options[key])]
        if stage == "clip" and options.get("prompt_sets"):
            sets = options["prompt_sets"]
            argv += ["--clip-prompts", sets if isinstance(sets, str) else ",".join(sets)]
        argv += ["--device", options.get("device", "cpu"), "--precision", options.get("precision", "auto")]
    a = build_parser().parse_args(argv)
    if stage == "cam":
        from pipeline.stages.cam import CamStage
        return CamStage(model=options["model"], methods=options["methods"], device="cpu", view=options["view"])
    return stages.build(stage, Options.from_args(a))


def snapshot() -> dict[str, list[dict]]:
    """The variant ids of every combination, as on the machine that recorded them: its CPU had native bf16
    (avx512_bf16), so `--precision auto` on the CPU meant bf16 there, and the precision is part of the config.
    On a CPU without it "auto" means fp32 (other, correct, cache keys), so the CPU is pinned here."""
    from unittest import mock
    with mock.patch("pipeline.hf.cpu_has_bf16", return_value=True):
        return _snapshot()


def _snapshot() -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for stage, combos in COMBOS.items():
        rows = []
        for options in combos:
            s = build(stage, options)
            if getattr(s, "needs_ocr_text", False):
                s.ocr_source = OCR_SOURCE
            # the keys of the stage's own table (the CLIP stage's image-embedding variant, which writes to
            # `embeddings` and came later, is pinned in tests/test_embeddings.py)
            rows.append({"options": options, "variants": {v.name: v.variant_id for v in s.variants()
                                                          if s.table_of(v) == s.table}})
        out[stage] = rows
    return out


if __name__ == "__main__":
    RECORDING.write_text(json.dumps(snapshot(), ensure_ascii=False, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {RECORDING}", file=sys.stderr)
