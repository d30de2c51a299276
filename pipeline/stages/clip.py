"""The CLIP zero-shot stage: p(toxic) from image-text similarity with a (toxic, neutral) prompt pair.

Works with any Hugging Face image-text model that AutoModel/AutoProcessor load and that exposes
`get_image_features` / `get_text_features` (CLIP, SigLIP, SigLIP2). One Variant per prompt set
(pipeline.stages.clip_prompts); each writes one `predictions` row per meme.

Scores (logits are computed in float32 from L2-normalised embeddings, whatever the model precision):
  - CLIP (softmax head): logit_k = exp(logit_scale) * cos(image, prompt_k);
    p(toxic) = softmax(logit_toxic, logit_non_toxic)[toxic].
  - SigLIP / SigLIP2 (sigmoid head, recognised by the model's `logit_bias`):
    logit_k = exp(logit_scale) * cos(image, prompt_k) + logit_bias, and sigmoid(logit_k) is the
    model's independent "this text matches" probability. The two are renormalised into one binary
    score: p(toxic) = sigmoid(l_t) / (sigmoid(l_t) + sigmoid(l_n)). When both logits are strongly
    negative (the usual SigLIP regime) this equals the softmax of the two logits.
  label = toxic when p(toxic) >= 0.5. The stored logits are the raw ones above.

Text inputs: CLIP gets the tokenizer's shortest padding and its attention mask (it pools at the EOS
token). SigLIP-family models were trained on texts padded to max_length *without* an attention mask
(the pooled token is the last one, pad tokens attended to), so they get padding="max_length" and
`input_ids` only. That changed SigLIP results, so SigLIP variants carry `text_inputs: "input_ids"`
in their config (a new cache key); CLIP variants keep the config and key they had.

Image view (the prompt set's `view`, see pipeline.stages.clip_prompts): "center-crop" hands the meme to the
processor as is (CLIP: resize + centre crop, cutting tall/wide memes' captions); "pad-square" (the
default) first pads it to a centred square in the processor's mean colour, so the whole meme is seen.

Meme views (`--views`, pipeline/views.py): a prompt set that does not fold OCR text into its prompts is also
computed on the meme with its caption inpainted away and on its caption drawn alone (`<set>/caption-removed`,
`<set>/caption-only`), through the same image view and the same class prompts: the Modality page compares them.

Work done once per run: the model is loaded once (`load_clip`, shared with the CAM stage), fixed
class prompts are encoded once, and each meme's image embedding is computed once and reused by
every prompt set (cached by meme_id inside the stage). The runner hands each batch of memes with every
variant it lacks at once (shares_meme_across_variants), so this holds on Ray workers too, and the cache
is emptied after each batch.

Image embeddings (issue 17): one more variant per image model, `image-embedding` (variants.stage
"embedding", so no reader takes it for a prediction set), whose rows go to the `embeddings` table
(`Variant.table`): the L2-normalised image features of the pad-square view of the full meme, rounded to
float16 precision (stored as FLOAT[]). They are the very features the pad-square prompt sets (the default)
score, taken from the same vision pass; a run of centre-crop sets only pays one pad-square pass more.
Its config (embedding_version, dtype, view, precision) is its own cache key: adding it left every
prediction set's key as it was. The Meme page lists a meme's nearest neighbours by cosine similarity.

torch and transformers are imported inside the functions that use them, not at module import:
building the stage and asking its `variants()` (all a fully cached rerun does) needs neither.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from pipeline.config import NON_TOXIC, TOXIC
from pipeline.errors import first_line
from pipeline.hf import hub_reachable, is_random_weights, pick_device, pick_dtype, precision_name, resolve_source
from pipeline.options import DEFAULTS, Options
from pipeline.stages.base import MemeInput, Stage, StageLoadError, Variant, prediction_row_columns, view_variant
from pipeline.stages.clip_prompts import CENTER_CROP, PAD_SQUARE, PROMPT_SETS, VIEWS, PromptSet, get_prompt_sets, language_note
from pipeline.views import FULL, base_name, selected_views, view_of

if TYPE_CHECKING:
    import torch
    from PIL import Image

EMBEDDING_TABLE = "embeddings"      # where the image-embedding variant's rows go (pipeline/store.py)
EMBEDDING_STAGE = "embedding"       # its variants.stage: not "clip", so no reader lists it as a prediction set
EMBEDDING_NAME = "image-embedding"
EMBEDDING_VERSION = "1"             # bump when what is stored changes (view, rounding, normalisation)
EMBEDDING_DTYPE = "float16"         # the precision the stored values are rounded to
EMBEDDING_VIEW = PAD_SQUARE         # the whole meme, as the default prompt sets see it


def embedding_variant(model: str, precision: str, is_smoke: bool, stage_version: str = "1") -> Variant:
    """The image-embedding variant of `model` computed at `precision` (its rows: table `embeddings`)."""
    return Variant(stage=EMBEDDING_STAGE, model_id=model, name=EMBEDDING_NAME,
                   config=dict(embedding_version=EMBEDDING_VERSION, dtype=EMBEDDING_DTYPE, view=EMBEDDING_VIEW,
                               normalised="l2", precision=precision),
                   stage_version=stage_version, is_smoke=is_smoke, table=EMBEDDING_TABLE)


def is_embedding(variant: Variant) -> bool:
    return variant.table == EMBEDDING_TABLE


def stored_embedding(features: torch.Tensor) -> list[float]:
    """One L2-normalised feature vector as stored: rounded to float16 precision, as Python floats."""
    import torch
    return features.detach().to(torch.float16).to(torch.float32).cpu().tolist()



# --------------------------------------------------------------------------- model loading and encoding
@functools.lru_cache(maxsize=2)
def load_clip(model_id: str, device: str, dtype: torch.dtype):
    """(model, processor) for `model_id` on `device` in `dtype`, loaded once per process per combination."""
    from transformers import AutoModel, AutoProcessor
    source = resolve_source(model_id)
    try:
        processor = AutoProcessor.from_pretrained(source)
        model = AutoModel.from_pretrained(source, dtype=dtype)
    except Exception as e:  # OSError, ValueError, ImportError (e.g. sentencepiece), ...
        first = first_line(e)
        raise StageLoadError(f"cannot load image-text model {model_id!r}: {type(e).__name__}: {first}") from e
    if not (hasattr(model, "get_image_features") and hasattr(model, "get_text_features")):
        raise StageLoadError(f"{model_id!r} loads as {type(model).__name__}, which has no get_image_features/"
                             "get_text_features; pass a CLIP/SigLIP-style image-text model")
    if not (hasattr(processor, "tokenizer") and hasattr(processor, "image_processor")):
        raise StageLoadError(f"{model_id!r}: its processor ({type(processor).__name__}) lacks a tokenizer or "
                             "an image processor")
    return model.to(device).eval(), processor


def is_sigmoid_head(model) -> bool:
    """SigLIP-family models carry a learnt logit bias and are trained with a sigmoid loss."""
    return getattr(model, "logit_bias", None) is not None


SIGMOID_MODEL_TYPES = ("siglip", "siglip2")


@functools.lru_cache(maxsize=16)
def model_type(model_id: str) -> str | None:
    """config.json's model_type without loading the model (for cache keys: variants() must stay cheap).

    A local folder's config.json; else the copy in the local HF cache; else, unless offline, config.json
    alone from the hub (the load would fetch it anyway). None when none is readable.
    """
    import json
    import os
    from pathlib import Path
    path = Path(model_id).expanduser()
    candidates = [path / "config.json"] if path.exists() else []
    if not candidates and not model_id.startswith((".", "/", "~")):
        try:
            from huggingface_hub import hf_hub_download, try_to_load_from_cache
            cached = try_to_load_from_cache(model_id, "config.json")
            if not isinstance(cached, str) and os.environ.get("HF_HUB_OFFLINE") != "1" and hub_reachable():
                cached = hf_hub_download(model_id, "config.json")
            if isinstance(cached, str):
                candidates.append(Path(cached))
        except Exception:   # offline, no such repo, ...: fall back to the name below
            pass
    for cfg in candidates:
        try:
            return str(json.loads(cfg.read_text()).get("model_type") or "") or None
        except (OSError, ValueError):
            continue
    return None


def is_sigmoid_model(model_id: str) -> bool:
    """Whether `model_id` is SigLIP-family (what is_sigmoid_head tells of the loaded model), from its config
    (or, when no config is readable, from its name: the load then fails anyway, so no row is keyed by it)."""
    kind = model_type(model_id)
    return kind in SIGMOID_MODEL_TYPES if kind else "siglip" in model_id.lower()


def text_config_keys(sigmoid: bool) -> dict:
    """What the text inputs add to a variant's config: SigLIP's mask-free input (none for CLIP: its key is unchanged)."""
    return {"text_inputs": "input_ids"} if sigmoid else {}


def check_text_inputs(model, variant: Variant) -> None:
    """Refuse to compute rows whose cache key disagrees with the loaded model's text path."""
    if is_sigmoid_head(model) != ("text_inputs" in variant.config):
        raise StageLoadError(f"{variant.model_id!r} loads as {type(model).__name__}, but its cache key was made for a "
                             f"{'CLIP' if 'text_inputs' not in variant.config else 'SigLIP'}-style text tower; "
                             "rerun (the key is recomputed from the downloaded config)")


