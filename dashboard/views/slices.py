"""Slices: the metrics of every prediction set within slices of the memes, with intervals (issue 17, part 6).

A slice splits the memes by one property (has text, OCR confidence, caption length, format, image size,
near-duplicate group, template cluster; pipeline/slices.py; ?by=); each row gives the memes in it and every chosen set's accuracy and F1
with their 95% intervals. A slice with fewer than pipeline.slices.SMALL_SLICE memes is flagged: its intervals
are too wide to say anything about it. The sidebar's slice of every page (?slice=) narrows the memes first.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import components as c
from dashboard import db
from dashboard.lang import _
from pipeline import queries as q
from pipeline import slices as sl
from pipeline.names import public_name

retired = c.page(_("Slices"), _("Where does a prediction set do better or worse? Its metrics within slices of the "
                                "memes, each with its 95% interval: a difference between slices means something "
                                "only where the intervals leave no doubt."),
                 "predictions", "predictions", "clip,vlm")
sets = c.registered(q.PREDICTION_STAGES, "predictions", "prediction set", "clip,vlm")
c.smoke_banner(s["is_smoke"] for s in sets)
by_id = {s["variant_id"]: s for s in sets}

dups = db.fetch(q.near_duplicate_report, retired)
sources = db.fetch(q.slice_sources)
keys = [k for k in sl.SLICES if (k != "near_duplicate" or dups["n_hashed"])
        and (sl.SLICES[k].source != "map" or sources["map"] is not None)]
left, mid = st.columns([1, 1])
key = c.url_select(_("Slice by"), keys, "by", default=keys[0], format_func=lambda k: c.shown(sl.SLICES[k].name),
                   container=left)
spec = sl.SLICES[key]
source = None
if spec.source == "ocr":
    ocr_rows = c.variant_rows("ocr")
    if not ocr_rows:
        st.info(_("This slice needs OCR results. They are filled by:"))
        st.code(c.fill_command("ocr"), language="bash")
        st.stop()
    ocr_by_id = {r["variant_id"]: r for r in ocr_rows}
    source = c.url_select(_("OCR engine"), list(ocr_by_id), "ocr", default=c.default_ocr(ocr_rows),
                          format_func=lambda v: c.set_label(ocr_by_id[v]), container=mid)
elif spec.source == "map":
    maps = {r["variant_id"]: r for r in db.fetch(q.map_variants)}
    source = c.url_select(_("Image model"), list(maps), "model", default=sources["map"],
                          format_func=lambda v: public_name(maps[v]["model_id"]), container=mid)
if spec.help:
    st.caption(c.shown(spec.help))
chosen = st.multiselect(_("Prediction sets"), list(by_id), default=list(by_id)[:4],
                        format_func=lambda v: c.set_label(by_id[v]), key="slices:sets")
if not chosen:
    st.info(_("Choose at least one prediction set."))
    st.stop()

rows = db.fetch(q.slice_counts, key, source, tuple(chosen), retired,
                tuple(dups.get("in_group", ())) if key == "near_duplicate" else ())
per = sl.slice_metrics(rows, chosen)
values = sl.ordered_values(key, {v for v, _ in per})


def value_text(v: str) -> str:
    return sl.value_text(v, _)


table = []
for value in values:
    for v in chosen:
        m = per.get((value, v))
        if m:
            table.append({"slice": value_text(value), "set": c.set_name(by_id[v]), "memes": m["n"],
                          "toxic share": f"{m['n_toxic'] / m['n']:.2f}" if m["n"] else "—",
                          "accuracy": c.fmt_estimate(m["accuracy"]), "F1": c.fmt_estimate(m["f1"]),
                          "recall": c.fmt_estimate(m["recall"]), "too small": m["small"]})
st.dataframe(pd.DataFrame(table), hide_index=True, column_config={
    **c.columns(),
    "slice": st.column_config.TextColumn(c.shown(spec.name)),
    "set": st.column_config.TextColumn(_("prediction set")),
    "memes": st.column_config.NumberColumn(_("memes"), help=_("memes with a true label in this slice that the set "
                                                              "answered")),
    "F1": st.column_config.TextColumn("F1"),
    "toxic share": st.column_config.TextColumn(_("toxic share")),
    "too small": st.column_config.CheckboxColumn(_("too small"), help=_(
        "fewer than {n} memes: the intervals are too wide to say anything about this slice", n=sl.SMALL_SLICE)),
})
small = [value_text(v) for v in values if any(per.get((v, s), {}).get("small") for s in chosen)]
if small:
    st.warning(_("Too few memes to say anything (fewer than {n}): {slices}. Their numbers are shown, but a "
                 "difference there is as likely chance as a real effect.", n=sl.SMALL_SLICE, slices=", ".join(small)))
st.caption(_("Value [95% interval]; accuracy: Wilson, F1: as on the Overview. Unparseable answers count as wrong. "
             "The slices are not corrected for multiple comparisons: with many slices, one will look different by "
             "chance."))
