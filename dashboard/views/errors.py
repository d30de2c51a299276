"""Errors: the false positives, false negatives and unparseable answers of one prediction set."""
from __future__ import annotations

import streamlit as st

from dashboard import components as c
from dashboard import db
from pipeline import queries as q

GROUPS = {"fp": "False positives", "fn": "False negatives", "unparsed": "Unparseable answers"}
TRUTH = c.TRUTH_FILTER
HAS_TEXT = {"any": "any", "yes": "with OCR text", "no": "without OCR text"}

retired = c.page("Errors", "Where a prediction set is wrong, most confident mistakes first. An unparseable "
                 "answer (the VLM named no class) is its own group.", "predictions", "predictions", "clip,vlm")
sets = c.registered(q.PREDICTION_STAGES, "predictions", "prediction set", "clip,vlm")
ocr_rows = c.variant_rows("ocr")

f1, f2, f3 = st.columns([3, 1, 1])
chosen = c.pick_variant("Prediction set", sets, "set", container=f1)
truth = c.url_select("True label", list(TRUTH), "truth", format_func=TRUTH.get, container=f2)
has_text = c.url_select("OCR text", list(HAS_TEXT), "text", format_func=HAS_TEXT.get, container=f3)
s1, s2 = st.columns([3, 2])
search = c.url_text("Search OCR text and model answers", "q", placeholder="a word or phrase (case-insensitive)",
                    container=s1)
ocr_variant = None
if ocr_rows:
    ocr = c.pick_variant("OCR text from", ocr_rows, "ocr", default_id=c.default_ocr(ocr_rows), container=s2)
    ocr_variant = ocr["variant_id"] if ocr else None
c.smoke_banner([chosen["is_smoke"]])

args = (chosen["variant_id"], ocr_variant, None if truth == "any" else truth,
        None if has_text == "any" else has_text == "yes", search or None, retired)
counts = db.fetch(q.error_counts, *args)
m = st.columns(4)
m[0].metric("False positives", f"{counts['fp']:,}", help="answered toxic, labelled non-toxic")
m[1].metric("False negatives", f"{counts['fn']:,}", help="answered non-toxic, labelled toxic")
m[2].metric("Unparseable", f"{counts['unparsed']:,}", help="the answer named no class")
m[3].metric("Right", f"{counts['right']:,}")

g1, g2 = st.columns([4, 1])
group = c.url_select("Show", list(GROUPS), "group", radio=True, container=g1,
                     format_func=lambda g: f"{GROUPS[g]} ({counts[g]:,})")
size = c.page_size_picker(container=g2)
offset, limit = c.pagination(counts[group], page_size=size, signature=(*args, group, size))
rows = db.fetch_page(q.error_page, *args, group, limit, offset)

if not rows:
    st.info("No memes in this group under these filters.")


def card(r: dict) -> None:
    c.meme_image(r["thumbnail"], r["meme_id"], r["truth"], ctx="errors")
    st.markdown(c.truth_line(r["truth"], r["pred"], r["score"]))
    c.show_low_mass_flag(r["label_mass"])
    c.text_block("OCR text", r["ocr_text"])
    c.text_block("Explanation", r["explanation"])
    if r["pred"] is None:
        c.text_block("Raw answer", r["raw_answer"])
    c.meme_link(r["meme_id"])


c.grid(rows, card)
