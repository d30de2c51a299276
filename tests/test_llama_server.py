"""A real OpenAI-compatible VLM server: llama.cpp's llama-server on a tiny random Qwen2.5-VL converted to GGUF.

The server is built by scripts/setup_llama_server.sh (tests skip without it, or fail under
VLMEMES_REQUIRE_LLAMA_SERVER=1). The tiny model is converted once per session (tests/llama_server.py).
What the server does with these requests is written up in docs/served_vlm.md ("llama.cpp server (tested)").
"""
from __future__ import annotations

import base64
import io
import json
import math
import urllib.error

import pytest
from llama_server import LlamaServer, get_json, post_json, require_llama_server, tiny_gguf
from PIL import Image, ImageDraw

# Each test starts llama-server (a child process) on a model converted by a child python: process + slow.
pytestmark = [pytest.mark.process, pytest.mark.slow]

SEED = 1234
RUSSIAN = "Это токсичный мем? Ответь одним словом: токсичный или нетоксичный."


def png_data_url(size: tuple[int, int] = (616, 616)) -> str:
    img = Image.new("RGB", size, (240, 240, 230))
    draw = ImageDraw.Draw(img)
    w, h = size
    draw.rectangle((w // 10, h // 10, w // 2, h // 3), fill=(200, 30, 30))
    draw.ellipse((w // 2, h // 2, w - w // 10, h - h // 10), fill=(30, 30, 200))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def chat_body(image_url: str, *, prefill: str | None = None, top_logprobs: int = 5, max_tokens: int = 8) -> dict:
    messages = [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": image_url}},
        {"type": "text", "text": RUSSIAN}]}]
    if prefill is not None:
        messages.append({"role": "assistant", "content": prefill})
    return {"model": "tiny", "messages": messages, "temperature": 0, "seed": SEED, "max_tokens": max_tokens,
            "logprobs": True, "top_logprobs": top_logprobs}


@pytest.fixture(scope="module")
def gguf(tmp_path_factory):
    require_llama_server()
    return tiny_gguf(tmp_path_factory)


@pytest.fixture(scope="module")
def server(gguf, tmp_path_factory):
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with LlamaServer(gguf.model, gguf.mmproj, extra_args=["--alias", "tiny-qwen", "-np", "2"], log=log) as srv:
        yield srv


def test_health_and_models(server):
    assert server.health() == 200
    models = get_json(f"{server.url}/models")
    assert [m["id"] for m in models["data"]] == ["tiny-qwen"]     # --alias names the model


def test_image_and_russian_text_with_logprobs(server):
    out = post_json(f"{server.url}/chat/completions", chat_body(png_data_url()))
    choice = out["choices"][0]
    assert isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in ("stop", "length")
    # 616 x 616 = 22 x 22 merged 28-pixel patches: 484 image tokens, plus the text
    assert out["usage"]["prompt_tokens"] > 484
    content = choice["logprobs"]["content"]
    # One entry per piece of text sent, not per token: a token that ends inside a UTF-8 character is held
    # back and sent with the next one (bytes joined, logprob and top_logprobs of the last token only)
    assert 1 <= len(content) <= out["usage"]["completion_tokens"] <= 8
    assert b"".join(bytes(e["bytes"]) for e in content).decode("utf-8", "replace") == choice["message"]["content"]
    for entry in content:
        assert isinstance(entry["token"], str) and entry["logprob"] <= 0
        tops = entry["top_logprobs"]
        assert len(tops) == 5
        assert [t["logprob"] for t in tops] == sorted((t["logprob"] for t in tops), reverse=True)
        # temperature 0 = greedy: the chosen (last) token is the most probable one of the full distribution
        assert tops[0]["id"] == entry["id"] and tops[0]["logprob"] == pytest.approx(entry["logprob"])


def test_top_logprobs_are_the_full_vocabulary_softmax(server):
    """top_logprobs has no cap below the vocabulary (331 tokens here) and they sum to 1: the softmax of the raw
    logits over every token, before temperature and the sampler chain (top_k below changes nothing)."""
    body = dict(chat_body(png_data_url((112, 112)), top_logprobs=1000, max_tokens=1), temperature=1.0, top_k=2)
    entry = post_json(f"{server.url}/chat/completions", body)["choices"][0]["logprobs"]["content"][0]
    assert len(entry["top_logprobs"]) == 331
    assert sum(math.exp(t["logprob"]) for t in entry["top_logprobs"]) == pytest.approx(1.0, abs=1e-4)
    greedy = post_json(f"{server.url}/chat/completions", chat_body(png_data_url((112, 112)), top_logprobs=3, max_tokens=1))
    top3 = greedy["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
    # same distribution; ~1e-4 apart when the prompt cache splits the prompt differently (docs/served_vlm.md)
    assert [t["logprob"] for t in top3] == pytest.approx([t["logprob"] for t in entry["top_logprobs"][:3]], abs=1e-3)
    # post_sampling_probs: probabilities after the sampler chain instead (top_k 2 leaves two, renormalised)
    post = post_json(f"{server.url}/chat/completions", dict(body, post_sampling_probs=True))
    tops = post["choices"][0]["logprobs"]["content"][0]["top_probs"]
    assert len(tops) == 2 and sum(t["prob"] for t in tops) == pytest.approx(1.0, abs=1e-4)


def test_identical_requests_identical_answers(server):
    """Bit-identical answers and logprobs for identical requests with "cache_prompt": false. With the prompt
    cache (the default) a repeat reuses the cached prompt and its logprobs differ from the first answer's in
    the 4th decimal (the greedy text is the same here)."""
    body = dict(chat_body(png_data_url((336, 336))), cache_prompt=False)   # a size no other test sends: cold
    answers = [post_json(f"{server.url}/chat/completions", body) for _ in range(3)]
    assert {a["timings"]["cache_n"] for a in answers} == {0}
    assert len({a["choices"][0]["message"]["content"] for a in answers}) == 1
    assert len({json.dumps(a["choices"][0]["logprobs"]) for a in answers}) == 1
    cached = [post_json(f"{server.url}/chat/completions", dict(body, cache_prompt=True)) for _ in range(2)]
    assert cached[1]["timings"]["cache_n"] > 0
    assert {a["choices"][0]["message"]["content"] for a in cached} == {answers[0]["choices"][0]["message"]["content"]}
    first = answers[0]["choices"][0]["logprobs"]["content"][0]["logprob"]
    assert cached[1]["choices"][0]["logprobs"]["content"][0]["logprob"] == pytest.approx(first, abs=1e-2)


def test_assistant_prefill_is_continued(server):
    """A trailing assistant message is continued (llama-server's default --prefill-assistant): the prompt
    ends with its text, without <|im_end|>; the answer's content repeats the prefill, then the new tokens
    (logprobs cover only the new ones)."""
    image = png_data_url((112, 112))
    prompt = post_json(f"{server.base}/apply-template", chat_body(image, prefill="Класс:"))["prompt"]
    assert prompt.endswith("<|im_start|>assistant\nКласс:")
    plain = post_json(f"{server.url}/chat/completions", chat_body(image))
    prefilled = post_json(f"{server.url}/chat/completions", chat_body(image, prefill="Класс:"))
    # the prefilled prompt is the generation prompt plus the tokens of "Класс:" (one per Cyrillic letter)
    assert prefilled["usage"]["prompt_tokens"] == plain["usage"]["prompt_tokens"] + len("Класс:")
    choice = prefilled["choices"][0]
    assert choice["message"]["content"].startswith("Класс:")
    new_text = b"".join(bytes(e["bytes"]) for e in choice["logprobs"]["content"]).decode("utf-8", "replace")
    assert choice["message"]["content"] == "Класс:" + new_text


def test_server_flags(gguf, tmp_path):
    """--image-max-tokens caps the image's tokens (the server resizes); --no-prefill-assistant closes a trailing
    assistant message and opens a new one; -np sets the slots."""
    image = png_data_url()   # 616 x 616: 484 tokens by default
    extra = ["--image-max-tokens", "64", "--no-prefill-assistant", "-np", "3"]
    with LlamaServer(gguf.model, gguf.mmproj, extra_args=extra, log=tmp_path / "server.log") as srv:
        text_only = chat_body(image, max_tokens=1)
        text_only["messages"][0]["content"] = text_only["messages"][0]["content"][1:]
        n_text = post_json(f"{srv.url}/chat/completions", text_only)["usage"]["prompt_tokens"]
        n_image = post_json(f"{srv.url}/chat/completions", chat_body(image, max_tokens=1))["usage"]["prompt_tokens"]
        assert n_image - n_text == 64 + 2     # 8 x 8 merged patches + <|vision_start|>, <|vision_end|>
        prompt = post_json(f"{srv.base}/apply-template", chat_body(image, prefill="Класс:"))["prompt"]
        assert prompt.endswith("Класс:<|im_end|>\n<|im_start|>assistant\n")
        assert get_json(f"{srv.base}/props")["total_slots"] == 3


def test_killed_server_restarts_on_the_same_port(server):
    body = chat_body(png_data_url((112, 112)))
    before = post_json(f"{server.url}/chat/completions", body)
    port = server.port
    server.kill()
    with pytest.raises(urllib.error.URLError):
        post_json(f"{server.url}/chat/completions", body, timeout=5)
    server.restart()
    assert server.port == port and server.health() == 200
    after = post_json(f"{server.url}/chat/completions", body)
    assert after["choices"][0]["message"]["content"] == before["choices"][0]["message"]["content"]
