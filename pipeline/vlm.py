"""The VLM stage: Qwen2.5-VL judges each meme toxic / non_toxic, explains why, and gives p(toxic).

Per meme and prompt version (`pipeline.vlm_prompts`) the stage stores:
  raw_answer   the greedy answer (do_sample=False, at most `max_new_tokens` new tokens)
  label        `parse_answer(raw_answer).label`: toxic | non_toxic | None when the answer states no class
               (a refusal, an empty or cut-off answer, the template echoed back); None is never replaced
               by a default class, the dashboard counts and shows these answers
  explanation  the `Объяснение` part (or the answer without its class line)
  score        p(toxic): one forward pass over the chat prompt + the assistant prefix `Класс:`; the
               next-token probabilities of the continuations « токсичный» and « нейтральный» (when their
               first tokens coincide, the common tokens are appended and the first differing token
               compared), renormalised over the two. For explain-first prompts the prefix is the model's
               own reasoning (its answer up to its class line) followed by `\nКласс:`, so the score is
               read where the model states its class, after its reasoning. When the answer itself
               starts with exactly those tokens (a label-first answer `Класс: ...`), the generation
               already computed that distribution: it is read off the generation's own step and the
               extra forward pass (a second prefill of image + prompt) is skipped.
  logits       {"toxic": log p, "non_toxic": log p} (full-vocabulary log-softmax of those two tokens);
               score == softmax of the two.

Choices:
  max_pixels = 640*640 by default: the image processor resizes every meme to at most this many pixels
    (aspect kept, sides multiples of 28), which bounds the visual tokens to ~520 (one per 28x28 patch).
    The labelled memes are mostly ~736x736; 640*640 keeps them at 0.84 of their size (616x616 px, 484
    visual tokens) so captions stay legible (448*448 would shrink them to 0.61 and tall screenshots to an
    unreadable 0.29; 1024*1024 keeps nearly all at full size for ~40% more visual tokens and time on CPU).
    Measured in docs/benchmarks.md.
  max_new_tokens = 160: room for two or three sentences of Russian reasoning plus the class line
    (explain-first needs the label after the reasoning; a cut-off answer parses to None).
  batch size 1: memes differ in size, so their visual token counts differ; one at a time avoids
    padding and keeps an out-of-memory error confined to one meme (returned in its slot).
  generation and score share one image preprocessing (the vision tower runs in both passes).
  quantize 8bit/4bit uses bitsandbytes (CUDA only) and keeps the vision tower and lm_head unquantised.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from pipeline.config import NON_TOXIC, TOXIC
from pipeline.hf import is_random_weights, pick_device, pick_dtype, precision_name, resolve_source
from pipeline.stage import MemeInput, Stage, StageLoadError, Variant
from pipeline.vlm_prompts import CLASS_PREFIX, DEFAULT_PROMPT_VERSIONS, LABEL_WORDS, get_prompt

DEFAULT_VLM_MODEL = "Qwen/Qwen2.5-VL-3B-Instruct"
DEFAULT_MAX_PIXELS = 640 * 640
DEFAULT_MAX_NEW_TOKENS = 160
MAX_NEW_TOKENS_LIMIT = 1024
TORCH_DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}   # as str(torch.<dtype>) without "torch."
# Module names bitsandbytes must leave alone: the vision tower (`model.visual` in transformers 5,
# `visual` in older layouts) and the output head.
BNB_SKIP_MODULES = ["model.visual", "visual", "lm_head"]
_NEUTRAL_GENERATION = dict(do_sample=False, num_beams=1, temperature=1.0, top_k=50, top_p=1.0, typical_p=1.0,
                           repetition_penalty=1.0, no_repeat_ngram_size=0, min_length=0, length_penalty=1.0)


# =========================================================================== answer parsing
@dataclass(frozen=True)
class ParsedAnswer:
    label: str | None          # toxic | non_toxic | None (no class stated)
    explanation: str


_TOXIC_WORD = r"токсич\w*|toxic\w*"
_NEUTRAL_WORD = r"нейтрал\w*|neutral\w*"
_EXTRA_TOXIC = r"|оскорбительн\w*|offensive|hateful"       # accepted on a class line only
_EXTRA_NEUTRAL = r"|безобидн\w*|безвредн\w*|harmless|benign"
_NEGATIONS = {"не", "нет", "ни", "ничего", "нисколько", "вовсе", "без", "not", "no", "non", "isn't", "isnt",
              "aren't", "without", "nothing", "never"}
_CLAUSE_BREAK = re.compile(r"[.,;:!?()\[\]{}\n—–]|\s-\s")
_KEYS_CLASS = (r"(?:итоговый\s+|окончательный\s+|final\s+)?(?:класс|class|label|метка|категория|category|ответ|answer"
               r"|вердикт|verdict|классификация|classification|оценка|result|результат)")
_KEYS_EXPL = r"(?:объяснение|пояснение|обоснование|причина|рассуждение|комментарий|explanation|reason|reasoning|rationale)"
_KEY_LINE = r"^\s*(?:\d+\s*[.)]\s*)?(?:[-*•>]\s*)?[\"']?(?P<key>{keys})[\"']?\s*(?:[:\-–—=]+\s*|\s+(?=\S)|$)(?P<value>.*)$"
_CLASS_LINE = re.compile(_KEY_LINE.format(keys=_KEYS_CLASS), re.IGNORECASE)
_EXPL_LINE = re.compile(_KEY_LINE.format(keys=_KEYS_EXPL), re.IGNORECASE)
_INLINE_KEY = re.compile(
    r"(?<=\S)(?<!итоговый)(?<!окончательный)(?<!final)[ \t]*(?=\b(?:объяснение|обоснование|explanation|reason|класс|class|label|ответ|answer)\s*:)",
    re.IGNORECASE)
_REFUSAL = re.compile(
    r"не\s+могу|затрудняюсь|невозможно\s+(?:определить|сказать|оценить)|сложно\s+сказать"
    r"|не\s+буду|cannot|can't|can\s+not|unable|i\s+won't|не\s+удалось", re.IGNORECASE)
_JSON_CLASS_KEYS = {"класс", "class", "label", "метка", "категория", "category", "ответ", "answer", "verdict",
                    "вердикт", "classification", "классификация", "result", "результат"}
_JSON_BOOL_KEYS = {"toxic", "is_toxic", "токсичный", "токсичен", "токсичность", "toxicity"}
_JSON_EXPL_KEYS = {"объяснение", "пояснение", "обоснование", "причина", "explanation", "reason", "reasoning",
                   "rationale", "комментарий"}


def _clean(text: str) -> str:
    """Markdown and code fences off, 'Класс: x. Объяснение: y' split into lines; otherwise lines kept."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [ln for ln in text.split("\n") if not ln.strip().startswith("```")]
    text = "\n".join(lines)
    text = re.sub(r"\*\*|__|`", "", text)
    text = re.sub(r"(?m)^\s*#+\s*", "", text)                 # headings
    text = re.sub(r"(?m)^(\s*)\*\s+", r"\1- ", text)          # '* item' bullets
    text = re.sub(r"(?<!\w)\*(?=\S)|(?<=\S)\*(?!\w)", "", text)   # *italic*
    # 'Класс: токсичный. Объяснение: ...' on one line -> two lines
    return _INLINE_KEY.sub("\n", text)


