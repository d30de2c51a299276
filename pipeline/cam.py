"""The CAM stage: where in the meme the CLIP vision tower looks, as a low-resolution heat map + overlay.

Two variants (one `heatmaps` row per meme each), both from pytorch-grad-cam on the vision tower's
last block, `vision_model.encoder.layers[-1].layer_norm1` (as grad-cam's CLIP example):
  - eigencam: EigenCAM, the first principal component of that layer's patch activations. Class-agnostic
    (no gradients): what the tower finds salient in general.
  - gradcam: Grad-CAM with the target "toxic minus neutral similarity": exp(logit_scale) *
    (cos(image, «токсичный мем») - cos(image, «нейтральный мем»)), the Russian no-OCR pair (ru-v1),
    the same for every meme. Red = patches whose activations push the image towards «toxic».

The model is the one `--clip-model` names, loaded through `pipeline.clip.load_clip` in float32
(gradients in bf16 are too coarse). Token sequences are mapped back to the patch grid
image_size // patch_size (16x16 for ViT-L/14 at 224): CLIP puts a CLS token first, which is dropped;
SigLIP has no CLS token (it pools with an attention head), so its whole sequence is patches.
SigLIP2's variable-resolution (NaFlex) tower has no fixed grid and is refused.

A row: grid_h, grid_w, cam (uint8 bytes, row-major, 0..255 = min..max of this meme's map), overlay
(JPEG at thumbnail size). The map covers the region the model saw: CLIP's processor centre-crops a
square, so on a tall or wide meme the overlay colours that square and dims the cropped-away parts.

torch, pytorch-grad-cam (which pulls in torchvision and scikit-learn) and OpenCV are imported on first
use, not at module import: `variants()` of a fully cached rerun needs none of them.
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Sequence

from PIL import Image, ImageEnhance

from pipeline.clip import DEFAULT_CLIP_MODEL, each_or_batch, encode_texts, is_sigmoid_head, load_clip, pooled
from pipeline.clip_prompts import CAM_PROMPT_SET, PROMPT_SETS
from pipeline.config import THUMBNAIL_MAX_SIDE
from pipeline.hf import is_random_weights, pick_device
from pipeline.images import encode_jpeg
from pipeline.stage import MemeInput, Stage, StageLoadError, Variant

if TYPE_CHECKING:
    import numpy as np
    import torch

METHODS = ("eigencam", "gradcam")
TARGET_LAYER = "vision_model.encoder.layers[-1].layer_norm1"
OUTSIDE_BRIGHTNESS = 0.35   # how dark the parts of the meme the model did not see are drawn
_LAZY_CLASSES = ("PairLogits", "GridEigenCAM", "GridGradCAM")


class ToxicMinusNeutral:
    """Grad-CAM target: logit(toxic) - logit(neutral) (the SigLIP bias cancels)."""

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return output[..., 0] - output[..., 1]


class _OnGrid:
    """Make BaseCAM return maps at the patch-grid size (it otherwise upsamples to the input size)."""
    grid_wh: tuple[int, int] = (1, 1)

    def get_target_width_height(self, input_tensor):
        return self.grid_wh


@functools.cache
def _torch_classes() -> dict[str, type]:
    """The classes built on torch / pytorch-grad-cam, defined on first use (torch, grad-cam, torchvision and
    scikit-learn take ~3 s to import, which a fully cached rerun must not pay). Also reachable as
    module attributes: `pipeline.cam.PairLogits`, `GridEigenCAM`, `GridGradCAM`."""
    import torch
    from pytorch_grad_cam import EigenCAM, GradCAM

    class PairLogits(torch.nn.Module):
        """pixel_values -> (B, 2) [toxic, neutral] image-text logits as a plain tensor (what BaseCAM expects)."""

        def __init__(self, model, text_emb: torch.Tensor):
            super().__init__()
            self.model = model
            self.register_buffer("text_emb", text_emb.to(model.device, torch.float32))

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            image = pooled(self.model.get_image_features(pixel_values=pixel_values))
            logits = self.model.logit_scale.exp() * torch.nn.functional.normalize(image, dim=-1) @ self.text_emb.T
            if is_sigmoid_head(self.model):
                logits = logits + self.model.logit_bias
            return logits

    class GridEigenCAM(_OnGrid, EigenCAM):
        def get_cam_image(self, *args, **kwargs):
            # EigenCAM's SVD runs in numpy's BLAS (OpenBLAS), whose threads fight torch's OpenMP threads, which
            # keep spinning right after the forward pass: on 2 cores a 256x1024 SVD took 1.4-6.5 s with 2 BLAS
            # threads and 0.1 s with one (docs/benchmarks.md). One thread for the SVD only.
            try:
                from threadpoolctl import threadpool_limits   # installed with scikit-learn (grad-cam needs it)
            except ImportError:
                return super().get_cam_image(*args, **kwargs)
            with threadpool_limits(limits=1, user_api="blas"):
                return super().get_cam_image(*args, **kwargs)

    class GridGradCAM(_OnGrid, GradCAM):
        pass

    for cls in (PairLogits, GridEigenCAM, GridGradCAM):
        cls.__module__, cls.__qualname__ = __name__, cls.__name__
    return dict(PairLogits=PairLogits, GridEigenCAM=GridEigenCAM, GridGradCAM=GridGradCAM)


def __getattr__(name: str):
    if name in _LAZY_CLASSES:
        return _torch_classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def patch_grid(model) -> tuple[int, int]:
    """(grid_h, grid_w) of a ViT tower with a fixed square input: image_size // patch_size."""
    vc = model.config.vision_config
    size, patch = getattr(vc, "image_size", None), getattr(vc, "patch_size", None)
    if not size or not patch:
        raise StageLoadError(f"CAM needs a ViT vision tower with a fixed image_size/patch_size; "
                             f"{type(model).__name__} has none (SigLIP2 NaFlex is not supported)")
    return size // patch, size // patch


