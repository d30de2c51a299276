"""Heatmaps: CAM overlays per method, blended over the thumbnail, with optional OCR boxes."""
from __future__ import annotations

import streamlit as st

from dashboard import components as c
from dashboard import db, imaging
from dashboard.lang import N_, _
from pipeline import queries as q

VIEWS = {"overlay": N_("Overlay"), "original": N_("Original"), "side": N_("Side by side")}
TRUTH = c.TRUTH_FILTER
PRED = {"any": N_("any"), "toxic": N_("toxic"), "non_toxic": N_("non-toxic"), "unparsed": N_("unparseable")}
CORRECT = {"any": N_("any"), "right": N_("right"), "wrong": N_("wrong")}

retired = c.page(_("Heatmaps"), _("Where the image model looked (class activation maps). Filters by true label, "
                                  "answer and correctness use the prediction set chosen below."),
                 "heatmaps", "heatmaps", "cam")
cams = c.registered("cam", "heatmaps", "method", "cam")
sets = c.variant_rows(q.PREDICTION_STAGES)
ocr_rows = c.variant_rows("ocr")

r1c1, r1c2 = st.columns(2)
cam = c.pick_variant(_("Method"), cams, "cam", container=r1c1)
same_model = [s for s in sets if s["model_id"] == cam["model_id"]]
pred = c.pick_variant(_("Prediction set (for the answer filters)"), sets, "set", container=r1c2,
                      default_id=(same_model or sets or [{"variant_id": None}])[0]["variant_id"],
                      allow_none=_("none (no answer filters)")) if sets else None
c.smoke_banner([cam["is_smoke"]] + ([pred["is_smoke"]] if pred else []))

r2 = st.columns([2, 2, 1, 1])
view = c.url_select(_("View"), list(VIEWS), "view", radio=True, format_func=c.option_text(VIEWS), container=r2[0])
opacity = c.url_slider(_("Overlay opacity (%)"), "alpha", min_value=0, max_value=100, default=80, step=5,
                       container=r2[1])
show_boxes = c.url_toggle(_("OCR boxes"), "boxes", container=r2[2]) if ocr_rows else False
size = c.page_size_picker(container=r2[3])
ocr_variant = None
if show_boxes:
    ocr = c.pick_variant(_("Boxes from"), ocr_rows, "ocr", default_id=c.default_ocr(ocr_rows))
    ocr_variant = ocr["variant_id"] if ocr else None

r3 = st.columns(3)
truth = c.url_select(_("True label"), list(TRUTH), "truth", format_func=c.option_text(TRUTH), container=r3[0])
if pred:
    answer = c.url_select(_("Answer"), list(PRED), "answer", format_func=c.option_text(PRED), container=r3[1])
    correct = c.url_select(_("Correctness"), list(CORRECT), "correct", format_func=c.option_text(CORRECT),
                           container=r3[2])
else:
    answer, correct = "any", "any"

args = (cam["variant_id"], pred["variant_id"] if pred else None, None if truth == "any" else truth,
        None if answer == "any" else answer, None if correct == "any" else correct == "right", retired)
total = db.fetch(q.heatmap_count, *args)
offset, limit = c.pagination(total, page_size=size, signature=(*args, size))
rows = db.fetch_page(q.heatmap_page, *args, ocr_variant, limit, offset)
if not rows:
    st.info(_("No heatmaps match these filters."))


def picture(r: dict) -> bytes | None:
    thumb, overlay = r["thumbnail"], r["overlay"]
    if not thumb and not overlay:
        return None
    if not thumb or not overlay:
        return thumb or overlay
    blended = imaging.blend(thumb, overlay, opacity / 100)
    if show_boxes:
        thumb = imaging.draw_boxes(thumb, r["boxes"], r["width"], r["height"])
        blended = imaging.draw_boxes(blended, r["boxes"], r["width"], r["height"])
    return {"overlay": blended, "original": thumb, "side": None}.get(view) or imaging.side_by_side(thumb, blended)


def card(r: dict) -> None:
    c.meme_image(picture(r), r["meme_id"], r["truth"], ctx="heatmap")
    st.markdown(c.truth_line(r["truth"], r["pred"], r["score"], show_pred=pred is not None and r["pred_class"] != "none"))
    c.meme_link(r["meme_id"])


c.grid(rows, card, columns=2 if view == "side" else 4)
