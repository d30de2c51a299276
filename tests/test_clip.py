"""The CLIP zero-shot stage on tiny random CLIP and SigLIP checkpoints (saved and loaded back with from_pretrained).

Scores are checked against the model's own forward pass (logits_per_image), computed here on a
separate copy of the checkpoint, not against the stage's helper functions.
"""
from __future__ import annotations

import json
import time

import pytest
import torch
from PIL import Image
from tiny_model_fixtures import broken_input, one_torch_thread, padded_square, synthetic_inputs  # noqa: F401 (autouse)
from transformers import AutoModel, AutoProcessor

from pipeline.config import NON_TOXIC, TOXIC
from pipeline.hf import RANDOM_WEIGHTS_MARKER, is_random_weights
from pipeline.stages.base import StageLoadError
from pipeline.stages.clip import ClipStage, encode_texts, load_clip
from pipeline.stages.clip_prompts import (
    DEFAULT_PROMPT_SETS,
    ELLIPSIS,
    PROMPT_SETS,
    fit_text,
    get_prompt_sets,
    language_note,
    normalize_ocr,
    views_of,
)

KINDS = ("clip", "siglip", "siglip2")
LONG_CYRILLIC = ("Когда пришёл на работу в понедельник, а там опять совещание про совещания. " * 30)[:2000]


@pytest.fixture(scope="module")
def models(tiny_models, tmp_path_factory) -> dict:
    """The session's tiny CLIP/SigLIP plus a tiny SigLIP2 (variable patch grid) built here."""
    from pipeline.devtools.tiny_clip import build_tiny_siglip2
    return dict(tiny_models, siglip2=build_tiny_siglip2(tmp_path_factory.mktemp("clip") / "tiny-random-siglip2"))


def _parse_prompt(prompt: str) -> tuple[str, str]:
    lines = prompt.split("\n")
    assert len(lines) == 2 and lines[0].startswith(f"{TOXIC}: ") and lines[1].startswith(f"{NON_TOXIC}: ")
    return lines[0][len(TOXIC) + 2:], lines[1][len(NON_TOXIC) + 2:]


@pytest.fixture(scope="module")
def reference():
    """A second, independent copy of a checkpoint: (image, [toxic, neutral] texts, view) -> logits_per_image."""
    loaded = {}

    def logits(folder, image, texts, view="center-crop") -> torch.Tensor:
        if folder not in loaded:
            loaded[folder] = AutoModel.from_pretrained(folder).eval(), AutoProcessor.from_pretrained(folder)
        model, proc = loaded[folder]
        sigmoid = getattr(model, "logit_bias", None) is not None
        pad = dict(padding="max_length", max_length=model.config.text_config.max_position_embeddings) \
            if sigmoid else dict(padding=True)
        if view == "pad-square":
            image = padded_square(image, proc.image_processor.image_mean)
        text = proc.tokenizer(list(texts), return_tensors="pt", truncation=True, **pad)
        if sigmoid:        # SigLIP was trained without a text attention mask: input_ids only
            text = {"input_ids": text["input_ids"]}
        # the image processor as saved (Siglip2Processor.__call__ would impose its own patch defaults)
        inputs = dict(proc.image_processor(images=[image], return_tensors="pt"), **text)
        with torch.no_grad():
            return model(**inputs).logits_per_image[0]
    return logits


@pytest.mark.parametrize("kind", KINDS)
def test_tiny_checkpoint_is_random_and_loads_back(models, kind):
    folder = models[kind]
    assert is_random_weights(str(folder))
    assert RANDOM_WEIGHTS_MARKER in (folder / "config.json").read_text()
    model = AutoModel.from_pretrained(folder)
    proc = AutoProcessor.from_pretrained(folder)
    assert type(model).__name__ == {"clip": "CLIPModel", "siglip": "SiglipModel", "siglip2": "Siglip2Model"}[kind]
    if kind != "siglip2":   # NaFlex has no fixed image size
        assert 32 <= model.config.vision_config.image_size <= 64
    text = "токсичный мем с текстом: «Ёжик в тумане»"
    ids = proc.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert proc.tokenizer.unk_token_id not in ids                      # Cyrillic is byte-level, never <unk>
    decoded = proc.tokenizer.decode(ids, skip_special_tokens=True)
    assert "ёжик" in decoded.lower() and "мем" in decoded