def max_text_tokens(model) -> int:
    return int(model.config.text_config.max_position_embeddings)


def pooled(out) -> torch.Tensor:
    """transformers 5.x returns an output object (projected embedding in .pooler_output); 4.x a tensor."""
    import torch
    return out if torch.is_tensor(out) else out.pooler_output


def _to(batch, device, dtype):
    import torch
    return {k: (v.to(device=device, dtype=dtype) if v.is_floating_point() else v.to(device))
            for k, v in batch.items() if torch.is_tensor(v)}


def pad_colour(image_processor) -> tuple[int, int, int]:
    """The processor's image_mean as an RGB colour: padding in it normalises to ~0 (no signal)."""
    mean = list(getattr(image_processor, "image_mean", None) or (0.5, 0.5, 0.5))
    mean = (mean * 3)[:3] if len(mean) == 1 else mean[:3]
    return tuple(int(round(255 * float(m))) for m in mean)


def pad_box(width: int, height: int) -> tuple[int, int, int]:
    """(left, top, side): where a width x height image sits in its centred pad-square canvas."""
    side = max(width, height)
    return (side - width) // 2, (side - height) // 2, side


def pad_to_square(image: Image.Image, fill: tuple[int, int, int]) -> Image.Image:
    """`image` centred on a square canvas of its long side, the rest filled with `fill`."""
    from PIL import Image
    image = image.convert("RGB")
    left, top, side = pad_box(*image.size)
    if left == top == 0:
        return image
    canvas = Image.new("RGB", (side, side), fill)
    canvas.paste(image, (left, top))
    return canvas


