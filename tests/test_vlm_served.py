"""The served VLM backend (pipeline/stages/vlm_served.py): how p(toxic) is read off an OpenAI-style
log-probability list, the options, and the cache key. The runs against a real llama.cpp server are in
tests/test_vlm_served_server.py."""
from __future__ import annotations

import json
import math

import pytest
from PIL import Image

from pipeline.cli import main
from pipeline.options import DEFAULTS, Options
from pipeline.stages import build
from pipeline.stages.vlm import VlmStage
from pipeline.stages.vlm_served import (
    ServedVlmStage,
    TokenLogprobs,
    label_logprobs_at,
    read_logprobs,
    resized_for_vlm,
    start_after_prefix,
)


def tok(text: str | bytes, *top: tuple[str | bytes, float]) -> TokenLogprobs:
    def b(x):
        return x if isinstance(x, bytes) else x.encode()
    return TokenLogprobs(b(text), tuple((b(t), lp) for t, lp in top))


def answer(*pieces: TokenLogprobs) -> list[TokenLogprobs]:
    return list(pieces)


def test_label_first_score_is_read_at_the_class_word():
    tokens = answer(tok("Кла"), tok("сс"), tok(":"),
                    tok(" ток", (" ток", -0.2), (" ней", -1.9), (" т", -3.0)),
                    tok("сич"), tok("ный"))
    start = start_after_prefix(tokens, "Класс:")
    assert start == 3
    logits, why = label_logprobs_at(tokens, start)
    assert why is None
    # the longest alternative that begins each word: " ток" (not " т") for toxic
    assert logits == {"toxic": -0.2, "non_toxic": -1.9}


def test_a_space_token_common_to_both_words_is_stepped_over():
    tokens = answer(tok("Класс:"), tok(" ", (" ", -0.01)), tok("ней", ("ней", -0.3), ("ток", -1.5)))
    logits, why = label_logprobs_at(tokens, start_after_prefix(tokens, "Класс:"))
    assert logits == {"toxic": -1.5, "non_toxic": -0.3}


def test_cyrillic_letters_split_across_byte_tokens_are_matched_by_bytes():
    t = " токсичный".encode()
    n = " нейтральный".encode()
    # byte-level BPE: " т" is b" \xd1\x82"; a token may end inside a two-byte letter
    tokens = answer(tok("Класс:"), tok(t[:2], (t[:2], -0.1), (n[:2], -2.5)))
    logits, why = label_logprobs_at(tokens, 1)
    assert logits == {"toxic": -0.1, "non_toxic": -2.5}, why


def test_a_label_word_outside_the_top_alternatives_gives_no_score_and_says_why():
    tokens = answer(tok("Класс:"), tok(" ток", (" ток", -0.01), (" то", -5.0)))
    logits, why = label_logprobs_at(tokens, 1)
    assert logits is None
    assert "нейтральный" in why and "top-2" in why


def test_no_boundary_after_the_prefix_or_another_start_gives_none():
    assert start_after_prefix(answer(tok("Клас"), tok("с: т"), tok("ок")), "Класс:") is None
    assert start_after_prefix(answer(tok("**"), tok("Класс:"), tok(" ток")), "Класс:") is None
    # leading whitespace of the answer is allowed (the stage strips the answer before parsing)
    assert start_after_prefix(answer(tok("\n"), tok("Класс:"), tok(" ток")), "Класс:") == 2


def test_explain_first_prefix_is_the_reasoning_then_the_class_line():
    from pipeline.stages.vlm import assistant_prefix
    raw = "Объяснение: мем высмеивает соседа.\nКласс: нейтральный"
    prefix = assistant_prefix("explain-first-v1", raw)
    assert prefix == "Объяснение: мем высмеивает соседа.\nКласс:"
    tokens = answer(tok("Объяснение: мем высмеивает соседа."), tok("\n"), tok("Класс:"),
                    tok(" ней", (" ней", -0.05), (" ток", -3.2)), tok("тральный"))
    logits, _ = label_logprobs_at(tokens, start_after_prefix(tokens, prefix))
    assert logits == {"toxic": -3.2, "non_toxic": -0.05}