def _mentions(text: str, class_value: bool = False) -> list[str]:
    """Labels mentioned in `text`, negations applied ('не токсичный', 'нетоксичный' -> non_toxic), in order.

    A negation counts when it is glued to the word (не-, non-) or among the two words before it in the
    same clause ('не является токсичным', 'is not toxic', 'нет ничего токсичного'). Questions ('токсичный
    ли') and comparisons ('чем токсичный') are not statements and are skipped.
    """
    low = text.lower().replace("ё", "е")
    toxic = _TOXIC_WORD + (_EXTRA_TOXIC if class_value else "")
    neutral = _NEUTRAL_WORD + (_EXTRA_NEUTRAL if class_value else "")
    found = []
    for m in re.finditer(rf"\b(?P<neg>не|non-?)?(?:(?P<t>{toxic})|(?P<n>{neutral}))", low):
        if re.match(r"\s+ли\b", low[m.end():m.end() + 4]):
            continue
        before = _CLAUSE_BREAK.split(low[:m.start()])[-1].split()
        if before and before[-1] in ("чем", "than"):
            continue
        negated = bool(m.group("neg")) or any(w.strip("\"'«»") in _NEGATIONS for w in before[-2:])
        positive = TOXIC if m.group("t") else NON_TOXIC
        found.append((NON_TOXIC if positive == TOXIC else TOXIC) if negated else positive)
    return found