def view_images(images, image_processor, view: str = CENTER_CROP) -> list:
    """The images as the processor should get them for `view` (pad-square: padded; center-crop: as is)."""
    if view not in VIEWS:
        raise ValueError(f"unknown image view {view!r}; known: {', '.join(VIEWS)}")
    images = list(images)
    if view == PAD_SQUARE:
        fill = pad_colour(image_processor)
        images = [pad_to_square(im, fill) for im in images]
    return images


def image_inputs(model, processor, images, view: str = CENTER_CROP) -> dict:
    """Processor output for `images` seen through `view` (pixel_values, and for SigLIP2 NaFlex its
    masks/shapes) on the model's device/dtype."""
    ip = processor.image_processor
    return _to(ip(images=view_images(images, ip, view), return_tensors="pt"), model.device, model.dtype)


def encode_images(model, processor, images, view: str = CENTER_CROP) -> torch.Tensor:
    """L2-normalised float32 image embeddings (N, D) on the CPU."""
    import torch
    with torch.no_grad():
        feats = pooled(model.get_image_features(**image_inputs(model, processor, images, view)))
    return torch.nn.functional.normalize(feats.float(), dim=-1).cpu()


def text_inputs(model, processor, texts: Sequence[str]) -> dict:
    """Tokenizer output for the text tower, truncated to the model's limit, on the model's device.

    SigLIP models were trained on texts padded to max_length with no attention mask (their pooled token is
    the last one): padding="max_length" and input_ids only. CLIP pools at the EOS token: shortest padding,
    with its attention mask.
    """
    sigmoid = is_sigmoid_head(model)
    tok = processor.tokenizer(list(texts), padding="max_length" if sigmoid else True, truncation=True,
                              max_length=max_text_tokens(model), return_tensors="pt")
    tok = _to(tok, model.device, model.dtype)
    return {"input_ids": tok["input_ids"]} if sigmoid else tok


def encode_texts(model, processor, texts: Sequence[str]) -> torch.Tensor:
    """L2-normalised float32 text embeddings (N, D) on the CPU (inputs as `text_inputs` makes them)."""
    import torch
    with torch.no_grad():
        feats = pooled(model.get_text_features(**text_inputs(model, processor, texts)))
    return torch.nn.functional.normalize(feats.float(), dim=-1).cpu()


