"""The views stage: the derived images of each meme that the CLIP and VLM stages judge beside the full one
(issue 16: does the toxicity come from the caption or the picture?), stored as thumbnails so the dashboard
shows exactly what a model saw.

One Variant per derived view of `--views` (pipeline.views: caption-removed, caption-only); its config holds
the view and pipeline.views.VIEW_VERSION, and, as every variant that reads OCR, the OCR variant whose boxes
and text it uses (a new OCR engine gives new views). A `view_images` row per (meme, view):
  has_caption   False when the meme's OCR text has no letter or digit: then there is no derived view (no
                thumbnail), and the prediction stages give it no derived answer: it is recorded here, and
                the Modality page counts it as "no OCR text" instead of leaving it out silently;
  n_boxes       the OCR boxes the caption-removed view inpainted;
  thumbnail     the derived image as a JPEG at the run's --thumbnail-side / --thumbnail-quality.
Pure image work (pipeline.views: OpenCV inpainting, PIL drawing): no model, seconds per hundred memes.
"""
from __future__ import annotations

from pipeline.images import encode_jpeg
from pipeline.options import DEFAULTS, Options
from pipeline.stages.base import MemeInput, Stage, Variant
from pipeline.views import CAPTION_REMOVED, DERIVED_VIEWS, VIEW_CONFIG_KEY, VIEW_VERSION, has_caption, selected_views

RENDERERS = {CAPTION_REMOVED: "opencv-inpaint"}     # model_id of a view's variant: what made it
RENDER = "render"


class ViewsStage(Stage):
    name = "views"
    table = "view_images"
    version = "1"
    needs_ocr_text = True
    needs_ocr_boxes = True
    batch_size = 16

    def __init__(self, views=DEFAULTS.views, thumbnail_side: int = DEFAULTS.thumbnail_side,
                 thumbnail_quality: int = DEFAULTS.thumbnail_quality):
        self.views = [v for v in selected_views(views) if v in DERIVED_VIEWS]
        self.thumbnail_side, self.thumbnail_quality = int(thumbnail_side), int(thumbnail_quality)

    @classmethod
    def from_options(cls, o: Options) -> ViewsStage:
        return cls(views=o.views, thumbnail_side=o.thumbnail_side, thumbnail_quality=o.thumbnail_quality)

    def make_variants(self) -> list[Variant]:
        return [Variant(stage=self.name, model_id=RENDERERS.get(v, RENDER), name=v,
                        config={VIEW_CONFIG_KEY: v, "view_version": VIEW_VERSION}, stage_version=self.version,
                        reads_ocr=True) for v in self.views]

    def row_columns(self, variant: Variant) -> dict:
        return dict(view=variant.name)

    def describe(self) -> str:
        return ", ".join(self.views) if self.views else "no derived views (--views full)"

    def process(self, memes: list[MemeInput], variant: Variant) -> list[dict | Exception]:
        out: list[dict | Exception] = []
        for m in memes:
            try:
                if not has_caption(m.ocr_text):
                    out.append(dict(has_caption=False, n_boxes=len(m.ocr_boxes or []), thumbnail=None,
                                    thumbnail_mime=None, width=None, height=None))
                    continue
                image = m.view_image(variant.name)
                out.append(dict(has_caption=True, n_boxes=len(m.ocr_boxes or []),
                                thumbnail=encode_jpeg(image, self.thumbnail_side, self.thumbnail_quality),
                                thumbnail_mime="image/jpeg", width=image.width, height=image.height))
            except Exception as e:  # noqa: BLE001 - an unreadable meme fails in its own slot
                out.append(e)
        return out
