"""The VLM stage over an OpenAI-compatible server (`--vlm-backend openai`): vLLM, SGLang, llama.cpp's
llama-server, Ollama, a hosted endpoint.

Same prompts (pipeline.stages.vlm_prompts), same parser (pipeline.stages.vlm_answer) and the same pixel
budget as the transformers backend (pipeline.stages.vlm): each meme is resized by Qwen2.5-VL's own rule
(`smart_resize`: sides multiples of 28, at most `max_pixels`) and sent as a PNG data URL in one user
message with the prompt text. Decoding is deterministic: temperature 0, a fixed seed, at most
`max_new_tokens` tokens.

p(toxic) from the server's log-probabilities (never guessed):
  1. read off the answer itself: the request asks for `logprobs` with the top `--vlm-top-logprobs` (20) alternatives
     of every generated token; when the answer holds the deciding class line (label-first: it starts with
     `Класс:`; explain-first: the reasoning, then `\\nКласс:`) and a token starts exactly where the class
     word does, that token's alternatives give log p(« токсичный») and log p(« нейтральный») (by their
     bytes: the longest alternative that begins each label word; a piece common to both words, e.g. a
     lone space token, is stepped over). This is the same next-token distribution the transformers
     backend reads (its prefix `Класс:` after the same prompt), with no second request.
  2. otherwise, with `--vlm-prefill continue`, one more request whose last message is the assistant
     prefix (`Класс:`, or the reasoning + `\\nКласс:`) to be continued (vLLM/SGLang: the request also
     carries `continue_final_message: true, add_generation_prompt: false`; llama-server continues a final
     assistant message by itself), max_tokens 1, and the alternatives of its first token.
  3. when neither gives both label words (a server without logprobs, a label word outside the top
     alternatives, no class line and no prefill), `score` is NULL and `score_note` says why.

Requests: `--vlm-concurrency N` in flight at once (a thread pool over each batch), a read timeout
(`--vlm-timeout`), retries with exponential backoff (honouring Retry-After) on connection errors,
timeouts, 408/409/425/429/5xx and unreadable JSON. A meme whose requests all failed is returned as its
exception, so the runner records it in `failures` and the next run asks again; answered memes are
written batch by batch. When the server stops answering (several memes in a row lost to connection
errors) the remaining memes are not sent until a probe of `/models` succeeds again, so a dead server
costs one probe per meme, not the full backoff, and a restarted one is picked up again.

Cache key: the variant's model_id is `served:<server model name>` and its config holds the backend, the
prompt, pixel budget, token bound, seed, top-logprobs count and prefill mode, so a served model and the
same weights through transformers are two prediction sets (the Disagreement page compares them). The
server URL is recorded in the run (`runs.args`), not in the key: moving a server keeps its results; serve
different weights or quantisations under different model names. The API key is read from the
environment variable named by `--vlm-api-key-env` when the stage loads; it is never stored.
"""
from __future__ import annotations

import base64
import io
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pipeline.config import NON_TOXIC, TOXIC
from pipeline.errors import OptionError
from pipeline.options import DEFAULTS, Options
from pipeline.stages.base import MemeInput, Stage, StageLoadError, Variant, prediction_row_columns, view_variant
from pipeline.stages.vlm import MAX_NEW_TOKENS_LIMIT, VlmStage, assistant_prefix
from pipeline.stages.vlm_answer import PARSER_VERSION, label_mass, parse_answer
from pipeline.stages.vlm_prompts import DEFAULT_PROMPT_VERSIONS, LABEL_WORDS, caption_only_prompt, get_prompt
from pipeline.views import CAPTION_ONLY, FULL, selected_views, view_of

