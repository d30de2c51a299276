"""Faithfulness: does what a model looks at, or says, follow the meme's caption? (issue 16)

CLIP: the share of the CAM heat map inside the OCR boxes against the boxes' share of the area, by true label
and by the correctness of a chosen CLIP set. VLM: explanations that quote the caption, and possible
contradictions between an explanation and its own class line (a stated rule, never shown as a fact).
The measures are stored per meme by the faithfulness stage (pipeline/stages/faithfulness.py)."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import charts, db
from dashboard import components as c
from dashboard.lang import _
from pipeline import faithfulness as fm
from pipeline import queries as q
from pipeline.i18n import N_

GROUP_NAMES = {"all": N_("all memes"), "toxic": N_("true label toxic"), "non_toxic": N_("true label non-toxic"),
               "correct": N_("answer right"), "wrong": N_("answer wrong")}
CONTRADICTIONS_SHOWN = 12

retired = c.page(_("Faithfulness"), _("Does what a model looks at, or says, follow the meme's caption? Where CLIP's "
                                      "heat map lies against the OCR boxes, and whether the VLM's explanation quotes "
                                      "the caption or argues against its own answer."),
                 "faithfulness", "faithfulness", "ocr,cam,vlm,faithfulness")
sources = db.fetch(q.faithfulness_sources)
c.smoke_banner(s["is_smoke"] for s in sources)


def share(e) -> str:
    d = e.as_dict()
    k = round(d["value"] * d["n"]) if d["value"] is not None else 0
    return c.fmt_estimate(d, 2) + f" · {k}/{d['n']}"


# ------------------------------------------------------------------------------------------- CLIP: CAM mass
st.subheader(_("Does CLIP look at the caption?"))
cams = [s for s in sources if s["measure"] == "cam"]
if not cams:
    st.info(_("No CAM method is measured yet."))
else:
    m1, m2 = st.columns(2)
    cam = c.pick_variant(_("CAM method"), cams, "cam", default_id=cams[0]["variant_id"], container=m1)
    clips = [v for v in c.variant_rows("clip") if v["model_id"] == cam["model_id"]]
    clip = c.pick_variant(_("Correctness of the CLIP set"), clips, "clip", container=m2,
                          default_id=clips[0]["variant_id"] if clips else None, allow_none=_("none"))
    groups = fm.cam_summary(db.fetch(q.cam_caption_mass, cam["variant_id"], clip["variant_id"] if clip else None,
                                     retired))
    if not groups:
        st.info(_("No meme with a true label and an OCR caption has this heat map."))
    else:
        st.dataframe(pd.DataFrame([{
            _("Memes"): c.shown(GROUP_NAMES[g["group"]]), "n": g["n"],
            _("CAM mass on the caption (median)"): c.fmt_num(g["mass"]),
            _("caption's share of the area (median)"): c.fmt_num(g["area"]),
            _("mass / area (median)"): c.fmt_num(g["ratio"], 2),
            _("mass > area"): share(g["above_share"]), _("sign test p"): c.fmt_p(g["sign_p"]),
        } for g in groups]), hide_index=True)
        st.caption(_("Per meme: the share of the heat map's mass inside the OCR boxes, against the share of the "
                     "picture the boxes cover (over the part the model saw). mass / area above 1: the map favours "
                     "the caption. «mass > area»: share of memes [Wilson 95% interval] · memes; sign test: exact "
                     "two-sided binomial test of that share against 1/2. A heat map shows where the score is "
                     "sensitive, not what the model reads."))
        hist = [{"bin": b, "label": g["group"], "memes": n} for g in groups if g["group"] in ("toxic", "non_toxic")
                for b, n in sorted(g["bins"].items())]
        if hist:
            charts.show("caption_mass_histogram", pd.DataFrame(hist))

# ------------------------------------------------------------------------------------------- VLM: explanations
st.subheader(_("Does the VLM's explanation follow the caption?"))
answers = [s for s in sources if s["measure"] == "answer"]
if not answers:
    st.info(_("No VLM prediction set is measured yet."))
    st.stop()
vlm = c.pick_variant(_("VLM prediction set"), answers, "set", default_id=answers[0]["variant_id"])
rows = fm.answer_summary(db.fetch(q.answer_faithfulness, vlm["variant_id"], retired))
if vlm["meme_view"]:
    st.caption(_("This set was asked on a derived view of the meme (see the Modality page)."))
st.dataframe(pd.DataFrame([{
    _("Memes"): c.shown(GROUP_NAMES[r["group"]]), _("answers"): r["n"], _("measured"): r["measured"],
    _("quotes the caption"): share(r["quote_share"]),
    _("possible contradiction"): share(r["contradiction_share"]),
} for r in rows]), hide_index=True)
st.caption(_("Quotes the caption: at least {words} of the caption's words (or half of them) appear in the "
             "explanation, Cyrillic-normalised, of the answers on memes with an OCR caption. Possible contradiction: "
             "the explanation states the other class than its own class line somewhere, by a stated rule "
             "(pipeline/faithfulness.py), of the answers that state a class. Share [Wilson 95% interval] · "
             "answers. Neither is proof: a rule reads words, not meaning.", words=fm.QUOTE_MIN_WORDS))

flagged = db.fetch(q.contradiction_examples, vlm["variant_id"], retired, CONTRADICTIONS_SHOWN)
if flagged:
    st.markdown("**" + _("Possible contradictions") + "**")
    for r in flagged:
        with st.container(border=True):
            st.markdown(c.truth_line(r["truth"], r["label"]))
            st.text(_("the wording: {cue}", cue=r["cue"] or "—"))
            st.text(r["explanation"] or "")
            c.meme_link(r["meme_id"])