def test_read_logprobs_takes_the_openai_shape_and_rejects_absence():
    choice = {"message": {"content": "Класс: ток"}, "logprobs": {"content": [
        {"token": "Класс:", "logprob": -0.1, "bytes": list("Класс:".encode()), "top_logprobs": []},
        {"token": " ток", "logprob": -0.2, "top_logprobs": [{"token": " ток", "logprob": -0.2},
                                                             {"token": " ней", "logprob": -1.7}]}]}}
    tokens = read_logprobs(choice)
    assert [t.data.decode() for t in tokens] == ["Класс:", " ток"]
    assert tokens[1].top == ((" ток".encode(), -0.2), (" ней".encode(), -1.7))
    assert read_logprobs({"message": {"content": "x"}}) is None
    assert read_logprobs({"message": {"content": "x"}, "logprobs": None}) is None


def test_images_are_resized_by_the_qwen_rule_of_the_transformers_backend():
    img = Image.new("RGB", (736, 736), "white")
    assert resized_for_vlm(img, 640 * 640).size == (616, 616)
    tall = resized_for_vlm(Image.new("RGB", (400, 1600), "white"), 640 * 640)
    assert tall.width % 28 == 0 and tall.height % 28 == 0 and tall.width * tall.height <= 640 * 640


def _served(**kw) -> ServedVlmStage:
    return build("vlm", Options(vlm_backend="openai", vlm_url="http://127.0.0.1:9/v1", vlm_model="qwen-q4", **kw))


def test_served_and_in_process_models_are_different_prediction_sets():
    served = _served()
    assert isinstance(served, ServedVlmStage)
    local = build("vlm", Options())
    assert isinstance(local, VlmStage)
    sv, lv = served.variants(), local.variants()
    assert [v.name for v in sv] == [v.name for v in lv]
    assert not {v.variant_id for v in sv} & {v.variant_id for v in lv}
    assert sv[0].model_id == "served:qwen-q4" and sv[0].config["backend"] == "openai"
    # settings that change answers change the key; the URL and the key do not
    assert _served(max_new_tokens=64).variants()[0].variant_id != sv[0].variant_id
    assert _served(vlm_prefill="continue").variants()[0].variant_id != sv[0].variant_id
    moved = build("vlm", Options(vlm_backend="openai", vlm_url="http://gpu-box:8000/v1", vlm_model="qwen-q4"))
    assert moved.variants()[0].variant_id == sv[0].variant_id
    assert _served(vlm_random_weights=True).variants()[0].is_smoke and not sv[0].is_smoke


def test_the_api_key_is_never_stored(tmp_path, monkeypatch, capsys):
    """The key is read from the environment; neither it nor the run's options hold it."""
    monkeypatch.setenv("MY_VLM_KEY", "sk-secret-123")
    memes = tmp_path / "memes"
    (memes / "Нейтрально").mkdir(parents=True)
    Image.new("RGB", (64, 64), "white").save(memes / "Нейтрально" / "a.png")
    db = tmp_path / "c.duckdb"
    code = main(["precompute", "--memes", str(memes), "--db", str(db), "--stages", "vlm",
                 "--vlm-backend", "openai", "--vlm-url", "http://127.0.0.1:9/v1", "--vlm-model", "m",
                 "--vlm-api-key-env", "MY_VLM_KEY", "--vlm-retries", "0"])
    assert code == 1                      # nothing listens on port 9: the stage cannot reach the server
    err = capsys.readouterr().err
    assert "does not answer" in err
    import duckdb
    with duckdb.connect(str(db), read_only=True) as con:
        dump = json.dumps(con.execute("SELECT * FROM runs").fetchall(), default=str)
        dump += json.dumps(con.execute("SELECT * FROM variants").fetchall(), default=str)
        dump += json.dumps(con.execute("SELECT * FROM failures").fetchall(), default=str)
    assert "sk-secret-123" not in dump
    assert "MY_VLM_KEY" in dump           # the variable's name is recorded (runs.args), its value never


