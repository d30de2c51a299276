"""The small interface every pipeline stage implements, and its cache key.

A stage (OCR, CLIP, VLM, CAM) offers one or more *variants*: one engine/model with one
configuration (a prompt version, a CAM method, ...). A result is cached per
(meme_id, variant_id), where variant_id hashes (stage, model_id, config_hash, stage_version),
so a new model, prompt, setting or stage code version adds rows beside the old ones.

    class MyStage(Stage):
        name = "clip"; table = "predictions"; version = "1"
        @classmethod
        def from_options(cls, o: Options) -> MyStage: ...  # pipeline.options.Options -> the stage
        def make_variants(self) -> list[Variant]: ...  # cheap: no model loading here
        def load(self) -> None: ...                      # heavy; called only if something is uncached
        def process(self, memes, variant) -> list[dict | Exception]: ...
        def row_columns(self, variant) -> dict: ...      # the table's columns that come from the variant

`process` returns, for each meme in order, the stage-specific columns of its row (the runner adds
the key columns, row_columns(variant), run_id, seconds and created_at) or the exception that item raised.

OCR text: a variant that reads it says so (`Variant.reads_ocr`); `Stage.variants()` then adds the OCR
variant it reads (`ocr_source`, set by the runner) to its config, so a new OCR engine or OCR version
gives that variant a new cache key. This holds for every stage by construction: subclasses implement
make_variants(), never variants().

Views (pipeline/views.py, issue 16): a variant computed on a derived view of the meme (the caption removed,
the caption alone) is `view_variant(full_variant, view)`: the same config plus the view, VIEW_VERSION and the
full variant's id (`of`), reading OCR (its boxes and text make the view). `MemeInput.view_image(view)` renders
the view; `Stage.inapplicable` leaves out the memes without OCR text (no derived view: the views stage records
them, the Modality page counts them).

Tables: a variant's rows go to the stage's `table` unless the variant names its own (`Variant.table`, read
through `Stage.table_of`): the CLIP stage's image-embedding variant (issue 17) writes to `embeddings` from the
same vision pass as its prediction sets. The runner looks up, writes and counts per variant table.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from PIL import Image

from pipeline.errors import VlmemesError
from pipeline.images import load_rgb
from pipeline.store import short_hash
from pipeline.views import FULL, VIEW_CONFIG_KEY, VIEW_VERSION, derived_name, has_caption, render_view, view_of


class StageLoadError(VlmemesError):
    """The stage's model/engine cannot be loaded; the message says what to do (one line)."""


@dataclass(frozen=True)
class Variant:
    stage: str                  # ocr | clip | vlm | cam
    model_id: str               # HF id, local path, or OCR engine name
    name: str                   # prompt version / CAM method / engine: what the dashboard shows
    config: dict = field(default_factory=dict)   # everything that changes the result
    stage_version: str = "1"
    is_smoke: bool = False      # random-weight model: never results
    reads_ocr: bool = False     # its input includes the meme's OCR text (config then names the OCR source)
    # the table its rows go to when not the stage's own (Stage.table_of): the CLIP stage's image embeddings
    # go to `embeddings`. Not part of the cache key.
    table: str | None = None

    @property
    def config_hash(self) -> str:
        return short_hash(self.stage, self.name, self.config)

    @property
    def variant_id(self) -> str:
        return short_hash(self.stage, self.model_id, self.config_hash, self.stage_version)

    def key_columns(self) -> dict[str, Any]:
        return dict(variant_id=self.variant_id, model_id=self.model_id,
                    config_hash=self.config_hash, stage_version=self.stage_version)

    def variants_row(self, run_id: int) -> dict[str, Any]:
        return dict(variant_id=self.variant_id, stage=self.stage, model_id=self.model_id, name=self.name,
                    config_hash=self.config_hash, stage_version=self.stage_version,
                    config=json.dumps(self.config, sort_keys=True, ensure_ascii=False, default=str),
                    is_smoke=self.is_smoke, first_run_id=run_id)


@dataclass
class MemeInput:
    """One meme as a stage sees it. `ocr_text` is filled from the cache for stages that use it."""
    meme_id: str
    path: Path                  # absolute path of the original file
    rel_path: str
    label: str | None
    ocr_text: str | None = None
    ocr_boxes: list | None = None   # the OCR boxes ({"box": [x0, y0, x1, y1], ...} in `image` pixels), for views
    inputs: dict | None = None      # variant_id -> what a stage reads from the cache for it (Stage.fill_inputs)

    @cached_property
    def image(self) -> Image.Image:
        """Upright RGB, at most MODEL_MAX_SIDE on its long side (decoded once per meme)."""
        return load_rgb(self.path)

    def view_image(self, view: str) -> Image.Image:
        """The meme as `view` shows it (pipeline.views.render_view; FULL: `image`), rendered once per meme.
        ValueError for a derived view of a meme without OCR text."""
        if view == FULL:
            return self.image
        rendered = self.__dict__.setdefault("_views", {})
        if view not in rendered:
            rendered[view] = render_view(view, self.image, self.ocr_text, self.ocr_boxes)
        return rendered[view]

    def as_view(self, view: str, image: Image.Image | None | str = "render") -> MemeInput:
        """This meme with `image` replaced by its `view` (or by the given image; None: no image at all)."""
        twin = MemeInput(self.meme_id, self.path, self.rel_path, self.label, self.ocr_text, self.ocr_boxes, self.inputs)
        twin.__dict__["image"] = self.view_image(view) if isinstance(image, str) else image
        return twin

    def drop_images(self) -> None:
        """Forget the decoded image and rendered views (memory stays bounded between batches)."""
        self.__dict__.pop("image", None)
        self.__dict__.pop("_views", None)