TOP_LOGPROBS = 20            # default alternatives per token: the OpenAI API's maximum (vLLM, llama-server allow more)
SEED = 0
MIN_PIXELS = 56 * 56         # Qwen2.5-VL's processor default (as the transformers backend uses)
PATCH_FACTOR = 28            # Qwen2.5-VL: 14 px patches merged 2x2
RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
DOWN_AFTER = 3               # memes in a row lost to connection errors -> server considered down
BACKENDS = ("transformers", "openai")
# What « токсичный» and « нейтральный» begin with alike (a space). The transformers backend appends the
# label words' common tokens to the scoring prefix; a served prefill does the same when the server's
# tokenizer has the opening as a token of its own (never for Qwen's, where the space starts the word).
COMMON_OPENING = os.path.commonprefix([" " + LABEL_WORDS[TOXIC], " " + LABEL_WORDS[NON_TOXIC]])
PREFILL_MODES = ("none", "continue")


class ServedRequestError(Exception):
    """A request that failed for good (after its retries); the message says what the server did."""


class ServerDown(ServedRequestError):
    """The server did not answer (connection refused / reset, probe failed): the meme was not sent."""


# =========================================================================== image and request
def resized_for_vlm(image, max_pixels: int):
    """The meme at Qwen2.5-VL's size for this pixel budget (the processor's smart_resize rule)."""
    from PIL import Image
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize
    h, w = smart_resize(image.height, image.width, factor=PATCH_FACTOR, min_pixels=min(MIN_PIXELS, max_pixels),
                        max_pixels=max_pixels)
    if (w, h) == image.size:
        return image
    return image.resize((w, h), Image.Resampling.BICUBIC)


