"""Meme: one meme in full (?meme=<id>): image, OCR per engine, every model's answers, heatmaps, and the memes
most similar to it by CLIP image embedding (issue 17; ?emb=<embedding variant> when there are several).
Without an id: a search by file name (?file=), listing the matching memes with a link to each."""
from __future__ import annotations

import json
import re

import pandas as pd
import streamlit as st

from dashboard import components as c
from dashboard import db, first_run, imaging
from dashboard.lang import _, _n
from pipeline import queries as q
from pipeline.faithfulness import FAILURE_KIND_NAMES
from pipeline.names import public_name

ID_PATTERN = re.compile(r"[0-9a-f]{6,64}")
THUMB_WIDTH = 384                      # thumbnails are stored at <= 384 px: show them at that size



def search_by_file_name() -> None:
    """A text box (?file=) and the memes whose stored path contains it, each with its 'Open meme' link."""
    name = c.url_text(_("Search by file name"), "file", max_chars=200,
                      placeholder=_("part of a file name or folder, e.g. cat.jpg (case-insensitive)"),
                      help=_("Looks in every path a meme was found under (relative to the memes folder)."))
    if not name:
        return
    rows = db.fetch(q.search_memes, name, c.include_retired())
    if not rows:
        st.info(_("No meme has a file name or folder containing this text."))
        return
    st.caption(_n(len(rows), "{n} meme found", "{n} memes found")
               + (" · " + _("showing the first {n}: give more of the name", n=q.SEARCH_LIMIT)
                  if len(rows) >= q.SEARCH_LIMIT else ""))
    for r in rows:
        with st.container(border=True):
            c_path, c_label, c_link = st.columns([5, 2, 2], vertical_alignment="center")
            c_path.text(r["rel_path"])                  # a file name is data: plain text, never markdown
            c_label.caption(c.label_text(r["label"]) + (" · " + _("retired") if r["retired"] else ""))
            with c_link:
                c.meme_link(r["meme_id"])


st.title(_("Meme"))
first_run.top_notices("meme")           # the demo set; models that could not be loaded (the fix)
text = c.url_text(_("Meme id"), "meme", max_chars=64, placeholder=_("the meme's SHA-256, or its first characters"),
                  help=_("Every gallery card has an 'Open meme' link that fills this in."))
if not text:
    st.info(_("Open a meme from a gallery (Errors, Disagreement, Heatmaps: 'Open meme'), paste its id above, "
              "or search by file name below."))
    c.require("memes", "memes")
    search_by_file_name()
    st.stop()
c.require("memes", "memes")
text = text.lower()
ids = db.fetch(q.find_meme, text) if ID_PATTERN.fullmatch(text) else []
if not ids:
    if db.current_slice() is not None and ID_PATTERN.fullmatch(text) and db.fetch_all_memes(q.find_meme, text):
        st.warning(_("This meme is outside the slice chosen in the sidebar: choose “all memes” there to see it."))
    else:
        st.warning(_("Meme not found: no meme in this cache has this id."))
    st.stop()
if len(ids) > 1 and ids[0] != text:
    st.warning(_("Several memes start with these characters: give more of the id."))
    st.stop()
meme_id = ids[0]
m = db.fetch(q.meme, meme_id)
st.code(meme_id, language=None)
predictions = db.fetch(q.meme_predictions, meme_id)
heatmaps = db.fetch(q.meme_heatmaps, meme_id)
faith = db.fetch(q.meme_faithfulness, meme_id)          # per CAM method / VLM set (faithfulness stage)
embeddings = db.fetch(q.meme_embedding_variants, meme_id)   # per image model (the CLIP stage's embeddings)
c.smoke_banner([p["is_smoke"] for p in predictions] + [h["is_smoke"] for h in heatmaps]
               + [e["is_smoke"] for e in embeddings])

# ------------------------------------------------------------------------------------ image + facts
left, right = st.columns([3, 2])
with left:
    original = imaging.original_image(m["memes_root"], m["rel_path"], meme_id)
    c.meme_image(original or m["thumbnail"], meme_id, m["label"], ctx="meme",
                 width="content" if original else THUMB_WIDTH)
    st.caption(_("The original file, at up to 1600 px.") if original else
               _("The original file is not at its recorded place (or has changed): showing the stored thumbnail."))
