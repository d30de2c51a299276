"""Versioned prompt pairs (and image views) for CLIP-style zero-shot classification, and OCR-text fitting.

A prompt set is one (toxic, non_toxic) pair of texts plus the *view* of the meme the image tower is
given. Sets whose templates contain `{text}` fold the meme's OCR text into both prompts, as the
original study did:

    ru-ocr-v1  «токсичный мем с текстом: «…»» / «нейтральный мем с текстом: «…»»   (the study's pair)
    ru-v1      «токсичный мем» / «нейтральный мем»
    en-ocr-v1  'a toxic meme with the text: "…"' / 'a neutral meme with the text: "…"'
    en-v1      "a toxic meme" / "a neutral meme"

Each pair exists in two views (`VIEWS`):
  - "center-crop" (names as above, the sets every cache made before the view existed): the model's own
    image processor as is. For CLIP that is resize-shortest-side + centre crop, which cuts the top and
    bottom captions of a tall meme (the left and right of a wide one) out of the score; SigLIP's
    processor squashes the image to a square instead (nothing cut, aspect distorted).
  - "pad-square" (names + "+pad", e.g. `ru-ocr-v1+pad`; the default for new runs): the meme is first
    padded to a square with the processor's mean colour (image_mean: what normalises to ~0), centred,
    then given to the same processor; the whole meme, every caption included, is in the model input.
`--clip-prompts all` runs both views; `--clip-prompts ru-ocr-v1` the old view only.

Language: the default model `openai/clip-vit-large-patch14` was trained on English text only (its
tokenizer is byte-level BPE, so Cyrillic never becomes <unk>, but a Russian prompt is far outside its
training data). The ru-* sets, the study's own prompts, are therefore a weak test with that model;
the en-* sets are the in-distribution control. For Russian prompts use a multilingual model, e.g.
SigLIP2 (`--clip-model google/siglip2-base-patch16-224`; see README). `language_note()` gives this as
one display line.

The version name is what the cache and the dashboard show (predictions.prompt_version); change a
text or a view -> add a new version, never edit an old one, so cached rows keep meaning what they say.

OCR text is whitespace-collapsed and cut (at a token boundary, with "…" appended) so that each filled
prompt fits the text encoder's position limit (text_config.max_position_embeddings: 77 for CLIP,
64 for SigLIP). A meme with no OCR text gets the set's `fallback` pair (the no-text prompts).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from pipeline.config import NON_TOXIC, TOXIC

ELLIPSIS = "…"

CENTER_CROP = "center-crop"   # the processor as is (the only view before views existed: no `view` key)
PAD_SQUARE = "pad-square"     # pad to a square with the processor's mean colour, then the processor
VIEWS = (PAD_SQUARE, CENTER_CROP)
DEFAULT_VIEW = PAD_SQUARE
VIEW_SUFFIX = {CENTER_CROP: "", PAD_SQUARE: "+pad"}    # appended to prompt-set / CAM-method names

# Image-text models trained on English captions only (the study's prompts are Russian): every OpenAI CLIP.
ENGLISH_ONLY_PREFIXES = ("openai/clip-",)


@dataclass(frozen=True)
class PromptSet:
    version: str
    language: str
    toxic: str                    # template; "{text}" is replaced by the (fitted) OCR text
    non_toxic: str
    fallback: tuple[str, str] | None = None   # pair used when the meme has no OCR text
    view: str = CENTER_CROP                   # how the image tower sees the meme (VIEWS)

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
        if self.view != CENTER_CROP:   # the centre-crop sets keep the config (and cache key) they always had
            d["view"] = self.view
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


_TEXT_SETS = (
    PromptSet("ru-ocr-v1", "ru", "токсичный мем с текстом: «{text}»", "нейтральный мем с текстом: «{text}»",
              fallback=("токсичный мем", "нейтральный мем")),
    PromptSet("ru-v1", "ru", "токсичный мем", "нейтральный мем"),
    PromptSet("en-ocr-v1", "en", 'a toxic meme with the text: "{text}"', 'a neutral meme with the text: "{text}"',
              fallback=("a toxic meme", "a neutral meme")),
    PromptSet("en-v1", "en", "a toxic meme", "a neutral meme"),
)


def with_view(ps: PromptSet, view: str) -> PromptSet:
    """The same texts seen through `view` (its name: the text version + VIEW_SUFFIX[view])."""
    return replace(ps, version=ps.version + VIEW_SUFFIX[view], view=view)


PROMPT_SETS: dict[str, PromptSet] = {p.version: p for view in VIEWS for p in (with_view(t, view) for t in _TEXT_SETS)}
DEFAULT_PROMPT_SETS = tuple(name for name, p in PROMPT_SETS.items() if p.view == DEFAULT_VIEW)
CAM_TEXT_SET = "ru-v1"     # the class pair Grad-CAM explains (no per-meme text: one target for all memes)
CAM_PROMPT_SET = CAM_TEXT_SET + VIEW_SUFFIX[DEFAULT_VIEW]


def cam_prompt_set(view: str = DEFAULT_VIEW) -> PromptSet:
    """The Grad-CAM pair seen through `view`: the CAM explains the score of that prompt set."""
    return PROMPT_SETS[CAM_TEXT_SET + VIEW_SUFFIX[view]]


def views_of(names: str | list[str] | tuple[str, ...] | None = None) -> list[str]:
    """The views the selected prompt sets use (in VIEWS order): what the CAM stage should show for them."""
    used = {ps.view for ps in get_prompt_sets(names)}
    return [v for v in VIEWS if v in used]


def is_english_only(model_id: str) -> bool:
    return model_id.lower().startswith(ENGLISH_ONLY_PREFIXES)


def language_note(model_id: str, ps: PromptSet | str | None = None) -> str | None:
    """One display line when a Russian prompt set meets an English-only model (None otherwise)."""
    if isinstance(ps, str):
        ps = PROMPT_SETS.get(ps)
    if not is_english_only(model_id) or (ps is not None and ps.language == "en"):
        return None
    return (f"{model_id} was trained on English text only: Russian prompts (ru-*) are outside its training "
            "data, so its ru-* scores understate what image-text matching can do; compare en-*, or use a "
            "multilingual model such as google/siglip2-base-patch16-224")


def get_prompt_sets(names: str | list[str] | tuple[str, ...] | None = None) -> list[PromptSet]:
    """`None` -> the default sets (DEFAULT_VIEW, i.e. pad-square); "all" -> every set, both views; else
    comma-separated or listed version names (unknown -> ValueError)."""
    if names is None:
        return [PROMPT_SETS[n] for n in DEFAULT_PROMPT_SETS]
    if names == "all" or (not isinstance(names, str) and list(names) == ["all"]):
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
