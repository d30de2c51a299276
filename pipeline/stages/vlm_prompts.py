"""Versioned Russian content-moderation prompts for the VLM stage.

A prompt version is frozen once results exist: to change the wording, add a new version
(`label-first-v2`, ...) so old and new answers live side by side in the cache. The version string is
stored as `Variant.name` (the `prompt_version` column); the template text is part of the variant's
config hash, and the rendered prompt is stored with every answer (`predictions.prompt`).

Versions:
  label-first-v1      two lines: `Класс: токсичный|нейтральный`, then `Объяснение: ...`
                      (answer_order "label-first": the first class line of an answer decides)
  explain-first-v1    the reasoning first (`Объяснение: ...`), the `Класс:` line last
                      (answer_order "explain-first": the last class line decides)
  label-first-ocr-v1  label-first-v1 plus the meme's OCR text as a hint (opt-in, not a default)
  <version>/caption-only     (with --views) the caption alone, as text, without the image: CAPTION_ONLY_OPENING
  <version>/caption-removed  (with --views) the version's prompt on the meme with its caption inpainted away

OCR in the prompt: the image already contains the caption and Qwen2.5-VL reads Cyrillic text itself,
so the default versions do not pass OCR output; feeding noisy OCR could also mislead the model.
`label-first-ocr-v1` exists to measure whether the hint helps. Its rows depend on the OCR text cached
when they were computed (the stored `prompt` shows exactly what the model was given).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from pipeline.config import NON_TOXIC, TOXIC
from pipeline.views import CAPTION_ONLY, base_name, derived_name

CLASS_PREFIX = "Класс:"            # the assistant prefix the score is read after
LABEL_WORDS = {TOXIC: "токсичный", NON_TOXIC: "нейтральный"}   # the two continuations the score compares

DEFINITIONS = (
    "Ты — модератор контента. Перед тобой мем: картинка и текст на ней. Определи, токсичный он или нейтральный.\n"
    "Токсичный мем оскорбляет, унижает или травит человека или группу людей (по национальности, полу, "
    "религии, ориентации, внешности, возрасту, болезни и т. п.), разжигает ненависть, угрожает или призывает "
    "к насилию, оскорбляет кого-то бранью.\n"
    "Нейтральный мем — безобидный юмор, ирония или бытовая шутка без оскорблений и унижения.\n"
)

LABEL_FIRST_FORMAT = (
    "Ответь ровно двумя строками, без вступления и без форматирования.\n"
    "Первая строка — «Класс: токсичный» или «Класс: нейтральный».\n"
    "Вторая строка — «Объяснение: » и одно-два предложения о том, что в картинке или тексте мема "
    "привело к такому решению."
)

EXPLAIN_FIRST_FORMAT = (
    "Сначала коротко рассуждай: в двух-трёх предложениях опиши, что изображено и написано в меме и "
    "задевает ли это кого-то. Начни эту часть со слова «Объяснение: ».\n"
    "Затем последней строкой напиши ответ — «Класс: токсичный» или «Класс: нейтральный»."
)

OCR_HINT = (
    "Текст, автоматически распознанный на картинке (может содержать ошибки): «{ocr_text}»\n"
)
NO_OCR_TEXT = "(текст распознать не удалось)"


@dataclass(frozen=True)
class VlmPrompt:
    version: str                  # stored as Variant.name / predictions.prompt_version
    template: str                 # the user message; `{ocr_text}` is filled when uses_ocr
    uses_ocr: bool = False
    # explain-first: the score is read after the model's own reasoning, not right after the prompt
    score_after_reasoning: bool = False
    # the answer layout the prompt asks for, which tells the parser which class line decides
    # (pipeline.stages.vlm_answer): "label-first" (the first one) or "explain-first" (the last one).
    # Not part of the variant's config: it changes how an answer is read, not the answer.
    answer_order: str = "label-first"

    def render(self, ocr_text: str | None = None) -> str:
        if not self.uses_ocr:
            return self.template
        text = " ".join((ocr_text or "").split()) or NO_OCR_TEXT
        return self.template.replace("{ocr_text}", text)


PROMPTS: dict[str, VlmPrompt] = {p.version: p for p in (
    VlmPrompt("label-first-v1", DEFINITIONS + LABEL_FIRST_FORMAT),
    VlmPrompt("explain-first-v1", DEFINITIONS + EXPLAIN_FIRST_FORMAT, score_after_reasoning=True,
              answer_order="explain-first"),
    VlmPrompt("label-first-ocr-v1", DEFINITIONS + OCR_HINT + LABEL_FIRST_FORMAT, uses_ocr=True),
)}

DEFAULT_PROMPT_VERSIONS = ("label-first-v1", "explain-first-v1")


# The caption-only view (pipeline/views.py): the same instructions about the caption alone, no image.
OPENING = DEFINITIONS.splitlines(keepends=True)[0]
CAPTION_ONLY_OPENING = (
    "Ты — модератор контента. Перед тобой только текст мема, без картинки: «{ocr_text}»\n"
    "Определи по этому тексту, токсичный мем или нейтральный.\n"
)


def caption_only_prompt(prompt: VlmPrompt) -> VlmPrompt:
    """`prompt` for the caption alone: its opening (a meme, picture and text) replaced by CAPTION_ONLY_OPENING,
    which quotes the OCR text; the rest (definitions, answer format) unchanged. Sent without the image."""
    if not prompt.template.startswith(OPENING) or prompt.uses_ocr:
        raise ValueError(f"prompt version {prompt.version!r} has no caption-only form (it must open with the "
                         "standard definitions and not quote OCR text already)")
    return replace(prompt, version=derived_name(prompt.version, CAPTION_ONLY), uses_ocr=True,
                   template=CAPTION_ONLY_OPENING + prompt.template[len(OPENING):])


def answer_order(version: str | None) -> str:
    """The parser order of a prompt version's answers; "label-first" for a version this code does not
    know (e.g. a cached row of a prompt since removed)."""
    try:
        return get_prompt(version or "").answer_order
    except ValueError:
        return "label-first"


def get_prompt(version: str) -> VlmPrompt:
    """The prompt of a version, or of a derived view's version (`label-first-v1/caption-only`: the
    caption-only prompt; `…/caption-removed`: the version's own prompt, on the inpainted image)."""
    base = base_name(version)
    if base != version:
        prompt = get_prompt(base)
        view = version[len(base) + 1:]
        return caption_only_prompt(prompt) if view == CAPTION_ONLY else replace(prompt, version=version)
    try:
        return PROMPTS[version]
    except KeyError:
        raise ValueError(f"unknown VLM prompt version {version!r}; known: {', '.join(PROMPTS)}") from None
