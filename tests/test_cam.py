"""The CAM stage (EigenCAM / Grad-CAM via pytorch-grad-cam) on tiny random CLIP and SigLIP checkpoints.

Grad-CAM is checked against a hand computation with autograd (activations x mean gradients of
toxic-minus-neutral similarity); shapes, byte encoding, overlays and caching through the real CLI.
"""
from __future__ import annotations

import io

import duckdb
import numpy as np
import pytest
import torch
from PIL import Image
from tiny_model_fixtures import broken_input, one_torch_thread, synthetic_inputs  # noqa: F401 (autouse)
from transformers import AutoModel, AutoProcessor

from pipeline.config import THUMBNAIL_MAX_SIDE
from pipeline.stages.base import StageLoadError
from pipeline.stages.cam import CamStage, content_box, oriented_projection, seen_box, tokens_to_grid

KINDS = ("clip", "siglip")


def _grid(folder) -> tuple[int, int]:
    vc = AutoModel.from_pretrained(folder).config.vision_config
    return vc.image_size // vc.patch_size, vc.image_size // vc.patch_size


def _map(row) -> np.ndarray:
    return np.frombuffer(row["cam"], dtype=np.uint8).reshape(row["grid_h"], row["grid_w"]) / 255.0


def _thumb_size(image: Image.Image) -> tuple[int, int]:
    im = image.copy()
    im.thumbnail((THUMBNAIL_MAX_SIDE, THUMBNAIL_MAX_SIDE))
    return im.size


@pytest.mark.parametrize("kind", KINDS)
def test_rows_have_the_patch_grid_a_byte_map_and_a_thumbnail_overlay(tiny_models, tmp_path, kind):
    stage = CamStage(str(tiny_models[kind]), device="cpu")
    variants = stage.variants()
    assert [v.name for v in variants] == ["eigencam+pad", "gradcam+pad"]
    assert len({v.variant_id for v in variants}) == 2 and all(v.is_smoke for v in variants)
    memes = synthetic_inputs(tmp_path, 3)
    grid = _grid(tiny_models[kind])
    assert grid == {"clip": (6, 6), "siglip": (5, 5)}[kind]
    maps = {}
    for v in variants:
        rows = stage.process(memes, v)
        for meme, row in zip(memes, rows):
            assert set(row) == {"grid_h", "grid_w", "cam", "overlay"}
            assert (row["grid_h"], row["grid_w"]) == grid
            assert isinstance(row["cam"], bytes) and len(row["cam"]) == grid[0] * grid[1]
            m = _map(row)
            assert 0.0 <= m.min() and m.max() <= 1.0
            if v.name.startswith("eigencam"):
                assert m.max() == 1.0                       # min-max scaled per meme
            overlay = Image.open(io.BytesIO(row["overlay"]))
            assert overlay.format == "JPEG" and overlay.size == _thumb_size(meme.image)
        maps[v.name] = np.stack([_map(r) for r in rows])
    assert not np.allclose(maps["eigencam+pad"], maps["gradcam+pad"], atol=0.05)


@pytest.mark.parametrize("method", ["eigencam", "gradcam"])
def test_batched_maps_equal_per_image_maps(tiny_models, tmp_path, method):
    stage = CamStage(str(tiny_models["clip"]), device="cpu", methods=[method])
    memes = synthetic_inputs(tmp_path, 3)
    v = stage.variants()[0]
    together = stage.process(memes, v)
    alone = [stage.process([m], v)[0] for m in memes]
    for a, b in zip(together, alone):
        assert np.abs(_map(a) - _map(b)).max() <= 2 / 255