def tokens_to_grid(x, grid_h: int, grid_w: int) -> torch.Tensor:
    """(B, tokens, C) -> (B, C, grid_h, grid_w): drop a leading CLS token if there is exactly one extra token."""
    if isinstance(x, tuple):
        x = x[0]
    n = grid_h * grid_w
    if x.size(1) == n + 1:
        x = x[:, 1:, :]          # CLIP: CLS first
    elif x.size(1) != n:
        raise ValueError(f"vision tower gives {x.size(1)} tokens; expected {n} patches (+1 CLS) for a "
                         f"{grid_h}x{grid_w} grid")
    return x.reshape(x.size(0), grid_h, grid_w, x.size(2)).permute(0, 3, 1, 2)


def seen_box(image_processor, width: int, height: int) -> tuple[float, float, float, float]:
    """The part of a width x height image the processor keeps, as fractions (left, top, right, bottom).

    Resize (shortest_edge, or a fixed height/width) then optional centre crop: CLIP keeps the
    centred square, SigLIP (squash to a square, no crop) keeps everything.
    """
    size = getattr(image_processor, "size", None) or {}
    short = size.get("shortest_edge") if hasattr(size, "get") else None
    if getattr(image_processor, "do_resize", True) and short:
        scale = short / min(width, height)
        rw, rh = width * scale, height * scale
    elif getattr(image_processor, "do_resize", True) and hasattr(size, "get") and size.get("height"):
        rw, rh = float(size.get("width")), float(size.get("height"))
    else:
        rw, rh = float(width), float(height)
    crop = getattr(image_processor, "crop_size", None)
    if not getattr(image_processor, "do_center_crop", False) or not crop:
        return 0.0, 0.0, 1.0, 1.0
    cw, ch = min(crop.get("width"), rw), min(crop.get("height"), rh)
    left, top = (rw - cw) / 2 / rw, (rh - ch) / 2 / rh
    return left, top, left + cw / rw, top + ch / rh


def overlay(image: Image.Image, cam: np.ndarray, box: tuple[float, float, float, float]) -> bytes:
    """JPEG of the meme at thumbnail size, the CAM (upsampled) blended over the region the model saw."""
    import cv2
    import numpy as np
    from pytorch_grad_cam.utils.image import show_cam_on_image
    thumb = image.convert("RGB")
    thumb.thumbnail((THUMBNAIL_MAX_SIDE, THUMBNAIL_MAX_SIDE), Image.Resampling.LANCZOS)
    w, h = thumb.size
    l, t = int(round(box[0] * w)), int(round(box[1] * h))
    r, b = max(l + 1, int(round(box[2] * w))), max(t + 1, int(round(box[3] * h)))
    region = np.float32(thumb.crop((l, t, r, b))) / 255.0
    mask = cv2.resize(cam.astype(np.float32), (r - l, b - t), interpolation=cv2.INTER_LINEAR)
    blended = show_cam_on_image(region, np.clip(mask, 0.0, 1.0), use_rgb=True)
    out = ImageEnhance.Brightness(thumb).enhance(OUTSIDE_BRIGHTNESS) if box != (0.0, 0.0, 1.0, 1.0) else thumb
    out.paste(Image.fromarray(blended), (l, t))
    return encode_jpeg(out)


