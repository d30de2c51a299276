"""VlmStage on a tiny random-weight Qwen2.5-VL saved with save_pretrained and loaded back by the stage.

Every number the stage returns is checked against an independent computation with the same weights
(the processor on the joined text + model.generate), not against the stage's own helpers.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pipeline.devtools.tiny_qwen import build_tiny_qwen  # noqa: E402
from pipeline.hf import is_random_weights  # noqa: E402
from pipeline.stages.base import MemeInput, StageLoadError  # noqa: E402
from pipeline.stages.vlm import BNB_SKIP_MODULES, PARSER_VERSION, VlmStage, assistant_prefix, parse_answer  # noqa: E402
from pipeline.stages.vlm_prompts import DEFAULT_PROMPT_VERSIONS, get_prompt  # noqa: E402

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
MAX_PIXELS = 112 * 112
MAX_NEW = 20
SHARED_MEMES = Path(__file__).resolve().parents[1].parent / "shared" / "memes"


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory) -> Path:
    return build_tiny_qwen(tmp_path_factory.mktemp("models") / "qwen-smoke")


@pytest.fixture(scope="module")
def stage(tiny_qwen) -> VlmStage:
    st = VlmStage(model=str(tiny_qwen), device="cpu", max_pixels=MAX_PIXELS, max_new_tokens=MAX_NEW, precision="fp32")
    st.load()
    return st


def _draw_meme(path: Path, caption: str, size: tuple[int, int], color) -> Path:
    img = Image.new("RGB", size, color)
    draw = ImageDraw.Draw(img)
    draw.text((8, size[1] // 3), caption, font=ImageFont.truetype(FONT, 22), fill="white")
    img.save(path)
    return path


@pytest.fixture(scope="module")
def memes(tmp_path_factory) -> list[MemeInput]:
    d = tmp_path_factory.mktemp("memes")
    specs = [("КОГДА ПОНЕДЕЛЬНИК", (240, 180), (180, 40, 40)), ("ТЫ НИЧТОЖЕСТВО", (200, 260), (30, 60, 160))]
    out = []
    for i, (caption, size, color) in enumerate(specs):
        p = _draw_meme(d / f"meme{i}.png", caption, size, color)
        out.append(MemeInput(meme_id=f"m{i}", path=p, rel_path=p.name, label=None, ocr_text=caption))
    return out


# --------------------------------------------------------------------------- independent references
def _chat(processor, prompt_text: str) -> str:
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt_text}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def _inputs(stage, image, text: str):
    return stage.processor(text=[text], images=[image], return_tensors="pt",
                           size={"shortest_edge": 56 * 56, "longest_edge": MAX_PIXELS})


def _reference_generate(stage, image, prompt_text: str, max_new: int) -> tuple[str, int]:
    inputs = _inputs(stage, image, _chat(stage.processor, prompt_text))
    with torch.no_grad():
        out = stage.model.generate(**inputs, max_new_tokens=max_new, do_sample=False, repetition_penalty=1.0)
    new = out[0, inputs["input_ids"].shape[1]:]
    return stage.processor.tokenizer.decode(new, skip_special_tokens=True).strip(), len(new)


def _reference_logprobs(stage, image, prompt_text: str, assistant_text: str) -> dict[str, float]:
    """First generated step after chat + assistant text + the common prefix of the two label words."""
    tok = stage.processor.tokenizer
    t_ids = tok.encode(" токсичный", add_special_tokens=False)
    n_ids = tok.encode(" нейтральный", add_special_tokens=False)
    k = next(i for i, (a, b) in enumerate(zip(t_ids, n_ids)) if a != b)
    text = _chat(stage.processor, prompt_text) + assistant_text + tok.decode(t_ids[:k])
    inputs = _inputs(stage, image, text)
    assert inputs["input_ids"][0, -k:].tolist() == t_ids[:k]          # the prefix tokens align
    with torch.no_grad():
        out = stage.model.generate(**inputs, max_new_tokens=1, do_sample=False, output_logits=True,
                                   return_dict_in_generate=True)
    logp = torch.log_softmax(out.logits[0][0].float(), dim=-1)
    return {"toxic": logp[t_ids[k]].item(), "non_toxic": logp[n_ids[k]].item()}


# --------------------------------------------------------------------------- the checkpoint
def test_tiny_qwen_checkpoint_is_deterministic_and_handles_cyrillic(tiny_qwen, tmp_path, stage):
    again = build_tiny_qwen(tmp_path / "qwen-again")
    for name in ("tokenizer.json", "model.safetensors"):
        assert (again / name).read_bytes() == (tiny_qwen / name).read_bytes(), name
    assert is_random_weights(str(tiny_qwen)) and type(stage.model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    tok = stage.processor.tokenizer
    text = "Класс: токсичный — Ёжик, 100%! ÿ"
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == text
    assert len(tok.encode("нейтральный", add_special_tokens=False)) == len("нейтральный")   # a token per letter


# --------------------------------------------------------------------------- variants
def test_variants_are_cheap_and_describe_the_config(tiny_qwen):
    st = VlmStage(model=str(tiny_qwen), device="cpu", max_pixels=MAX_PIXELS, max_new_tokens=MAX_NEW, precision="fp32")
    vs = st.variants()
    assert st.model is None                                            # no loading in variants()
    assert [v.name for v in vs] == list(DEFAULT_PROMPT_VERSIONS) == ["label-first-v1", "explain-first-v1"]
    assert all(v.is_smoke and v.stage == "vlm" and v.model_id == str(tiny_qwen) for v in vs)
    assert vs[0].variant_id != vs[1].variant_id
    cfg = vs[0].config
    assert cfg["prompt"] == get_prompt("label-first-v1").template and cfg["max_pixels"] == MAX_PIXELS
    assert cfg["max_new_tokens"] == MAX_NEW and cfg["quantize"] == "none" and cfg["dtype"] == "float32"
    other = VlmStage(model=str(tiny_qwen), device="cpu", max_pixels=2 * MAX_PIXELS, precision="fp32").variants()[0]
    assert other.variant_id != vs[0].variant_id
    assert not VlmStage().variants()[0].is_smoke                       # the real model id: results count
    assert VlmStage().variants()[0].config["max_new_tokens"] <= 256
    assert not st.needs_ocr_text
    assert VlmStage(prompt_versions=["label-first-ocr-v1"]).needs_ocr_text
    with pytest.raises(ValueError, match="unknown VLM prompt version"):
        VlmStage(prompt_versions=["nope-v0"])


# --------------------------------------------------------------------------- process
@pytest.mark.parametrize("version", DEFAULT_PROMPT_VERSIONS)
def test_process_rows_match_independent_computation(stage, memes, version):
    variant = next(v for v in stage.variants() if v.name == version)
    rows = stage.process(memes, variant)
    assert len(rows) == len(memes)
    tok = stage.processor.tokenizer
    for meme, row in zip(memes, rows):
        assert isinstance(row, dict), row
        assert set(row) == {"label", "explanation", "raw_answer", "prompt", "score", "logits", "label_mass",
                            "parser_version"}
        assert row["parser_version"] == PARSER_VERSION
        assert row["prompt"] == get_prompt(version).render() and "Класс: токсичный" in row["prompt"]
        raw = row["raw_answer"]
        assert isinstance(raw, str)
        # greedy answer, bounded by max_new_tokens, equal to a plain model.generate on the same inputs
        ref_text, n_new = _reference_generate(stage, meme.image, row["prompt"], MAX_NEW)
        assert raw == ref_text and n_new <= MAX_NEW
        assert len(tok.encode(raw, add_special_tokens=False)) <= MAX_NEW
        parsed = parse_answer(raw, get_prompt(version).answer_order)
        assert row["label"] == parsed.label and row["explanation"] == parsed.explanation
        # score = p(toxic) renormalised over the two continuations = softmax of the two logits
        lt, ln = row["logits"]["toxic"], row["logits"]["non_toxic"]
        assert lt < 0 and ln < 0                                       # full-vocabulary log-probabilities
        assert 0.0 <= row["score"] <= 1.0
        assert row["score"] == pytest.approx(math.exp(lt) / (math.exp(lt) + math.exp(ln)), abs=1e-9)
        assert row["label_mass"] == pytest.approx(math.exp(lt) + math.exp(ln), rel=1e-12)
        assert 0.0 < row["label_mass"] <= 1.0
        ref = _reference_logprobs(stage, meme.image, row["prompt"], assistant_prefix(version, raw))
        assert lt == pytest.approx(ref["toxic"], abs=1e-4) and ln == pytest.approx(ref["non_toxic"], abs=1e-4)
    # the two memes are different inputs: their scores differ
    assert rows[0]["score"] != rows[1]["score"]


def test_explain_first_score_is_read_after_the_models_reasoning(stage, memes, monkeypatch):
    answer = "Объяснение: подпись унижает человека.\n**Класс:** токсичный"
    monkeypatch.setattr(stage, "_generate", lambda inputs, prefix=None: (answer, [], []))   # tokens unknown: forward pass
    by_name = {v.name: v for v in stage.variants()}
    meme = memes[1]
    label_first = stage.process([meme], by_name["label-first-v1"])[0]
    explain_first = stage.process([meme], by_name["explain-first-v1"])[0]
    for row in (label_first, explain_first):
        assert row["label"] == "toxic" and row["explanation"] == "подпись унижает человека."
    ref = _reference_logprobs(stage, meme.image, explain_first["prompt"],
                              "Объяснение: подпись унижает человека.\nКласс:")
    assert explain_first["logits"]["toxic"] == pytest.approx(ref["toxic"], abs=1e-4)
    ref_lf = _reference_logprobs(stage, meme.image, label_first["prompt"], "Класс:")
    assert label_first["logits"]["toxic"] == pytest.approx(ref_lf["toxic"], abs=1e-4)
    assert explain_first["logits"] != label_first["logits"]


def test_score_is_read_off_the_generation_when_it_wrote_the_scoring_tokens(stage, memes, monkeypatch):
    """An answer that starts with exactly the scoring tokens (a label-first `Класс: ...`) needs no second
    forward pass: the generation's own step has the same distribution. This random model never writes
    `Класс:`, so the scoring prefix is made what it did write, with no common label tokens."""
    import pipeline.stages.vlm as vlm
    variant = next(v for v in stage.variants() if v.name == "label-first-v1")
    meme = memes[0]
    raw, new_tokens, steps = stage._generate(stage.encode(meme.image, get_prompt(variant.name).render()))
    assert len(steps) == len(new_tokens) and raw
    tok = stage.processor.tokenizer
    k = next(k for k in range(len(new_tokens) - 1, 0, -1)       # a prefix that re-encodes to the same tokens
             if tok.encode(tok.decode(new_tokens[:k]), add_special_tokens=False) == new_tokens[:k])
    prefix = tok.decode(new_tokens[:k])
    monkeypatch.setattr(vlm, "assistant_prefix", lambda version, answer: prefix)
    monkeypatch.setattr(stage, "_label_ids", ([], *stage._label_ids[1:]))

    def no_forward(*args, **kwargs):
        raise AssertionError("a second forward pass ran although the generation had the score")
    monkeypatch.setattr(stage, "label_logprobs", no_forward)
    row = stage.process([meme], variant)[0]
    assert isinstance(row, dict), row
    inputs = _inputs(stage, meme.image, _chat(stage.processor, row["prompt"]) + prefix)
    assert inputs["input_ids"][0, -k:].tolist() == new_tokens[:k]     # the reference scores the same tokens
    with torch.no_grad():
        logp = torch.log_softmax(stage.model(**inputs).logits[0, -1].float(), dim=-1)
    _, toxic_id, neutral_id = stage._label_ids
    assert row["logits"]["toxic"] == pytest.approx(logp[toxic_id].item(), abs=1e-4)
    assert row["logits"]["non_toxic"] == pytest.approx(logp[neutral_id].item(), abs=1e-4)
    # one token different and the generation no longer matches: the forward pass is needed
    assert stage.logprobs_from_generation([new_tokens[0] + 1] + new_tokens[1:], steps, prefix) is None
    assert stage.logprobs_from_generation(new_tokens[:k], steps[:k], prefix) is None     # ended before the step


def test_the_prompts_of_a_meme_share_one_image_encoding_and_prefix(stage, memes):
    """Both default prompts start with the same image and instructions: with reuse_prefix the vision tower
    runs once per meme (not once per prompt and pass) and every answer and score equals the one computed
    from scratch (fails if the shared KV cache or the positions after the image were wrong)."""
    assert stage.reuse_prefix and stage.shares_meme_across_variants
    variants = stage.variants()
    assert len(variants) == 2
    calls = []
    hook = stage.model.model.visual.register_forward_hook(lambda *a: calls.append(1))
    try:
        shared = stage.process_variants(memes, variants)
        assert len(calls) == len(memes)                        # once per meme, for both prompts and scores
        calls.clear()
        alone = {v.variant_id: stage.process(memes, v) for v in variants}     # one prompt at a time: no reuse
        assert len(calls) >= 2 * len(memes)
    finally:
        hook.remove()
    for v in variants:
        for a, b in zip(shared[v.variant_id], alone[v.variant_id]):
            assert isinstance(a, dict) and isinstance(b, dict), (a, b)
            assert a["raw_answer"] == b["raw_answer"] and a["label"] == b["label"]
            for k in ("toxic", "non_toxic"):
                assert a["logits"][k] == pytest.approx(b["logits"][k], abs=1e-4)
    prefix = stage.shared_prefix([stage.encode(memes[0].image, get_prompt(v.name).render()) for v in variants])
    n = [stage.encode(memes[0].image, get_prompt(v.name).render())["input_ids"].shape[1] for v in variants]
    assert prefix is not None and 0 < prefix.length < min(n)
    assert prefix.length > 0.5 * min(n)               # image + the shared definitions: most of the prompt


def test_batched_generation_equals_one_meme_at_a_time(tiny_qwen, memes, tmp_path):
    """--vlm-batch-size > 1 (the GPU path): memes grouped by visual-token count, each group one left-padded
    generate call. Same answers and scores as one meme at a time (fails if padding leaked into attention or
    positions, or rows and steps were mixed up). The OCR prompt's texts differ in length: rows are padded."""
    extra = []
    for i, (caption, size) in enumerate([("ОДИН", (240, 180)), ("ДВА ТРИ", (240, 180)), ("ЧЕТЫРЕ", (240, 180))]):
        p = _draw_meme(tmp_path / f"b{i}.png", caption, size, (20 + 60 * i, 90, 40))
        extra.append(MemeInput(meme_id=f"b{i}", path=p, rel_path=p.name, label=None, ocr_text=caption * (i + 1)))
    batch = [memes[0], *extra, memes[1]]                 # two visual-token counts among them
    st = VlmStage(model=str(tiny_qwen), device="cpu", max_pixels=4 * MAX_PIXELS, max_new_tokens=MAX_NEW,
                  precision="fp32", batch_size=4, prompt_versions=[*DEFAULT_PROMPT_VERSIONS, "label-first-ocr-v1"])
    st.load()
    assert st.batch_size == 4
    counts = {st.visual_tokens(m.image) for m in batch}
    assert len(counts) == 2
    calls = []
    original = st.generate_batch
    st.generate_batch = lambda images, texts: calls.append(len(images)) or original(images, texts)
    variants = st.variants()
    batched = st.process_variants(batch, variants)
    assert sorted(calls) == sorted([4, 1] * len(variants))   # one call per (count, prompt)
    for v in variants:
        for meme, row in zip(batch, batched[v.variant_id]):
            one = st.process_meme(meme, [v])[v.variant_id]
            assert isinstance(row, dict) and isinstance(one, dict), (row, one)
            assert row["raw_answer"] == one["raw_answer"] and row["label"] == one["label"]
            for k in ("toxic", "non_toxic"):
                assert row["logits"][k] == pytest.approx(one["logits"][k], abs=1e-4)
    auto = VlmStage(model=str(tiny_qwen), device="cpu", max_pixels=MAX_PIXELS, precision="fp32")
    auto.load()
    assert auto.batch_size == 1                          # auto on CPU: one meme, prompts share its prefix


