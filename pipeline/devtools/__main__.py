"""Developer commands (not needed by researchers with real models):

    python -m pipeline.devtools tiny-models OUT_DIR    tiny random CLIP, SigLIP and Qwen2.5-VL checkpoints
    python -m pipeline.devtools synth-db --n N --db F  a synthetic cache of N memes (dashboard benchmarks)
    python -m pipeline.devtools synth-memes OUT_DIR    a small synthetic labelled meme folder
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def tiny_models(out_dir: Path) -> dict[str, Path]:
    from pipeline.devtools.tiny_clip import build_tiny_clip, build_tiny_siglip
    from pipeline.devtools.tiny_qwen import build_tiny_qwen
    out = {"clip": out_dir / "tiny-random-clip", "siglip": out_dir / "tiny-random-siglip",
           "qwen": out_dir / "tiny-random-qwen25vl"}
    build_tiny_clip(out["clip"])
    build_tiny_siglip(out["siglip"])
    build_tiny_qwen(out["qwen"])
    return out


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "tiny-models" and len(rest) == 1:
        for name, path in tiny_models(Path(rest[0])).items():
            print(f"{name}: {path}  (random weights: smoke runs only, never results)")
        return 0
    if cmd == "synth-db":
        from pipeline.devtools.synth_db import main as synth_main
        return synth_main(rest)
    if cmd == "synth-memes" and len(rest) == 1:
        from pipeline.devtools.synthetic_memes import write_meme_folder
        written = write_meme_folder(Path(rest[0]), n_toxic=6, n_non_toxic=6, seed=0)
        print(f"wrote {len(written)} synthetic memes under {rest[0]}")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
