"""Errors: the false positives, false negatives and unparseable answers of one prediction set."""
from __future__ import annotations

import streamlit as st

from dashboard import analysis, db
from dashboard import components as c
from dashboard.lang import N_, _
from pipeline import queries as q

GROUPS = {"fp": N_("False positives"), "fn": N_("False negatives"), "unparsed": N_("Unparseable answers")}
TRUTH = c.TRUTH_FILTER
HAS_TEXT = {"any": N_("any"), "yes": N_("with OCR text"), "no": N_("without OCR text")}

retired = c.page(_("Errors"), _("Where a prediction set is wrong, most confident mistakes first. An unparseable "
                                "answer (the VLM named no class) is its own group."),
                 "predictions", "predictions", "clip,vlm")
sets = c.registered(q.PREDICTION_STAGES, "predictions", "prediction set", "clip,vlm")
ocr_rows = c.variant_rows("ocr")

f1, f2, f3 = st.columns([3, 1, 1])
chosen = c.pick_variant(_("Prediction set"), sets, "set", container=f1)
truth = c.url_select(_("True label"), list(TRUTH), "truth", format_func=c.option_text(TRUTH), container=f2)
has_text = c.url_select(_("OCR text"), list(HAS_TEXT), "text", format_func=c.option_text(HAS_TEXT), container=f3)
s1, s2 = st.columns([3, 2])
search = c.url_text(_("Search OCR text and model answers"), "q",
                    placeholder=_("a word or phrase (case-insensitive)"), container=s1)
ocr_variant = None
if ocr_rows:
    ocr = c.pick_variant(_("OCR text from"), ocr_rows, "ocr", default_id=c.default_ocr(ocr_rows), container=s2)
    ocr_variant = ocr["variant_id"] if ocr else None
c.smoke_banner([chosen["is_smoke"]])

args = (chosen["variant_id"], ocr_variant, None if truth == "any" else truth,
        None if has_text == "any" else has_text == "yes", search or None, retired)
counts = analysis.error_counts(*args)
m = st.columns(4)
m[0].metric(_("False positives"), f"{counts['fp']:,}", help=_("answered toxic, labelled non-toxic"))
m[1].metric(_("False negatives"), f"{counts['fn']:,}", help=_("answered non-toxic, labelled toxic"))
m[2].metric(_("Unparseable"), f"{counts['unparsed']:,}", help=_("the answer named no class"))
m[3].metric(_("Right"), f"{counts['right']:,}")

g1, g2 = st.columns([4, 1])
group = c.url_select(_("Show"), list(GROUPS), "group", radio=True, container=g1,
                     format_func=lambda g: f"{c.shown(GROUPS[g])} ({counts[g]:,})")
size = c.page_size_picker(container=g2)
offset, limit = c.pagination(counts[group], page_size=size, signature=(*args, group, size))
rows = db.fetch_page(q.error_page, *args, group, limit, offset)

if not rows:
    st.info(_("No memes in this group under these filters."))


def card(r: dict) -> None:
    c.meme_image(r["thumbnail"], r["meme_id"], r["truth"], ctx="errors")
    st.markdown(c.truth_line(r["truth"], r["pred"], r["score"]))
    c.show_low_mass_flag(r["label_mass"])
    c.text_block(_("OCR text"), r["ocr_text"])
    c.text_block(_("Explanation"), r["explanation"])
    if r["pred"] is None:
        c.text_block(_("Raw answer"), r["raw_answer"])
    c.meme_link(r["meme_id"])


c.grid(rows, card)