def _decide(labels: list[str]) -> str | None:
    distinct = set(labels)
    return distinct.pop() if len(distinct) == 1 else None


def _from_json(text: str) -> ParsedAnswer | None:
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        data = json.loads(text[start:end + 1])
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    label, found = None, False
    explanation = ""
    for key, value in data.items():
        k = str(key).strip().lower().replace("ё", "е")
        if k in _JSON_CLASS_KEYS and not found:
            found = True
            label = _decide(_mentions(str(value), class_value=True))
        elif k in _JSON_BOOL_KEYS and isinstance(value, bool) and not found:
            found = True
            label = TOXIC if value else NON_TOXIC
        elif k in _JSON_EXPL_KEYS and not explanation:
            explanation = " ".join(str(value).split())
    if not found:
        return None
    return ParsedAnswer(label, explanation)


def _only_label_words(text: str) -> bool:
    rest = re.sub(rf"\b(?:не\s*|non-?|not\s+)?(?:{_TOXIC_WORD}|{_NEUTRAL_WORD})", "", text.lower())
    return not re.search(r"\w", rest)


def _squash(lines: list[str]) -> str:
    parts = []
    for ln in lines:
        ln = re.sub(r"^\s*(?:\d+\s*[.)]\s*)?(?:[-•>]\s*)?", "", ln).strip()
        if ln:
            parts.append(ln)
    return " ".join(" ".join(parts).split())


def parse_answer(text: str | None) -> ParsedAnswer:
    """Read the class and the explanation out of a model answer; label None when no class is stated.

    An explicit class line (`Класс: ...`, `**Класс:** ...`, `1. Класс - ...`, `Label: toxic`, JSON keys)
    decides; with several, the last one that names exactly one class wins. A class line that names both
    classes (the template echoed back) gives None. Only without any class line is the whole text read:
    one class mentioned (negations applied: 'не токсичный' is non_toxic) gives that class, conflicting
    mentions fall back to the first sentence, refusals ('не могу ответить') give None.
    """
    if not text or not text.strip():
        return ParsedAnswer(None, "")
    if "{" in text:
        parsed = _from_json(text)
        if parsed is not None:
            return parsed
    lines = _clean(text).split("\n")

    class_lines: list[tuple[int, str | None]] = []     # (index of the line, decided label)
    used_as_value: set[int] = set()
    for i, ln in enumerate(lines):
        m = _CLASS_LINE.match(ln)
        if not m:
            continue
        value, j = m.group("value").strip(), i
        if not value:                                   # '**Класс:**' with the class on the next line
            j = next((k for k in range(i + 1, len(lines)) if lines[k].strip()), i)
            if j != i and (_EXPL_LINE.match(lines[j]) or _CLASS_LINE.match(lines[j])):
                j = i
            value = lines[j].strip() if j != i else ""
        mentions = _mentions(value, class_value=True)
        if mentions:
            class_lines.append((i, _decide(mentions)))
            if j != i:
                used_as_value.add(j)

    expl_idx = [i for i, ln in enumerate(lines) if _EXPL_LINE.match(ln)]
    skip = {i for i, _ in class_lines} | used_as_value
    if expl_idx:
        collected = []
        for start in expl_idx:
            collected.append(_EXPL_LINE.match(lines[start]).group("value"))
            for k in range(start + 1, len(lines)):
                if k in skip or k in expl_idx or _CLASS_LINE.match(lines[k]):
                    break
                collected.append(lines[k])
        explanation = _squash(collected)
    else:
        explanation = _squash([ln for i, ln in enumerate(lines) if i not in skip])

    if class_lines:
        decided = [lab for _, lab in class_lines if lab is not None]
        return ParsedAnswer(decided[-1] if decided else None, explanation)

    # no class line: a careful read of the whole text
    body = "\n".join(lines)
    first_sentence = re.split(r"[.!?\n]", body.strip(), maxsplit=1)[0]
    if _REFUSAL.search(first_sentence):
        return ParsedAnswer(None, explanation)
    label = _decide(_mentions(body))
    if label is None:
        label = _decide(_mentions(first_sentence))
    if label is not None and _only_label_words(body):
        explanation = ""
    elif label is not None:
        first, _, rest = body.strip().partition("\n")
        if re.fullmatch(r"[\W\d_]*(?:\w+[\W_]*){1,2}", first) and _mentions(first) and rest.strip():
            explanation = _squash(rest.split("\n"))      # a bare 'Токсичный.' first line is the label
        else:
            m = re.match(r"\s*[\"'«]?(?:не\s+|non-?)?(?:токсич\w*|toxic\w*|нейтрал\w*|neutral\w*)[\"'»]?\s*[.:!—–-]\s*",
                         body, re.IGNORECASE)
            if m and body[m.end():].strip():
                explanation = _squash(body[m.end():].split("\n"))
    return ParsedAnswer(label, explanation)


