"""Overview: what the cache holds (memes, images, OCR, models) and the metrics of every prediction set."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import analysis, charts, db, first_run
from dashboard import components as c
from dashboard.lang import N_, _
from pipeline import queries as q
from pipeline.faithfulness import FAILURE_KIND_NAMES, FAILURE_KINDS
from pipeline.names import public_name
from pipeline.stages.vlm_answer import LOW_LABEL_MASS

retired = c.page(_("Overview"), _("What the cache holds, and how every prediction set (model × prompt version) "
                                   "scores against the folder labels."), "memes", "memes")

# ------------------------------------------------------------------------------------ memes
ov = db.fetch(q.meme_overview, retired)
cols = st.columns(6)
cols[0].metric(_("Memes"), f"{ov['memes']:,}")
cols[1].metric(_("Toxic"), f"{ov['toxic']:,}")
cols[2].metric(_("Non-toxic"), f"{ov['non_toxic']:,}")
cols[3].metric(_("Label conflicts"), f"{ov['conflicts']:,}", help=_("Same bytes found under both labels: no true label."))
cols[4].metric(_("Retired"), f"{ov['retired_total']:,}",
               help=_("No longer found by the latest scan (included)") if retired else
               _("No longer found by the latest scan (left out; see the sidebar)"))
cols[5].metric(_("Animated"), f"{ov['animated']:,}", help=_("GIF/WebP with more than one frame (first frame used)."))
charts.show("label_bars", ov)

# ------------------------------------------------------------------------------------ images
st.subheader(_("Images"))
left, right = st.columns([3, 2])
with left:
    hist = db.fetch(q.size_histogram, retired)
    if len(hist):
        charts.show("size_histogram", hist, 4000)
with right:
    st.caption(_("Per file format: pixel sizes and file size"))
    st.dataframe(db.fetch(q.size_summary, retired), hide_index=True, column_config=c.columns())

# ------------------------------------------------------------------------------------ near-duplicates
st.subheader(_("Near-duplicates"))
dups = db.fetch(q.near_duplicate_report, retired)
if not dups["n_hashed"]:
    st.info(_("No perceptual hashes stored yet: the next precompute's scan stores one per image."))
else:
    d1, d2, d3, d4 = st.columns(4)
    d1.metric(_("Memes hashed"), f"{dups['n_hashed']:,}", help=_("perceptual hash (pHash, 64 bits) of the first "
                                                                  "frame, stored by the scan"))
    d2.metric(_("Near-duplicate groups"), f"{dups['n_groups']:,}",
              help=_("memes whose hashes differ in at most {d} of 64 bits, joined transitively: resized, "
                     "recompressed or slightly edited copies of one picture", d=dups["max_distance"]))
    d3.metric(_("Memes in a group"), f"{dups['n_in_groups']:,}")
    d4.metric(_("Groups with both labels"), f"{dups['n_mixed']:,}",
              help=_("the same picture under both labels: label noise, or a caption that changes the class; "
                     "either way the two copies are not independent test cases"))
    if dups["n_mixed"]:
        st.warning(_("{n} near-duplicate groups carry both labels: look at them (label noise or leakage between "
                     "the classes).", n=f"{dups['n_mixed']:,}"))
    if dups["groups"]:
        table = pd.DataFrame([{"group": i + 1, "memes": len(g["memes"]), "toxic": g["toxic"],
                               "non_toxic": g["non_toxic"], "both labels": g["mixed"], "first meme": g["memes"][0]}
                              for i, g in enumerate(dups["groups"])])
        with st.expander(_("Near-duplicate groups ({shown} of {n}, groups with both labels first)",
                           shown=len(dups["groups"]), n=f"{dups['n_groups']:,}"), expanded=bool(dups["n_mixed"])):
            st.dataframe(table, hide_index=True, column_config={
                **c.columns(),
                "group": st.column_config.NumberColumn(_("group")),
                "toxic": st.column_config.NumberColumn(_("toxic")),
                "non_toxic": st.column_config.NumberColumn(_("non-toxic")),
                "both labels": st.column_config.CheckboxColumn(_("both labels")),
                "first meme": st.column_config.TextColumn(_("first meme")),
            })
            mixed = [g for g in dups["groups"] if g["mixed"]][:3]
            if mixed:
                cards = {r["meme_id"]: r for r in db.fetch_page(q.meme_cards, [m for g in mixed for m in g["memes"][:4]])}
                for i, g in enumerate(mixed):
                    st.caption(_("Group {i}: {toxic} toxic, {non} non-toxic", i=dups["groups"].index(g) + 1,
                                 toxic=g["toxic"], non=g["non_toxic"]))
                    cols = st.columns(4)
                    for col, meme_id in zip(cols, g["memes"][:4]):
                        with col:
                            card = cards.get(meme_id, {})
                            c.meme_image(card.get("thumbnail"), meme_id, card.get("truth"), ctx=f"dup-{i}")
                            st.caption(c.label_text(card.get("truth")))
                            c.meme_link(meme_id)

# ------------------------------------------------------------------------------------ OCR
st.subheader(_("OCR coverage"))
ocr_rows = c.variant_rows("ocr")
if not ocr_rows:
    st.info(_("No OCR results yet. They are filled by:"))
    st.code(c.fill_command("ocr"), language="bash")
else:
    cov = db.fetch(q.ocr_coverage, retired)
    cov = cov.assign(coverage=(cov["with_text"] / cov["memes_total"].where(cov["memes_total"] > 0)).round(3))
    st.dataframe(cov.drop(columns=["variant_id"]), hide_index=True, column_config={
        **c.columns(),
        "memes_read": st.column_config.NumberColumn(_("memes read"), help=_("memes with a row from this engine")),
        "with_text": st.column_config.NumberColumn(_("with text"), help=_("memes where the engine found any text")),
        "coverage": st.column_config.ProgressColumn(_("share with text"), min_value=0.0, max_value=1.0,
                                                    format="%.2f"),
    })
    by_id = {r["variant_id"]: r for r in ocr_rows}
    engine = c.url_select(_("Text length of"), list(by_id), "ocr", default=c.default_ocr(ocr_rows),
                          format_func=lambda v: c.set_label(by_id[v]))
    lengths = db.fetch(q.text_length_histogram, engine, retired)
    if len(lengths):
        charts.show("text_length_histogram", lengths, 300)
    else:
        st.caption(_("This engine found no text in any meme."))

# ------------------------------------------------------------------------------------ contents
st.subheader(_("What is in the cache"))
vdf = c.variants()
if len(vdf):
    st.dataframe(vdf.assign(model_id=vdf["model_id"].map(public_name)).drop(columns=["config_hash", "first_run_id"]),
                 hide_index=True, column_config={**c.columns(),
                                                 "model_id": c.model_column(vdf["model_id"])})
else:
    st.info(_("No stage has run yet: only the scan is stored. Fill the results with:"))
    st.code(c.fill_command(), language="bash")

# ------------------------------------------------------------------------------------ metrics
st.subheader(_("Metrics per model × prompt version"))
sets = c.variant_rows(q.PREDICTION_STAGES)
NOT_MEASURED = N_("not measured yet")
if not sets:
    if first_run.explains("clip,vlm"):   # the notice above the page gives the fix; a refill would fail again
        st.stop()
    st.info(_("No predictions yet. They are filled by:"))
    st.code(c.fill_command("clip,vlm"), language="bash")
    st.stop()
c.smoke_banner(s["is_smoke"] for s in sets)

per_set, stored_run = analysis.metrics(retired)          # every set with predictions is in per_set
reports = {s["variant_id"]: per_set[s["variant_id"]]["classification"] for s in sets}
METRICS = ("accuracy", "precision", "recall", "f1", "auroc", "unparseable_rate")
METRIC_LABELS = {"accuracy": N_("accuracy"), "precision": N_("precision"), "recall": N_("recall"), "f1": N_("F1"),
                 "auroc": N_("AUROC"), "unparseable_rate": N_("unparseable rate")}


def _cell(e: dict | None) -> str:
    if not e or e.get("value") is None:
        return "—"
    return f"{c.fmt_estimate(e)}  n={e['n']:,}"


def long_fields(e: dict | None) -> dict:
    """An Estimate's numbers for the long table, its note in the visitor's language."""
    e = e or {}
    return {"value": e.get("value"), "low": e.get("low"), "high": e.get("high"), "n": e.get("n"),
            "n_boot": e.get("n_boot"), "note": c.note_text(e.get("note"))}


low_mass = db.fetch(q.low_mass_counts, LOW_LABEL_MASS, retired)


def _low_mass(variant_id: str) -> str:
    low, n = low_mass.get(variant_id, (0, 0))
    return _("{low} of {n}", low=f"{low:,}", n=f"{n:,}") if n else "—"


table = pd.DataFrame([{
    "stage": s["stage"], "model": public_name(s["model_id"]), "prompt": s["name"], "smoke": bool(s["is_smoke"]),
    "n": reports[s["variant_id"]]["n"], "unparseable": reports[s["variant_id"]]["n_unparseable"],
    **{m: _cell(reports[s["variant_id"]].get(m)) for m in METRICS},
    "low label mass": _low_mass(s["variant_id"]),
} for s in sets])
st.dataframe(table, hide_index=True, column_config={
    **c.columns(),
    "model": c.model_column(s["model_id"] for s in sets),
    "n": st.column_config.NumberColumn("n", help=_("memes with a true label and an answer from this set")),
    **{m: st.column_config.TextColumn(c.shown(METRIC_LABELS[m])) for m in METRICS},
    "low label mass": st.column_config.TextColumn(
        _("low label mass"), help=_("VLM scores where «токсичный» and «нейтральный» together got less than "
                                    "{share} of the probability at the scoring step: the model was not really "
                                    "choosing between the two words, so that p(toxic) says little (flagged on the "
                                    "Errors and Meme pages)", share=f"{LOW_LABEL_MASS:.0%}")),
})
methods = {}                                              # metric -> how its intervals were made
for s in sets:
    for m in METRICS:
        e = reports[s["variant_id"]].get(m)
        if e and e.get("value") is not None:
            methods.setdefault(m, set()).add(c.method_text(e))
st.caption(_("Value [95% interval] n=denominator; an interval that cannot be estimated from these memes says so "
             "instead of showing a zero-width one. Intervals: {methods}. Unparseable answers count as wrong and as "
             "missed toxic memes (docs/metrics.md).",
             methods="; ".join(f"{c.shown(METRIC_LABELS[m])} — {', '.join(sorted(v))}" for m, v in methods.items()))
           + " " + (_("Stored by run {run}; the answers and labels are unchanged since.", run=stored_run)
                    if stored_run is not None else
                    _("Computed now: the answers or labels changed after a precompute last stored the metrics.")))

kinds = db.fetch(q.failure_kind_counts, retired)
unparsed = [s for s in sets if s["stage"] == "vlm" and reports[s["variant_id"]]["n_unparseable"]]
if unparsed:
    st.subheader(_("Why answers stated no class"))
    st.dataframe(pd.DataFrame([{
        "model": public_name(s["model_id"]), "prompt": s["name"], "unparseable": reports[s["variant_id"]]["n_unparseable"],
        **{c.shown(FAILURE_KIND_NAMES[k]): kinds.get(s["variant_id"], {}).get(k, 0) for k in FAILURE_KINDS},
        c.shown(NOT_MEASURED): reports[s["variant_id"]]["n_unparseable"] - sum(kinds.get(s["variant_id"], {}).values()),
    } for s in unparsed]), hide_index=True, column_config={**c.columns(),
                                                          "model": c.model_column(s["model_id"] for s in unparsed)})
    st.caption(_("Each unparseable answer (memes with a true label) by the first rule that holds: empty or cut off "
                 "(nothing, or it stops mid-sentence), template echo (the prompt's placeholders or wording given "
                 "back), refusal, hedge (no decision, or both class words), other. The rules are in "
                 "pipeline/faithfulness.py; «not measured yet»: the faithfulness stage has not read these answers."))

for note in c.language_notes(sets):
    st.warning(note, icon=":material/translate:")

with st.expander(_("All numbers (long form)")):
    long = pd.DataFrame([
        {"model": public_name(s["model_id"]), "prompt": s["name"], "metric": c.shown(METRIC_LABELS[m]),
         **long_fields(reports[s["variant_id"]].get(m)),
         "interval method": c.method_text(reports[s["variant_id"]].get(m))}
        for s in sets for m in METRICS
    ])
    st.dataframe(long, hide_index=True, column_config={**c.columns(),
                                                       "model": c.model_column(s["model_id"] for s in sets)})

st.subheader(_("Confusion matrices"))
charts.show("confusion_matrices", [(c.set_name(s), reports[s["variant_id"]]["confusion"]) for s in sets],
            width="content")

st.subheader(_("ROC curves"))
curves = []
for s in sets:
    points = per_set[s["variant_id"]]["roc"]
    curves += [{"set": c.set_name(s), **p} for p in points]
if curves:
    charts.show("roc_curves", pd.DataFrame(curves))
    st.caption(_("Score = p(toxic). Curves are thinned to at most {n} points each for drawing; AUROC uses every "
                 "meme.", n=analysis.ROC_MAX_POINTS))
else:
    st.caption(_("No prediction set has scores with both classes present."))