@pytest.mark.parametrize("kind", KINDS)
def test_scores_are_the_models_own_logits(models, tmp_path, reference, kind):
    stage = ClipStage(str(models[kind]), precision="fp32", batch_size=4, prompt_sets="all")
    memes = synthetic_inputs(tmp_path, 3)
    variants = stage.variants()
    names = ["ru-ocr-v1", "ru-v1", "en-ocr-v1", "en-v1"]
    assert [v.name for v in variants] == [n + "+pad" for n in names] + names
    assert all(v.is_smoke and v.config["precision"] == "fp32" for v in variants)
    assert variants[0].config["templates"][TOXIC] == "токсичный мем с текстом: «{text}»"
    stage.load()
    for v in variants:
        for meme, row in zip(memes, stage.process(memes, v)):
            assert set(row) == {"label", "score", "logits", "prompt"}
            assert 0.0 <= row["score"] <= 1.0
            lt, ln = row["logits"][TOXIC], row["logits"][NON_TOXIC]
            if kind == "clip":      # softmax over the two logits
                expected = torch.softmax(torch.tensor([lt, ln]), 0)[0].item()
            else:                   # sigmoid head: renormalised sigmoids
                expected = torch.sigmoid(torch.tensor(lt)).item() / (
                    torch.sigmoid(torch.tensor(lt)).item() + torch.sigmoid(torch.tensor(ln)).item())
            assert row["score"] == pytest.approx(expected, abs=1e-6)
            assert row["label"] == (TOXIC if row["score"] >= 0.5 else NON_TOXIC)
            ref = reference(models[kind], meme.image, _parse_prompt(row["prompt"]), v.config.get("view", "center-crop"))
            assert [lt, ln] == pytest.approx(ref.tolist(), abs=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_prompt_sets_differ_and_fold_in_the_ocr_text(models, tmp_path, kind):
    stage = ClipStage(str(models[kind]), precision="fp32")
    meme = synthetic_inputs(tmp_path, 1)[0]
    rows = {v.name: stage.process([meme], v)[0] for v in stage.variants()}
    prompts = {name: _parse_prompt(r["prompt"]) for name, r in rows.items()}
    assert len({p for p in prompts.values()}) == 4
    assert prompts["ru-v1+pad"] == ("токсичный мем", "нейтральный мем")
    assert prompts["en-v1+pad"] == ("a toxic meme", "a neutral meme")
    caption = normalize_ocr(meme.ocr_text)
    for name in ("ru-ocr-v1+pad", "en-ocr-v1+pad"):
        assert all(caption in p for p in prompts[name]), prompts[name]
    assert prompts["ru-ocr-v1+pad"][0] == f"токсичный мем с текстом: «{caption}»"
    assert len({round(r["score"], 7) for r in rows.values()}) == 4      # different texts, different scores


@pytest.mark.parametrize("kind", KINDS)
def test_long_cyrillic_ocr_text_is_cut_to_the_token_limit(models, tmp_path, kind):
    stage = ClipStage(str(models[kind]), precision="fp32")
    meme = synthetic_inputs(tmp_path, 1)[0]
    meme.ocr_text = LONG_CYRILLIC
    stage.load()
    tokenizer = stage._processor.tokenizer
    limit = stage._model.config.text_config.max_position_embeddings
    for v in stage.variants():
        if not PROMPT_SETS[v.name].uses_ocr:
            continue
        row = stage.process([meme], v)[0]
        assert isinstance(row, dict), row
        for text in _parse_prompt(row["prompt"]):
            assert len(tokenizer(text)["input_ids"]) <= limit
            cut = text.split("«" if v.name.startswith("ru") else '"', 1)[1].rstrip('»"')
            assert cut.endswith(ELLIPSIS) and len(cut) > 5
            assert LONG_CYRILLIC.startswith(cut[:-1].rstrip())          # the start of the OCR text


@pytest.mark.parametrize("ocr_text", [None, "", "  \n "])
def test_meme_without_ocr_text_gets_the_plain_pair(tiny_models, tmp_path, ocr_text):
    stage = ClipStage(str(tiny_models["clip"]), precision="fp32")
    meme = synthetic_inputs(tmp_path, 1, with_ocr=False)[0]
    meme.ocr_text = ocr_text
    by_name = {v.name: v for v in stage.variants()}
    with_ocr, plain = stage.process([meme], by_name["ru-ocr-v1+pad"])[0], stage.process([meme], by_name["ru-v1+pad"])[0]
    assert with_ocr["prompt"] == plain["prompt"] and with_ocr["score"] == pytest.approx(plain["score"], abs=1e-7)


@pytest.mark.parametrize("kind", KINDS)
def test_batched_results_equal_per_image_results(models, tmp_path, kind):
    memes = synthetic_inputs(tmp_path, 4)
    batched, single = ClipStage(str(models[kind]), precision="fp32"), ClipStage(str(models[kind]), precision="fp32")
    for v in batched.variants():
        together = batched.process(memes, v)
        alone = [single.process([m], v)[0] for m in memes]
        for a, b in zip(together, alone):
            assert a["prompt"] == b["prompt"] and a["label"] == b["label"]
            assert a["score"] == pytest.approx(b["score"], abs=1e-5)


def test_each_image_and_fixed_prompt_is_encoded_once_per_run(tiny_models, tmp_path, monkeypatch):
    stage = ClipStage(str(tiny_models["clip"]), precision="fp32")
    stage.load()
    model = stage._model
    counts = {"images": 0, "texts": []}
    real_image, real_text = model.get_image_features, model.get_text_features

    def image_spy(**kw):
        counts["images"] += kw["pixel_values"].shape[0]
        return real_image(**kw)

    def text_spy(**kw):
        counts["texts"].append(kw["input_ids"].shape[0])
        return real_text(**kw)

    monkeypatch.setattr(model, "get_image_features", image_spy)
    monkeypatch.setattr(model, "get_text_features", text_spy)
    memes = synthetic_inputs(tmp_path, 4)
    by_name = {v.name: v for v in stage.variants()}
    for name in ("ru-v1+pad", "en-v1+pad", "ru-ocr-v1+pad", "en-ocr-v1+pad"):
        stage.process(memes[:2], by_name[name])
        stage.process(memes[2:], by_name[name])
    assert counts["images"] == 4                      # not 4 x 4 prompt sets
    # ru-v1 and en-v1: one call of 2 texts each, only for the first batch; OCR sets: 2 memes x 2 prompts per batch
    assert counts["texts"] == [2, 2, 4, 4, 4, 4]


def test_an_unreadable_image_fails_only_its_own_slot(tiny_models, tmp_path):
    stage = ClipStage(str(tiny_models["clip"]), precision="fp32")
    memes = synthetic_inputs(tmp_path, 2)
    memes.insert(1, broken_input(tmp_path))
    out = stage.process(memes, stage.variants()[0])
    assert isinstance(out[1], Exception) and "not a readable image" in str(out[1])
    assert isinstance(out[0], dict) and isinstance(out[2], dict)


def test_bf16_is_its_own_variant_and_close_to_fp32(tiny_models, tmp_path):
    memes = synthetic_inputs(tmp_path, 2)
    fp32, bf16 = (ClipStage(str(tiny_models["clip"]), precision=p, prompt_sets="ru-v1") for p in ("fp32", "bf16"))
    v32, v16 = fp32.variants()[0], bf16.variants()[0]
    assert v16.config["precision"] == "bf16" and v16.variant_id != v32.variant_id
    bf16.load()
    assert bf16._model.dtype == torch.bfloat16
    for a, b in zip(fp32.process(memes, v32), bf16.process(memes, v16)):
        assert isinstance(b["score"], float) and b["score"] == pytest.approx(a["score"], abs=0.05)


def test_describe_and_prompt_set_selection(tiny_models):
    stage = ClipStage(str(tiny_models["clip"]), prompt_sets="en-v1,ru-v1", precision="fp32")
    assert [v.name for v in stage.variants()] == ["en-v1", "ru-v1"]
    assert "fp32" in stage.describe() and "en-v1" in stage.describe()
    with pytest.raises(ValueError, match="unknown CLIP prompt set"):
        get_prompt_sets(["ru-v9"])


def test_missing_hub_model_offline_raises_stage_load_error_quickly(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(StageLoadError, match="HF_HUB_OFFLINE"):
        ClipStage("vlmemes-test/no-such-clip-model").load()
    with pytest.raises(StageLoadError, match="does not exist"):
        ClipStage(str(tmp_path / "nowhere")).load()
    assert time.perf_counter() - t0 < 10


def test_a_folder_that_is_not_an_image_text_model_is_refused(tiny_models):
    with pytest.raises(StageLoadError, match="cannot load|no get_image_features"):
        load_clip(str(tiny_models["qwen"]), "cpu", torch.float32)


class _NoOffsets:
    """A tokenizer without offset mappings (like the sentencepiece-based slow ones)."""

    def __init__(self, tok):
        self.tok = tok

    def __call__(self, text, **kw):
        if kw.get("return_offsets_mapping"):
            raise NotImplementedError("return_offset_mapping is not available when using Python tokenizers")
        return self.tok(text, **kw)


@pytest.mark.parametrize("wrap", [False, True], ids=["offsets", "bisection"])
def test_fit_text_keeps_a_prefix_within_the_limit(tiny_models, wrap):
    tok = AutoProcessor.from_pretrained(tiny_models["clip"]).tokenizer
    tok = _NoOffsets(tok) if wrap else tok
    templates = ("токсичный мем с текстом: «{text}»", "нейтральный мем с текстом: «{text}»")
    assert fit_text(tok, templates, "Короткий текст", 40) == "Короткий текст"
    cut = fit_text(tok, templates, LONG_CYRILLIC, 40)
    assert cut.endswith(ELLIPSIS) and LONG_CYRILLIC.startswith(cut[:-1]) and len(cut) > 3
    assert max(len(tok(t.format(text=cut))["input_ids"]) for t in templates) <= 40
    longer = LONG_CYRILLIC[:len(cut) + 10]     # a bit more text no longer fits
    assert max(len(tok(t.format(text=longer + ELLIPSIS))["input_ids"]) for t in templates) > 40
    assert fit_text(tok, templates, LONG_CYRILLIC, 5) == ""          # not even the template fits


def test_precompute_stores_clip_rows_with_the_ocr_text_in_the_prompt(tiny_models, synthetic_memes, tmp_path):
    """The real CLI (OCR with Tesseract, then CLIP) on 4 synthetic memes; a second run computes nothing."""
    import duckdb

    from pipeline.cli import main
    db = tmp_path / "clip.duckdb"
    args = ["precompute", "--memes", str(synthetic_memes), "--db", str(db), "--stages", "ocr,clip", "--limit", "4",
            "--ocr-engine", "tesseract", "--clip-model", str(tiny_models["clip"]), "--device", "cpu"]
    assert main(args) == 0

    def rows():
        con = duckdb.connect(str(db), read_only=True)
        try:
            return con.execute("""SELECT p.meme_id, p.prompt_version, p.score, p.label, p.prompt, p.logits,
                                         p.is_smoke, p.run_id, o.text
                                  FROM predictions p LEFT JOIN ocr o USING (meme_id)
                                  WHERE p.stage = 'clip' ORDER BY ALL""").fetchall()
        finally:
            con.close()

    first = rows()
    assert len(first) == 4 * 4 and {r[1] for r in first} == set(DEFAULT_PROMPT_SETS)
    for meme_id, version, score, label, prompt, logits, smoke, _, ocr_text in first:
        assert smoke and 0 <= score <= 1 and label == (TOXIC if score >= 0.5 else NON_TOXIC)
        assert set(json.loads(logits)) == {TOXIC, NON_TOXIC}
        text = normalize_ocr(ocr_text)
        if version == "ru-ocr-v1+pad":
            assert prompt.startswith(f"{TOXIC}: токсичный мем")
            assert (text[:10] in prompt) if text else prompt == f"{TOXIC}: токсичный мем\n{NON_TOXIC}: нейтральный мем"
    assert any(normalize_ocr(r[8]) for r in first)            # Tesseract read at least one caption
    assert main(args) == 0
    assert rows() == first                                      # cached: same rows, same run_id


# --------------------------------------------------------------------------- image view, SigLIP text, cache keys
CAPTION_RGB, BODY_RGB = (255, 0, 0), (0, 0, 255)


def tall_meme_with_top_caption(folder, size=(120, 360), caption_rows=30):
    """A tall meme: a pure red caption band in the top rows, pure blue below."""
    from pipeline.stages.base import MemeInput
    folder.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, BODY_RGB)
    image.paste(Image.new("RGB", (size[0], caption_rows), CAPTION_RGB), (0, 0))
    path = folder / "tall.png"
    image.save(path)
    return MemeInput("tall", path, path.name, None, ocr_text="ТЕКСТ")


def caption_pixels(pixel_values: torch.Tensor, image_processor) -> int:
    """How many pixels of the model input are caption-red (de-normalised with the processor's mean/std)."""
    mean = torch.tensor(image_processor.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(image_processor.image_std).view(1, 3, 1, 1)
    rgb = pixel_values.float().cpu() * std + mean
    red = (rgb[:, 0] > 0.8) & (rgb[:, 1] < 0.2) & (rgb[:, 2] < 0.2)
    return int(red.sum())


def spy_pixels(monkeypatch, model) -> list:
    seen = []
    real = model.get_image_features

    def spy(**kw):
        seen.append(kw["pixel_values"].detach().clone())
        return real(**kw)
    monkeypatch.setattr(model, "get_image_features", spy)
    return seen


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_pad_square_keeps_a_top_caption_in_the_model_input_center_crop_cuts_it(tiny_models, tmp_path, monkeypatch,
                                                                               kind):
    stage = ClipStage(str(tiny_models[kind]), precision="fp32", prompt_sets="ru-v1,ru-v1+pad")
    stage.load()
    seen = spy_pixels(monkeypatch, stage._model)
    meme = tall_meme_with_top_caption(tmp_path)
    by_name = {v.name: v for v in stage.variants()}
    stage.process([meme], by_name["ru-v1"])
    stage.process([meme], by_name["ru-v1+pad"])
    crop, pad = seen
    ip = stage._processor.image_processor
    side = stage._model.config.vision_config.image_size
    assert crop.shape[-2:] == pad.shape[-2:] == (side, side)
    if kind == "clip":      # resize + centre crop: the top band is cut away
        assert caption_pixels(crop, ip) == 0
    else:                   # SigLIP squashes (no crop): the caption is in, stretched
        assert caption_pixels(crop, ip) > 0
    # pad-square: the whole meme, centred: caption rows at the top, padding (the mean colour, ~0) at the sides
    assert caption_pixels(pad, ip) >= side * side * (30 / 360) * (120 / 360) * 0.6
    assert pad[0, :, side // 2, :side // 8].abs().max() < 0.05          # left padding band normalises to ~0


def test_the_default_view_is_pad_square_and_the_old_sets_remain_selectable():
    assert all(PROMPT_SETS[n].view == "pad-square" and n.endswith("+pad") for n in DEFAULT_PROMPT_SETS)
    assert [p.version for p in get_prompt_sets(None)] == list(DEFAULT_PROMPT_SETS)
    assert len(get_prompt_sets("all")) == len(get_prompt_sets(["all"])) == 8
    assert views_of("ru-ocr-v1") == ["center-crop"] and views_of(None) == ["pad-square"]
    for name in ("ru-ocr-v1", "ru-v1", "en-ocr-v1", "en-v1"):   # same texts, only the view differs
        old, new = PROMPT_SETS[name], PROMPT_SETS[name + "+pad"]
        assert old.templates() == new.templates() and old.fallback == new.fallback
        assert "view" not in old.describe() and new.describe()["view"] == "pad-square"


# Variant ids computed with the code before the image view / SigLIP text change (commit 8e5cb7a).
OLD_CLIP_IDS = {
    ("fp32", "ru-ocr-v1"): "6b5cbe2a5624", ("fp32", "ru-v1"): "c5a0afd813b8",
    ("fp32", "en-ocr-v1"): "ae73ff29efdc", ("fp32", "en-v1"): "d124c4887ea6",
    ("bf16", "ru-ocr-v1"): "70d6f872c768", ("bf16", "ru-v1"): "71ddbd912acc",
    ("bf16", "en-ocr-v1"): "af99794f37bf", ("bf16", "en-v1"): "82ad7484b50b",
}
OLD_SIGLIP_IDS = {("fp32", "ru-ocr-v1"): "bfb1320a1242", ("fp32", "ru-v1"): "d27ef25a2f4e"}


def test_old_clip_variant_ids_are_unchanged_and_siglip_ones_are_new():
    for (precision, name), old in OLD_CLIP_IDS.items():
        (v,) = ClipStage("openai/clip-vit-large-patch14", prompt_sets=name, precision=precision).variants()
        assert v.variant_id == old, (precision, name)
        (pad,) = ClipStage("openai/clip-vit-large-patch14", prompt_sets=name + "+pad", precision=precision).variants()
        assert pad.variant_id not in OLD_CLIP_IDS.values()
    for (precision, name), old in OLD_SIGLIP_IDS.items():   # SigLIP text is now computed without a mask
        (v,) = ClipStage("google/siglip-base-patch16-224", prompt_sets=name, precision=precision).variants()
        assert v.config["text_inputs"] == "input_ids" and v.variant_id != old


@pytest.mark.parametrize("kind", ["siglip", "clip"])
def test_siglip_text_gets_input_ids_only_and_clip_keeps_its_mask(tiny_models, kind):
    model, proc = load_clip(str(tiny_models[kind]), "cpu", torch.float32)
    texts = ["токсичный мем", "a neutral meme with the text: «Ёжик»"]
    calls = []
    real = model.get_text_features

    def spy(**kw):
        calls.append(set(kw))
        return real(**kw)
    model.get_text_features = spy
    try:
        got = encode_texts(model, proc, texts)
    finally:
        del model.get_text_features
    limit = model.config.text_config.max_position_embeddings
    with torch.no_grad():
        if kind == "siglip":
            assert calls == [{"input_ids"}]
            ids = proc.tokenizer(texts, padding="max_length", max_length=limit, truncation=True,
                                 return_tensors="pt")
            want = model.get_text_features(input_ids=ids["input_ids"]).pooler_output
            masked = model.get_text_features(**ids).pooler_output                 # what the old code computed
            assert not torch.allclose(torch.nn.functional.normalize(masked, dim=-1), got, atol=1e-4)
        else:
            assert calls == [{"input_ids", "attention_mask"}]
            tok = proc.tokenizer(texts, padding=True, truncation=True, max_length=limit, return_tensors="pt")
            want = model.get_text_features(**tok).pooler_output
    assert torch.allclose(torch.nn.functional.normalize(want, dim=-1), got, atol=1e-5)


def test_english_only_clip_is_flagged_for_russian_prompts(tiny_models):
    assert "English" in language_note("openai/clip-vit-large-patch14", "ru-ocr-v1+pad")
    assert language_note("openai/clip-vit-large-patch14", "en-v1") is None
    assert language_note("google/siglip2-base-patch16-224", "ru-v1") is None
    assert "English" in ClipStage("openai/clip-vit-large-patch14", precision="fp32").describe()
    assert "note" not in ClipStage(str(tiny_models["clip"]), precision="fp32").describe()
