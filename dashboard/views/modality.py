"""Modality: where a decision comes from — the caption or the picture (the same set on three views)."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import components as c
from dashboard import db
from dashboard.lang import _, current
from pipeline import modality
from pipeline import queries as q
from pipeline.i18n import N_
from pipeline.views import CAPTION_ONLY, CAPTION_REMOVED, FULL

TRUTH = c.TRUTH_FILTER
CELLS = {"image-driven": N_("image-driven: still toxic without the caption"),
         "text-driven": N_("text-driven: toxic only with the caption"),
         "needs both": N_("needs both: toxic on neither derived view"),
         "not toxic on the full meme": N_("not toxic on the full meme")}

retired = c.page(_("Modality"), _("One prediction set on three views of each meme: the full meme, the meme with its "
                                  "caption inpainted away, and the caption alone (for CLIP drawn as plain text on a "
                                  "plain background, for the VLM given as text without the image). Which decisions "
                                  "survive removing the caption?"),
                 "predictions", "predictions", "clip,vlm")
sets = db.fetch(q.modality_sets)
if not sets:
    st.info(_("No prediction set has answers on the derived views yet. They are computed by:"))
    st.code(c.fill_command("ocr,views,clip,vlm") + " --views all", language="bash")
    st.stop()

chosen = c.pick_variant(_("Prediction set"), sets, "set", default_id=sets[0]["variant_id"])
c.smoke_banner([chosen["is_smoke"]])
ids = (chosen["variant_id"], chosen["removed_id"], chosen["only_id"])
cover = db.fetch(q.modality_coverage, *ids, chosen["ocr_source"], retired)
summary = modality.summary(modality.three_way_table(db.fetch(q.modality_counts, *ids, retired)))

m = st.columns(4)
m[0].metric(_("Memes on all three views"), f"{cover['three']:,}")
m[1].metric(_("No OCR text"), f"{cover['no_text']:,}",
            help=_("memes whose OCR text has no letter or digit: they have no caption to remove or to show alone, "
                   "so no derived view; left out of every number below"))
m[2].metric(_("Not computed yet"), f"{cover['pending']:,}",
            help=_("answered on the full meme but not yet on both derived views (or failed: see the Runs page)"))
m[3].metric(_("Answered on the full meme"), f"{cover['full']:,}")
if summary["n"] == 0:
    st.info(_("No meme with a true label has answers on all three views."))
    st.stop()


def share(e) -> str:
    d = e.as_dict()
    return c.fmt_estimate(d, 2) + f" · {round(d['value'] * d['n']) if d['value'] is not None else 0}/{d['n']}"


st.subheader(_("Of the memes called toxic on the full meme"))
st.dataframe(pd.DataFrame([
    {_("True label"): c.shown(TRUTH["any" if t is None else t]),
     **{c.shown(modality.DRIVER_NAMES[k]): share(e) for k, e in summary["drivers"][t].items()}}
    for t in (None, "toxic", "non_toxic")]), hide_index=True)
st.caption(_("image-driven: still toxic with the caption removed; text-driven: not toxic without the caption but "
             "toxic on the caption alone; needs both: toxic on neither derived view. Share [Wilson 95% interval] · "
             "memes. An unparseable answer counts as not toxic."))

st.subheader(_("Decisions on the three views"))
st.dataframe(pd.DataFrame([{
    _("True label"): c.label_text(r["truth"]), _("Full meme"): c.answer_text(r[FULL]),
    _("Caption removed"): c.answer_text(r[CAPTION_REMOVED]), _("Caption only"): c.answer_text(r[CAPTION_ONLY]),
    _("Memes"): r["memes"]} for r in summary["cells"]]), hide_index=True)

st.subheader(_("Paired tests between the views"))


view_name = {k: c.shown(v) for k, v in modality.VIEW_NAMES.items()}
st.dataframe(pd.DataFrame([{
    "A": view_name[t["a"]], "B": view_name[t["b"]], _("Memes"): t["n"],
    _("Toxic on A"): t["toxic_a"], _("Toxic on B"): t["toxic_b"],
    _("Toxic on A only"): t["only_a"], _("Toxic on B only"): t["only_b"],
    _("McNemar p (decisions)"): c.fmt_p(t["decision_p"]), _("Holm p"): c.fmt_p(t["decision_p_holm"]),
    _("Accuracy A − B"): c.fmt_estimate(t["accuracy"]["accuracy_diff"]),
    _("McNemar p (correctness, Holm)"): c.fmt_p(t["accuracy"]["mcnemar_p_holm"]),
} for t in summary["tests"]]), hide_index=True)
for t in summary["tests"]:
    st.text(modality.reading_text(t, current()))
st.caption(_("Exact McNemar tests on the memes answered on all three views: on the decisions (toxic or not) and on "
             "correctness (an unparseable answer is wrong), each Holm-adjusted over the three pairs."))

st.subheader(_("Memes per cell, the three views side by side"))
g1, g2, g3 = st.columns([4, 1, 1])
truth = c.url_select(_("True label"), list(TRUTH), "truth", format_func=c.option_text(TRUTH), container=g2)
per_cell = db.fetch(q.modality_cell_counts, *ids, retired, None if truth == "any" else truth)
cell = c.url_select(_("Cell"), list(CELLS), "cell", default="image-driven", radio=True, container=g1,
                    format_func=lambda k: f"{c.shown(CELLS[k])} ({per_cell.get(k, 0):,})")
size = c.page_size_picker(container=g3)
offset, limit = c.pagination(per_cell.get(cell, 0), page_size=size, signature=(ids, truth, cell, size, retired))
rows = db.fetch_page(q.modality_page, *ids, retired, cell, None if truth == "any" else truth,
                     chosen["removed_views"], chosen["only_views"], limit, offset)
if not rows:
    st.info(_("No memes in this cell."))


def card(r: dict) -> None:
    st.markdown(c.truth_line(r["truth"], show_pred=False))
    cols = st.columns(3)
    for col, thumb, view, label, score in (
            (cols[0], r["thumbnail"], FULL, r["full_label"], r["full_score"]),
            (cols[1], r["removed_thumbnail"], CAPTION_REMOVED, r["removed_label"], r["removed_score"]),
            (cols[2], r["only_thumbnail"], CAPTION_ONLY, r["only_label"], r["only_score"])):
        with col:
            if thumb is None and view == CAPTION_ONLY and chosen["stage"] == "vlm":
                st.caption(_("text only, no image"))
            else:
                c.meme_image(thumb, r["meme_id"], r["truth"], ctx=f"modality-{view}")
            st.markdown(f"{view_name[view]}: **{c.answer_text(label)}** ({c.fmt_score(score)})")
    c.meme_link(r["meme_id"])


c.grid(rows, card, columns=2)
