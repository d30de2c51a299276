"""Versioned prompt pairs for CLIP-style zero-shot classification, and OCR-text fitting.

A prompt set is one (toxic, non_toxic) pair of texts. Sets whose templates contain `{text}` fold the
meme's OCR text into both prompts, as the original study did:

    ru-ocr-v1  «токсичный мем с текстом: «…»» / «нейтральный мем с текстом: «…»»   (the study's pair)
    ru-v1      «токсичный мем» / «нейтральный мем»
    en-ocr-v1  'a toxic meme with the text: "…"' / 'a neutral meme with the text: "…"'
    en-v1      "a toxic meme" / "a neutral meme"

The version name is what the cache and the dashboard show (predictions.prompt_version); change a
text -> add a new version, never edit an old one, so cached rows keep meaning what they say.

OCR text is whitespace-collapsed and cut (at a token boundary, with "…" appended) so that each filled
prompt fits the text encoder's position limit (text_config.max_position_embeddings: 77 for CLIP,
64 for SigLIP). A meme with no OCR text gets the set's `fallback` pair (the no-text prompts).
"""
from __future__ import annotations

from dataclasses import dataclass

from pipeline.config import NON_TOXIC, TOXIC

ELLIPSIS = "…"


@dataclass(frozen=True)
class PromptSet:
    version: str
    language: str
    toxic: str                    # template; "{text}" is replaced by the (fitted) OCR text
    non_toxic: str
    fallback: tuple[str, str] | None = None   # pair used when the meme has no OCR text

    @property
    def uses_ocr(self) -> bool:
        return "{text}" in self.toxic

    def templates(self) -> dict[str, str]:
        return {TOXIC: self.toxic, NON_TOXIC: self.non_toxic}

    def describe(self) -> dict:
        """What goes into the variant config (so a text change changes the cache key)."""
        d = dict(prompt_version=self.version, language=self.language, uses_ocr=self.uses_ocr,
                 templates=self.templates())
        if self.fallback:
            d["fallback"] = {TOXIC: self.fallback[0], NON_TOXIC: self.fallback[1]}
        return d

    def texts(self, ocr_text: str | None = None, tokenizer=None, max_tokens: int | None = None) -> tuple[str, str]:
        """The (toxic, non_toxic) prompts for one meme, OCR text fitted to `max_tokens` if given."""
        if not self.uses_ocr:
            return self.toxic, self.non_toxic
        text = normalize_ocr(ocr_text)
        if text and tokenizer is not None and max_tokens:
            text = fit_text(tokenizer, (self.toxic, self.non_toxic), text, max_tokens)
        if not text:
            return self.fallback or (self.toxic.format(text=""), self.non_toxic.format(text=""))
        return self.toxic.format(text=text), self.non_toxic.format(text=text)


PROMPT_SETS: dict[str, PromptSet] = {p.version: p for p in (
    PromptSet("ru-ocr-v1", "ru", "токсичный мем с текстом: «{text}»", "нейтральный мем с текстом: «{text}»",
              fallback=("токсичный мем", "нейтральный мем")),
    PromptSet("ru-v1", "ru", "токсичный мем", "нейтральный мем"),
    PromptSet("en-ocr-v1", "en", 'a toxic meme with the text: "{text}"', 'a neutral meme with the text: "{text}"',
              fallback=("a toxic meme", "a neutral meme")),
    PromptSet("en-v1", "en", "a toxic meme", "a neutral meme"),
)}
DEFAULT_PROMPT_SETS = tuple(PROMPT_SETS)
CAM_PROMPT_SET = "ru-v1"   # the class pair Grad-CAM explains (no per-meme text: one target for all memes)


def get_prompt_sets(names: str | list[str] | tuple[str, ...] | None = None) -> list[PromptSet]:
    """`None`/"all" -> every set; else comma-separated or listed version names (unknown -> ValueError)."""
    if names is None or names == "all":
        return list(PROMPT_SETS.values())
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in names if n not in PROMPT_SETS]
    if unknown:
        raise ValueError(f"unknown CLIP prompt set(s) {unknown}; known: {', '.join(PROMPT_SETS)}")
    return [PROMPT_SETS[n] for n in names]


def normalize_ocr(text: str | None) -> str:
    """OCR text on one line: whitespace runs (newlines included) become one space."""
    return " ".join((text or "").split())


def _n_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text)["input_ids"])   # with the model's special tokens (BOS/EOS)


def fit_text(tokenizer, templates: tuple[str, ...], text: str, max_tokens: int) -> str:
    """The longest prefix of `text` (cut at a token boundary, + "…") that keeps every template within max_tokens.

    Uses the tokenizer with truncation (and its offsets) to find the cut, then checks the filled
    templates (merges across the boundary can differ by a token or two) and steps back until they
    fit; tokenizers without offsets fall back to bisecting the character length.
    """
    def fits(candidate: str) -> bool:
        return all(_n_tokens(tokenizer, t.format(text=candidate)) <= max_tokens for t in templates)

    if fits(text):
        return text
    budget = max_tokens - max(_n_tokens(tokenizer, t.format(text=ELLIPSIS)) for t in templates)
    if budget <= 0:
        return ""
    try:
        enc = tokenizer(text, add_special_tokens=False, truncation=True, max_length=budget,
                        return_offsets_mapping=True)
        ends = [end for _, end in enc["offset_mapping"] if end > 0]
    except (NotImplementedError, KeyError, TypeError, ValueError):   # slow tokenizers have no offsets
        ends = []
    for end in reversed(ends):
        candidate = text[:end].rstrip() + ELLIPSIS
        if fits(candidate):
            return candidate
    lo, hi = 0, len(text)            # fallback: longest fitting character prefix, by bisection
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(text[:mid].rstrip() + ELLIPSIS):
            lo = mid
        else:
            hi = mid - 1
    return text[:lo].rstrip() + ELLIPSIS if lo else ""
