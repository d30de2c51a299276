"""The faithfulness stage: per meme, does what a model looks at or says match the caption? (issue 16)

It reads what the other stages stored, never a model: one Variant per source the run's options configure
  CAM method (a `heatmaps` variant)   measure "cam":    CAM mass inside the OCR boxes vs the boxes' share of
                                                        the area (pipeline.faithfulness.cam_mass_in_boxes):
                                                        "does CLIP read the caption?";
  VLM prediction set (`predictions`)  measure "answer": does the explanation quote the caption (caption_quote),
                                                        does it argue against its own class line
                                                        (possible_contradiction), and why an answer without a
                                                        class failed (answer_failure_kind: refusal, hedge, ...).
Its config names the source variant, the measure, FAITHFULNESS_VERSION and (as every variant that reads OCR)
the OCR source; an answer measure also names PARSER_VERSION (a re-parse can change a label), so a new rule,
OCR engine or parser gives new rows and nothing stale is shown. A meme whose heatmap or answer is not in the
cache (failed, or its stage not run yet) is left out of the plan and counted; the next run measures it.

A `faithfulness` row per (meme, variant): has_caption (the OCR text has a letter or digit; without it there is
no box and no caption word: mass, area and quote are NULL), the CAM columns or the answer columns.
Pure Python + numpy, milliseconds per meme (the CAM measure decodes the meme for its size).
"""
from __future__ import annotations

from pipeline.faithfulness import (
    FAITHFULNESS_VERSION,
    FULL_IMAGE,
    answer_failure_kind,
    cam_mass_in_boxes,
    caption_quote,
    possible_contradiction,
)
from pipeline.options import Options
from pipeline.stages.base import MemeInput, Stage, Variant
from pipeline.stages.clip_prompts import CENTER_CROP
from pipeline.views import has_caption

CAM, ANSWER = "cam", "answer"
SOURCE_TABLES = {CAM: "heatmaps", ANSWER: "predictions"}
SOURCE_STAGES = {"cam": CAM, "vlm": ANSWER}          # the stages whose rows are measured, and how


class FaithfulnessStage(Stage):
    name = "faithfulness"
    table = "faithfulness"
    version = "1"
    needs_ocr_text = True
    needs_ocr_boxes = True
    batch_size = 64
    inapplicable_note = ("{n} faithfulness measure(s) not taken: their heatmap or VLM answer is not in the cache "
                         "(failed, or its stage not run yet); the next run measures them")

    def __init__(self, sources: list[Variant] | None = None, options: Options | None = None):
        self._sources, self.options = sources, options

    @classmethod
    def from_options(cls, o: Options) -> FaithfulnessStage:
        return cls(options=o)

    def sources(self) -> list[Variant]:
        """The CAM methods and VLM prediction sets the run's options configure, whether or not --stages runs
        those stages now (`--stages faithfulness` measures what is stored; cheap: no model loads)."""
        if self._sources is not None:
            return self._sources
        from pipeline import stages
        out: list[Variant] = []
        for name in SOURCE_STAGES:
            stage = stages.build(name, self.options)
            if stage.needs_ocr_text:
                stage.ocr_source = self.ocr_source
            out += stage.variants()
        return out

    def make_variants(self) -> list[Variant]:
        out = []
        for src in self.sources():
            measure = SOURCE_STAGES[src.stage]
            config = dict(source=src.variant_id, measure=measure, faithfulness_version=FAITHFULNESS_VERSION)
            if measure == CAM:
                config["view"] = src.config.get("view", CENTER_CROP)
                from pipeline.stages.clip import is_sigmoid_model
                if is_sigmoid_model(src.model_id) and config["view"] == CENTER_CROP:
                    config["view"] = FULL_IMAGE        # SigLIP squashes the whole meme: the grid covers all of it
            else:
                from pipeline.stages.vlm_answer import PARSER_VERSION
                config["parser_version"] = PARSER_VERSION
            out.append(Variant(stage=self.name, model_id=src.model_id, name=f"{measure}:{src.name}", config=config,
                               stage_version=self.version, is_smoke=src.is_smoke, reads_ocr=True))
        return out

    def row_columns(self, variant: Variant) -> dict:
        return dict(source_variant=variant.config["source"], measure=variant.config["measure"])

    def describe(self) -> str:
        kinds = [SOURCE_STAGES[s.stage] for s in self.sources()]
        return (f"{kinds.count(CAM)} CAM method(s), {kinds.count(ANSWER)} VLM set(s); rules v{FAITHFULNESS_VERSION}"
                if kinds else "nothing to measure")

    def inapplicable(self, store, variant: Variant, memes: list[MemeInput]) -> set[str]:
        table = SOURCE_TABLES[variant.config["measure"]]
        have = store.cached_meme_ids(table, variant.config["source"], [m.meme_id for m in memes])
        return {m.meme_id for m in memes} - have

    def fill_inputs(self, store, memes: list[MemeInput], variants: list[Variant]) -> None:
        for v in variants:
            rows = store.faithfulness_inputs(v.config["measure"], v.config["source"], [m.meme_id for m in memes])
            for m in memes:
                if m.meme_id in rows:
                    m.inputs = {**(m.inputs or {}), v.variant_id: rows[m.meme_id]}

    def process(self, memes: list[MemeInput], variant: Variant) -> list[dict | Exception]:
        out: list[dict | Exception] = []
        for m in memes:
            try:
                src = (m.inputs or {}).get(variant.variant_id)
                if src is None:
                    raise LookupError(f"no {SOURCE_TABLES[variant.config['measure']]} row of "
                                      f"{variant.config['source']} for this meme")
                out.append(self._cam(m, src, variant) if variant.config["measure"] == CAM else self._answer(m, src))
            except Exception as e:  # noqa: BLE001 - a broken heatmap or image fails in its own slot
                out.append(e)
        return out

    @staticmethod
    def _cam(m: MemeInput, src: dict, variant: Variant) -> dict:
        caption = has_caption(m.ocr_text)
        if not caption or not m.ocr_boxes:
            return dict(has_caption=caption, caption_mass=None, caption_area=None, caption_ratio=None, boxes_seen=None)
        got = cam_mass_in_boxes(src["cam"], m.ocr_boxes, m.image.size, view=variant.config["view"],
                                grid_h=src["grid_h"], grid_w=src["grid_w"])
        return dict(has_caption=True, caption_mass=got["mass"], caption_area=got["area"], caption_ratio=got["ratio"],
                    boxes_seen=got["boxes_seen"])

    @staticmethod
    def _answer(m: MemeInput, src: dict) -> dict:
        caption = has_caption(m.ocr_text)
        quote = caption_quote(src["explanation"], m.ocr_text) if caption else dict(overlap=None, quotes=None,
                                                                                  quoted_words=[])
        contra = possible_contradiction(src["explanation"], src["label"])
        return dict(has_caption=caption, quote_overlap=quote["overlap"], quotes_caption=quote["quotes"],
                    quoted_words=quote["quoted_words"], contradiction=contra["flag"], contradiction_cue=contra["cue"],
                    failure_kind=answer_failure_kind(src["raw_answer"], src["label"], src["prompt"]))