@pytest.mark.parametrize("argv, message", [
    (["--vlm-backend", "openai"], "--vlm-url"),
    (["--vlm-backend", "openai", "--vlm-url", "localhost:8000"], "--vlm-url"),
    (["--vlm-backend", "openai", "--vlm-url", "http://x/v1", "--vlm-concurrency", "0"], "--vlm-concurrency"),
])
def test_bad_served_options_are_one_clear_line(tmp_path, capsys, argv, message):
    memes = tmp_path / "memes"
    (memes / "Нейтрально").mkdir(parents=True)
    Image.new("RGB", (64, 64), "white").save(memes / "Нейтрально" / "a.png")
    code = main(["precompute", "--memes", str(memes), "--db", str(tmp_path / "c.duckdb"), "--stages", "vlm", *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_score_from_logits_matches_the_transformers_backend():
    assert math.isclose(VlmStage.score_from_logits({"toxic": -0.2, "non_toxic": -1.9}),
                        1 / (1 + math.exp(-1.7)))
    assert DEFAULTS.vlm_backend == "transformers"


def test_an_opening_already_in_the_prefill_is_not_matched_again():
    """A tokenizer that splits the space off the word: the prefill holds `Класс: ` and the words are read
    without their space."""
    from pipeline.stages.vlm_served import COMMON_OPENING, offers_common_opening
    assert COMMON_OPENING == " "
    first = answer(tok("x", (" ", -0.1), ("x", -2.0)))
    assert offers_common_opening(first) and not offers_common_opening(answer(tok("x", ("x", -0.1))))
    tokens = answer(tok("т", ("т", -0.4), ("н", -1.2), (" т", -3.0)))
    assert label_logprobs_at(tokens, 0, consumed=" ") == ({"toxic": -0.4, "non_toxic": -1.2}, None)
    assert label_logprobs_at(tokens, 0)[0] is None          # without the opening, " т" vs nothing
    # an alternative that begins both words (the space) is not a label: no score from it
    spaced = answer(tok("x", (" ", -0.1), ("x", -2.0)))
    logits, why = label_logprobs_at(spaced, 0)
    assert logits is None and "токсичный and нейтральный" in why


def test_an_entry_of_several_tokens_gives_no_score():
    """llama-server sends a token that ends inside a UTF-8 character together with the next one, with the
    LAST token's alternatives: they are not the distribution where the entry starts."""
    t = " токсичный".encode()
    choice = {"message": {"content": ""}, "logprobs": {"content": [
        {"id": 7, "token": "Класс:", "bytes": list("Класс:".encode()), "logprob": -0.1,
         "top_logprobs": [{"id": 7, "token": "Класс:", "bytes": list("Класс:".encode()), "logprob": -0.1}]},
        {"id": 42, "token": " т", "bytes": list(t[:3]), "logprob": -0.5,          # b" \xd1" + b"\x82": joined
         "top_logprobs": [{"id": 42, "token": "", "bytes": [t[2]], "logprob": -0.5},
                          {"id": 43, "token": "", "bytes": [0xbd], "logprob": -1.0}]}]}}
    tokens = read_logprobs(choice)
    assert not tokens[0].joined and tokens[1].joined
    logits, why = label_logprobs_at(tokens, start_after_prefix(tokens, "Класс:"))
    assert logits is None and "joined" in why
    # the same entry without ids (another server): matched by its log-probability
    for e in choice["logprobs"]["content"]:
        e.pop("id")
        for a in e["top_logprobs"]:
            a.pop("id")
    assert read_logprobs(choice)[1].joined and not read_logprobs(choice)[0].joined
