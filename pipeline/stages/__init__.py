"""The pipeline stages, one module each, and the registry that owns their order and construction.

    base          the interface every stage implements (Stage, Variant, MemeInput) and the cache key
    ocr           text on the meme;  ocr_binarize  caption crops -> black on white;  ocr_quality  CER and scoring
    meme_views    the derived views of a meme (caption removed, caption only) as stored thumbnails
    clip          CLIP / SigLIP zero-shot p(toxic);   clip_prompts  its versioned prompt sets and views
    vlm           Qwen2.5-VL answer + p(toxic);       vlm_prompts   its prompts;  vlm_answer  the parser
    cam           CAM heat maps on the CLIP vision tower
    faithfulness  per meme: CAM mass on the caption, VLM explanation quotes / contradicts, why no class

A stage module defines one Stage subclass with `from_options(options)`; REGISTRY lists them in the
order they run (a stage that reads OCR text runs after the stage that `provides_ocr_text`). Classes
are imported only when a stage is built, so a fully cached rerun imports no model library.
Adding a stage = one module + one line here (docs/architecture.md has a worked example).
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.options import Options
    from pipeline.stages.base import Stage


@dataclass(frozen=True)
class StageEntry:
    name: str           # what --stages accepts, the stage column of variants/failures
    module: str         # where its class lives
    cls: str
    table: str          # where its rows go (the class's `table`; here so readers need not import it)

    def load(self) -> type[Stage]:
        return getattr(import_module(self.module), self.cls)


REGISTRY: tuple[StageEntry, ...] = (
    StageEntry("ocr", "pipeline.stages.ocr", "OcrStage", "ocr"),
    StageEntry("views", "pipeline.stages.meme_views", "ViewsStage", "view_images"),
    StageEntry("clip", "pipeline.stages.clip", "ClipStage", "predictions"),
    StageEntry("vlm", "pipeline.stages.vlm", "VlmStage", "predictions"),
    StageEntry("cam", "pipeline.stages.cam", "CamStage", "heatmaps"),
    StageEntry("faithfulness", "pipeline.stages.faithfulness", "FaithfulnessStage", "faithfulness"),
)
STAGE_ORDER: tuple[str, ...] = tuple(e.name for e in REGISTRY)
PREDICTION_STAGES: tuple[str, ...] = tuple(e.name for e in REGISTRY if e.table == "predictions")   # clip, vlm
OCR_TEXT_STAGE = "ocr"      # the stage whose rows are the OCR text other stages read (provides_ocr_text)


def entry(name: str) -> StageEntry:
    for e in REGISTRY:
        if e.name == name:
            return e
    raise ValueError(f"unknown stage {name!r}; known: {', '.join(STAGE_ORDER)}")


def build(name: str, options: Options) -> Stage:
    """The stage `name` configured by `options` (cheap: models load only when something is uncached)."""
    return entry(name).load().from_options(options)


def ordered(names) -> list[str]:
    """`names` in the registry's order (the order stages must run in)."""
    unknown = [n for n in names if n not in STAGE_ORDER]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; choose from {','.join(STAGE_ORDER)}")
    return [n for n in STAGE_ORDER if n in names]
