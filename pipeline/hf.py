"""Loading Hugging Face checkpoints the same way for every stage: by hub id or local path, offline-safe.

- `resolve_source` turns `--clip-model/--vlm-model` into something from_pretrained can open and
  raises StageLoadError with an actionable message when the hub cannot be reached and nothing is cached.
- `is_random_weights` tells smoke checkpoints (random initialisation, built by
  `python -m pipeline.devtools tiny-models`) from real ones; their output is never a result.
- `pick_device` / `pick_dtype` map `--device auto|cpu|cuda` to torch settings; `precision_name` gives the
  name of that dtype ("fp32", "bf16", "fp16"). On a machine without any GPU driver, `pick_device` and
  `precision_name` answer without importing torch (about 1.3 s), so that `variants()`/`describe()` of a
  fully cached rerun stay cheap; they give the same answers as with torch imported.
"""
from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

from pipeline.stages.base import StageLoadError

RANDOM_WEIGHTS_MARKER = "vlmemes_random_weights"  # key in config.json written by the tiny-model builder


def resolve_source(model: str) -> str:
    """A local folder as is; a hub id only if it is already in the local HF cache or the hub is reachable."""
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise StageLoadError(f"{model} has no config.json: point at a folder saved with save_pretrained")
        return str(path)
    if model.startswith((".", "/", "~")):
        raise StageLoadError(f"model folder {model} does not exist")
    try:
        from huggingface_hub import try_to_load_from_cache
        cached = try_to_load_from_cache(model, "config.json")
    except Exception:
        cached = None
    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or not hub_reachable()
    if isinstance(cached, str):
        if offline:
            _go_offline()   # use the cached files without minutes of retried HEAD requests
        return model
    if offline:
        why = "HF_HUB_OFFLINE=1" if os.environ.get("HF_HUB_OFFLINE") == "1" else "the hub (huggingface.co) cannot be reached"
        raise StageLoadError(
            f"model {model!r} is not in the local Hugging Face cache and {why}; "
            f"download it on a connected machine (`hf download {model}`) or pass a local folder")
    return model


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    """One quick TCP connect to the hub (DNS failure or no route answers at once), so an offline
    machine fails a stage in seconds instead of retrying every file's download for minutes."""
    import socket
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").split("://")[-1].split("/")[0]
    host, _, port = endpoint.partition(":")
    try:
        with socket.create_connection((host, int(port or 443)), timeout=timeout):
            return True
    except OSError:
        return False


def _go_offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        import huggingface_hub.constants as hub_constants
        hub_constants.HF_HUB_OFFLINE = True
    except Exception:   # an older/newer hub library without the constant: the env var still helps
        pass


def is_random_weights(model: str) -> bool:
    """True for checkpoints marked as randomly initialised (by name or by a flag in config.json)."""
    name = Path(model).name.lower()
    if "random" in name or name.startswith("tiny-"):
        return True
    cfg = Path(model).expanduser() / "config.json"
    if cfg.exists():
        try:
            return bool(json.loads(cfg.read_text()).get(RANDOM_WEIGHTS_MARKER, False))
        except (OSError, ValueError):
            return False
    return False


def mark_random_weights(folder: str | Path) -> None:
    """Flag a saved checkpoint as random-weight (called by the tiny-model builder after save_pretrained)."""
    cfg = Path(folder) / "config.json"
    data = json.loads(cfg.read_text())
    data[RANDOM_WEIGHTS_MARKER] = True
    cfg.write_text(json.dumps(data, indent=2))


# Device nodes / driver files a GPU that torch can use leaves on Linux: NVIDIA (bare metal and containers),
# WSL2 (/dev/dxg) and ROCm (/dev/kfd; ROCm builds of torch report it as "cuda").
GPU_DRIVER_PATHS = ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg", "/dev/kfd")


def may_have_gpu() -> bool:
    """False only when torch certainly sees no GPU (Linux without any GPU driver); cheap, never imports torch."""
    if "torch" in sys.modules:
        return True                       # already paid for: let torch answer
    if not sys.platform.startswith("linux"):
        return True
    return any(os.path.exists(p) for p in GPU_DRIVER_PATHS)


def pick_device(device: str = "auto") -> str:
    if device == "cpu" or (device == "auto" and not may_have_gpu()):
        return "cpu"
    import torch
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise StageLoadError("--device cuda was asked for but torch sees no CUDA GPU; use --device cpu or auto")
    return device


PRECISIONS = ("fp32", "bf16", "fp16")


def precision_name(device: str, precision: str = "auto") -> str:
    """"fp32" | "bf16" | "fp16": the dtype `pick_dtype(device, precision)` gives; imports torch only for CUDA.

    bf16 on GPUs and on CPUs with native bf16 (2x faster than fp32 for CLIP ViT-L/14 on a 2-core avx512_bf16
    CPU, docs/benchmarks.md), else fp32.
    """
    if precision in PRECISIONS:
        return precision
    if device.startswith("cuda"):
        import torch
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_bf16() else "fp32"


def pick_dtype(device: str, precision: str = "auto"):
    """The torch dtype for `precision` ("auto" resolved by `precision_name`)."""
    import torch
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision_name(device, precision)]


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