def reasoning_before_class(raw_answer: str) -> str:
    """The answer as generated up to (not including) its last class line; the whole answer when it has none."""
    raw_lines = raw_answer.replace("\r\n", "\n").split("\n")
    cut: tuple[int, int] | None = None                 # (line, character offset of the class key)
    for i, line in enumerate(raw_lines):
        for sub in _clean(line).split("\n"):
            m = _CLASS_LINE.match(sub)
            if not m:
                continue
            value = m.group("value").strip()
            if not value:
                value = next((ln for ln in raw_lines[i + 1:] if ln.strip()), "")
            if _mentions(value, class_value=True):
                keys = list(re.finditer(rf"(?i)\b{re.escape(m.group('key'))}", line))
                cut = (i, keys[-1].start() if keys else 0)
    if cut is None:
        return raw_answer.strip()
    i, pos = cut
    head = raw_lines[i][:pos]
    if re.fullmatch(r"[\s\d.)*#>•_-]*", head):        # only markup before the key: '**', '2. ', '- '
        head = ""
    return "\n".join(raw_lines[:i] + [head.rstrip(" \t*_")]).strip()


def assistant_prefix(prompt_version: str, raw_answer: str) -> str:
    """The text the score is read after: `Класс:`, preceded by the reasoning for explain-first prompts."""
    if get_prompt(prompt_version).score_after_reasoning:
        reasoning = reasoning_before_class(raw_answer)
        if reasoning:
            return reasoning + "\n" + CLASS_PREFIX
    return CLASS_PREFIX


