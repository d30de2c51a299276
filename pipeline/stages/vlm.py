"""The VLM stage: Qwen2.5-VL judges each meme toxic / non_toxic, explains why, and gives p(toxic).

Per meme and prompt version (`pipeline.stages.vlm_prompts`) the stage stores:
  raw_answer   the greedy answer (do_sample=False, at most `max_new_tokens` new tokens)
  label        `parse_answer(raw_answer, prompt.answer_order).label` (pipeline.stages.vlm_answer): toxic |
               non_toxic | None when the answer states no class (a refusal, an empty or cut-off answer,
               the template echoed back); None is never replaced by a default class, the dashboard
               counts and shows these answers. label-first prompts: the first class line decides;
               explain-first: the last one.
  explanation  the `Объяснение` part (or the answer without its class line)
  parser_version  PARSER_VERSION of the parser that read label / explanation; a precompute re-parses
               stored answers of another version (VlmStage.refresh_cached), it never regenerates them
  score        p(toxic): one forward pass over the chat prompt + the assistant prefix `Класс:`; the
               next-token probabilities of the continuations « токсичный» and « нейтральный» (when their
               first tokens coincide, the common tokens are appended and the first differing token
               compared), renormalised over the two. For explain-first prompts the prefix is the model's
               own reasoning (its answer up to its class line) followed by `\nКласс:`, so the score is
               read where the model states its class, after its reasoning (up to the class line that
               decides under the explain-first rule: the last one). When the answer itself
               starts with exactly those tokens (a label-first answer `Класс: ...`), the generation
               already computed that distribution: it is read off the generation's own step and the
               extra forward pass (a second prefill of image + prompt) is skipped.
  logits       {"toxic": log p, "non_toxic": log p} (full-vocabulary log-softmax of those two tokens);
               score == softmax of the two.
  label_mass   exp(log p toxic) + exp(log p non_toxic): how much of the next-token probability the two
               label tokens hold. Below LOW_LABEL_MASS (0.5) the model was not really choosing between
               the two words and the renormalised score says little (is_low_label_mass). Filled in
               for cached rows from their logits by refresh_cached.

Choices:
  max_pixels = 640*640 by default: the image processor resizes every meme to at most this many pixels
    (aspect kept, sides multiples of 28), which bounds the visual tokens to ~520 (one per 28x28 patch).
    The labelled memes are mostly ~736x736; 640*640 keeps them at 0.84 of their size (616x616 px, 484
    visual tokens) so captions stay legible (448*448 would shrink them to 0.61 and tall screenshots to an
    unreadable 0.29; 1024*1024 keeps nearly all at full size for ~40% more visual tokens and time on CPU).
    Measured in docs/benchmarks.md.
  max_new_tokens = 160: room for two or three sentences of Russian reasoning plus the class line
    (explain-first needs the label after the reasoning; a cut-off answer parses to None).
  one meme at a time on CPU (--vlm-batch-size 0 = auto): the runner hands the stage every prompt variant a
    meme lacks (shares_meme_across_variants); the image and the prompts' common opening (system prompt,
    image tokens, the definitions) go through the model once (shared_prefix) and each prompt continues
    from a copy of that KV cache, so the vision tower runs once per meme. An error stays in its slot.
  batched on a GPU (auto: GPU_BATCH = 8 memes per generate call): memes grouped by visual-token count (no
    image padding), prompts left-padded; answers and scores equal the one-meme path's (tested).
  generation and score share one image preprocessing (the vision tower runs in both passes).
  quantize 8bit/4bit uses bitsandbytes (CUDA only) and keeps the vision tower and lm_head unquantised.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from pipeline.config import NON_TOXIC, TOXIC
from pipeline.errors import first_line
from pipeline.hf import is_random_weights, pick_device, pick_dtype, precision_name, resolve_source
from pipeline.options import DEFAULTS, Options
from pipeline.stages.base import MemeInput, Stage, StageLoadError, Variant, prediction_row_columns, view_variant
from pipeline.stages.vlm_answer import (  # noqa: F401  (re-exported)
    LOW_LABEL_MASS,
    PARSER_VERSION,
    ParsedAnswer,
    is_low_label_mass,
    label_mass,
    parse_answer,
    reasoning_before_class,
)
from pipeline.stages.vlm_prompts import (
    CLASS_PREFIX,
    DEFAULT_PROMPT_VERSIONS,
    LABEL_WORDS,
    answer_order,
    caption_only_prompt,
    get_prompt,
)
from pipeline.views import CAPTION_ONLY, FULL, selected_views, view_of

MAX_NEW_TOKENS_LIMIT = 1024
GPU_BATCH = 8           # --vlm-batch-size 0 (auto) on a GPU: memes per generate call
TORCH_DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}   # as str(torch.<dtype>) without "torch."
# Module names bitsandbytes must leave alone: the vision tower (`model.visual` in transformers 5,
# `visual` in older layouts) and the output head.
BNB_SKIP_MODULES = ["model.visual", "visual", "lm_head"]
_NEUTRAL_GENERATION = dict(do_sample=False, num_beams=1, temperature=1.0, top_k=50, top_p=1.0, typical_p=1.0,
                           repetition_penalty=1.0, no_repeat_ngram_size=0, min_length=0, length_penalty=1.0)


# =========================================================================== answer parsing
# The parser lives in pipeline.stages.vlm_answer (pure Python, so a precompute can re-parse cached answers
# without torch); re-exported here for the callers that import it from pipeline.stages.vlm.
def assistant_prefix(prompt_version: str, raw_answer: str) -> str:
    """The text the score is read after: `Класс:`, preceded by the reasoning for explain-first prompts
    (the answer up to the class line that decides it under the prompt's answer_order)."""
    prompt = get_prompt(prompt_version)
    if prompt.score_after_reasoning:
        reasoning = reasoning_before_class(raw_answer, prompt.answer_order)
        if reasoning:
            return reasoning + "\n" + CLASS_PREFIX
    return CLASS_PREFIX


@dataclass
class SharedPrefix:
    """What the prompts of one meme have in common, computed once: its length in tokens, the model's KV
    cache after it, and Qwen2.5-VL's rope_deltas (the text positions' offset after the image)."""
    length: int
    cache: Any
    rope_deltas: Any


# =========================================================================== the stage
class VlmStage(Stage):
    name = "vlm"
    table = "predictions"
    version = "1"
    batch_size = 1
    shares_meme_across_variants = True      # one image encoding + prompt prefix for all prompts of a meme

    def __init__(self, model: str = DEFAULTS.vlm_model, prompt_versions: list[str] | tuple[str, ...] | None = None,
                 device: str = DEFAULTS.device, quantize: str = DEFAULTS.quantize, max_pixels: int = DEFAULTS.max_pixels,
                 max_new_tokens: int = DEFAULTS.max_new_tokens, precision: str = DEFAULTS.precision,
                 reuse_prefix: bool = DEFAULTS.vlm_reuse_prefix, batch_size: int = DEFAULTS.vlm_batch_size,
                 views: list[str] | tuple[str, ...] = DEFAULTS.views):
        self.model_name = model
        self.prompts = [get_prompt(v) for v in (prompt_versions or DEFAULT_PROMPT_VERSIONS)]
        if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
            raise ValueError(f"--device must be auto, cpu or cuda, not {device!r}")
        if quantize not in ("none", "8bit", "4bit"):
            raise ValueError(f"--quantize must be none, 8bit or 4bit, not {quantize!r}")
        if precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ValueError(f"--precision must be auto, fp32, bf16 or fp16, not {precision!r}")
        if not 28 * 28 * 4 <= int(max_pixels):
            raise ValueError(f"max_pixels {max_pixels} is below one 56x56 image (3136 px)")
        if not 1 <= int(max_new_tokens) <= MAX_NEW_TOKENS_LIMIT:
            raise ValueError(f"max_new_tokens must be between 1 and {MAX_NEW_TOKENS_LIMIT}")
        self.device_option, self.quantize, self.precision = device, quantize, precision
        self.max_pixels, self.max_new_tokens = int(max_pixels), int(max_new_tokens)
        self.reuse_prefix = bool(reuse_prefix)
        if int(batch_size) < 0:
            raise ValueError("--vlm-batch-size must be >= 0 (0: 8 on a GPU, 1 on CPU)")
        self.batch_option = int(batch_size)
        self.batch_size = max(1, self.batch_option)
        self.views = [v for v in selected_views(views) if v != FULL]   # derived views of the prompts without OCR text
        self.needs_ocr_text = any(p.uses_ocr for p in self.prompts) or bool(self.views)
        self.needs_ocr_boxes = bool(self.views)
        self.model = self.processor = None
        self.device: str | None = None
        self.dtype = None
        self._label_ids: tuple[list[int], int, int] | None = None   # common prefix, toxic id, non_toxic id

    # ------------------------------------------------------------------ variants (cheap)
    def _dtype_name(self) -> str:
        """torch's name of the dtype load() will use ("bfloat16", ...), without importing torch on CPU machines."""
        try:
            name = precision_name(pick_device(self.device_option), self.precision)
        except StageLoadError:          # e.g. --device cuda without a GPU: load() reports it
            return self.precision
        return TORCH_DTYPE_NAMES[name]

    @classmethod
    def from_options(cls, o: Options) -> Stage:
        """This stage, or with `--vlm-backend openai` its served twin (pipeline.stages.vlm_served)."""
        if o.vlm_backend == "openai":
            from pipeline.stages.vlm_served import ServedVlmStage
            return ServedVlmStage.from_options(o)
        if o.vlm_backend != "transformers":
            raise ValueError(f"--vlm-backend must be transformers or openai, not {o.vlm_backend!r}")
        return cls(model=o.vlm_model, prompt_versions=list(o.vlm_prompts) if o.vlm_prompts else None, device=o.device,
                   precision=o.precision, quantize=o.quantize, max_pixels=o.max_pixels, max_new_tokens=o.max_new_tokens,
                   reuse_prefix=o.vlm_reuse_prefix, batch_size=o.vlm_batch_size, views=o.views)

    def row_columns(self, variant: Variant) -> dict:
        return prediction_row_columns(variant)

    def make_variants(self) -> list[Variant]:
        """One variant per prompt version; with derived --views, each version that does not quote OCR text
        also on the meme with its caption inpainted away (same prompt) and on the caption alone (the
        version's caption-only prompt, no image: pipeline.stages.vlm_prompts.caption_only_prompt)."""
        full = self._full_variants()
        derived = []
        for view in self.views:
            for v, p in zip(full, self.prompts):
                if p.uses_ocr:
                    continue
                extra = {}
                if view == CAPTION_ONLY:
                    only = caption_only_prompt(p)
                    extra = dict(prompt=only.template, uses_ocr=True, image=False)
                derived.append(view_variant(v, view, **extra))
        return full + derived

    def _full_variants(self) -> list[Variant]:
        dtype = self._dtype_name()
        smoke = is_random_weights(self.model_name)
        return [Variant(
            stage=self.name, model_id=self.model_name, name=p.version, stage_version=self.version, is_smoke=smoke,
            reads_ocr=p.uses_ocr, config=dict(prompt=p.template, uses_ocr=p.uses_ocr, max_pixels=self.max_pixels,
                        max_new_tokens=self.max_new_tokens, quantize=self.quantize, dtype=dtype,
                        decoding="greedy",
                        score_after="reasoning + Класс:" if p.score_after_reasoning else "Класс:"))
            for p in self.prompts]

    def describe(self) -> str:
        dtype = str(self.dtype).removeprefix("torch.") if self.dtype is not None else self._dtype_name()
        return (f"{self.model_name} on {self.device or self.device_option}, {dtype}, quantize={self.quantize}, "
                f"max_pixels={self.max_pixels}, max_new_tokens={self.max_new_tokens}")

    # ------------------------------------------------------------------ loading
    def _quantization_config(self, device: str, dtype):
        if self.quantize == "none":
            return None
        if not device.startswith("cuda"):
            raise StageLoadError(f"--quantize {self.quantize} needs a CUDA GPU (bitsandbytes); "
                                 "on CPU use --quantize none")
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise StageLoadError(f"--quantize {self.quantize} needs bitsandbytes, which is not installed: "
                                 "`pip install bitsandbytes`, or use --quantize none") from None
        from transformers import BitsAndBytesConfig
        if self.quantize == "8bit":
            return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=BNB_SKIP_MODULES)
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype,
                                  llm_int8_skip_modules=BNB_SKIP_MODULES)

    def load(self) -> None:
        if self.model is not None:
            return
        device = pick_device(self.device_option)
        dtype = pick_dtype(device, self.precision)
        quant = self._quantization_config(device, dtype)
        source = resolve_source(self.model_name)
        try:
            import torch
            from transformers import AutoModelForImageTextToText, AutoProcessor
            processor = AutoProcessor.from_pretrained(source)
            kwargs: dict[str, Any] = dict(dtype=dtype)
            if quant is not None:
                kwargs.update(quantization_config=quant, device_map={"": torch.device(device).index or 0})
            model = AutoModelForImageTextToText.from_pretrained(source, **kwargs)
            if quant is None:
                model = model.to(device)
        except StageLoadError:
            raise
        except Exception as e:   # a broken or unsupported checkpoint: one actionable line, not a traceback
            first = first_line(e)
            raise StageLoadError(f"could not load VLM {self.model_name!r}: {first}") from None
        self.model, self.processor = model.eval(), processor
        self.device, self.dtype = device, dtype
        self._label_ids = self._continuation_ids()
        if self.batch_option == 0:      # auto: batched generation on a GPU, one meme (with prefix reuse) on CPU
            self.batch_size = GPU_BATCH if device.startswith("cuda") else 1

    def _continuation_ids(self) -> tuple[list[int], int, int]:
        """Tokens of ' токсичный' / ' нейтральный': their common prefix and the first differing pair."""
        tok = self.processor.tokenizer
        t = tok.encode(" " + LABEL_WORDS[TOXIC], add_special_tokens=False)
        n = tok.encode(" " + LABEL_WORDS[NON_TOXIC], add_special_tokens=False)
        k = 0
        while k < min(len(t), len(n)) and t[k] == n[k]:
            k += 1
        if k == len(t) or k == len(n):
            raise StageLoadError("the tokenizer cannot tell the two label words apart")
        return t[:k], t[k], n[k]

    # ------------------------------------------------------------------ inference
    @staticmethod
    def _content(image, prompt_text: str) -> list[dict]:
        return ([{"type": "image"}] if image is not None else []) + [{"type": "text", "text": prompt_text}]

    def encode(self, image, prompt_text: str):
        """Chat prompt (image + text, generation prompt added) -> model inputs, image resized to max_pixels.
        image None: the text alone (the caption-only view)."""
        messages = [{"role": "user", "content": self._content(image, prompt_text)}]
        chat = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        if image is None:
            return self.processor(text=[chat], return_tensors="pt").to(self.device)
        min_px = min(self.processor.image_processor.size.get("shortest_edge", 56 * 56), self.max_pixels)
        inputs = self.processor(text=[chat], images=[image], return_tensors="pt",
                                size={"shortest_edge": min_px, "longest_edge": self.max_pixels})
        return inputs.to(self.device)

    def generate(self, inputs) -> str:
        """The greedy answer (see _generate)."""
        return self._generate(inputs)[0]

    def shared_prefix(self, inputs_list: list) -> SharedPrefix | None:
        """Run the vision tower and the tokens all these prompts of one meme start with (system prompt,
        image, the common opening of the instructions) once; None when they share no image prefix."""
        import torch
        ids = [x["input_ids"][0] for x in inputs_list]
        n = min(len(i) for i in ids) - 1            # every prompt keeps at least one token of its own
        common = 0
        while common < n and all(int(i[common]) == int(ids[0][common]) for i in ids[1:]):
            common += 1
        first = inputs_list[0]
        vision = first.get("mm_token_type_ids")
        if common == 0 or vision is None or bool(vision[0, common:].any()) or not bool(vision[0, :common].any()):
            return None                              # the image must lie wholly inside the shared part
        with torch.inference_mode():
            out = self.model(input_ids=first["input_ids"][:, :common], attention_mask=first["attention_mask"][:, :common],
                             mm_token_type_ids=vision[:, :common], pixel_values=first["pixel_values"],
                             image_grid_thw=first["image_grid_thw"], use_cache=True, logits_to_keep=1)
        return SharedPrefix(common, out.past_key_values, self.model.model.rope_deltas)

    def _continue_from(self, prefix: SharedPrefix | None, inputs) -> dict:
        """Model kwargs that continue after `prefix` (its KV cache copied, the image left out: its tokens
        are in the cache), or `inputs` unchanged without a prefix."""
        if prefix is None:
            return dict(inputs)
        import copy
        self.model.model.rope_deltas = prefix.rope_deltas    # Qwen2.5-VL's 3D positions after the image
        return {**{k: v for k, v in inputs.items() if k not in ("pixel_values", "image_grid_thw")},
                "past_key_values": copy.deepcopy(prefix.cache)}

    def _generate(self, inputs, prefix: SharedPrefix | None = None) -> tuple[str, list[int], list[tuple[float, float]]]:
        """The greedy answer, its token ids, and at every step the log-probabilities of the two label
        tokens (full-vocabulary log-softmax of the logits that step was chosen from). With `prefix`
        the shared opening is not computed again."""
        return self._generate_rows(self._continue_from(prefix, inputs), inputs["input_ids"].shape[1])[0]

    def _generation_config(self):
        from transformers import GenerationConfig
        gc = self.model.generation_config
        # Every knob set explicitly: transformers fills unset ones from the checkpoint's generation_config
        # (Qwen2.5-VL ships temperature 0.1, top_k 1, repetition_penalty 1.05); plain greedy is wanted.
        defaults = getattr(GenerationConfig(), "_get_default_generation_params", lambda: _NEUTRAL_GENERATION)()
        neutral = {k: v for k, v in defaults.items() if k != "max_length"}
        return GenerationConfig(**{**neutral, "max_new_tokens": self.max_new_tokens, "do_sample": False,
                                   "num_beams": 1, "eos_token_id": gc.eos_token_id,
                                   "pad_token_id": gc.pad_token_id, "bos_token_id": gc.bos_token_id})

    def _generate_rows(self, kwargs: dict, prompt_len: int) -> list[tuple[str, list[int], list[tuple[float, float]]]]:
        """model.generate on one or more (left-padded) rows: per row its answer, its new tokens up to and
        including the first end token, and the label tokens' log-probabilities at each of its steps."""
        import torch
        from transformers import LogitsProcessor, LogitsProcessorList
        config = self._generation_config()
        label_ids = [self._label_ids[1], self._label_ids[2]]
        steps: list[list[tuple[float, float]]] = []

        class LabelLogprobs(LogitsProcessor):       # reads the scores, changes nothing
            def __call__(self, input_ids, scores):
                steps.append([tuple(r) for r in torch.log_softmax(scores.float(), dim=-1)[:, label_ids].tolist()])
                return scores

        with torch.inference_mode():
            out = self.model.generate(**kwargs, generation_config=config,
                                      logits_processor=LogitsProcessorList([LabelLogprobs()]))
        eos = config.eos_token_id
        ends = set(eos if isinstance(eos, (list, tuple)) else [eos])
        rows = []
        for b in range(out.shape[0]):
            new_tokens = out[b, prompt_len:].tolist()
            for i, t in enumerate(new_tokens):
                if t in ends:
                    new_tokens = new_tokens[:i + 1]
                    break
            text = self.processor.tokenizer.decode(new_tokens, skip_special_tokens=True).strip()
            rows.append((text, new_tokens, [step[b] for step in steps[:len(new_tokens)]]))
        return rows

    def generate_batch(self, images: list, prompt_texts: list[str]):
        """_generate over several memes at once (left padding; memes of one visual-token count, so no
        image is padded): one (answer, new tokens, label log-probabilities per step) per meme."""
        chats = [self.processor.apply_chat_template(
            [{"role": "user", "content": self._content(im, t)}],
            add_generation_prompt=True, tokenize=False) for im, t in zip(images, prompt_texts)]
        min_px = min(self.processor.image_processor.size.get("shortest_edge", 56 * 56), self.max_pixels)
        tok = self.processor.tokenizer
        side, tok.padding_side = tok.padding_side, "left"
        try:
            if all(im is None for im in images):          # the caption-only view: text alone
                inputs = self.processor(text=chats, return_tensors="pt", padding=True).to(self.device)
            else:
                inputs = self.processor(text=chats, images=images, return_tensors="pt", padding=True,
                                        size={"shortest_edge": min_px, "longest_edge": self.max_pixels}).to(self.device)
        finally:
            tok.padding_side = side
        return self._generate_rows(dict(inputs), inputs["input_ids"].shape[1])

    def _scoring_ids(self, prefix: str) -> list[int]:
        """The assistant tokens the score is read after: `prefix` and the label words' common tokens."""
        return self.processor.tokenizer.encode(prefix, add_special_tokens=False) + self._label_ids[0]

    def logprobs_from_generation(self, new_tokens: list[int], steps: list[tuple[float, float]],
                                 prefix: str) -> dict[str, float] | None:
        """The score's two log-probabilities read off the generation itself, when the model generated
        exactly the scoring tokens (e.g. a label-first answer starting `Класс:`): greedy decoding then
        computed the very next-token distribution the separate forward pass would (same prefix, via
        the KV cache). None when it did not: the caller runs label_logprobs."""
        extra = self._scoring_ids(prefix)
        k = len(extra)
        if len(steps) <= k or new_tokens[:k] != extra:
            return None
        return {TOXIC: steps[k][0], NON_TOXIC: steps[k][1]}

    def label_logprobs(self, inputs, prefix: str, shared: SharedPrefix | None = None) -> dict[str, float]:
        """log p(toxic token), log p(non_toxic token) after the prompt + assistant `prefix` (one forward;
        with `shared`, only over what follows the meme's shared prefix)."""
        import torch
        _, toxic_id, neutral_id = self._label_ids
        extra = self._scoring_ids(prefix)
        if shared is not None:
            tail = inputs["input_ids"][:, shared.length:]
            tail = torch.cat([tail, torch.tensor([extra], dtype=tail.dtype, device=tail.device)], dim=1)
            with torch.inference_mode():     # no attention mask: positions continue the cache's (one sequence)
                logits = self.model(input_ids=tail, **self._continue_from(shared, {}),
                                    use_cache=True, logits_to_keep=1).logits[0, -1].float()
            logp = torch.log_softmax(logits, dim=-1)
            return {TOXIC: logp[toxic_id].item(), NON_TOXIC: logp[neutral_id].item()}
        n = inputs["input_ids"].shape[1]
        extended = {}
        for key, value in inputs.items():
            if isinstance(value, torch.Tensor) and value.dim() == 2 and value.shape[1] == n and key != "pixel_values":
                if key == "input_ids":
                    tail = torch.tensor([extra], dtype=value.dtype, device=value.device)
                else:
                    fill = 1 if key == "attention_mask" else 0
                    tail = torch.full((1, len(extra)), fill, dtype=value.dtype, device=value.device)
                extended[key] = torch.cat([value, tail], dim=1)
            else:
                extended[key] = value
        with torch.inference_mode():
            logits = self.model(**extended, logits_to_keep=1).logits[0, -1].float()
        logp = torch.log_softmax(logits, dim=-1)
        return {TOXIC: logp[toxic_id].item(), NON_TOXIC: logp[neutral_id].item()}

    @staticmethod
    def score_from_logits(logits: dict[str, float]) -> float:
        import math
        a, b = logits[TOXIC], logits[NON_TOXIC]
        m = max(a, b)
        return math.exp(a - m) / (math.exp(a - m) + math.exp(b - m))

    def process_one(self, meme: MemeInput, variant: Variant) -> dict:
        return self.process_meme(meme, [variant])[variant.variant_id]

    def process_meme(self, meme: MemeInput, variants: list[Variant]) -> dict[str, dict | Exception]:
        """One meme under each prompt variant. With reuse_prefix and more than one variant, the image and
        the prompts' common opening go through the model once (shared_prefix) and every prompt continues
        from a copy of that KV cache. A variant that fails is returned as its exception."""
        prompts = [get_prompt(v.name) for v in variants]
        texts = [p.render(meme.ocr_text) for p in prompts]
        inputs = [self.encode(meme.image, t) for t in texts]
        shared = (self.shared_prefix(inputs) if self.reuse_prefix and len(variants) > 1 and meme.image is not None
                  else None)
        out: dict[str, dict | Exception] = {}
        for variant, prompt, prompt_text, x in zip(variants, prompts, texts, inputs):
            try:
                raw, new_tokens, steps = self._generate(x, shared)
                prefix = assistant_prefix(variant.name, raw)
                logits = self.logprobs_from_generation(new_tokens, steps, prefix) or self.label_logprobs(x, prefix, shared)
                out[variant.variant_id] = self._row(raw, prompt_text, logits, prompt.answer_order)
            except Exception as e:   # e.g. CUDA out of memory on one huge meme: that item fails, not the run
                self._after_error(e)
                out[variant.variant_id] = e
        return out

    @staticmethod
    def _after_error(e: Exception) -> None:
        if "out of memory" in str(e).lower():
            import torch
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    # ------------------------------------------------------------------ cached answers (no model)
    @staticmethod
    def refresh_cached(store) -> dict[str, int]:
        """Bring the stored VLM rows up to this code without generating anything: rows whose
        parser_version differs from PARSER_VERSION get label / explanation re-parsed from their
        raw_answer (with their prompt version's answer_order), and rows without label_mass get it
        from their stored logits. Every VLM row in the cache, of any variant; variant ids unchanged.
        Returns {"reparsed", "labels_changed", "explanations_changed", "mass_filled"}, and prints a
        line when anything was updated. No torch: a cached rerun stays light."""
        rows = store.vlm_rows_to_refresh(PARSER_VERSION)
        updates, counts = [], dict(reparsed=0, labels_changed=0, explanations_changed=0, mass_filled=0)
        for meme_id, variant_id, prompt_version, raw, label, explanation, logits, mass, version in rows:
            new = dict(meme_id=meme_id, variant_id=variant_id, label=label, explanation=explanation,
                       label_mass=mass, parser_version=version)
            if version != PARSER_VERSION:
                parsed = parse_answer(raw, answer_order(prompt_version))
                counts["reparsed"] += 1
                counts["labels_changed"] += parsed.label != label
                counts["explanations_changed"] += parsed.explanation != (explanation or "")
                new.update(label=parsed.label, explanation=parsed.explanation, parser_version=PARSER_VERSION)
            if mass is None:
                new["label_mass"] = label_mass(logits)
                counts["mass_filled"] += new["label_mass"] is not None
            updates.append(new)
        store.update_vlm_parsed(updates)
        if counts["reparsed"]:
            print(f"[vlm] re-parsed {counts['reparsed']} stored VLM answers with parser v{PARSER_VERSION}: "
                  f"{counts['labels_changed']} labels changed, {counts['explanations_changed']} explanations changed")
        if counts["mass_filled"]:
            print(f"[vlm] label_mass filled in for {counts['mass_filled']} stored VLM scores from their logits")
        sys.stdout.flush()
        return counts

    def process(self, memes: list[MemeInput], variant: Variant) -> list[dict | Exception]:
        return self.process_variants(memes, [variant])[variant.variant_id]

    def visual_tokens(self, image) -> int:
        """The number of image patches the processor makes of this meme at max_pixels (batches group by it)."""
        if image is None:                   # the caption-only view: no image
            return 0
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize
        ip = self.processor.image_processor
        factor = ip.patch_size * ip.merge_size
        min_px = min(ip.size.get("shortest_edge", 56 * 56), self.max_pixels)
        h, w = smart_resize(image.height, image.width, factor=factor, min_pixels=min_px, max_pixels=self.max_pixels)
        return (h // ip.patch_size) * (w // ip.patch_size)

    def process_batch(self, memes: list[MemeInput], variants: list[Variant]) -> dict[str, list[dict | Exception]]:
        """Batched generation (a GPU's path, `--vlm-batch-size` > 1): per prompt variant, the memes in
        groups of one visual-token count, each group one left-padded generate call; scores read off the
        generation or by one forward pass per meme. No prefix reuse here (that is the one-meme path)."""
        out: dict[str, list[dict | Exception]] = {v.variant_id: [None] * len(memes) for v in variants}
        groups: dict[int, list[int]] = {}
        for i, m in enumerate(memes):
            try:
                groups.setdefault(self.visual_tokens(m.image), []).append(i)
            except Exception as e:      # an unreadable image fails in its slot
                for v in variants:
                    out[v.variant_id][i] = e
        for variant in variants:
            prompt = get_prompt(variant.name)
            for idx in groups.values():
                texts = [prompt.render(memes[i].ocr_text) for i in idx]
                try:
                    answers = self.generate_batch([memes[i].image for i in idx], texts)
                except Exception as e:   # e.g. out of memory: this group fails, the others go on
                    self._after_error(e)
                    for i in idx:
                        out[variant.variant_id][i] = e
                    continue
                for i, text, (raw, new_tokens, steps) in zip(idx, texts, answers):
                    try:
                        prefix = assistant_prefix(variant.name, raw)
                        logits = (self.logprobs_from_generation(new_tokens, steps, prefix)
                                  or self.label_logprobs(self.encode(memes[i].image, text), prefix))
                        out[variant.variant_id][i] = self._row(raw, text, logits, prompt.answer_order)
                    except Exception as e:
                        self._after_error(e)
                        out[variant.variant_id][i] = e
        return out

    @classmethod
    def _row(cls, raw: str, prompt_text: str, logits: dict[str, float], order: str) -> dict:
        parsed = parse_answer(raw, order)
        return dict(label=parsed.label, explanation=parsed.explanation, raw_answer=raw, prompt=prompt_text,
                    score=cls.score_from_logits(logits), logits=logits, label_mass=label_mass(logits),
                    parser_version=PARSER_VERSION)

    def process_variants(self, memes: list[MemeInput], variants: list[Variant]) -> dict[str, list[dict | Exception]]:
        """The variants of each view on that view of the memes (the full meme; its caption inpainted away;
        the caption alone, without an image), each view as _process_view; a meme whose view cannot be
        made fails in its own slots."""
        if self.model is None:
            self.load()
        by_view: dict[str, list[Variant]] = {}
        for v in variants:
            by_view.setdefault(view_of(v.config), []).append(v)
        out: dict[str, list[dict | Exception]] = {}
        for view, group in by_view.items():
            seen, failed = list(memes), {}
            if view != FULL:
                seen = []
                for i, m in enumerate(memes):
                    try:
                        seen.append(m.as_view(view, image=None) if view == CAPTION_ONLY else m.as_view(view))
                    except Exception as e:  # noqa: BLE001 - e.g. OCR text but no boxes: this meme's slots
                        failed[i] = e
            results = self._process_view(seen, group) if seen else {v.variant_id: [] for v in group}
            for v in group:
                done = iter(results[v.variant_id])
                out[v.variant_id] = [failed[i] if i in failed else next(done) for i in range(len(memes))]
        return out

    def _process_view(self, memes: list[MemeInput], variants: list[Variant]) -> dict[str, list[dict | Exception]]:
        if self.batch_size > 1 and len(memes) > 1:
            return self.process_batch(memes, variants)
        out: dict[str, list[dict | Exception]] = {v.variant_id: [] for v in variants}
        for meme in memes:
            try:
                results = self.process_meme(meme, variants)
            except Exception as e:   # the image or the shared prefix failed: every variant of this meme
                self._after_error(e)
                results = {v.variant_id: e for v in variants}
            for v in variants:
                out[v.variant_id].append(results[v.variant_id])
        return out