def test_gradcam_is_activations_times_mean_gradient_of_toxic_minus_neutral(tiny_models, tmp_path):
    folder = tiny_models["clip"]
    meme = synthetic_inputs(tmp_path, 1)[0]
    stage = CamStage(str(folder), device="cpu", methods=["gradcam"], view="center-crop")
    row = stage.process([meme], stage.variants()[0])[0]

    model, proc = AutoModel.from_pretrained(folder).eval(), AutoProcessor.from_pretrained(folder)
    gh, gw = _grid(folder)
    text = proc.tokenizer(["токсичный мем", "нейтральный мем"], padding=True, return_tensors="pt")
    with torch.no_grad():
        t = torch.nn.functional.normalize(model.get_text_features(**text).pooler_output, dim=-1)
    acts = {}
    hook = model.vision_model.encoder.layers[-1].layer_norm1.register_forward_hook(
        lambda mod, inp, out: acts.setdefault("a", out))
    pixels = proc.image_processor([meme.image], return_tensors="pt")["pixel_values"]
    img = torch.nn.functional.normalize(model.get_image_features(pixel_values=pixels).pooler_output, dim=-1)
    hook.remove()
    sims = model.logit_scale.exp() * img @ t.T
    a = acts["a"]
    (grad,) = torch.autograd.grad(sims[0, 0] - sims[0, 1], a)
    a_patch, g_patch = a[0, 1:].detach(), grad[0, 1:]                # drop CLS
    cam = torch.relu(a_patch @ g_patch.mean(0)).reshape(gh, gw).numpy()
    cam = (cam - cam.min()) / (cam.max() - cam.min() + 1e-7)
    assert np.abs(_map(row) - cam).max() <= 2 / 255


def test_tokens_map_to_the_grid_row_major_with_and_without_cls():
    gh, gw, c = 2, 3, 4
    patches = torch.arange(gh * gw, dtype=torch.float32)[None, :, None].expand(1, gh * gw, c)
    with_cls = torch.cat([torch.full((1, 1, c), -1.0), patches], dim=1)
    for x in (patches, with_cls):                              # SigLIP (no CLS), CLIP (CLS first)
        g = tokens_to_grid(x, gh, gw)
        assert g.shape == (1, c, gh, gw)
        assert g[0, 0].tolist() == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(ValueError, match="tokens"):
        tokens_to_grid(patches[:, :5], gh, gw)


def test_overlay_colours_only_the_centre_crop_clip_saw(tiny_models, tmp_path):
    clip_ip = AutoProcessor.from_pretrained(tiny_models["clip"]).image_processor
    siglip_ip = AutoProcessor.from_pretrained(tiny_models["siglip"]).image_processor
    assert seen_box(clip_ip, 400, 200) == pytest.approx((0.25, 0.0, 0.75, 1.0))
    assert seen_box(clip_ip, 100, 300) == pytest.approx((0.0, 1 / 3, 1.0, 2 / 3))
    assert seen_box(siglip_ip, 400, 200) == (0.0, 0.0, 1.0, 1.0)  # squashed, nothing cropped

    path = tmp_path / "white.png"
    Image.new("RGB", (600, 200), "white").save(path)
    from pipeline.stages.base import MemeInput
    meme = MemeInput("white", path, path.name, None)
    stage = CamStage(str(tiny_models["clip"]), device="cpu", methods=["eigencam"], view="center-crop")
    row = stage.process([meme], stage.variants()[0])[0]
    ov = np.asarray(Image.open(io.BytesIO(row["overlay"])).convert("RGB")).astype(int)
    assert ov.shape[:2] == (128, 384)
    outside = np.concatenate([ov[:, :100], ov[:, -100:]], axis=1)  # the crop is x in [128, 256)
    assert outside.std() < 4 and 70 < outside.mean() < 110         # dimmed white, no colour map
    inside = ov[:, 140:244]
    assert inside.std(axis=2).mean() > 20                          # coloured by the JET map


def test_an_unreadable_image_fails_only_its_own_slot(tiny_models, tmp_path):
    stage = CamStage(str(tiny_models["siglip"]), device="cpu")
    memes = synthetic_inputs(tmp_path, 1) + [broken_input(tmp_path)]
    out = stage.process(memes, stage.variants()[1])
    assert isinstance(out[0], dict) and isinstance(out[1], Exception)


def test_unknown_method_and_missing_model(monkeypatch):
    with pytest.raises(ValueError, match="unknown CAM method"):
        CamStage("x", methods="eigencam,scorecam")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(StageLoadError):
        CamStage("vlmemes-test/no-such-clip-model").load()


