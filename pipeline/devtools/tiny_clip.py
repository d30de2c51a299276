"""Tiny, randomly initialised CLIP, SigLIP and SigLIP2 checkpoints with working processors, built offline.

They exist so that tests and `--clip-model <folder>` smoke runs exercise the exact path real
checkpoints take (save_pretrained -> AutoModel/AutoProcessor.from_pretrained) in seconds on a CPU.
Their outputs mean nothing: the folders are flagged with `pipeline.hf.mark_random_weights`, so every
row they produce is stored with is_smoke = TRUE.

    build_tiny_clip(out_dir)    CLIPModel, 48 px images, 8 px patches (6x6 grid + CLS), 2+2 layers
    build_tiny_siglip(out_dir)  SiglipModel, 40 px images, 8 px patches (5x5 grid, no CLS), 2+2 layers
    build_tiny_siglip2(out_dir) Siglip2Model (NaFlex: variable patch grid, <= 16 patches), 2+2 layers

Tokenizers are hand-built and deterministic (no training, no download):
  - CLIP: byte-level BPE (the 256 byte symbols plus a few whole-word merges), so any text,
    Cyrillic included, tokenizes without unknown tokens.
  - SigLIP/SigLIP2: `Siglip2Tokenizer` (the `tokenizers`-backed Gemma-style BPE that SigLIP2 ships) with
    byte fallback: characters outside the small vocabulary become <0xNN> byte tokens. The real
    SigLIP v1 `SiglipTokenizer` needs sentencepiece, which this project does not install;
    `SiglipProcessor` accepts either, and AutoProcessor loads this one back.
"""
from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import pre_tokenizers
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPProcessor,
    CLIPTokenizer,
    Siglip2Config,
    Siglip2ImageProcessor,
    Siglip2Model,
    Siglip2Processor,
    Siglip2Tokenizer,
    SiglipConfig,
    SiglipImageProcessor,
    SiglipModel,
    SiglipProcessor,
)

from pipeline.hf import mark_random_weights

# Words merged into single tokens, so the class prompts tokenize into a handful of ids.
PROMPT_WORDS = ["a", "toxic", "neutral", "meme", "with", "the", "text", "токсичный", "нейтральный", "мем",
                "с", "текстом"]

_BYTE_LEVEL = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
BYTE_SYMBOLS = sorted(pre_tokenizers.ByteLevel.alphabet())   # the 256 byte-level symbols


def _byte_level(word: str) -> str:
    """'мем' -> 'Ð¼ÐµÐ¼': the form byte-level BPE merges operate on."""
    return "".join(piece for piece, _ in _BYTE_LEVEL.pre_tokenize_str(word))


def _bpe(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Apply BPE merges (lowest rank first) to a symbol sequence."""
    while len(symbols) > 1:
        rank, i = min((ranks.get(pair, len(ranks)), i) for i, pair in enumerate(zip(symbols, symbols[1:])))
        if rank == len(ranks):
            break
        symbols = symbols[:i] + [symbols[i] + symbols[i + 1]] + symbols[i + 2:]
    return symbols


def _add_merges(vocab: dict[str, int], merges: list[tuple[str, str]], symbols: list[str], suffix: str = "") -> None:
    """Append merges until `symbols` (each already in the vocab; `suffix` goes on the last) BPE to one token.

    Each new merge ranks after all earlier ones, so words merged before keep tokenizing to one token.
    """
    symbols = symbols[:-1] + [symbols[-1] + suffix]
    ranks = {pair: i for i, pair in enumerate(merges)}
    while len(symbols := _bpe(symbols, ranks)) > 1:
        pair = (symbols[0], symbols[1])
        ranks[pair] = len(merges)
        merges.append(pair)
        vocab.setdefault(pair[0] + pair[1], len(vocab))


def _save(model, processor, out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    mark_random_weights(out)
    return out


def _seeded_init(cls, config, seed: int):
    with torch.random.fork_rng(devices=[]):   # leave the caller's global RNG untouched
        torch.manual_seed(seed)
        return cls(config).eval()


def build_tiny_clip(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a random-weight CLIP (with processor) to `out_dir`; returns the folder."""
    bos, eos = "<|startoftext|>", "<|endoftext|>"
    vocab = {bos: 0, eos: 1}
    for b in BYTE_SYMBOLS:                        # CLIP's BPE marks word ends with "</w>"
        vocab.setdefault(b, len(vocab))
        vocab.setdefault(b + "</w>", len(vocab))
    merges: list[tuple[str, str]] = []
    for word in PROMPT_WORDS:
        _add_merges(vocab, merges, list(_byte_level(word)), suffix="</w>")
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges)   # bos/eos/pad/unk defaults match the names above
    image_processor = CLIPImageProcessor(size={"shortest_edge": 48}, crop_size={"height": 48, "width": 48})
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=77, projection_dim=16,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=48, patch_size=8, projection_dim=16),   # 6x6 patch grid + CLS
        projection_dim=16)
    return _save(_seeded_init(CLIPModel, config, seed), processor, out_dir)


def _siglip_tokenizer() -> Siglip2Tokenizer:
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
    vocab = {t: i for i, t in enumerate(specials)}
    for i in range(256):                          # byte fallback: any UTF-8 text is representable
        vocab[f"<0x{i:02X}>"] = len(vocab)
    letters = sorted(set("".join(PROMPT_WORDS)) | set("abcdefghijklmnopqrstuvwxyz0123456789.,:!?«»\"'-"))
    for ch in ["▁", *letters]:
        vocab.setdefault(ch, len(vocab))
    merges: list[tuple[str, str]] = []
    for word in PROMPT_WORDS:
        _add_merges(vocab, merges, ["▁", *word])  # "▁мем" becomes one token
        _add_merges(vocab, merges, list(word))    # and "мем" at the start of a text
    return Siglip2Tokenizer(vocab=vocab, merges=merges)


def _siglip_text_config(tokenizer) -> dict:
    return dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=64, projection_size=32,
                pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id)


def build_tiny_siglip(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a random-weight SigLIP (with processor) to `out_dir`; returns the folder."""
    tokenizer = _siglip_tokenizer()
    processor = SiglipProcessor(image_processor=SiglipImageProcessor(size={"height": 40, "width": 40}),
                                tokenizer=tokenizer)
    config = SiglipConfig(
        text_config=_siglip_text_config(tokenizer),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=40, patch_size=8))   # 5x5 patch grid, no CLS token
    return _save(_seeded_init(SiglipModel, config, seed), processor, out_dir)


def build_tiny_siglip2(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a random-weight SigLIP2 (NaFlex: aspect-preserving, at most 16 patches of 8 px) to `out_dir`."""
    tokenizer = _siglip_tokenizer()
    processor = Siglip2Processor(image_processor=Siglip2ImageProcessor(patch_size=8, max_num_patches=16),
                                 tokenizer=tokenizer)
    config = Siglip2Config(
        text_config=_siglip_text_config(tokenizer),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           patch_size=8, num_patches=16))
    return _save(_seeded_init(Siglip2Model, config, seed), processor, out_dir)