def test_ocr_prompt_version_carries_the_ocr_text(tiny_qwen, memes):
    st = VlmStage(model=str(tiny_qwen), prompt_versions=["label-first-ocr-v1"], device="cpu",
                  max_pixels=MAX_PIXELS, max_new_tokens=4, precision="fp32")
    row = st.process([memes[0]], st.variants()[0])[0]          # process() loads on first use
    assert "«КОГДА ПОНЕДЕЛЬНИК»" in row["prompt"]
    assert "текст распознать не удалось" in get_prompt("label-first-ocr-v1").render(None)


def test_greedy_decoding_ignores_checkpoint_sampling_settings(tiny_qwen, memes):
    steps = 16
    st = VlmStage(model=str(tiny_qwen), device="cpu", max_pixels=MAX_PIXELS, max_new_tokens=steps, precision="fp32")
    st.load()
    gc = st.model.generation_config     # what Qwen2.5-VL ships, exaggerated
    gc.do_sample, gc.temperature, gc.top_k, gc.top_p, gc.repetition_penalty = True, 0.1, 1, 0.001, 3.0
    inputs = st.encode(memes[0].image, "Привет")
    answers = {st.generate(inputs) for _ in range(2)}
    # a hand-written greedy loop (argmax of a full forward pass per step)
    cur = {k: v for k, v in inputs.items()}
    out = []
    with torch.no_grad():
        for _ in range(steps):
            nxt = int(st.model(**cur).logits[0, -1].argmax())
            out.append(nxt)
            if nxt == st.processor.tokenizer.convert_tokens_to_ids("<|im_end|>"):
                break
            for key, fill in (("input_ids", nxt), ("attention_mask", 1), ("mm_token_type_ids", 0)):
                cur[key] = torch.cat([cur[key], torch.full((1, 1), fill, dtype=cur[key].dtype)], dim=1)
    greedy = st.processor.tokenizer.decode(out, skip_special_tokens=True).strip()
    assert answers == {greedy}
    # the checkpoint's settings would have changed the answer: the check above can fail
    with torch.no_grad():
        penalised = st.model.generate(**inputs, max_new_tokens=steps, do_sample=False, temperature=None, top_k=None,
                                      top_p=None)
    assert st.processor.tokenizer.decode(penalised[0, inputs["input_ids"].shape[1]:],
                                         skip_special_tokens=True).strip() != greedy