def test_methods_are_cached_as_separate_variants(tiny_models, synthetic_memes, tmp_path, capsys):
    from pipeline.cli import main
    db = tmp_path / "cam.duckdb"
    args = ["precompute", "--memes", str(synthetic_memes), "--db", str(db), "--stages", "cam",
            "--clip-model", str(tiny_models["clip"]), "--device", "cpu", "--batch-size", "5"]
    assert main(args) == 0

    def heatmaps():
        con = duckdb.connect(str(db), read_only=True)
        try:
            return con.execute("SELECT meme_id, method, variant_id, run_id, grid_h, grid_w, octet_length(cam), "
                               "is_smoke FROM heatmaps ORDER BY ALL").fetchall()
        finally:
            con.close()

    first = heatmaps()
    n = len({r[0] for r in first})
    assert n == 12 and len(first) == 2 * n
    assert {r[1] for r in first} == {"eigencam+pad", "gradcam+pad"} and len({r[2] for r in first}) == 2
    assert all(r[4:] == (6, 6, 36, True) for r in first)
    capsys.readouterr()
    assert main(args) == 0
    assert "cached" in capsys.readouterr().out
    assert heatmaps() == first                                  # nothing recomputed, same run_id


def test_a_variable_grid_siglip2_tower_is_refused_with_a_clear_message(tmp_path):
    from pipeline.devtools.tiny_clip import build_tiny_siglip2
    folder = build_tiny_siglip2(tmp_path / "tiny-random-siglip2")
    with pytest.raises(StageLoadError, match="fixed image_size/patch_size"):
        CamStage(str(folder), device="cpu").load()


# --------------------------------------------------------------------------- EigenCAM's sign
def _salient_activations(seed: int, salient=((1, 2),), c: int = 16, h: int = 4, w: int = 4) -> np.ndarray:
    """(1, C, H, W) activations: a shared mean + small noise everywhere, plus a large random vector (large norm)
    on the salient patches: the first principal component separates those patches from the rest."""
    rng = np.random.default_rng(seed)
    acts = rng.normal(size=c)[:, None, None] + 0.3 * rng.normal(size=(c, h, w))
    extra = 4.0 * rng.normal(size=c)
    for y, x in salient:
        acts[:, y, x] += extra
    return acts[None]


