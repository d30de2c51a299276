"""The CAM stage: where in the meme the CLIP vision tower looks, as a low-resolution heat map + overlay.

Two methods (one `heatmaps` row per meme each), both from pytorch-grad-cam on the vision tower's
last block, `vision_model.encoder.layers[-1].layer_norm1` (as grad-cam's CLIP example):
  - eigencam: EigenCAM, the first principal component of that layer's (centred) patch activations.
    Class-agnostic (no gradients): what the tower finds salient in general. A principal component has
    no sign of its own (SVD gives v or -v), and grad-cam 1.5.7's EigenCAM uses it as it comes, then
    applies ReLU, so its map showed either the salient region or its complement. Since stage version 2
    the projection is oriented (`oriented_projection`): its sign is chosen so that it correlates
    positively with the per-patch activation norm (the patches that carry the most activation energy
    are the salient ones, which is what uncentred EigenCAM on non-negative CNN activations gives by
    construction); if that correlation is ~0, grad-cam's Seg-Eigen-CAM rule decides (flip when
    |min| > |max|). Old (unoriented, stage version 1) eigencam rows keep their own cache key.
  - gradcam: Grad-CAM with the target "toxic minus neutral similarity": exp(logit_scale) *
    (cos(image, «токсичный мем») - cos(image, «нейтральный мем»)), the Russian no-OCR pair (ru-v1),
    the same for every meme. Red = patches whose activations push the image towards «toxic».
    (Gradients have a sign: nothing to orient; stage version 1, unchanged.)

Each method comes in the image views of pipeline.stages.clip_prompts, so a map explains the score of the
prompt sets with the same view: "pad-square" (the default; names `eigencam+pad`, `gradcam+pad`, the
Grad-CAM pair being `ru-v1+pad`) and "center-crop" (names `eigencam`, `gradcam`; gradcam's cache
key is the one it always had). `CamStage(view=...)` picks them ("all" = both); `views_of(prompt sets)`
in pipeline.stages.clip_prompts says which views a CLIP run used.

The model is the one `--clip-model` names, loaded through `pipeline.stages.clip.load_clip` in float32
(gradients in bf16 are too coarse). Token sequences are mapped back to the patch grid
image_size // patch_size (16x16 for ViT-L/14 at 224): CLIP puts a CLS token first, which is dropped;
SigLIP has no CLS token (it pools with an attention head), so its whole sequence is patches.
SigLIP2's variable-resolution (NaFlex) tower has no fixed grid and is refused.

A row: grid_h, grid_w, cam (uint8 bytes, row-major, 0..255 = min..max of this meme's map), overlay
(JPEG at thumbnail size). The map covers the model input. With center-crop, CLIP's processor
centre-crops a square, so on a tall or wide meme the overlay colours that square and dims the
cropped-away parts (`seen_box`). With pad-square the model input is the meme centred on a padded
square: the overlay colours the whole meme with the part of the map that lies over it (`content_box`;
the padding bands of the grid are not drawn).

torch, pytorch-grad-cam (which pulls in torchvision and scikit-learn) and OpenCV are imported on first
use, not at module import: `variants()` of a fully cached rerun needs none of them.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

from PIL import Image, ImageEnhance

from pipeline.config import THUMBNAIL_MAX_SIDE, THUMBNAIL_QUALITY
from pipeline.hf import is_random_weights, pick_device
from pipeline.images import encode_jpeg
from pipeline.options import DEFAULTS, Options
from pipeline.stages.base import MemeInput, Stage, StageLoadError, Variant
from pipeline.stages.clip import (
    check_text_inputs,
    each_or_batch,
    encode_texts,
    is_sigmoid_head,
    is_sigmoid_model,
    load_clip,
    pad_box,
    pooled,
    text_config_keys,
    view_images,
)
from pipeline.stages.clip_prompts import CENTER_CROP, DEFAULT_VIEW, PAD_SQUARE, VIEW_SUFFIX, VIEWS, cam_prompt_set, views_of

if TYPE_CHECKING:
    import numpy as np
    import torch

METHODS = ("eigencam", "gradcam")
# Stage version per method: eigencam 2 = oriented principal component (1 = grad-cam's unoriented one).
METHOD_VERSIONS = {"eigencam": "2", "gradcam": "1"}
EIGENCAM_ORIENTATION = "corr(projection, per-patch activation norm) > 0; else |max| >= |min|"
TARGET_LAYER = "vision_model.encoder.layers[-1].layer_norm1"
OUTSIDE_BRIGHTNESS = 0.35   # how dark the parts of the meme the model did not see are drawn
_LAZY_CLASSES = ("PairLogits", "GridEigenCAM", "GridGradCAM")


class ToxicMinusNeutral:
    """Grad-CAM target: logit(toxic) - logit(neutral) (the SigLIP bias cancels)."""

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return output[..., 0] - output[..., 1]


def oriented_projection(activation_batch: np.ndarray) -> np.ndarray:
    """grad-cam's EigenCAM projection (B, C, H, W) -> (B, H, W), each map's sign oriented.

    The sign is chosen so that the projection correlates positively with the per-patch L2 norm of the
    activations (the projection is centred, so this is sign(projection . norms)); where that correlation is
    below 1e-6 (e.g. all norms equal), grad-cam's Seg-Eigen-CAM rule decides: flip when |min| > |max|.
    """
    import numpy as np
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection
    acts = np.nan_to_num(np.asarray(activation_batch, dtype=np.float64), nan=0.0)
    projections = get_2d_projection(acts).astype(np.float64)
    out = []
    for a, proj in zip(acts, projections):
        norms = np.linalg.norm(a.reshape(a.shape[0], -1), axis=0)
        p, n = proj.reshape(-1), norms - norms.mean()
        denom = np.linalg.norm(p - p.mean()) * np.linalg.norm(n)
        corr = float((p - p.mean()) @ n / denom) if denom > 0 else 0.0
        if corr < -1e-6 or (abs(corr) <= 1e-6 and abs(p.min()) > abs(p.max())):
            proj = -proj
        out.append(proj)
    return np.float32(out)


class _OnGrid:
    """Make BaseCAM return maps at the patch-grid size (it otherwise upsamples to the input size)."""
    grid_wh: tuple[int, int] = (1, 1)

    def get_target_width_height(self, input_tensor):
        return self.grid_wh


@functools.cache
def _torch_classes() -> dict[str, type]:
    """The classes built on torch / pytorch-grad-cam, defined on first use (torch, grad-cam, torchvision and
    scikit-learn take ~3 s to import, which a fully cached rerun must not pay). Also reachable as
    module attributes: `pipeline.stages.cam.PairLogits`, `GridEigenCAM`, `GridGradCAM`."""
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
                from threadpoolctl import threadpool_limits  # installed with scikit-learn (grad-cam needs it)
            except ImportError:
                return self._projection(*args, **kwargs)
            with threadpool_limits(limits=1, user_api="blas"):
                return self._projection(*args, **kwargs)

        def _projection(self, input_tensor, target_layer, target_category, activations, grads, eigen_smooth):
            # EigenCAM.get_cam_image is get_2d_projection(activations), unoriented: orient it (module docstring)
            return oriented_projection(activations)

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


FULL_BOX = (0.0, 0.0, 1.0, 1.0)


def content_box(width: int, height: int, view: str = CENTER_CROP) -> tuple[float, float, float, float]:
    """The part of the model input (and so of the CAM grid) the meme itself covers, as fractions
    (left, top, right, bottom): all of it for center-crop, the centred band for pad-square."""
    if view != PAD_SQUARE:
        return FULL_BOX
    left, top, side = pad_box(width, height)
    return left / side, top / side, (left + width) / side, (top + height) / side


def seen_box(image_processor, width: int, height: int, view: str = CENTER_CROP) -> tuple[float, float, float, float]:
    """The part of a width x height image the processor keeps, as fractions (left, top, right, bottom).

    Resize (shortest_edge, or a fixed height/width) then optional centre crop: CLIP keeps the
    centred square, SigLIP (squash to a square, no crop) keeps everything. With pad-square the processor
    gets a square, which it keeps whole: the whole image is seen.
    """
    if view == PAD_SQUARE:
        return FULL_BOX
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


def overlay(image: Image.Image, cam: np.ndarray, box: tuple[float, float, float, float],
            content: tuple[float, float, float, float] = FULL_BOX, side: int = THUMBNAIL_MAX_SIDE,
            quality: int = THUMBNAIL_QUALITY) -> bytes:
    """JPEG of the meme at thumbnail size (`side`, `quality`: the precompute's --thumbnail-side /
    --thumbnail-quality), the CAM (upsampled) blended over the region the model saw.

    `box`: the region of the image the model saw (seen_box); `content`: the part of the CAM grid that lies
    over that region (content_box: all of it, except for pad-square's padding bands, which are not drawn).
    """
    import cv2
    import numpy as np
    from pytorch_grad_cam.utils.image import show_cam_on_image
    thumb = image.convert("RGB")
    thumb.thumbnail((side, side), Image.Resampling.LANCZOS)
    w, h = thumb.size
    l, t = int(round(box[0] * w)), int(round(box[1] * h))
    r, b = max(l + 1, int(round(box[2] * w))), max(t + 1, int(round(box[3] * h)))
    region = np.float32(thumb.crop((l, t, r, b))) / 255.0
    if content == FULL_BOX:
        mask = cv2.resize(cam.astype(np.float32), (r - l, b - t), interpolation=cv2.INTER_LINEAR)
    else:   # upsample the whole grid to the padded square, keep what lies over the meme
        fw, fh = (r - l) / (content[2] - content[0]), (b - t) / (content[3] - content[1])
        full = cv2.resize(cam.astype(np.float32), (max(1, int(round(fw))), max(1, int(round(fh)))),
                          interpolation=cv2.INTER_LINEAR)
        x0, y0 = int(round(content[0] * fw)), int(round(content[1] * fh))
        mask = full[y0:y0 + (b - t), x0:x0 + (r - l)]
        if mask.shape != (b - t, r - l):
            mask = cv2.resize(mask, (r - l, b - t), interpolation=cv2.INTER_LINEAR)
    blended = show_cam_on_image(region, np.clip(mask, 0.0, 1.0), use_rgb=True)
    out = ImageEnhance.Brightness(thumb).enhance(OUTSIDE_BRIGHTNESS) if box != FULL_BOX else thumb
    out.paste(Image.fromarray(blended), (l, t))
    return encode_jpeg(out, max_side=side, quality=quality)


class CamStage(Stage):
    name = "cam"
    table = "heatmaps"
    version = "1"
    needs_ocr_text = False

    def __init__(self, model: str = DEFAULTS.clip_model, methods: str | Sequence[str] | None = None,
                 device: str = DEFAULTS.device, batch_size: int = DEFAULTS.batch_size,
                 view: str | Sequence[str] | None = None, overlay_side: int = THUMBNAIL_MAX_SIDE,
                 overlay_quality: int = THUMBNAIL_QUALITY):
        if methods is None or methods == "all":
            methods = METHODS
        elif isinstance(methods, str):
            methods = [m.strip() for m in methods.split(",") if m.strip()]
        unknown = [m for m in methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown CAM method(s) {unknown}; known: {', '.join(METHODS)}")
        if view is None:
            view = [DEFAULT_VIEW]
        elif view == "all":
            view = list(VIEWS)
        elif isinstance(view, str):
            view = [v.strip() for v in view.split(",") if v.strip()]
        bad = [v for v in view if v not in VIEWS]
        if bad or not view:
            raise ValueError(f"unknown CAM view(s) {bad}; known: {', '.join(VIEWS)}")
        self.model = model
        self.methods = list(methods)
        self.views = [v for v in VIEWS if v in view]
        self.device = device
        self.batch_size = max(1, int(batch_size))
        self.overlay_side, self.overlay_quality = int(overlay_side), int(overlay_quality)   # not in the variant:
        self._model = self._processor = None                                                 # how it is drawn

    @classmethod
    def from_options(cls, o: Options) -> CamStage:
        """CAM explains CLIP's score: the same model, and the views of the CLIP prompt sets chosen."""
        return cls(model=o.clip_model, device=o.device, batch_size=o.batch_size,
                   view=views_of(list(o.clip_prompts) if o.clip_prompts else None),
                   overlay_side=o.thumbnail_side, overlay_quality=o.thumbnail_quality)

    def row_columns(self, variant: Variant) -> dict:
        return dict(method=variant.name, is_smoke=variant.is_smoke)

    def make_variants(self) -> list[Variant]:
        """One variant per (view, method); name = method + the view's suffix ("" for center-crop)."""
        smoke = is_random_weights(self.model)
        text = text_config_keys(is_sigmoid_model(self.model))
        out = []
        for view in self.views:
            pair = cam_prompt_set(view)
            for method in self.methods:
                config = dict(method=method, target_layer=TARGET_LAYER, precision="fp32")
                if method == "gradcam":   # the text pair: its text inputs are part of the result
                    config.update(target="logit(toxic) - logit(non_toxic)", prompt_version=pair.version,
                                  prompts=pair.templates(), **text)
                else:
                    config.update(orientation=EIGENCAM_ORIENTATION)
                if view != CENTER_CROP:
                    config.update(view=view)
                out.append(Variant(stage=self.name, model_id=self.model, name=method + VIEW_SUFFIX[view],
                                   config=config, stage_version=METHOD_VERSIONS[method], is_smoke=smoke))
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
        for v in self.variants():
            if v.config["method"] == "gradcam":
                check_text_inputs(self._model, v)
        pair = cam_prompt_set(DEFAULT_VIEW)   # the texts are the same in every view
        self._wrapper = _torch_classes()["PairLogits"](self._model, encode_texts(self._model, self._processor,
                                                             [pair.toxic, pair.non_toxic])).eval()

    def _cams(self, images: list[Image.Image], method: str, view: str = CENTER_CROP) -> list[np.ndarray]:
        """(grid_h, grid_w) maps in [0, 1] for a batch of images seen through `view`."""
        import torch
        classes = _torch_classes()
        gh, gw = self._grid
        ip = self._processor.image_processor
        pixels = ip(images=view_images(images, ip, view), return_tensors="pt")["pixel_values"]
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
        method, view = variant.config["method"], variant.config.get("view", CENTER_CROP)
        maps = each_or_batch(lambda items: self._cams([im for _, im in items], method, view), todo)
        gh, gw = self._grid
        for (i, image), cam in zip(todo, maps):
            if isinstance(cam, Exception):
                results[i] = cam
                continue
            try:
                cam = np.clip(np.nan_to_num(cam, nan=0.0), 0.0, 1.0)
                box = seen_box(self._processor.image_processor, *image.size, view=view)
                results[i] = dict(grid_h=gh, grid_w=gw, cam=np.round(cam * 255).astype(np.uint8).tobytes(),
                                  overlay=overlay(image, cam, box, content_box(*image.size, view=view),
                                                  self.overlay_side, self.overlay_quality))
            except Exception as e:  # noqa: BLE001
                results[i] = e
        return results