# =========================================================================== the stage
class VlmStage(Stage):
    name = "vlm"
    table = "predictions"
    version = "1"
    batch_size = 1

    def __init__(self, model: str = DEFAULT_VLM_MODEL, prompt_versions: list[str] | tuple[str, ...] | None = None,
                 device: str = "auto", quantize: str = "none", max_pixels: int = DEFAULT_MAX_PIXELS,
                 max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, precision: str = "auto"):
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
        self.needs_ocr_text = any(p.uses_ocr for p in self.prompts)
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

    def variants(self) -> list[Variant]:
        dtype = self._dtype_name()
        smoke = is_random_weights(self.model_name)
        return [Variant(
            stage=self.name, model_id=self.model_name, name=p.version, stage_version=self.version, is_smoke=smoke,
            config=dict(prompt=p.template, uses_ocr=p.uses_ocr, max_pixels=self.max_pixels,
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
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise StageLoadError(f"could not load VLM {self.model_name!r}: {first}") from None
        self.model, self.processor = model.eval(), processor
        self.device, self.dtype = device, dtype
        self._label_ids = self._continuation_ids()

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
    def encode(self, image, prompt_text: str):
        """Chat prompt (image + text, generation prompt added) -> model inputs, image resized to max_pixels."""
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt_text}]}]
        chat = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        min_px = min(self.processor.image_processor.size.get("shortest_edge", 56 * 56), self.max_pixels)
        inputs = self.processor(text=[chat], images=[image], return_tensors="pt",
                                size={"shortest_edge": min_px, "longest_edge": self.max_pixels})
        return inputs.to(self.device)

    def generate(self, inputs) -> str:
        """The greedy answer (see _generate)."""
        return self._generate(inputs)[0]

    def _generate(self, inputs) -> tuple[str, list[int], list[tuple[float, float]]]:
        """The greedy answer, its token ids, and at every step the log-probabilities of the two label
        tokens (full-vocabulary log-softmax of the logits that step was chosen from)."""
        import torch
        from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList
        gc = self.model.generation_config
        # Every knob set explicitly: transformers fills unset ones from the checkpoint's generation_config
        # (Qwen2.5-VL ships temperature 0.1, top_k 1, repetition_penalty 1.05); plain greedy is wanted.
        defaults = getattr(GenerationConfig(), "_get_default_generation_params", lambda: _NEUTRAL_GENERATION)()
        neutral = {k: v for k, v in defaults.items() if k != "max_length"}
        config = GenerationConfig(**{**neutral, "max_new_tokens": self.max_new_tokens, "do_sample": False,
                                     "num_beams": 1, "eos_token_id": gc.eos_token_id,
                                     "pad_token_id": gc.pad_token_id, "bos_token_id": gc.bos_token_id})
        label_ids = [self._label_ids[1], self._label_ids[2]]
        steps: list[tuple[float, float]] = []

        class LabelLogprobs(LogitsProcessor):       # reads the scores, changes nothing
            def __call__(self, input_ids, scores):
                steps.append(tuple(torch.log_softmax(scores[0].float(), dim=-1)[label_ids].tolist()))   # one sync
                return scores

        with torch.inference_mode():
            out = self.model.generate(**inputs, generation_config=config,
                                      logits_processor=LogitsProcessorList([LabelLogprobs()]))
        new_tokens = out[0, inputs["input_ids"].shape[1]:].tolist()
        text = self.processor.tokenizer.decode(new_tokens, skip_special_tokens=True).strip()
        return text, new_tokens, steps

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

    def label_logprobs(self, inputs, prefix: str) -> dict[str, float]:
        """log p(toxic token), log p(non_toxic token) after the prompt + assistant `prefix` (one forward)."""
        import torch
        _, toxic_id, neutral_id = self._label_ids
        extra = self._scoring_ids(prefix)
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
        prompt = get_prompt(variant.name)
        prompt_text = prompt.render(meme.ocr_text)
        inputs = self.encode(meme.image, prompt_text)
        raw, new_tokens, steps = self._generate(inputs)
        prefix = assistant_prefix(variant.name, raw)
        logits = self.logprobs_from_generation(new_tokens, steps, prefix) or self.label_logprobs(inputs, prefix)
        parsed = parse_answer(raw)
        return dict(label=parsed.label, explanation=parsed.explanation, raw_answer=raw, prompt=prompt_text,
                    score=self.score_from_logits(logits), logits=logits)

    def process(self, memes: list[MemeInput], variant: Variant) -> list[dict | Exception]:
        if self.model is None:
            self.load()
        out: list[dict | Exception] = []
        for meme in memes:
            try:
                out.append(self.process_one(meme, variant))
            except Exception as e:   # e.g. CUDA out of memory on one huge meme: that meme fails, not the run
                if "out of memory" in str(e).lower():
                    import torch
                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()
                out.append(e)
        return out