class _Activations(torch.nn.Module):
    """A 'model' whose target layer outputs the given activations, so the real GridEigenCAM runs on them."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Identity()
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return self.layer(x).flatten(1)


def _eigencam_map(acts: np.ndarray) -> np.ndarray:
    from pipeline.stages.cam import GridEigenCAM
    model = _Activations()
    cam = GridEigenCAM(model, [model.layer])
    cam.grid_wh = (acts.shape[3], acts.shape[2])
    try:
        return cam(input_tensor=torch.tensor(acts, dtype=torch.float32), targets=None)[0]
    finally:
        cam.activations_and_grads.release()


@pytest.mark.parametrize("salient", [((1, 2),), ((0, 0), (0, 1), (1, 0))], ids=["one-patch", "corner-region"])
def test_eigencam_shows_the_salient_patches_whatever_sign_the_svd_gives(salient):
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection
    flipped = 0
    for seed in range(20):
        acts = _salient_activations(seed, salient)
        raw = get_2d_projection(acts)[0]                     # grad-cam's EigenCAM projection, unoriented
        flipped += all(raw[y, x] < 0 for y, x in salient)    # the SVD happened to give the complement
        m = _eigencam_map(acts)                              # the stage's EigenCAM: ReLU + min-max after orienting
        others = np.ones(m.shape, bool)
        for y, x in salient:
            others[y, x] = False
            assert m[y, x] >= 0.9, (seed, m)
        assert m[others].max() < 0.5, (seed, m)
        assert np.allclose(np.abs(oriented_projection(acts)[0]), np.abs(raw), atol=1e-4)  # same component
    assert flipped >= 3     # the defect exists for these activations: raw SVD signs point away from the salient patches


def test_eigencam_orientation_falls_back_to_the_larger_extreme_when_norms_are_equal():
    # patches on a sphere (equal norms): one outlier direction, the rest clustered: the outlier is the |max|
    rng = np.random.default_rng(0)
    base = rng.normal(size=8)
    x = base + 0.05 * rng.normal(size=(16, 8))
    x[5] = -base + rng.normal(size=8)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    acts = x.T.reshape(1, 8, 4, 4)
    p = oriented_projection(acts)[0].reshape(-1)
    assert p.argmax() == 5 and abs(p.max()) >= abs(p.min())


def test_eigencam_is_a_new_stage_version_and_gradcam_keeps_its_key():
    # Variant ids computed with the code before the EigenCAM sign / view change (commit 8e5cb7a).
    old = {"eigencam": "7f7b78c6ba25", "gradcam": "23f21efedb83"}
    stage = CamStage("openai/clip-vit-large-patch14", view="all")
    ids = {v.name: v for v in stage.variants()}
    assert set(ids) == {"eigencam+pad", "gradcam+pad", "eigencam", "gradcam"}
    assert ids["gradcam"].variant_id == old["gradcam"]                     # center-crop Grad-CAM: unchanged
    assert ids["eigencam"].variant_id != old["eigencam"] and ids["eigencam"].stage_version == "2"
    assert len({v.variant_id for v in ids.values()} | set(old.values())) == 5
    assert ids["gradcam+pad"].config["prompt_version"] == "ru-v1+pad" and ids["gradcam+pad"].config["view"] == "pad-square"
    assert [v.name for v in CamStage("x").variants()] == ["eigencam+pad", "gradcam+pad"]     # the default view
    with pytest.raises(ValueError, match="unknown CAM view"):
        CamStage("x", view="squash")


# --------------------------------------------------------------------------- the pad-square view
def test_cam_sees_the_same_pad_square_view_as_the_score(tiny_models, tmp_path, monkeypatch):
    from test_clip import caption_pixels, spy_pixels, tall_meme_with_top_caption
    meme = tall_meme_with_top_caption(tmp_path)
    counts = {}
    for view in ("center-crop", "pad-square"):
        stage = CamStage(str(tiny_models["clip"]), device="cpu", methods=["eigencam"], view=view)
        stage.load()
        seen = spy_pixels(monkeypatch, stage._model)
        row = stage.process([meme], stage.variants()[0])[0]
        assert isinstance(row, dict), row
        counts[view] = caption_pixels(seen[0], stage._processor.image_processor)
        monkeypatch.undo()
    assert counts["center-crop"] == 0 and counts["pad-square"] > 0


def test_pad_square_overlay_colours_the_whole_meme_and_skips_the_padding(tiny_models, tmp_path):
    assert content_box(400, 200, "pad-square") == pytest.approx((0.0, 0.25, 1.0, 0.75))
    assert content_box(400, 200, "center-crop") == (0.0, 0.0, 1.0, 1.0)
    clip_ip = AutoProcessor.from_pretrained(tiny_models["clip"]).image_processor
    assert seen_box(clip_ip, 400, 200, view="pad-square") == (0.0, 0.0, 1.0, 1.0)

    from pipeline.stages.cam import overlay
    image = Image.new("RGB", (600, 200), "white")
    grid = np.zeros((6, 6), np.float32)
    grid[0] = grid[-1] = 1.0  # hot only in the padding bands (rows 0 and 5 lie over y < 100 and y > 500 of the
                              # 600 px square; the meme is y in [200, 400)): nothing of it may show on the meme
    ov = np.asarray(Image.open(io.BytesIO(overlay(image, grid, (0.0, 0.0, 1.0, 1.0),
                                                  content_box(600, 200, "pad-square")))).convert("RGB")).astype(int)
    cold = np.asarray(Image.open(io.BytesIO(overlay(image, np.zeros((6, 6), np.float32), (0.0, 0.0, 1.0, 1.0),
                                                    content_box(600, 200, "pad-square")))).convert("RGB")).astype(int)
    assert ov.shape[:2] == (128, 384)
    assert np.abs(ov - cold).mean() < 3                       # the map's padding rows are not drawn
    assert cold[..., 2].mean() > cold[..., 0].mean() + 40     # JET blue over the whole meme, nothing dimmed
    grid[2:4] = 1.0                                           # hot over the meme: shows
    hot = np.asarray(Image.open(io.BytesIO(overlay(image, grid, (0.0, 0.0, 1.0, 1.0),
                                                   content_box(600, 200, "pad-square")))).convert("RGB")).astype(int)
    assert np.abs(hot - cold).mean() > 40