with right:
    st.markdown(c.truth_line(m["label"], show_pred=False)
                + (" · " + _("**label conflict**") if m["label_conflict"] else "")
                + (" · " + _("**retired** (not found by the latest scan)") if m["retired"] else ""))
    frames = (", " + _n(m["n_frames"], "{n} frame", "{n} frames")) if (m["n_frames"] or 1) > 1 else ""
    facts = pd.DataFrame([
        (_("size"), f"{m['width']} × {m['height']} px" if m["width"] else "—"),
        (_("format"), str(m["format"] or "—") + frames),
        (_("file size"), _("{size} KiB", size=f"{(m['n_bytes'] or 0) / 1024:,.1f}")),
        (_("first seen in run"), str(m["first_run_id"])),
        (_("last seen in run"), str(m["last_seen_run_id"])),
    ], columns=["", "value"])
    st.dataframe(facts, hide_index=True, column_config=c.columns(["value"]))
    st.caption(_("Paths (relative to the memes folder)"))
    paths = db.fetch(q.meme_paths, meme_id)
    st.dataframe(paths.assign(label=paths["label"].map(c.label_text)), hide_index=True, column_config=c.columns())

# ------------------------------------------------------------------------------------ answers
st.subheader(_("Model answers"))
if not predictions:
    st.info(_("No model has answered for this meme yet."))
else:
    st.dataframe(pd.DataFrame([{
        "stage": p["stage"], "model": public_name(p["model_id"]), "prompt": p["prompt_version"],
        "answer": c.answer_text(p["label"]), "p(toxic)": p["score"],
        "label mass": p["label_mass"], "low mass": c.low_mass_flag(p["label_mass"]) is not None,
        "right": None if m["label"] is None else p["label"] == m["label"], "smoke": p["is_smoke"],
        "run": p["run_id"], "at": p["created_at"],
    } for p in predictions]), hide_index=True, column_config={
        **c.columns(), "model": c.model_column(p["model_id"] for p in predictions)})
    for p in predictions:
        title = _("{stage} {model} · prompt {prompt}", stage=p["stage"].upper(), model=public_name(p["model_id"]),
                  prompt=p["prompt_version"])
        with st.expander(c.md_escape(f"{title} — {c.answer_text(p['label'])} ({c.fmt_score(p['score'])})")):
            c.show_low_mass_flag(p["label_mass"])
            if p["score"] is None:        # a served VLM that could not give both label words' log-probabilities
                c.text_block(_("No p(toxic): why"), p.get("score_note"), limit=1000)
            c.text_block(_("Explanation"), p["explanation"], limit=5000)
            f = faith.get(p["variant_id"])
            if f:
                st.caption(_("Faithfulness (stated rules: the Faithfulness page)"))
                if f["has_caption"]:
                    st.text(_("quotes the caption: {yes}", yes=_("yes") if f["quotes_caption"] else _("no"))
                            + (" — " + ", ".join(f["quoted_words"]) if f["quoted_words"] else ""))
                if f["contradiction"]:
                    st.text(_("possible contradiction with its class line: {cue}", cue=f["contradiction_cue"] or ""))
                if f["failure_kind"]:
                    st.text(_("no class stated: {kind}", kind=c.shown(FAILURE_KIND_NAMES[f["failure_kind"]])))
            if p["raw_answer"] is not None:
                st.caption(_("Raw answer"))
                st.code(p["raw_answer"], language=None, wrap_lines=True)
            if p["logits"]:
                st.caption(_("Logits"))
                st.code(p["logits"], language=None, wrap_lines=True)
            if p["prompt"]:
                st.caption(_("Prompt"))
                st.code(p["prompt"], language=None, wrap_lines=True)

# ------------------------------------------------------------------------------------ views (issue 16)
views = db.fetch(q.meme_views, meme_id)
if views:
    st.subheader(_("The three views the models judged"))
    st.caption(_("The full meme, the meme with its OCR boxes inpainted away, and the caption alone (CLIP sees it "
                 "drawn as here; the VLM gets it as text, without an image). Answers per view: the prediction sets "
                 "named …/caption-removed and …/caption-only above; the Modality page compares them."))
    cols = st.columns(1 + len(views))
    with cols[0]:
        st.text(_("full meme"))
        c.meme_image(m["thumbnail"], meme_id, m["label"], ctx="view-full")
    for col, v in zip(cols[1:], views):
        with col:
            st.text(v["view"])
            if v["has_caption"]:
                c.meme_image(v["thumbnail"], meme_id, m["label"], ctx=f"view-{v['variant_id']}")
            else:
                st.caption(_("no OCR text: no derived view"))