def view_variant(full: Variant, view: str, **config) -> Variant:
    """The variant of `full` computed on a derived `view` (module docstring); `config` adds keys (e.g. the
    VLM's text-only prompt)."""
    return replace(full, name=derived_name(full.name, view), reads_ocr=True,
                   config={**full.config, **config, VIEW_CONFIG_KEY: view, "view_version": VIEW_VERSION,
                           "of": full.variant_id})


class Stage:
    name: str = ""
    table: str = ""             # ocr | predictions | heatmaps
    version: str = "1"
    needs_ocr_text: bool = False    # some variant reads OCR text: the runner fills MemeInput.ocr_text
    provides_ocr_text: bool = False  # this stage's rows are the OCR text others read (pipeline.stages.OCR_TEXT_STAGE)
    needs_ocr_boxes: bool = False   # some variant renders a derived view: the runner fills MemeInput.ocr_boxes too
    # For stages that need OCR text: the OCR variant whose text they read (set by the runner).
    # Variants that fold OCR text into their prompts put it in their config, so new OCR -> new cache key.
    ocr_source: str | None = None
    batch_size: int = 1
    # True: the runner hands each batch of memes with all the variants they lack to process_variants at
    # once (the VLM reuses one image encoding and prompt prefix for all its prompts); False: one variant
    # at a time.
    shares_meme_across_variants: bool = False

    @classmethod
    def from_options(cls, options) -> Stage:
        """The stage configured by a pipeline.options.Options (what the registry calls)."""
        raise NotImplementedError

    def make_variants(self) -> list[Variant]:
        raise NotImplementedError

    def variants(self) -> list[Variant]:
        """make_variants(), with the OCR source in the config of every variant that reads OCR text."""
        return [replace(v, config={**v.config, "ocr_source": self.ocr_source}) if v.reads_ocr else v
                for v in self.make_variants()]

    def row_columns(self, variant: Variant) -> dict[str, Any]:
        """Columns of this stage's table that come from the variant, not from process()."""
        return {}

    def table_of(self, variant: Variant) -> str:
        """The table `variant`'s rows go to: its own `table` if it names one, else the stage's."""
        return variant.table or self.table

    def inapplicable(self, store, variant: Variant, memes: list[MemeInput]) -> set[str]:
        """The memes `variant` has no input for, left out of the plan: a derived view's memes without OCR
        text (pipeline.views.has_caption on the OCR source's text). The views stage records them itself."""
        if view_of(variant.config) == FULL or self.table == "view_images":
            return set()
        texts = store.ocr_texts([m.meme_id for m in memes], self.ocr_source)
        return {m.meme_id for m in memes if not has_caption(texts.get(m.meme_id))}

    inapplicable_note = ("{n} derived-view answer(s) not asked: memes without OCR text have no caption-removed / "
                         "caption-only view (the Modality page counts them)")

    def fill_inputs(self, store, memes: list[MemeInput], variants: list[Variant]) -> None:
        """Put what `variants` read from the cache besides OCR into MemeInput.inputs (the engines call it per
        batch, after the OCR text): the faithfulness stage reads the stored heatmaps and answers."""

    def load(self) -> None:
        """Load models/engines. Raise StageLoadError with an actionable one-line message."""

    def process(self, memes: list[MemeInput], variant: Variant) -> list[dict | Exception]:
        raise NotImplementedError

    def process_variants(self, memes: list[MemeInput], variants: list[Variant]) -> dict[str, list[dict | Exception]]:
        """{variant_id: process(memes, variant)} for each variant: what the runner calls. A stage that
        shares work between its variants for one meme overrides it (and sets shares_meme_across_variants)."""
        return {v.variant_id: self.process(memes, v) for v in variants}

    def describe(self) -> str:
        """What is actually used (e.g. the OCR engine `auto` resolved to), printed and stored in runs."""
        return ", ".join(sorted({v.model_id for v in self.variants()}))


def prediction_row_columns(variant: Variant) -> dict[str, Any]:
    """The `predictions` columns every prediction stage (CLIP, VLM) fills from its variant."""
    return dict(stage=variant.stage, prompt_version=variant.name, is_smoke=variant.is_smoke)
