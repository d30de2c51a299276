"""Every option of a precompute, with its default, in one frozen dataclass.

`Options` is the single home of the defaults: model ids, prompt sets, batch size, pixel budget,
generation bound, device and precision. The CLI builds one from its arguments (`from_args`), the stage
registry builds each stage from it (`pipeline.stages.build`), and the run record stores it
(`runs.args` = `as_record()`), so what a run was asked is one JSON object with one key per field.
Stage classes take the same defaults from `DEFAULTS` when they are built directly (tests, benchmarks).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import DEFAULT_DB, DEFAULT_MEMES_DIR, THUMBNAIL_MAX_SIDE, THUMBNAIL_QUALITY
from pipeline.stages import STAGE_ORDER


@dataclass(frozen=True)
class Options:
    memes: Path = DEFAULT_MEMES_DIR
    db: Path = DEFAULT_DB
    stages: tuple[str, ...] = STAGE_ORDER
    limit: int | None = None                       # only the first N memes (sorted by path)
    force: bool = False                            # recompute what is cached
    demo: bool = False                             # the built-in demo set (pipeline/demo.py), not the researcher's memes
    # stored thumbnails and CAM overlays (most of a cache's size; those already stored keep theirs)
    thumbnail_side: int = THUMBNAIL_MAX_SIDE       # longest side, px
    thumbnail_quality: int = THUMBNAIL_QUALITY     # JPEG quality 1..95
    # OCR
    ocr_engine: str = "auto"                       # auto | easyocr | tesseract | craft-tesseract
    # the views of each meme CLIP and the VLM judge (pipeline/views.py): full | caption-removed | caption-only
    views: tuple[str, ...] = ("full",)             # ("all",): all three (the Modality page)
    # CLIP (and CAM, which explains CLIP's score)
    clip_model: str = "openai/clip-vit-large-patch14"
    clip_prompts: tuple[str, ...] | None = None    # None: the default (pad-to-square) sets; ("all",): every set
    batch_size: int = 8                            # CLIP/CAM images per batch
    # VLM
    vlm_model: str = "Qwen/Qwen2.5-VL-3B-Instruct"
    vlm_prompts: tuple[str, ...] | None = None     # None: label-first-v1, explain-first-v1
    quantize: str = "none"                         # none | 8bit | 4bit (bitsandbytes, CUDA)
    max_pixels: int = 640 * 640                    # VLM image pixel budget (bounds visual tokens)
    max_new_tokens: int = 160                      # VLM generation bound
    vlm_batch_size: int = 0                        # transformers: memes per generate call (0: 8 on a GPU, 1 on CPU)
    vlm_reuse_prefix: bool = True                  # transformers: image + shared prompt prefix computed once per meme
    vlm_backend: str = "transformers"              # transformers (in this process) | openai (a server)
    vlm_url: str | None = None                     # openai: the server's base URL, e.g. http://localhost:8000/v1
    vlm_api_key_env: str = "OPENAI_API_KEY"        # openai: the environment variable holding the API key
    vlm_concurrency: int = 1                       # openai: requests in flight at once
    vlm_timeout: float = 300.0                     # openai: seconds to wait for one answer
    vlm_retries: int = 4                           # openai: retries of a request (429, 5xx, timeouts, ...)
    vlm_prefill: str = "none"                      # openai: none | continue (ask again with `Класс:` prefilled)
    vlm_top_logprobs: int = 20                     # openai: alternatives asked per token (OpenAI's maximum: 20)
    vlm_random_weights: bool = False               # openai: the served model has random weights (smoke rows)
    # where the batches run (pipeline/engines)
    engine: str = "local"                          # local (this process) | ray (a Ray cluster)
    ray_address: str | None = None                 # ray: None starts a local cluster; auto | HOST:PORT joins one
    ray_workers: int = 0                           # ray: tasks/actors at once (0: CPUs for OCR, GPUs or 1 for models)
    # every model stage
    device: str = "auto"                           # auto | cpu | cuda
    precision: str = "auto"                        # auto | fp32 | bf16 | fp16

    @classmethod
    def from_args(cls, args: Any) -> Options:
        """From an argparse Namespace (or any object with these attributes); None means "the default"."""
        values = {}
        for f in dataclasses.fields(cls):
            if not hasattr(args, f.name):
                continue
            v = getattr(args, f.name)
            if v is None and f.name not in ("limit", "clip_prompts", "vlm_prompts", "vlm_url", "ray_address"):
                continue
            if isinstance(v, list):
                v = tuple(v)
            values[f.name] = v
        return cls(**values)

    def as_record(self) -> dict[str, Any]:
        """JSON-ready: what `runs.args` stores."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = str(v) if isinstance(v, Path) else (list(v) if isinstance(v, tuple) else v)
        return out


DEFAULTS = Options()
