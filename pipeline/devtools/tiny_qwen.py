"""A tiny, randomly initialised Qwen2.5-VL checkpoint (model + processor) built fully offline.

Used by smoke runs and tests: it is saved with `save_pretrained` and loaded back through
`AutoModelForImageTextToText` / `AutoProcessor`, the same path the real Qwen/Qwen2.5-VL-3B-Instruct takes.
Its answers are noise; `pipeline.hf.mark_random_weights` flags it so nothing it says counts as a result.

The tokenizer is a hand-built byte-level BPE (deterministic: same ids on every run). Byte-level BPE encodes
any UTF-8 text; two-byte merges for every Cyrillic letter (and the U+FFFD replacement character) keep
Russian prompts about one token per letter, so a tiny model sees short sequences.

    python -m pipeline.devtools.tiny_qwen OUT_DIR
"""
from __future__ import annotations

import sys
from pathlib import Path

QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]

# Shaped like the real Qwen2.5-VL template (default system message, images inside user turns),
# without the tool-calling and video branches.
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

# Pixel budget the tiny processor resizes to by default (tiny vision sequence); VlmStage overrides it.
TINY_IMAGE_SIZE = {"shortest_edge": 56 * 56, "longest_edge": 112 * 112}
CYRILLIC = "".join(chr(c) for c in range(0x410, 0x450)) + "Ёё"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table that byte-level BPE vocabularies are written in."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def _vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    byte_char = bytes_to_unicode()
    vocab = {t: i for i, t in enumerate(QWEN_SPECIAL)}
    for b in range(256):
        vocab.setdefault(byte_char[b], len(vocab))
    merges: list[tuple[str, str]] = []
    for ch in CYRILLIC + "\ufffd":
        symbols = [byte_char[b] for b in ch.encode("utf-8")]
        cur = symbols[0]
        for nxt in symbols[1:]:
            if (cur, nxt) not in merges:
                merges.append((cur, nxt))
                vocab.setdefault(cur + nxt, len(vocab))
            cur += nxt
    return vocab, merges


def build_tiny_processor():
    from transformers import Qwen2_5_VLProcessor, Qwen2Tokenizer, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    vocab, merges = _vocab_and_merges()
    tok = Qwen2Tokenizer(vocab=vocab, merges=merges, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.add_special_tokens({"additional_special_tokens": QWEN_SPECIAL[1:]})   # never split or merged
    return Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=dict(TINY_IMAGE_SIZE)),   # patch 14, merge 2, temporal 2
        tokenizer=tok,
        video_processor=Qwen2VLVideoProcessor(size=dict(TINY_IMAGE_SIZE)),   # a required attribute, unused
        chat_template=QWEN_CHAT_TEMPLATE)


def build_tiny_model(tokenizer, seed: int = 0, vision_depth: int = 2, fullatt_block_indexes=(1,)):
    """The tiny random Qwen2.5-VL (vision depth and full-attention blocks settable: llama.cpp's converter
    needs depth 4, see pipeline.devtools.tiny_qwen_gguf)."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL}
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
            # head_dim = 64/4 = 16 -> mrope_section must sum to head_dim/2 = 8
            rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
            bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"]),
        vision_config=dict(
            depth=vision_depth, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=14, spatial_merge_size=2,
            temporal_patch_size=2, window_size=112, out_hidden_size=64,   # out_hidden_size == text hidden size
            fullatt_block_indexes=list(fullatt_block_indexes)),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    return model


def build_tiny_qwen(out_dir: str | Path, seed: int = 0, **model_kwargs) -> Path:
    """Write a tiny random-weight Qwen2.5-VL + processor to `out_dir` (flagged as random weights);
    `model_kwargs` go to build_tiny_model."""
    from pipeline.hf import mark_random_weights

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    processor = build_tiny_processor()
    model = build_tiny_model(processor.tokenizer, seed=seed, **model_kwargs)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    mark_random_weights(out)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m pipeline.devtools.tiny_qwen OUT_DIR")
    print(build_tiny_qwen(sys.argv[1]))