def png_data_url(image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def chat_messages(data_url: str | None, prompt_text: str, assistant_prefix_text: str | None = None) -> list[dict]:
    """The chat request: the image (none for a text-only prompt: data_url None) and the prompt, and, to score
    a class line, the assistant's answer so far."""
    image = [{"type": "image_url", "image_url": {"url": data_url}}] if data_url is not None else []
    messages: list[dict] = [{"role": "user", "content": [*image, {"type": "text", "text": prompt_text}]}]
    if assistant_prefix_text is not None:
        messages.append({"role": "assistant", "content": assistant_prefix_text})
    return messages


# =========================================================================== reading log-probabilities
@dataclass(frozen=True)
class TokenLogprobs:
    """One generated token: its bytes and its top alternatives as (bytes, log p). `joined`: the server sent
    several tokens as this one entry (llama-server holds back a token that ends inside a UTF-8 character
    and sends it with the next; the alternatives are then the last token's, not those at the entry's start)."""
    data: bytes
    top: tuple[tuple[bytes, float], ...]
    joined: bool = False


def _token_bytes(entry: dict) -> bytes:
    raw = entry.get("bytes")
    if isinstance(raw, list) and all(isinstance(b, int) for b in raw):
        return bytes(raw)
    token = entry.get("token")
    return token.encode("utf-8") if isinstance(token, str) else b""


def read_logprobs(choice: dict) -> list[TokenLogprobs] | None:
    """choices[0].logprobs.content as TokenLogprobs, or None when the server sent none."""
    content = ((choice.get("logprobs") or {}).get("content")) if isinstance(choice, dict) else None
    if not isinstance(content, list) or not content:
        return None
    out = []
    for entry in content:
        if not isinstance(entry, dict):
            return None
        alternatives = [t for t in entry.get("top_logprobs") or []
                        if isinstance(t, dict) and isinstance(t.get("logprob"), (int, float))]
        top = tuple((_token_bytes(t), float(t["logprob"])) for t in alternatives)
        data = _token_bytes(entry)
        out.append(TokenLogprobs(data, top, _is_joined(entry, data, alternatives)))
    return out


def _is_joined(entry: dict, data: bytes, alternatives: list[dict]) -> bool:
    """The entry's own token among its alternatives (by id where the server sends ids, else by its log p)
    holds only the end of the entry's bytes: several tokens were sent as one."""
    if "id" in entry:
        same = [t for t in alternatives if t.get("id") == entry["id"]]
    else:
        same = [t for t in alternatives if t.get("logprob") == entry.get("logprob")]
    own = _token_bytes(same[0]) if same else None
    return own is not None and own != data and data.endswith(own)


def label_logprobs_at(tokens: list[TokenLogprobs], start: int,
                      consumed: str = "") -> tuple[dict[str, float] | None, str | None]:
    """log p of the two label words at generated token `start` (where « токсичный» / « нейтральный»
    begins; `consumed`: an opening of both words already in the prompt): ({toxic, non_toxic}, None) or
    (None, why not). Pieces common to both words that the model generated are stepped over; each label
    is matched by bytes, taking the longest alternative that begins the rest of its word and not the
    other's (a lone space begins both: it is the common opening, not a label)."""
    words = {k: (" " + LABEL_WORDS[k])[len(consumed):].encode("utf-8") for k in (TOXIC, NON_TOXIC)}
    i, done = start, 0                  # bytes of both words already consumed by common pieces
    while i < len(tokens):
        if tokens[i].joined:
            return None, ("the server sent the class word's token joined with the next one (a split UTF-8 "
                          "character): its alternatives are the later token's")
        rest = {k: w[done:] for k, w in words.items()}
        found: dict[str, float] = {}
        for k, word in rest.items():     # an alternative that begins both words (a space) tells nothing
            other = next(w for j, w in rest.items() if j != k)
            matches = [(len(b), lp) for b, lp in tokens[i].top if b and word.startswith(b) and not other.startswith(b)]
            if matches:
                found[k] = max(matches)[1]
        piece = tokens[i].data
        common = bool(piece) and all(w.startswith(piece) for w in rest.values())
        if common and not all(len(piece) < len(w) for w in rest.values()):
            return None, "the label words cannot be told apart by the server's tokens"
        if common:
            done += len(piece)
            i += 1
            continue
        if len(found) == 2:
            return found, None
        have = ", ".join(f"«{b.decode('utf-8', 'replace')}»" for b, _ in tokens[i].top[:5]) or "none"
        missing = " and ".join(LABEL_WORDS[k] for k in words if k not in found)
        return None, (f"the server's top-{len(tokens[i].top)} log-probabilities at the class word do not "
                      f"include «{missing}» (top: {have})")
    return None, "the answer ends before the class word"


def offers_common_opening(tokens: list[TokenLogprobs] | None) -> bool:
    """Whether the first step's alternatives hold the label words' common opening (a lone space: a
    tokenizer that splits it off the word) - then the words are read one step later."""
    return bool(tokens) and any(b == COMMON_OPENING.encode("utf-8") for b, _ in tokens[0].top)


def start_after_prefix(tokens: list[TokenLogprobs], prefix: str) -> int | None:
    """Index of the generated token that starts right after `prefix` (the answer's text up to and
    including `Класс:`, leading whitespace of the answer aside), or None when no token boundary falls
    there or the answer does not start with it."""
    joined = b"".join(t.data for t in tokens)
    lead = len(joined) - len(joined.lstrip())
    target = prefix.encode("utf-8")
    if not joined[lead:].startswith(target):
        return None
    end, pos = lead + len(target), 0
    for i, t in enumerate(tokens):
        if pos == end:
            return i
        pos += len(t.data)
        if pos > end:
            return None
    return None


# =========================================================================== the HTTP client
class ServedClient:
    """POSTs to an OpenAI-compatible `/v1` base URL with retries; thread-safe (one session per thread)."""

    def __init__(self, base_url: str, api_key: str | None, timeout: float, retries: int, backoff_s: float = 1.0,
                 max_backoff_s: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.api_key, self.timeout, self.retries = api_key, float(timeout), int(retries)
        self.backoff_s, self.max_backoff_s = float(backoff_s), float(max_backoff_s)
        self._local = threading.local()

    def _session(self):
        import requests
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = requests.Session()
            if self.api_key:
                s.headers["Authorization"] = f"Bearer {self.api_key}"
        return s

    def _wait(self, attempt: int, retry_after: str | None) -> None:
        delay = min(self.max_backoff_s, self.backoff_s * 2 ** attempt) * (0.5 + random.random() / 2)
        if retry_after:
            try:
                delay = max(delay, min(self.max_backoff_s, float(retry_after)))
            except ValueError:
                pass
        time.sleep(delay)

    def models(self, timeout: float = 10.0) -> list[str]:
        """Model names the server lists at /models (raises ServerDown when it does not answer)."""
        import requests
        try:
            r = self._session().get(self.base_url + "/models", timeout=timeout)
            r.raise_for_status()
            data = r.json().get("data") or []
        except (requests.ConnectionError, requests.Timeout) as e:
            raise ServerDown(f"no answer from {self.base_url}/models: {type(e).__name__}") from None
        except (requests.RequestException, ValueError, AttributeError) as e:
            raise ServedRequestError(f"{self.base_url}/models: {type(e).__name__}: {str(e)[:200]}") from None
        return [m.get("id") for m in data if isinstance(m, dict) and m.get("id")]

    def chat(self, payload: dict) -> dict:
        """POST /chat/completions; returns choices[0] (with `message.content` a string). Retries what
        may pass (see RETRY_STATUSES); raises ServedRequestError / ServerDown with the last reason."""
        import requests
        url = self.base_url + "/chat/completions"
        last, connection_only = "", True
        for attempt in range(self.retries + 1):
            retry_after = None
            try:
                r = self._session().post(url, json=payload, timeout=(10.0, self.timeout))
            except requests.ConnectionError as e:
                last = f"connection failed ({type(e).__name__})"
            except requests.Timeout:
                last, connection_only = f"no answer within {self.timeout:g} s", False
            else:
                connection_only = False
                if r.status_code == 200:
                    try:
                        choice = r.json()["choices"][0]
                        if not isinstance(choice["message"]["content"], str):
                            raise TypeError("message.content is not a string")
                        return choice
                    except (ValueError, KeyError, IndexError, TypeError) as e:
                        last = f"unreadable answer ({type(e).__name__}: {str(e)[:120]}): {r.text[:120]!r}"
                elif r.status_code in RETRY_STATUSES:
                    last, retry_after = f"HTTP {r.status_code}: {r.text[:200]}", r.headers.get("Retry-After")
                else:       # 400, 401, 404, ...: asking again will not help
                    raise ServedRequestError(f"HTTP {r.status_code} from {url}: {r.text[:300]}")
            if attempt < self.retries:
                self._wait(attempt, retry_after)
        error = ServerDown if connection_only else ServedRequestError
        raise error(f"{last} after {self.retries + 1} attempt(s) at {url}")


# =========================================================================== the stage
class ServedVlmStage(Stage):
    name = "vlm"
    table = "predictions"
    version = "1"

    def __init__(self, url: str, model: str, prompt_versions: list[str] | tuple[str, ...] | None = None,
                 max_pixels: int = DEFAULTS.max_pixels, max_new_tokens: int = DEFAULTS.max_new_tokens,
                 concurrency: int = DEFAULTS.vlm_concurrency, timeout: float = DEFAULTS.vlm_timeout,
                 retries: int = DEFAULTS.vlm_retries, prefill: str = DEFAULTS.vlm_prefill,
                 api_key_env: str = DEFAULTS.vlm_api_key_env, random_weights: bool = False,
                 top_logprobs: int = DEFAULTS.vlm_top_logprobs, backoff_s: float = 1.0,
                 views: str | tuple[str, ...] | list[str] = DEFAULTS.views):
        if not url or not url.startswith(("http://", "https://")):
            raise OptionError(f"--vlm-url must be the server's http(s) base URL (e.g. http://localhost:8000/v1), not {url!r}")
        if not model:
            raise OptionError("--vlm-model must name the model as the server knows it (see its /v1/models)")
        if prefill not in PREFILL_MODES:
            raise OptionError(f"--vlm-prefill must be one of {', '.join(PREFILL_MODES)}, not {prefill!r}")
        if not 28 * 28 * 4 <= int(max_pixels):
            raise OptionError(f"max_pixels {max_pixels} is below one 56x56 image (3136 px)")
        if not 1 <= int(max_new_tokens) <= MAX_NEW_TOKENS_LIMIT:
            raise OptionError(f"max_new_tokens must be between 1 and {MAX_NEW_TOKENS_LIMIT}")
        if int(top_logprobs) < 2:
            raise OptionError("--vlm-top-logprobs must be at least 2 (both label words)")
        if int(concurrency) < 1 or float(timeout) <= 0 or int(retries) < 0:
            raise OptionError("--vlm-concurrency must be >= 1, --vlm-timeout > 0 and --vlm-retries >= 0")
        self.url, self.server_model = url, model
        self.prompts = [get_prompt(v) for v in (prompt_versions or DEFAULT_PROMPT_VERSIONS)]
        self.max_pixels, self.max_new_tokens = int(max_pixels), int(max_new_tokens)
        self.concurrency, self.timeout, self.retries = int(concurrency), float(timeout), int(retries)
        self.prefill, self.api_key_env, self.random_weights = prefill, api_key_env, bool(random_weights)
        self.backoff_s, self.top_logprobs = backoff_s, int(top_logprobs)
        self.batch_size = 2 * self.concurrency         # written after every batch: little is in flight
        self.views = [v for v in selected_views(views) if v != FULL]   # derived views, as VlmStage
        self.needs_ocr_text = any(p.uses_ocr for p in self.prompts) or bool(self.views)
        self.needs_ocr_boxes = bool(self.views)
        self.client: ServedClient | None = None
        self._down_streak = 0
        self._lock = threading.Lock()

    @classmethod
    def from_options(cls, o: Options) -> ServedVlmStage:
        return cls(url=o.vlm_url or "", model=o.vlm_model,
                   prompt_versions=list(o.vlm_prompts) if o.vlm_prompts else None, max_pixels=o.max_pixels,
                   max_new_tokens=o.max_new_tokens, concurrency=o.vlm_concurrency, timeout=o.vlm_timeout,
                   retries=o.vlm_retries, prefill=o.vlm_prefill, api_key_env=o.vlm_api_key_env,
                   random_weights=o.vlm_random_weights, top_logprobs=o.vlm_top_logprobs, views=o.views)

    @property
    def model_id(self) -> str:
        return f"served:{self.server_model}"

    def row_columns(self, variant: Variant) -> dict:
        return prediction_row_columns(variant)

    def make_variants(self) -> list[Variant]:
        """One variant per prompt version and, with derived --views, the same derived variants as VlmStage
        (the caption-removed image with the same prompt; the caption alone as a text-only prompt)."""
        full = self._full_variants()
        derived = []
        for view in self.views:
            for v, p in zip(full, self.prompts):
                if p.uses_ocr:
                    continue
                extra = {}
                if view == CAPTION_ONLY:
                    extra = dict(prompt=caption_only_prompt(p).template, uses_ocr=True, image=False)
                derived.append(view_variant(v, view, **extra))
        return full + derived

    def _full_variants(self) -> list[Variant]:
        return [Variant(
            stage=self.name, model_id=self.model_id, name=p.version, stage_version=self.version,
            is_smoke=self.random_weights, reads_ocr=p.uses_ocr,
            config=dict(backend="openai", prompt=p.template, uses_ocr=p.uses_ocr, max_pixels=self.max_pixels,
                        max_new_tokens=self.max_new_tokens, decoding="temperature 0", seed=SEED,
                        top_logprobs=self.top_logprobs, prefill=self.prefill,
                        score_after="reasoning + Класс:" if p.score_after_reasoning else "Класс:"))
            for p in self.prompts]

    def describe(self) -> str:
        return (f"{self.server_model} served at {self.url} (OpenAI API), concurrency {self.concurrency}, "
                f"timeout {self.timeout:g} s, max_pixels={self.max_pixels}, max_new_tokens={self.max_new_tokens}")

    # ------------------------------------------------------------------ loading = reaching the server
    def load(self) -> None:
        if self.client is not None:
            return
        client = ServedClient(self.url, os.environ.get(self.api_key_env) or None, self.timeout, self.retries,
                              backoff_s=self.backoff_s)
        try:
            names = client.models()
        except ServerDown as e:
            raise StageLoadError(f"the VLM server does not answer: {e}; start it or fix --vlm-url") from None
        except ServedRequestError:
            names = []          # some endpoints do not list models; the first request will tell
        if names and self.server_model not in names:
            raise StageLoadError(f"the server at {self.url} serves {', '.join(names[:8])}, not "
                                 f"{self.server_model!r}: pass one of those as --vlm-model")
        self.client = client

    # ------------------------------------------------------------------ one meme
    def _payload(self, messages: list[dict], max_tokens: int, prefill: bool) -> dict:
        payload: dict[str, Any] = dict(model=self.server_model, messages=messages, temperature=0, seed=SEED,
                                       max_tokens=max_tokens, logprobs=True, top_logprobs=self.top_logprobs)
        if prefill:
            payload.update(continue_final_message=True, add_generation_prompt=False)
        return payload

    def _score(self, choice: dict, raw: str, data_url: str, prompt_text: str, version: str):
        """(logits, None) or (None, why the score is missing)."""
        prefix = assistant_prefix(version, raw)
        tokens = read_logprobs(choice)
        reason = "the server returned no log-probabilities" if tokens is None else None
        if tokens is not None:
            start = start_after_prefix(tokens, prefix)
            if start is None:
                reason = "the answer does not start with its class line's prefix at a token boundary"
            else:
                logits, reason = label_logprobs_at(tokens, start)
                if logits is not None:
                    return logits, None
        if self.prefill != "continue":
            return None, reason + " (no prefill: --vlm-prefill none)"
        why = ""
        for opening in ("", COMMON_OPENING):
            messages = chat_messages(data_url, prompt_text, prefix + opening)
            tokens = read_logprobs(self.client.chat(self._payload(messages, 1, prefill=True)))
            if tokens is None:
                return None, "the server returned no log-probabilities for the prefilled class line"
            logits, why = label_logprobs_at(tokens, 0, consumed=opening)
            if logits is not None:
                return logits, None
            if opening or not COMMON_OPENING or not offers_common_opening(tokens):
                break
        return None, "prefilled class line: " + why

    def process_one(self, meme: MemeInput, variant: Variant) -> dict:
        prompt = get_prompt(variant.name)
        prompt_text = prompt.render(meme.ocr_text)
        view = view_of(variant.config)
        data_url = (None if view == CAPTION_ONLY else
                    png_data_url(resized_for_vlm(meme.view_image(view), self.max_pixels)))
        choice = self.client.chat(self._payload(chat_messages(data_url, prompt_text), self.max_new_tokens, False))
        raw = choice["message"]["content"].strip()
        logits, note = self._score(choice, raw, data_url, prompt_text, variant.name)
        parsed = parse_answer(raw, prompt.answer_order)
        score = VlmStage.score_from_logits(logits) if logits is not None else None
        return dict(label=parsed.label, explanation=parsed.explanation, raw_answer=raw, prompt=prompt_text,
                    score=score, logits=logits, label_mass=label_mass(logits), parser_version=PARSER_VERSION,
                    score_note=note)

    def _one(self, meme: MemeInput, variant: Variant) -> dict | Exception:
        try:
            if self._down_streak >= DOWN_AFTER:
                self.client.models()          # raises ServerDown while it is still down
                with self._lock:
                    self._down_streak = 0
            result = self.process_one(meme, variant)
        except ServerDown as e:
            with self._lock:
                self._down_streak += 1
            return ServerDown(f"VLM server not answering, meme not answered: {e}")
        except Exception as e:      # noqa: BLE001 - one meme's failure is recorded, the run goes on
            return e
        with self._lock:
            self._down_streak = 0
        return result

    def process(self, memes: list[MemeInput], variant: Variant) -> list[dict | Exception]:
        if self.client is None:
            self.load()
        if self.concurrency == 1 or len(memes) == 1:
            return [self._one(m, variant) for m in memes]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(lambda m: self._one(m, variant), memes))