class CamStage(Stage):
    name = "cam"
    table = "heatmaps"
    version = "1"
    needs_ocr_text = False

    def __init__(self, model: str = DEFAULT_CLIP_MODEL, methods: str | Sequence[str] | None = None,
                 device: str = "auto", batch_size: int = 8):
        if methods is None or methods == "all":
            methods = METHODS
        elif isinstance(methods, str):
            methods = [m.strip() for m in methods.split(",") if m.strip()]
        unknown = [m for m in methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown CAM method(s) {unknown}; known: {', '.join(METHODS)}")
        self.model = model
        self.methods = list(methods)
        self.device = device
        self.batch_size = max(1, int(batch_size))
        self._model = self._processor = None

    def variants(self) -> list[Variant]:
        smoke = is_random_weights(self.model)
        pair = PROMPT_SETS[CAM_PROMPT_SET]
        out = []
        for method in self.methods:
            config = dict(method=method, target_layer=TARGET_LAYER, precision="fp32")
            if method == "gradcam":
                config.update(target="logit(toxic) - logit(non_toxic)", prompt_version=pair.version,
                              prompts=pair.templates())
            out.append(Variant(stage=self.name, model_id=self.model, name=method, config=config,
                               stage_version=self.version, is_smoke=smoke))
        return out

    def load(self) -> None:
        import torch
        device = pick_device(self.device)
        self._model, self._processor = load_clip(self.model, device, torch.float32)
        self._grid = patch_grid(self._model)
        layers = getattr(getattr(getattr(self._model, "vision_model", None), "encoder", None), "layers", None)
        if not layers or not hasattr(layers[-1], "layer_norm1"):
            raise StageLoadError(f"{self.model!r}: no vision_model.encoder.layers[-1].layer_norm1 to attach CAM to")
        self._layer = layers[-1].layer_norm1
        # Gradients are only needed w.r.t. activations; the input carries requires_grad instead of the
        # weights, so no weight gradients are ever allocated (CLIP inference runs under no_grad anyway).
        self._model.requires_grad_(False)
        pair = PROMPT_SETS[CAM_PROMPT_SET]
        self._wrapper = _torch_classes()["PairLogits"](self._model, encode_texts(self._model, self._processor,
                                                             [pair.toxic, pair.non_toxic])).eval()

    def _cams(self, images: list[Image.Image], method: str) -> list[np.ndarray]:
        """(grid_h, grid_w) maps in [0, 1] for a batch of images."""
        import torch
        classes = _torch_classes()
        gh, gw = self._grid
        pixels = self._processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
        pixels = pixels.to(self._model.device, torch.float32)
        if tuple(pixels.shape[-2:]) != (gh * self._model.config.vision_config.patch_size,) * 2:
            raise ValueError(f"processor gives {tuple(pixels.shape[-2:])} px inputs; the model's grid is {gh}x{gw}")
        cls = classes["GridEigenCAM"] if method == "eigencam" else classes["GridGradCAM"]
        cam = cls(self._wrapper, [self._layer], reshape_transform=lambda x: tokens_to_grid(x, gh, gw))
        cam.grid_wh = (gw, gh)
        cam.compute_input_gradient = method == "gradcam"
        try:
            with torch.enable_grad():
                targets = [ToxicMinusNeutral()] * len(images) if method == "gradcam" else None
                maps = cam(input_tensor=pixels, targets=targets)
        finally:
            cam.activations_and_grads.release()
        return list(maps.reshape(len(images), gh, gw))

    def process(self, memes: list[MemeInput], variant: Variant) -> list[dict | Exception]:
        import numpy as np
        if self._model is None:
            self.load()
        results: list[dict | Exception | None] = [None] * len(memes)
        todo = []
        for i, m in enumerate(memes):
            try:
                todo.append((i, m.image))
            except Exception as e:  # noqa: BLE001 - unreadable image: this meme's slot only
                results[i] = e
        maps = each_or_batch(lambda items: self._cams([im for _, im in items], variant.name), todo)
        gh, gw = self._grid
        for (i, image), cam in zip(todo, maps):
            if isinstance(cam, Exception):
                results[i] = cam
                continue
            try:
                cam = np.clip(np.nan_to_num(cam, nan=0.0), 0.0, 1.0)
                box = seen_box(self._processor.image_processor, *image.size)
                results[i] = dict(grid_h=gh, grid_w=gw, cam=np.round(cam * 255).astype(np.uint8).tobytes(),
                                  overlay=overlay(image, cam, box))
            except Exception as e:  # noqa: BLE001
                results[i] = e
        return results
