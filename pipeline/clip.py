"""The CLIP zero-shot stage: p(toxic) from image-text similarity with a (toxic, neutral) prompt pair.

Works with any Hugging Face image-text model that AutoModel/AutoProcessor load and that exposes
`get_image_features` / `get_text_features` (CLIP, SigLIP, SigLIP2). One Variant per prompt set
(pipeline.clip_prompts); each writes one `predictions` row per meme.

Scores (logits are computed in float32 from L2-normalised embeddings, whatever the model precision):
  - CLIP (softmax head): logit_k = exp(logit_scale) * cos(image, prompt_k);
    p(toxic) = softmax(logit_toxic, logit_non_toxic)[toxic].
  - SigLIP / SigLIP2 (sigmoid head, recognised by the model's `logit_bias`):
    logit_k = exp(logit_scale) * cos(image, prompt_k) + logit_bias, and sigmoid(logit_k) is the
    model's independent "this text matches" probability. The two are renormalised into one binary
    score: p(toxic) = sigmoid(l_t) / (sigmoid(l_t) + sigmoid(l_n)). When both logits are strongly
    negative (the usual SigLIP regime) this equals the softmax of the two logits.
  label = toxic when p(toxic) >= 0.5. The stored logits are the raw ones above.

Work done once per run: the model is loaded once (`load_clip`, shared with the CAM stage), fixed
class prompts are encoded once, and each meme's image embedding is computed once and reused by
every prompt set (cached by meme_id inside the stage).

torch and transformers are imported inside the functions that use them, not at module import:
building the stage and asking its `variants()` (all a fully cached rerun does) needs neither.
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Callable, Sequence

from pipeline.clip_prompts import PROMPT_SETS, PromptSet, get_prompt_sets
from pipeline.config import NON_TOXIC, TOXIC
from pipeline.hf import is_random_weights, pick_device, pick_dtype, precision_name, resolve_source
from pipeline.stage import MemeInput, Stage, StageLoadError, Variant

if TYPE_CHECKING:
    import torch

DEFAULT_CLIP_MODEL = "openai/clip-vit-large-patch14"


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
        first = (str(e).strip().splitlines() or [""])[0]
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


def image_inputs(model, processor, images) -> dict:
    """Processor output for `images` (pixel_values, and for SigLIP2 its masks/shapes) on the model's device/dtype."""
    return _to(processor.image_processor(images=list(images), return_tensors="pt"), model.device, model.dtype)


def encode_images(model, processor, images) -> torch.Tensor:
    """L2-normalised float32 image embeddings (N, D) on the CPU."""
    import torch
    with torch.no_grad():
        feats = pooled(model.get_image_features(**image_inputs(model, processor, images)))
    return torch.nn.functional.normalize(feats.float(), dim=-1).cpu()


def encode_texts(model, processor, texts: Sequence[str]) -> torch.Tensor:
    """L2-normalised float32 text embeddings (N, D) on the CPU; texts are truncated to the model's limit.

    SigLIP models were trained on texts padded to max_length (their pooled token is the last one),
    so they get padding="max_length"; CLIP pools at the EOS token and gets the shortest padding.
    """
    import torch
    padding = "max_length" if is_sigmoid_head(model) else True
    tok = processor.tokenizer(list(texts), padding=padding, truncation=True, max_length=max_text_tokens(model),
                              return_tensors="pt")
    with torch.no_grad():
        feats = pooled(model.get_text_features(**_to(tok, model.device, model.dtype)))
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

    def __init__(self, model: str = DEFAULT_CLIP_MODEL, prompt_sets: str | Sequence[str] | None = None,
                 device: str = "auto", precision: str = "auto", batch_size: int = 16):
        self.model = model
        self.prompt_sets: list[PromptSet] = get_prompt_sets(prompt_sets)
        self.device = device
        self.precision = precision
        self.batch_size = max(1, int(batch_size))
        self._model = self._processor = None
        self._image_cache: dict[str, torch.Tensor] = {}     # meme_id -> normalised image embedding
        self._text_cache: dict[str, torch.Tensor] = {}      # fixed prompt text -> normalised embedding
        self._fixed_texts = {t for ps in self.prompt_sets
                             for t in ((ps.toxic, ps.non_toxic) if not ps.uses_ocr else (ps.fallback or ()))}

    def _precision_name(self) -> str:
        return resolve_precision(self.device, self.precision)[1]

    def variants(self) -> list[Variant]:
        smoke = is_random_weights(self.model)
        precision = self._precision_name()
        return [Variant(stage=self.name, model_id=self.model, name=ps.version,
                        config=dict(ps.describe(), precision=precision,
                                    **({"ocr_source": self.ocr_source} if ps.uses_ocr else {})),
                        stage_version=self.version, is_smoke=smoke)
                for ps in self.prompt_sets]

    def describe(self) -> str:
        return f"{self.model} ({self._precision_name()}; prompts {', '.join(p.version for p in self.prompt_sets)})"

    def load(self) -> None:
        device = pick_device(self.device)
        self._model, self._processor = load_clip(self.model, device, pick_dtype(device, self.precision))

    # -- encoding with the per-run caches
    def _image_embeddings(self, memes: list[MemeInput]) -> list[torch.Tensor | Exception]:
        todo, out = [], {}
        for i, m in enumerate(memes):
            if m.meme_id in self._image_cache:
                out[i] = self._image_cache[m.meme_id]
                continue
            try:
                todo.append((i, m.image))
            except Exception as e:  # noqa: BLE001 - unreadable image: this meme's slot only
                out[i] = e
        embs = each_or_batch(lambda items: list(encode_images(self._model, self._processor, [im for _, im in items])),
                             todo)
        for (i, _), emb in zip(todo, embs):
            out[i] = emb
            if not isinstance(emb, Exception):
                self._image_cache[memes[i].meme_id] = emb
        return [out[i] for i in range(len(memes))]

    def _text_embeddings(self, texts: list[str]) -> dict[str, torch.Tensor]:
        new = sorted({t for t in texts if t not in self._text_cache})
        embs = dict(zip(new, encode_texts(self._model, self._processor, new))) if new else {}
        for t, e in embs.items():
            if t in self._fixed_texts:
                self._text_cache[t] = e
        return {t: self._text_cache.get(t, embs.get(t)) for t in texts}

    def process(self, memes: list[MemeInput], variant: Variant) -> list[dict | Exception]:
        if self._model is None:
            self.load()
        ps = PROMPT_SETS[variant.name]
        tokenizer, limit = self._processor.tokenizer, max_text_tokens(self._model)
        results: list[dict | Exception | None] = list(self._image_embeddings(memes))
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