def test_max_pixels_bounds_the_image_tokens(tiny_qwen, memes):
    counts = {}
    for px in (56 * 56 * 2, 224 * 224):
        st = VlmStage(model=str(tiny_qwen), device="cpu", max_pixels=px, precision="fp32")
        st.load()
        inputs = st.encode(memes[1].image, "Привет")
        n = int((inputs["input_ids"] == st.model.config.image_token_id).sum())
        assert 0 < n and n * 28 * 28 <= px                            # one token per 28x28 pixels
        counts[px] = n
    assert counts[56 * 56 * 2] < counts[224 * 224]


def test_one_bad_meme_fails_in_its_slot(stage, memes, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image at all")
    bad = MemeInput(meme_id="bad", path=broken, rel_path="broken.png", label=None)
    rows = stage.process([bad, memes[0]], stage.variants()[0])
    assert isinstance(rows[0], Exception) and isinstance(rows[1], dict)


def test_precision_auto_loads_the_dtype_the_variant_records(tiny_qwen, memes):
    st = VlmStage(model=str(tiny_qwen), device="cpu", max_pixels=MAX_PIXELS, max_new_tokens=4)
    dtype_name = st.variants()[0].config["dtype"]
    st.load()
    assert str(st.model.dtype) == f"torch.{dtype_name}"
    row = st.process([memes[0]], st.variants()[0])[0]
    assert 0.0 <= row["score"] <= 1.0


# --------------------------------------------------------------------------- load errors
def test_hub_id_offline_fails_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(StageLoadError, match="HF_HUB_OFFLINE"):
        VlmStage(model="vlmemes-test/not-a-cached-model", device="cpu").load()
    assert time.monotonic() - start < 5


def test_folder_without_checkpoint_fails(tmp_path):
    with pytest.raises(StageLoadError):
        VlmStage(model=str(tmp_path), device="cpu").load()


def test_quantize_on_cpu_is_refused(tiny_qwen):
    with pytest.raises(StageLoadError, match="CUDA"):
        VlmStage(model=str(tiny_qwen), device="cpu", quantize="4bit").load()
    if not torch.cuda.is_available():
        with pytest.raises(StageLoadError, match="CUDA"):
            VlmStage(model=str(tiny_qwen), device="auto", quantize="8bit").load()


def test_quantize_without_bitsandbytes_says_so(tiny_qwen, monkeypatch):
    pytest.importorskip("torch")
    try:
        import bitsandbytes  # noqa: F401
        pytest.skip("bitsandbytes is installed here")
    except ImportError:
        pass
    monkeypatch.setattr("pipeline.stages.vlm.pick_device", lambda device: "cuda")
    monkeypatch.setattr("pipeline.stages.vlm.pick_dtype", lambda device, precision: torch.bfloat16)
    with pytest.raises(StageLoadError, match="bitsandbytes"):
        VlmStage(model=str(tiny_qwen), device="cuda", quantize="4bit").load()


def test_bnb_skip_modules_keep_vision_tower_and_head_unquantised(stage):
    from transformers.quantizers.quantizers_utils import should_convert_module
    linears = [name for name, m in stage.model.named_modules() if isinstance(m, torch.nn.Linear)]
    vision = [n for n in linears if ".visual." in f".{n}"]
    text = [n for n in linears if ".language_model." in f".{n}"]
    assert vision and text and "lm_head" in linears
    assert not any(should_convert_module(n, BNB_SKIP_MODULES) for n in vision + ["lm_head"])
    assert all(should_convert_module(n, BNB_SKIP_MODULES) for n in text)


def test_bad_options_are_refused_early():
    for kwargs in (dict(quantize="2bit"), dict(device="tpu"), dict(precision="int4"),
                   dict(max_new_tokens=0), dict(max_new_tokens=10_000), dict(max_pixels=100)):
        with pytest.raises(ValueError):
            VlmStage(**kwargs)


@pytest.mark.skipif(not SHARED_MEMES.is_dir(), reason="the labelled memes are not on this machine")
def test_real_meme_stays_within_the_pixel_budget(stage):
    path = next(p for p in sorted(SHARED_MEMES.rglob("*")) if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    meme = MemeInput(meme_id="real", path=path, rel_path=path.name, label=None)
    inputs = stage.encode(meme.image, "Привет")
    n = int((inputs["input_ids"] == stage.model.config.image_token_id).sum())
    assert 0 < n * 28 * 28 <= MAX_PIXELS


# --------------------------------------------------------------------------- cached answers: re-parse, label_mass
def _vlm_precompute(db, memes_dir, models, *extra):
    from pipeline.cli import main
    return main(["precompute", "--memes", str(memes_dir), "--db", str(db), "--stages", "vlm",
                 "--vlm-model", str(models["qwen"]), "--max-new-tokens", "6", "--max-pixels", str(112 * 112),
                 "--precision", "fp32", "--device", "cpu", "--limit", "3", *extra])


# (raw answer, prompt version, the label parser v1 stored): v2 reads four of them differently (v1 and v2
# agree on the two explain-first answers whose last class line decides)
OLD_ANSWERS = [
    ("Класс: не-токсичный\nОбъяснение: обычная шутка.", "label-first-v1", "toxic"),
    ("Я не думаю, что мем токсичный: это шутка.", "label-first-v1", "toxic"),
    ("Класс: токсичный, хотя на первый взгляд нейтральный\nОбъяснение: унижение.", "label-first-v1", None),
    ("Объяснение: шутка.\nКласс: нейтральный\nНо подпись унижает.\nКласс: токсичный", "explain-first-v1",
     "toxic"),
    ("Объяснение: подпись оскорбляет.\nКласс: токсичный", "explain-first-v1", "toxic"),
    ("Нельзя сказать, что мем нейтральный: он унижает.", "explain-first-v1", "non_toxic"),
]


def test_cache_of_an_old_parser_is_reparsed_without_generating(tmp_path, synthetic_memes, tiny_models, monkeypatch,
                                                              capsys):
    """A cache whose VLM rows were read by parser v1 (and written before label_mass / parser_version
    existed): a rerun re-parses the stored raw answers and fills label_mass from the stored logits,
    loads no model, generates nothing, keeps the variant ids, and stores metrics of the new labels."""
    import json as _json

    import duckdb

    from pipeline import summary
    from pipeline.stages.vlm_answer import label_mass
    from pipeline.store import Store
    db = tmp_path / "old.duckdb"
    assert _vlm_precompute(db, synthetic_memes, tiny_models) == 0
    store = Store(db)
    rows = store.query("SELECT meme_id, variant_id, prompt_version, label_mass, parser_version, logits "
                       "FROM predictions WHERE stage = 'vlm' ORDER BY prompt_version DESC, meme_id")
    assert len(rows) == 6 and all(r[4] == PARSER_VERSION for r in rows)
    assert all(r[3] == pytest.approx(label_mass(r[5])) and r[3] > 0 for r in rows)     # stored for new rows
    variants_before = sorted(store.query("SELECT variant_id, config_hash FROM variants"))
    # simulate parser v1: its answers and labels, and a file from before the new columns
    con = duckdb.connect(str(db))
    for (meme_id, variant_id, version, *_), (raw, answer_version, old_label) in zip(
            sorted(rows, key=lambda r: (r[2] != "label-first-v1", r[0])), OLD_ANSWERS):
        assert version == answer_version
        con.execute("UPDATE predictions SET raw_answer = ?, label = ?, explanation = 'old' "
                    "WHERE meme_id = ? AND variant_id = ?", [raw, old_label, meme_id, variant_id])
    con.execute("ALTER TABLE predictions DROP COLUMN label_mass")
    con.execute("ALTER TABLE predictions DROP COLUMN parser_version")
    con.execute("ALTER TABLE predictions DROP COLUMN score_note")
    con.close()
    fingerprint_before = _fingerprint(store)

    def no_model(*args, **kwargs):
        raise AssertionError("the VLM was loaded / generated although every answer is cached")
    monkeypatch.setattr(VlmStage, "load", no_model)
    monkeypatch.setattr(VlmStage, "_generate", no_model)
    capsys.readouterr()
    assert _vlm_precompute(db, synthetic_memes, tiny_models) == 0
    out = capsys.readouterr().out
    assert "re-parsed 6 stored VLM answers with parser v2: 4 labels changed, 6 explanations changed" in out, out
    assert "label_mass filled in for 6 stored VLM scores" in out
    assert "all 6 results cached, nothing to compute" in out
    after = {(r[0], r[1]): r[2:] for r in store.query(
        "SELECT meme_id, variant_id, raw_answer, prompt_version, label, explanation, label_mass, parser_version, "
        "logits FROM predictions WHERE stage = 'vlm'")}
    assert len(after) == 6
    for raw, version, label, explanation, mass, parser_version, logits in after.values():
        expected = parse_answer(raw, get_prompt(version).answer_order)
        assert (label, explanation, parser_version) == (expected.label, expected.explanation, PARSER_VERSION)
        assert mass == pytest.approx(label_mass(logits))
    labels = {raw: label for raw, _, label, *_ in after.values()}
    assert [labels[raw] for raw, _, _ in OLD_ANSWERS] == ["non_toxic", "non_toxic", "toxic", "toxic", "toxic", "toxic"]
    assert sorted(store.query("SELECT variant_id, config_hash FROM variants")) == variants_before
    counts = _json.loads(store.query("SELECT counts FROM runs ORDER BY run_id DESC LIMIT 1")[0][0])
    assert counts["vlm"]["refreshed"] == dict(reparsed=6, labels_changed=4, explanations_changed=6, mass_filled=6)
    assert counts["vlm"]["done"] == 0 and counts["vlm"]["cached"] == 6
    # the labels changed, so the stored metrics were recomputed, and describe the cache as it is now
    with store.reader() as con:
        assert summary.stored_fingerprint(con) == summary.fingerprint(con) != fingerprint_before
        stored_run = con.execute("SELECT DISTINCT run_id FROM summaries").fetchall()
        live = summary.metrics_summary(con, False)
        stored = {v: _json.loads(c) for v, c in con.execute(
            "SELECT variant_id, classification FROM summaries WHERE NOT include_retired").fetchall()}
    assert stored_run == [(2,)]
    assert stored == _json.loads(_json.dumps({v: m["classification"] for v, m in live.items()}))

    # a third run finds everything current: nothing re-parsed, nothing printed about it
    capsys.readouterr()
    assert _vlm_precompute(db, synthetic_memes, tiny_models) == 0
    out = capsys.readouterr().out
    assert "re-parsed" not in out and "label_mass filled" not in out
    counts = _json.loads(store.query("SELECT counts FROM runs ORDER BY run_id DESC LIMIT 1")[0][0])
    assert counts["vlm"]["refreshed"]["reparsed"] == 0


def _fingerprint(store) -> str:
    from pipeline import summary
    with store.reader() as con:
        return summary.fingerprint(con)


def test_store_migration_adds_the_new_columns_once(tmp_path):
    import duckdb

    from pipeline.store import Store
    db = tmp_path / "m.duckdb"
    Store(db)
    con = duckdb.connect(str(db))
    con.execute("ALTER TABLE predictions DROP COLUMN label_mass")
    con.execute("ALTER TABLE predictions DROP COLUMN parser_version")
    con.execute("ALTER TABLE predictions DROP COLUMN score_note")
    con.execute("ALTER TABLE predictions DROP COLUMN meme_key")     # a cache from before the integer key
    con.close()
    for _ in range(2):                                   # idempotent
        store = Store(db)
        cols = [r[0] for r in store.query("SELECT column_name FROM information_schema.columns "
                                          "WHERE table_name = 'predictions' ORDER BY ordinal_position")]
        assert cols[-4:] == ["label_mass", "parser_version", "score_note", "meme_key"]
        assert cols.count("label_mass") == 1 and cols.count("meme_key") == 1
    fresh = Store(tmp_path / "fresh.duckdb")
    assert [r[0] for r in fresh.query("SELECT column_name FROM information_schema.columns WHERE table_name = "
                                      "'predictions' ORDER BY ordinal_position")] == cols   # same column order