# ------------------------------------------------------------------------------------ OCR
st.subheader("OCR")
ocr = db.fetch(q.meme_ocr, meme_id)
if not ocr:
    st.info(_("No OCR result for this meme yet."))
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
                st.text(_("engine {engine} {version} · mean confidence {confidence}", engine=o["engine"],
                          version=o["engine_version"] or "", confidence=c.fmt_score(o["mean_confidence"])))
                if (o["text"] or "").strip():
                    st.text(o["text"])
                else:
                    st.caption(_("no text found"))
                boxes = imaging.parse_boxes(o["boxes"])
                if boxes:
                    st.dataframe(pd.DataFrame([{"text": b["text"], "conf": b["conf"],
                                                "box (model-input px)": json.dumps(b["box"])} for b in boxes]),
                                 hide_index=True, column_config=c.columns())

# ------------------------------------------------------------------------------------ heatmaps
st.subheader(_("Heatmaps"))
if not heatmaps:
    st.info(_("No heatmap for this meme yet."))
else:
    cols = st.columns(4)
    for i, h in enumerate(heatmaps):
        with cols[i % 4]:
            st.text(f"{h['method']} · {public_name(h['model_id'])}", help=c.model_help([h["model_id"]]))
            c.meme_image(h["overlay"], meme_id, m["label"], ctx=f"cam-{h['variant_id']}")
            f = faith.get(h["variant_id"])
            if f and f["caption_mass"] is not None:
                st.caption(_("CAM mass on the caption {mass} · its share of the area {area}",
                             mass=f"{f['caption_mass']:.2f}", area=f"{f['caption_area']:.2f}"))


# ------------------------------------------------------------------------------------ similar memes (issue 17)
def similar_card(r: dict, answers: list[dict]) -> None:
    """One neighbour: its thumbnail (behind the content warning), true label, similarity, every prediction
    set's answer (set names and model ids are data: plain text) and its 'Open meme' link."""
    c.meme_image(r["thumbnail"], r["meme_id"], r["label"], ctx="similar")
    st.markdown(c.truth_line(r["label"], show_pred=False) + " · "
                + _("similarity {similarity}", similarity=f"{r['similarity']:.3f}"))
    for a in answers:
        st.text(f"{c.set_name(a)}: {c.answer_text(a['label'])} ({c.fmt_score(a['score'])})")
    c.meme_link(r["meme_id"])


st.subheader(_("Similar memes"))
if not embeddings:
    st.info(_("No image embedding of this meme is stored yet. The CLIP stage stores one per image model "
              "(from the same image pass as its answers):"))
    st.code(c.fill_command("clip"), language="bash")
else:
    if len(embeddings) > 1:
        emb = c.pick_variant(_("Image embedding of"), embeddings, "emb", default_id=embeddings[0]["variant_id"])
    else:
        emb = embeddings[0]
    st.caption(_("The memes (at most {n}) whose CLIP image embedding ({model}) is closest to this one's by cosine "
                 "similarity (1: the same direction), most similar first, each with its true label and the answers "
                 "of every prediction set. Near-copies with another label, or other answers, are worth a look.",
                 n=q.SIMILAR_LIMIT, model=public_name(emb["model_id"])), help=c.model_help([emb["model_id"]]))
    near = db.fetch_page(q.similar_memes, meme_id, emb["variant_id"], c.include_retired())
    if not near:
        st.info(_("No other meme has an image embedding of this model."))
    else:
        answers: dict[str, list[dict]] = {}
        for a in db.fetch(q.memes_set_answers, [r["meme_id"] for r in near]):
            answers.setdefault(a["meme_id"], []).append(a)
        c.grid(near, lambda r: similar_card(r, answers.get(r["meme_id"], [])))

failures = db.fetch(q.meme_failures, meme_id)
if len(failures):
    st.subheader(_("Recorded failures"))
    st.dataframe(failures, hide_index=True, column_config=c.columns())
