"""The local engine: a stage's batches run in this process, one after the other.

Also the pieces every engine shares: `work_batches` (how a stage's pending work is cut into
batches), `run_batch` (one batch through `stage.process_variants`, an exception standing for each
item of a batch that failed as a whole) and `load_stage` (any load error as a StageLoadError).
"""
from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pipeline.stages.base import MemeInput, Stage, StageLoadError, Variant


@dataclass
class BatchResult:
    memes: list[MemeInput]
    variants: list[Variant]
    by_variant: dict[str, list[Any]]     # variant_id -> one result dict or exception per meme
    per_item_seconds: float


def work_batches(stage: Stage, plans: list) -> Iterator[tuple[list[MemeInput], list[Variant]]]:
    """(memes, variants) to hand to stage.process_variants, in order. Most stages: each variant's
    pending memes in batches of stage.batch_size. A stage that `shares_meme_across_variants` (the VLM:
    one image encoding and prompt prefix serve all its prompts) gets each batch of memes with every
    variant that meme still lacks; memes lacking the same variants are batched together."""
    size = max(1, stage.batch_size)
    if not stage.shares_meme_across_variants or len(plans) < 2:
        for plan in plans:
            for start in range(0, len(plan.todo), size):
                yield plan.todo[start:start + size], [plan.variant]
        return
    pending: dict[str, list[Variant]] = {}
    memes: dict[str, MemeInput] = {}
    for plan in plans:
        for m in plan.todo:
            memes.setdefault(m.meme_id, m)
            pending.setdefault(m.meme_id, []).append(plan.variant)
    groups: dict[tuple[str, ...], list[MemeInput]] = {}
    for meme_id, variants in pending.items():
        groups.setdefault(tuple(v.variant_id for v in variants), []).append(memes[meme_id])
    for ids, group in groups.items():
        variants = pending[group[0].meme_id]
        for start in range(0, len(group), size):
            yield group[start:start + size], variants


def run_batch(stage: Stage, batch: list[MemeInput], variants: list[Variant]) -> BatchResult:
    t0 = time.perf_counter()
    try:
        by_variant = stage.process_variants(batch, variants)
        for v in variants:
            got = len(by_variant.get(v.variant_id, ()))
            if got != len(batch):
                raise RuntimeError(f"stage returned {got} results for {len(batch)} memes")
    except Exception as e:  # the whole batch failed
        traceback.print_exc(limit=3, file=sys.stderr)
        by_variant = {v.variant_id: [e] * len(batch) for v in variants}
    per_item = (time.perf_counter() - t0) / max(1, len(batch) * len(variants))
    for m in batch:                 # keep memory bounded: decoded images are not kept
        m.drop_images()
    return BatchResult(batch, variants, by_variant, per_item)


def load_stage(stage: Stage) -> None:
    try:
        stage.load()
    except StageLoadError:
        raise
    except Exception as e:  # a broken checkpoint, an import error in an optional engine, ...
        raise StageLoadError(f"{type(e).__name__}: {e}") from e


def fill_ocr_text(store, stage: Stage, batch: list[MemeInput]) -> None:
    """The OCR text a prompt quotes (stages with needs_ocr_text), and the boxes a derived view is made from
    (needs_ocr_boxes), from the cache."""
    if stage.needs_ocr_boxes:
        rows = store.ocr_rows([m.meme_id for m in batch], stage.ocr_source)
        for m in batch:
            m.ocr_text, m.ocr_boxes = rows.get(m.meme_id, ("", []))
    elif stage.needs_ocr_text:
        texts = store.ocr_texts([m.meme_id for m in batch], stage.ocr_source)
        for m in batch:
            m.ocr_text = texts.get(m.meme_id, "")


class LocalEngine:
    name = "local"

    def describe(self) -> str:
        return "local"

    def batches(self, store, stage: Stage, plans: list, stop) -> Iterator[BatchResult]:
        load_stage(stage)
        for batch, variants in work_batches(stage, plans):
            if stop.stop:
                return
            fill_ocr_text(store, stage, batch)
            stage.fill_inputs(store, batch, variants)
            yield run_batch(stage, batch, variants)

    def close(self) -> None:
        pass
