"""Possible label issues: memes whose folder label several prediction sets confidently contradict (issue 17).

Confident learning (Cleanlab: find_label_issues, ranked by self-confidence) with the zero-shot scores as
out-of-sample probabilities (the sets never saw the labels); a meme is listed only when at least the chosen
number of sets confidently disagree with its label on their own. The evidence is each set's p(toxic) and answer.
The tool never changes a label: fixing one is moving the file to the other folder and rescanning."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import analysis, db
from dashboard import components as c
from dashboard.lang import _
from pipeline import queries as q

retired = c.page(_("Label issues"), _("Memes whose folder label several prediction sets confidently contradict: "
                                      "candidates for a second look, ranked by confident learning (Cleanlab) on the "
                                      "zero-shot scores. Labels are never changed by the tool."),
                 "predictions", "predictions", "clip,vlm")
sets = c.registered(q.PREDICTION_STAGES, "predictions", "prediction set", "clip,vlm")
scored_ids = set(analysis.calibration(retired)[0])           # the sets with scores on labelled memes
scored = [s for s in sets if s["variant_id"] in scored_ids]
c.smoke_banner(s["is_smoke"] for s in scored)
if not scored:
    st.info(_("No prediction set has a score (p(toxic)) for a meme with a true label."))
    st.stop()
by_id = {s["variant_id"]: s for s in scored}

left, right = st.columns([3, 1])
chosen = left.multiselect(_("Prediction sets that give evidence"), list(by_id), default=list(by_id),
                          format_func=lambda v: c.set_label(by_id[v]), key="label_issues:sets",
                          help=_("Their p(toxic) per meme, used as out-of-sample probabilities: none of them saw "
                                 "the labels. Sets of one model with other prompts are not independent evidence."))
if not chosen:
    st.info(_("Choose at least one prediction set."))
    st.stop()
need = right.number_input(_("Sets that must disagree"), min_value=1, max_value=len(chosen),
                          value=min(2, len(chosen)), step=1, key="label_issues:need",
                          help=_("A meme is listed only when at least this many of the chosen sets confidently "
                                 "favour the other label on their own"))
report = analysis.label_issues(chosen, retired, int(need))
issues = report["issues"]

cols = st.columns(4)
cols[0].metric(_("Memes checked"), f"{report['n_used']:,}", help=_("memes with a true label and at least one score"))
cols[1].metric(_("Flagged by confident learning"), f"{report['n_flagged_by_method']:,}")
cols[2].metric(_("Listed"), f"{len(issues):,}", help=_("flagged, and contradicted by at least {n} of the chosen "
                                                        "sets", n=report["min_sets_against"]))
cols[3].metric(_("No score in any set"), f"{report['n_no_score']:,}", help=_("memes with a true label left out"))
if report.get("note"):
    st.warning(c.note_text(report["note"]))
st.caption(_("Method: {method}. A set confidently disagrees with a meme's label when its probability of the other "
             "label reaches that label's per-set threshold (the mean probability the set gives the memes "
             "labelled so). Quality = the mean probability of the given label over the sets (0: they are sure it "
             "is the other one). A listed meme may be mislabelled, ambiguous, or a shared blind spot of the models: "
             "look at it.", method=_("confident learning (Cleanlab)") if report["method"] == "confident_learning"
                                   else _("self-confidence ranking")))

if not issues:
    st.success(_("No meme is contradicted by at least {n} of the chosen sets.", n=report["min_sets_against"]))
    st.stop()

size = c.page_size_picker()
offset, limit = c.pagination(len(issues), page_size=size, signature=(tuple(chosen), int(need), retired, size))
shown_issues = issues[offset:offset + limit]
cards = {r["meme_id"]: r for r in db.fetch_page(q.meme_cards, [i["meme_id"] for i in shown_issues])}


def card(issue: dict) -> None:
    meme = cards.get(issue["meme_id"], {})
    c.meme_image(meme.get("thumbnail"), issue["meme_id"], issue["label"], ctx="label-issues")
    st.markdown(_("folder label **{label}** · the sets suggest **{suggested}**",
                  label=c.label_text(issue["label"]), suggested=c.label_text(issue["suggested"])))
    st.caption(_("quality {q} · {k} of {m} sets disagree", q=f"{issue['quality']:.3f}", k=issue["n_sets_against"],
                 m=issue["n_sets_scored"]))
    st.dataframe(pd.DataFrame([{"set": c.set_name(by_id[v]),
                                "p(toxic)": c.fmt_score(e["score"]),
                                "answer": c.answer_text(e["answer"]) if e["answered"] else "—"}
                               for v, e in issue["evidence"].items()]),
                 hide_index=True, column_config={**c.columns(), "set": st.column_config.TextColumn(_("prediction set"))})
    c.meme_link(issue["meme_id"])


c.grid(shown_issues, card, columns=3)