def pair_logits(model, image_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
    """Logits (N, K) in float32 for N image embeddings against K text embeddings (or (N, K, D) per-image texts)."""
    import torch
    scale = model.logit_scale.detach().float().cpu().exp()
    if text_emb.dim() == 3:
        sims = torch.einsum("nd,nkd->nk", image_emb, text_emb)
    else:
        sims = image_emb @ text_emb.T
    logits = scale * sims
    if is_sigmoid_head(model):
        logits = logits + model.logit_bias.detach().float().cpu()
    return logits


def p_toxic(logits: torch.Tensor, sigmoid_head: bool) -> torch.Tensor:
    """p(toxic) from (N, 2) [toxic, non_toxic] logits; see the module docstring for the two heads."""
    import torch
    logits = logits.float()
    if sigmoid_head:   # sigmoid(a) / (sigmoid(a) + sigmoid(b)), computed stably in log space
        logits = torch.nn.functional.logsigmoid(logits)
    return torch.softmax(logits, dim=-1)[:, 0]


def each_or_batch(fn: Callable[[list], list], items: list) -> list:
    """fn over the whole batch; if that raises, fn per item, so one bad item fails only its own slot."""
    if not items:
        return []
    try:
        return list(fn(items))
    except Exception as e:  # noqa: BLE001 - retried per item below
        if len(items) == 1:
            return [e]
    out = []
    for item in items:
        try:
            out.append(fn([item])[0])
        except Exception as e:  # noqa: BLE001 - returned in the item's slot
            out.append(e)
    return out


def resolve_precision(device: str, precision: str) -> tuple[str, str]:
    """(device, precision name) the stage will use, without importing torch on CPU-only machines.

    In variants() an unusable --device is left for load() to report: the name is then `precision` as given.
    """
    try:
        device = pick_device(device)
    except StageLoadError:
        return device, precision
    return device, precision_name(device, precision)


# --------------------------------------------------------------------------- the stage
class ClipStage(Stage):
    name = "clip"
    table = "predictions"
    version = "1"
    needs_ocr_text = True
    shares_meme_across_variants = True      # one vision pass per meme serves every prompt set and the embedding

    def __init__(self, model: str = DEFAULTS.clip_model, prompt_sets: str | Sequence[str] | None = None,
                 device: str = DEFAULTS.device, precision: str = DEFAULTS.precision, batch_size: int = DEFAULTS.batch_size,
                 views: Sequence[str] = DEFAULTS.views, embeddings: bool = False):
        self.model = model
        # also store the image embedding (variant image-embedding): every precompute does (from_options); off
        # for a stage built directly (tests, benchmarks), whose variants() are then its prediction sets only
        self.embeddings = embeddings
        self.prompt_sets: list[PromptSet] = get_prompt_sets(prompt_sets)
        self.views = [v for v in selected_views(views) if v != FULL]     # derived views of the sets without OCR text
        self.needs_ocr_boxes = bool(self.views)
        self.device = device
        self.precision = precision
        self.batch_size = max(1, int(batch_size))
        self._model = self._processor = None
        # (image view, meme view, meme_id) -> normalised image embedding
        self._image_cache: dict[tuple[str, str, str], torch.Tensor] = {}
        self._text_cache: dict[str, torch.Tensor] = {}      # fixed prompt text -> normalised embedding
        self._fixed_texts = {t for ps in self.prompt_sets
                             for t in ((ps.toxic, ps.non_toxic) if not ps.uses_ocr else (ps.fallback or ()))}

    def _precision_name(self) -> str:
        return resolve_precision(self.device, self.precision)[1]

    @classmethod
    def from_options(cls, o: Options) -> ClipStage:
        return cls(model=o.clip_model, prompt_sets=list(o.clip_prompts) if o.clip_prompts else None,
                   device=o.device, precision=o.precision, batch_size=o.batch_size, views=o.views, embeddings=True)

    def make_variants(self) -> list[Variant]:
        """One variant per prompt set; with derived --views, each set that does not fold OCR text into its
        prompts also on each derived view (the caption removed / the caption drawn alone: pipeline/views.py)."""
        smoke = is_random_weights(self.model)
        precision = self._precision_name()
        text = text_config_keys(is_sigmoid_model(self.model))
        full = [Variant(stage=self.name, model_id=self.model, name=ps.version,
                        config=dict(ps.describe(), precision=precision, **text),
                        stage_version=self.version, is_smoke=smoke, reads_ocr=ps.uses_ocr)
                for ps in self.prompt_sets]
        derived = [view_variant(v, view) for view in self.views for v, ps in zip(full, self.prompt_sets)
                   if not ps.uses_ocr]
        embedding = [embedding_variant(self.model, precision, smoke, self.version)] if self.embeddings else []
        return full + derived + embedding

    def row_columns(self, variant: Variant) -> dict:
        if is_embedding(variant):
            return dict(is_smoke=variant.is_smoke)
        return prediction_row_columns(variant)

    def describe(self) -> str:
        note = next((n for ps in self.prompt_sets if (n := language_note(self.model, ps))), None)
        return (f"{self.model} ({self._precision_name()}; prompts {', '.join(p.version for p in self.prompt_sets)}"
                + ("; image embedding" if self.embeddings else "") + ")" + (f" [note: {note}]" if note else ""))

    def load(self) -> None:
        device = pick_device(self.device)
        self._model, self._processor = load_clip(self.model, device, pick_dtype(device, self.precision))
        for v in [v for v in self.variants() if not is_embedding(v)][:1]:
            check_text_inputs(self._model, v)

    # -- encoding with the per-run caches
    def _image_embeddings(self, memes: list[MemeInput], view: str, meme_view: str = FULL) -> list[torch.Tensor | Exception]:
        todo, out = [], {}
        for i, m in enumerate(memes):
            if (view, meme_view, m.meme_id) in self._image_cache:
                out[i] = self._image_cache[view, meme_view, m.meme_id]
                continue
            try:
                todo.append((i, m.view_image(meme_view)))
            except Exception as e:  # noqa: BLE001 - unreadable image: this meme's slot only
                out[i] = e
        embs = each_or_batch(lambda items: list(encode_images(self._model, self._processor, [im for _, im in items],
                                                              view)), todo)
        for (i, _), emb in zip(todo, embs):
            out[i] = emb
            if not isinstance(emb, Exception):
                self._image_cache[view, meme_view, memes[i].meme_id] = emb
        return [out[i] for i in range(len(memes))]

    def _text_embeddings(self, texts: list[str]) -> dict[str, torch.Tensor]:
        new = sorted({t for t in texts if t not in self._text_cache})
        embs = dict(zip(new, encode_texts(self._model, self._processor, new))) if new else {}
        for t, e in embs.items():
            if t in self._fixed_texts:
                self._text_cache[t] = e
        return {t: self._text_cache.get(t, embs.get(t)) for t in texts}

    def process_variants(self, memes: list[MemeInput], variants: list[Variant]) -> dict[str, list[dict | Exception]]:
        """Every variant these memes lack, from one image encoding per meme and view (the runner batches each
        meme once per stage, so its encodings are dropped afterwards: memory stays bounded)."""
        try:
            return {v.variant_id: self.process(memes, v) for v in variants}
        finally:
            done = {m.meme_id for m in memes}
            self._image_cache = {k: e for k, e in self._image_cache.items() if k[2] not in done}

    def _embedding_rows(self, memes: list[MemeInput]) -> list[dict | Exception]:
        """The image-embedding variant's rows: the features the pad-square prompt sets score, as stored."""
        out: list[dict | Exception] = []
        for emb in self._image_embeddings(memes, EMBEDDING_VIEW, FULL):
            if isinstance(emb, Exception):
                out.append(emb)
            else:
                vector = stored_embedding(emb)
                out.append(dict(dim=len(vector), embedding=vector))
        return out

    def process(self, memes: list[MemeInput], variant: Variant) -> list[dict | Exception]:
        if self._model is None:
            self.load()
        if is_embedding(variant):
            return self._embedding_rows(memes)
        check_text_inputs(self._model, variant)
        ps = PROMPT_SETS[base_name(variant.name)]
        tokenizer, limit = self._processor.tokenizer, max_text_tokens(self._model)
        results: list[dict | Exception | None] = list(self._image_embeddings(memes, ps.view, view_of(variant.config)))
        ok = [i for i, r in enumerate(results) if not isinstance(r, Exception)]
        if not ok:
            return results
        pairs = {}
        for i in ok:
            try:
                pairs[i] = ps.texts(memes[i].ocr_text, tokenizer, limit)
            except Exception as e:  # noqa: BLE001
                results[i] = e
        ok = list(pairs)
        if not ok:
            return results
        import torch
        text_emb = self._text_embeddings([t for i in ok for t in pairs[i]])
        image = torch.stack([results[i] for i in ok])
        texts = torch.stack([torch.stack([text_emb[a], text_emb[b]]) for a, b in (pairs[i] for i in ok)])
        logits = pair_logits(self._model, image, texts)
        scores = p_toxic(logits, is_sigmoid_head(self._model))
        for row, i in enumerate(ok):
            p = float(scores[row])
            lt, ln = (float(x) for x in logits[row])
            results[i] = dict(label=TOXIC if p >= 0.5 else NON_TOXIC, score=p,
                              logits={TOXIC: lt, NON_TOXIC: ln},
                              prompt=f"{TOXIC}: {pairs[i][0]}\n{NON_TOXIC}: {pairs[i][1]}")
        return results
