"""Meme: one meme in full (?meme=<id>): image, OCR per engine, every model's answers, heatmaps."""
from __future__ import annotations

import json
import re

import pandas as pd
import streamlit as st

from dashboard import components as c
from dashboard import db, imaging
from pipeline import queries as q

ID_PATTERN = re.compile(r"[0-9a-f]{6,64}")
THUMB_WIDTH = 384                      # thumbnails are stored at <= 384 px: show them at that size

st.title("Meme")
text = c.url_text("Meme id", "meme", max_chars=64, placeholder="the meme's SHA-256, or its first characters",
                  help="Every gallery card has an 'Open meme' link that fills this in.")
if not text:
    st.info("Open a meme from a gallery (Errors, Disagreement, Heatmaps: 'Open meme'), or paste its id above.")
    st.stop()
c.require("memes", "memes")
text = text.lower()
ids = db.fetch(q.find_meme, text) if ID_PATTERN.fullmatch(text) else []
if not ids:
    st.warning("Meme not found: no meme in this cache has this id.")
    st.stop()
if len(ids) > 1 and ids[0] != text:
    st.warning("Several memes start with these characters: give more of the id.")
    st.stop()
meme_id = ids[0]
m = db.fetch(q.meme, meme_id)
st.code(meme_id, language=None)
predictions = db.fetch(q.meme_predictions, meme_id)
heatmaps = db.fetch(q.meme_heatmaps, meme_id)
c.smoke_banner([p["is_smoke"] for p in predictions] + [h["is_smoke"] for h in heatmaps])

# ------------------------------------------------------------------------------------ image + facts
left, right = st.columns([3, 2])
with left:
    original = imaging.original_image(m["memes_root"], m["rel_path"], meme_id)
    c.meme_image(original or m["thumbnail"], meme_id, m["label"], ctx="meme",
                 width="content" if original else THUMB_WIDTH)
    st.caption("The original file, at up to 1600 px." if original else
               "The original file is not at its recorded place (or has changed): showing the stored thumbnail.")
with right:
    st.markdown(c.truth_line(m["label"], show_pred=False)
                + (" · **label conflict**" if m["label_conflict"] else "")
                + (" · **retired** (not found by the latest scan)" if m["retired"] else ""))
    facts = pd.DataFrame([
        ("size", f"{m['width']} × {m['height']} px" if m["width"] else "—"),
        ("format", str(m["format"] or "—") + (f", {m['n_frames']} frames" if (m["n_frames"] or 1) > 1 else "")),
        ("file size", f"{(m['n_bytes'] or 0) / 1024:,.1f} KiB"),
        ("first seen in run", str(m["first_run_id"])),
        ("last seen in run", str(m["last_seen_run_id"])),
    ], columns=["", "value"])
    st.dataframe(facts, hide_index=True)
    st.caption("Paths (relative to the memes folder)")
    st.dataframe(db.fetch(q.meme_paths, meme_id), hide_index=True)

# ------------------------------------------------------------------------------------ answers
st.subheader("Model answers")
if not predictions:
    st.info("No model has answered for this meme yet.")
else:
    st.dataframe(pd.DataFrame([{
        "stage": p["stage"], "model": p["model_id"], "prompt": p["prompt_version"],
        "answer": c.ANSWER_TEXT.get(p["label"], "?"), "p(toxic)": p["score"],
        "label mass": p["label_mass"], "low mass": c.low_mass_flag(p["label_mass"]) is not None,
        "right": None if m["label"] is None else p["label"] == m["label"], "smoke": p["is_smoke"],
        "run": p["run_id"], "at": p["created_at"],
    } for p in predictions]), hide_index=True)
    for p in predictions:
        with st.expander(c.md_escape(f"{p['stage'].upper()} {p['model_id']} · prompt {p['prompt_version']} — "
                                     f"{c.ANSWER_TEXT.get(p['label'], '?')} ({c.fmt_score(p['score'])})")):
            c.show_low_mass_flag(p["label_mass"])
            if p["score"] is None:        # a served VLM that could not give both label words' log-probabilities
                c.text_block("No p(toxic): why", p.get("score_note"), limit=1000)
            c.text_block("Explanation", p["explanation"], limit=5000)
            if p["raw_answer"] is not None:
                st.caption("Raw answer")
                st.code(p["raw_answer"], language=None, wrap_lines=True)
            if p["logits"]:
                st.caption("Logits")
                st.code(p["logits"], language=None, wrap_lines=True)
            if p["prompt"]:
                st.caption("Prompt")
                st.code(p["prompt"], language=None, wrap_lines=True)

# ------------------------------------------------------------------------------------ OCR
st.subheader("OCR")
ocr = db.fetch(q.meme_ocr, meme_id)
if not ocr:
    st.info("No OCR result for this meme yet.")
else:
    tabs = st.tabs([c.md_escape(o["name"]) for o in ocr])
    for tab, o in zip(tabs, ocr):
        with tab:
            t_left, t_right = st.columns([3, 2])
            with t_left:
                boxed = imaging.draw_boxes(m["thumbnail"], o["boxes"], m["width"], m["height"]) \
                    if m["thumbnail"] else None
                c.meme_image(boxed, meme_id, m["label"], ctx=f"ocr-{o['variant_id']}", width=THUMB_WIDTH)
            with t_right:
                st.text(f"engine {o['engine']} {o['engine_version'] or ''} · mean confidence "
                        f"{c.fmt_score(o['mean_confidence'])}")
                if (o["text"] or "").strip():
                    st.text(o["text"])
                else:
                    st.caption("no text found")
                boxes = imaging.parse_boxes(o["boxes"])
                if boxes:
                    st.dataframe(pd.DataFrame([{"text": b["text"], "conf": b["conf"],
                                                "box (model-input px)": json.dumps(b["box"])} for b in boxes]),
                                 hide_index=True)

# ------------------------------------------------------------------------------------ heatmaps
st.subheader("Heatmaps")
if not heatmaps:
    st.info("No heatmap for this meme yet.")
else:
    cols = st.columns(4)
    for i, h in enumerate(heatmaps):
        with cols[i % 4]:
            st.text(f"{h['method']} · {h['model_id']}")
            c.meme_image(h["overlay"], meme_id, m["label"], ctx=f"cam-{h['variant_id']}")

failures = db.fetch(q.meme_failures, meme_id)
if len(failures):
    st.subheader("Recorded failures")
    st.dataframe(failures, hide_index=True)
