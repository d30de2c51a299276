"""Overview: what the cache holds (memes, images, OCR, models) and the metrics of every prediction set."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import analysis, charts, db
from dashboard import components as c
from pipeline import queries as q
from pipeline.stages.vlm_answer import LOW_LABEL_MASS

retired = c.page("Overview", "What the cache holds, and how every prediction set (model × prompt version) scores "
                 "against the folder labels.", "memes", "memes")

# ------------------------------------------------------------------------------------ memes
ov = db.fetch(q.meme_overview, retired)
cols = st.columns(6)
cols[0].metric("Memes", f"{ov['memes']:,}")
cols[1].metric("Toxic", f"{ov['toxic']:,}")
cols[2].metric("Non-toxic", f"{ov['non_toxic']:,}")
cols[3].metric("Label conflicts", f"{ov['conflicts']:,}", help="Same bytes found under both labels: no true label.")
cols[4].metric("Retired", f"{ov['retired_total']:,}", help="No longer found by the latest scan "
               + ("(included)" if retired else "(left out; see the sidebar)"))
cols[5].metric("Animated", f"{ov['animated']:,}", help="GIF/WebP with more than one frame (first frame used).")
charts.show("label_bars", ov)

# ------------------------------------------------------------------------------------ images
st.subheader("Images")
left, right = st.columns([3, 2])
with left:
    hist = db.fetch(q.size_histogram, retired)
    if len(hist):
        charts.show("size_histogram", hist, 4000)
with right:
    st.caption("Per file format: pixel sizes and file size")
    st.dataframe(db.fetch(q.size_summary, retired), hide_index=True)

# ------------------------------------------------------------------------------------ OCR
st.subheader("OCR coverage")
ocr_rows = c.variant_rows("ocr")
if not ocr_rows:
    st.info("No OCR results yet. They are filled by:")
    st.code(c.fill_command("ocr"), language="bash")
else:
    cov = db.fetch(q.ocr_coverage, retired)
    cov = cov.assign(coverage=(cov["with_text"] / cov["memes_total"].where(cov["memes_total"] > 0)).round(3))
    st.dataframe(cov.drop(columns=["variant_id"]), hide_index=True, column_config={
        "memes_read": st.column_config.NumberColumn("memes read", help="memes with a row from this engine"),
        "with_text": st.column_config.NumberColumn("with text", help="memes where the engine found any text"),
        "coverage": st.column_config.ProgressColumn("share with text", min_value=0.0, max_value=1.0, format="%.2f"),
    })
    by_id = {r["variant_id"]: r for r in ocr_rows}
    engine = c.url_select("Text length of", list(by_id), "ocr", default=c.default_ocr(ocr_rows),
                          format_func=lambda v: c.set_label(by_id[v]))
    lengths = db.fetch(q.text_length_histogram, engine, retired)
    if len(lengths):
        charts.show("text_length_histogram", lengths, 300)
    else:
        st.caption("This engine found no text in any meme.")

# ------------------------------------------------------------------------------------ contents
st.subheader("What is in the cache")
vdf = c.variants()
if len(vdf):
    st.dataframe(vdf.rename(columns={"name": "prompt / method / engine", "n_rows": "rows",
                                     "first_at": "first result", "last_at": "last result", "run_ids": "runs"})
                 .drop(columns=["config_hash", "first_run_id"]), hide_index=True)
else:
    st.info("No stage has run yet: only the scan is stored. Fill the results with:")
    st.code(c.fill_command(), language="bash")

# ------------------------------------------------------------------------------------ metrics
st.subheader("Metrics per model × prompt version")
sets = c.variant_rows(q.PREDICTION_STAGES)
if not sets:
    st.info("No predictions yet. They are filled by:")
    st.code(c.fill_command("clip,vlm"), language="bash")
    st.stop()
c.smoke_banner(s["is_smoke"] for s in sets)

per_set, stored_run = analysis.metrics(retired)          # every set with predictions is in per_set
reports = {s["variant_id"]: per_set[s["variant_id"]]["classification"] for s in sets}
METRICS = ("accuracy", "precision", "recall", "f1", "auroc", "unparseable_rate")
METRIC_LABELS = {"accuracy": "accuracy", "precision": "precision", "recall": "recall", "f1": "F1", "auroc": "AUROC",
                 "unparseable_rate": "unparseable rate"}


def _cell(e: dict | None) -> str:
    if not e or e.get("value") is None:
        return "—"
    return f"{c.fmt_estimate(e)}  n={e['n']:,}"


low_mass = db.fetch(q.low_mass_counts, LOW_LABEL_MASS, retired)


def _low_mass(variant_id: str) -> str:
    low, n = low_mass.get(variant_id, (0, 0))
    return f"{low:,} of {n:,}" if n else "—"


table = pd.DataFrame([{
    "stage": s["stage"], "model": s["model_id"], "prompt": s["name"], "smoke": bool(s["is_smoke"]),
    "n": reports[s["variant_id"]]["n"], "unparseable": reports[s["variant_id"]]["n_unparseable"],
    **{m: _cell(reports[s["variant_id"]].get(m)) for m in METRICS},
    "low label mass": _low_mass(s["variant_id"]),
} for s in sets])
st.dataframe(table, hide_index=True, column_config={
    "n": st.column_config.NumberColumn("n", help="memes with a true label and an answer from this set"),
    "f1": st.column_config.TextColumn("F1"), "auroc": st.column_config.TextColumn("AUROC"),
    "unparseable_rate": st.column_config.TextColumn("unparseable rate"),
    "low label mass": st.column_config.TextColumn(
        "low label mass", help=f"VLM scores where «токсичный» and «нейтральный» together got less than "
        f"{LOW_LABEL_MASS:.0%} of the probability at the scoring step: the model was not really choosing between "
        "the two words, so that p(toxic) says little (flagged on the Errors and Meme pages)"),
})
methods = {}                                              # metric -> how its intervals were made
for s in sets:
    for m in METRICS:
        e = reports[s["variant_id"]].get(m)
        if e and e.get("value") is not None:
            methods.setdefault(m, set()).add(c.method_text(e))
st.caption("Value [95% interval] n=denominator; an interval that cannot be estimated from these memes says so "
           "instead of showing a zero-width one. Intervals: "
           + "; ".join(f"{METRIC_LABELS[m]} — {', '.join(sorted(v))}" for m, v in methods.items())
           + ". Unparseable answers count as wrong and as missed toxic memes (docs/metrics.md). "
           + (f"Stored by run {stored_run}; the answers and labels are unchanged since." if stored_run is not None
              else "Computed now: the answers or labels changed after a precompute last stored the metrics."))

for note in c.language_notes(sets):
    st.warning(note, icon=":material/translate:")

with st.expander("All numbers (long form)"):
    long = pd.DataFrame([
        {"model": s["model_id"], "prompt": s["name"], "metric": m, **(reports[s["variant_id"]].get(m) or {}),
         "interval method": c.method_text(reports[s["variant_id"]].get(m))}
        for s in sets for m in METRICS
    ])
    st.dataframe(long, hide_index=True)

st.subheader("Confusion matrices")
charts.show("confusion_matrices", [(f"{s['stage'].upper()} {s['model_id']} · {s['name']}",
                                    reports[s["variant_id"]]["confusion"]) for s in sets], width="content")

st.subheader("ROC curves")
curves = []
for s in sets:
    points = per_set[s["variant_id"]]["roc"]
    label = f"{s['stage'].upper()} {s['model_id']} · {s['name']}"
    curves += [{"set": label, **p} for p in points]
if curves:
    charts.show("roc_curves", pd.DataFrame(curves))
    st.caption("Score = p(toxic). Curves are thinned to at most "
               f"{analysis.ROC_MAX_POINTS} points each for drawing; AUROC uses every meme.")
else:
    st.caption("No prediction set has scores with both classes present.")
