"""Calibration: does a prediction set's p(toxic) mean what it says? (issue 17)

Per scored prediction set: expected calibration error and Brier score with intervals, the ECE a perfectly
calibrated model would show at this n, a reliability diagram; for CLIP sets (whose answer is the 0.5 rule on
p(toxic)) the metrics as a function of the threshold, the 0.5 default marked, and any other threshold labelled
by how it was chosen: on these same memes (optimistic) or by cross-validation (held-out F1).
The numbers are stored by each precompute (pipeline/summary.py) and computed now when they are not current."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import analysis, charts
from dashboard import components as c
from dashboard.lang import _
from pipeline import queries as q
from pipeline.names import public_name

retired = c.page(_("Calibration"), _("Does a prediction set's p(toxic) mean what it says? Of the memes given "
                                     "p(toxic) ≈ 0.8, about 80% should be toxic. Expected calibration error, Brier "
                                     "score and reliability diagrams per scored set; for CLIP, the metrics at every "
                                     "threshold."),
                 "predictions", "predictions", "clip,vlm")
sets = c.registered(q.PREDICTION_STAGES, "predictions", "prediction set", "clip,vlm")
per_set, stored_run = analysis.calibration(retired)
scored = [s for s in sets if s["variant_id"] in per_set]
c.smoke_banner(s["is_smoke"] for s in scored)
if not scored:
    st.info(_("No prediction set has a score (p(toxic)) for a meme with a true label."))
    st.stop()


# ------------------------------------------------------------------------------------------- the table
st.subheader(_("Calibration per model × prompt version"))
rows = []
for s in scored:
    cal = per_set[s["variant_id"]]
    null = cal["ece_null"]
    rows.append({"stage": s["stage"], "model": public_name(s["model_id"]), "prompt": s["name"],
                 "n": cal["n"], "no score": cal.get("n_no_score", 0),
                 "ECE": c.fmt_estimate(cal["ece"]), "ECE if calibrated": c.fmt_num(null.get("null_q95")),
                 "p": c.fmt_p(null.get("p_value")), "Brier": c.fmt_estimate(cal["brier"])})
st.dataframe(pd.DataFrame(rows), hide_index=True, column_config={
    **c.columns(),
    "model": c.model_column(s["model_id"] for s in scored),
    "n": st.column_config.NumberColumn("n", help=_("memes with a true label and a score from this set")),
    "no score": st.column_config.NumberColumn(_("no score"), help=_("memes with a true label and an answer but no "
                                                                     "p(toxic): left out of calibration")),
    "ECE": st.column_config.TextColumn(_("ECE [95% interval]"), help=_(
        "expected calibration error: over 10 equal-width score bins, the memes-weighted gap between the mean "
        "p(toxic) and the share of toxic memes; 0 = calibrated")),
    "ECE if calibrated": st.column_config.TextColumn(_("ECE of a calibrated model"), help=_(
        "the ECE that a perfectly calibrated model shows on these scores from chance alone (95th percentile of "
        "labels redrawn from the scores): on few memes even a calibrated model has a large ECE")),
    "p": st.column_config.TextColumn(_("p (calibrated?)"), help=_(
        "how often a perfectly calibrated model shows an ECE at least this large at this n; small = the "
        "miscalibration is more than chance (a large p does not show the set is calibrated)")),
    "Brier": st.column_config.TextColumn(_("Brier [95% interval]"), help=_(
        "mean squared error of p(toxic) against the true label; lower is better, 0.25 = always saying 0.5")),
})
methods = sorted({c.method_text(per_set[s["variant_id"]][k]) for s in scored for k in ("ece", "brier")
                  if per_set[s["variant_id"]][k].get("low") is not None})
st.caption(_("Value [95% interval]. Intervals: {methods}. The plug-in ECE is biased upward on few memes: read it "
             "against the ECE of a calibrated model at the same n.", methods=", ".join(methods) or "—")
           + " " + (_("Stored by run {run}; the answers and labels are unchanged since.", run=stored_run)
                    if stored_run is not None else
                    _("Computed now: the answers or labels changed after a precompute last stored the metrics.")))

# ------------------------------------------------------------------------------------------- reliability
st.subheader(_("Reliability diagram"))
chosen = st.multiselect(_("Prediction sets"), [s["variant_id"] for s in scored],
                        default=[s["variant_id"] for s in scored[:4]],
                        format_func=lambda v: c.set_label(next(s for s in scored if s["variant_id"] == v)),
                        key="calibration:sets")
points = pd.DataFrame([{"set": c.set_name(s), **b} for s in scored if s["variant_id"] in chosen
                       for b in per_set[s["variant_id"]]["bins"]])
if len(points):
    charts.show("reliability_diagram", points)
    st.caption(_("Each point: the memes whose p(toxic) falls in one of 10 equal-width bins; size = memes; bar = "
                 "95% Wilson interval of their toxic share. On the dashed diagonal the scores mean what they say; "
                 "below it the set overstates toxicity, above it understates it."))

# ------------------------------------------------------------------------------------------- thresholds
st.subheader(_("CLIP: the metrics at every threshold"))
clips = [s for s in scored if s["stage"] == "clip"]
if not clips:
    st.info(_("No CLIP set has scores. (A VLM answers with its written class line, not with a threshold on "
              "p(toxic), so the threshold analysis is for CLIP sets.)"))
    st.stop()
clip = c.pick_variant(_("CLIP set"), clips, "set", default_id=clips[0]["variant_id"])
th = per_set[clip["variant_id"]]["threshold"]
curve = pd.DataFrame(th["curve"])
long = curve.melt(id_vars="threshold", value_vars=list(charts.THRESHOLD_METRICS), var_name="metric",
                  value_name="value").dropna()
marks = [{"threshold": 0.5, "mark": _("0.5 (the default rule)")}]
cv, ins = th["cv"], th["in_sample"]
if cv.get("threshold") is not None:
    marks.append({"threshold": cv["threshold"], "mark": _("chosen by cross-validation")})
if ins.get("threshold") is not None:
    marks.append({"threshold": ins["threshold"], "mark": _("chosen on these memes")})
charts.show("threshold_curves", long, pd.DataFrame(marks))

d = th["default"]
cols = st.columns(3)
cols[0].metric(_("F1 at the 0.5 default"), c.fmt_num(d.get("f1")),
               help=_("the rule CLIP's answers use: toxic when p(toxic) ≥ 0.5"))
cols[1].metric(_("F1 held out, threshold chosen by cross-validation"),
               c.fmt_num(cv.get("f1")) if cv.get("f1") is not None else "—",
               help=c.note_text(cv.get("note")))
cols[2].metric(_("F1 at the threshold chosen on these memes"), c.fmt_num(ins.get("f1")),
               help=c.note_text(ins.get("note")))
lines = [_("At the 0.5 default: accuracy {acc}, precision {prec}, recall {rec}, F1 {f1} ({n} memes predicted "
           "toxic).", acc=c.fmt_num(d.get("accuracy")), prec=c.fmt_num(d.get("precision")), rec=c.fmt_num(d.get("recall")),
           f1=c.fmt_num(d.get("f1")), n=d.get("n_pred_toxic"))]
if cv.get("threshold") is not None:
    lines.append(_("Chosen by {k}-fold cross-validation: threshold {t} (median of the folds' {ts}); F1 on the "
                   "held-out folds {f1}. This is the fair estimate of what choosing a threshold from memes like "
                   "these gives.", k=cv["k"], t=c.fmt_num(cv["threshold"]),
                   ts=", ".join(c.fmt_num(t) for t in cv["fold_thresholds"]),
                   f1=c.fmt_estimate(cv.get("f1_estimate"))))
else:
    lines.append(c.note_text(cv.get("note")))
if ins.get("threshold") is not None:
    lines.append(_("Chosen on these same memes: threshold {t}, F1 {f1}. Chosen on the memes it is measured on, "
                   "so optimistic: not a held-out result.", t=c.fmt_num(ins["threshold"]), f1=c.fmt_num(ins["f1"])))
for line in lines:
    st.markdown("- " + line)
