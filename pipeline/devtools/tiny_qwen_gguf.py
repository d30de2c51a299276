"""A tiny random-weight Qwen2.5-VL that llama.cpp's converter and its Qwen2.5-VL code accept.

Same tokenizer, processor, chat template and text model shape as `pipeline.devtools.tiny_qwen` (whose
checkpoint the existing tests use unchanged); one difference in the vision tower:

- depth 4 instead of 2, with full attention in blocks 1 and 3 (window attention in 0 and 2, the same
  every-second-block pattern as before). The converter maps the merger's `visual.merger.mlp.{bid}` tensors
  with the vision block count as the range of `bid`, so with depth 2 `visual.merger.mlp.2.*` cannot be
  mapped ("Can not map tensor 'visual.merger.mlp.2.bias'"); the real model has depth 32.

Everything else already fits llama.cpp: patch 14, merge 2, temporal patch 2 (the converter splits the Conv3D
into two Conv2Ds), window 112 (llama.cpp's default window when the GGUF has none), out_hidden_size equal to
the text hidden size, and mrope sections [2, 3, 3] summing to head_dim / 2.

    python -m pipeline.devtools.tiny_qwen_gguf OUT_DIR
"""
from __future__ import annotations

import sys
from pathlib import Path

VISION_DEPTH = 4
FULLATT_BLOCK_INDEXES = [1, 3]


def build_tiny_qwen_gguf(out_dir: str | Path, seed: int = 0) -> Path:
    """Write the llama.cpp-compatible tiny random Qwen2.5-VL + processor to `out_dir` (flagged as random)."""
    from pipeline.devtools.tiny_qwen import build_tiny_qwen
    return build_tiny_qwen(out_dir, seed=seed, vision_depth=VISION_DEPTH, fullatt_block_indexes=FULLATT_BLOCK_INDEXES)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m pipeline.devtools.tiny_qwen_gguf OUT_DIR")
    print(build_tiny_qwen_gguf(sys.argv[1]))
