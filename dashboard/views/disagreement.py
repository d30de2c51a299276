"""Disagreement: two prediction sets on the same memes — who is right where, kappa, McNemar, galleries."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import analysis, charts, db
from dashboard import components as c
from dashboard.lang import _, _n
from pipeline import queries as q

CELLS = charts.CELLS
TRUTH = c.TRUTH_FILTER

retired = c.page(_("Disagreement"), _("Two prediction sets on the memes both answered: the right/wrong table, "
                                      "Cohen's kappa between their answers and the exact McNemar test. An unparseable "
                                      "answer counts as wrong."),
                 "predictions", "predictions", "clip,vlm")
sets = c.variant_rows(q.PREDICTION_STAGES)
if len(sets) < 2:
    st.info(_("Comparing needs two prediction sets (two models, or two prompt versions of one). "
              "Add another, e.g. all prompt versions of both models:"))
    st.code(c.fill_command("clip,vlm"), language="bash")
    st.stop()

ca, cb = st.columns(2)
a = c.pick_variant("A", sets, "a", default_id=sets[0]["variant_id"], container=ca)
b = c.pick_variant("B", sets, "b", default_id=sets[1]["variant_id"], container=cb)
c.smoke_banner([a["is_smoke"], b["is_smoke"]])
if a["variant_id"] == b["variant_id"]:
    st.warning(_("A and B are the same prediction set: pick two different ones."))
    st.stop()

rep = analysis.agreement_report(a["variant_id"], b["variant_id"], retired, "A", "B")
if rep["n"] == 0:
    st.info(_("No meme with a true label has answers from both sets."))
    st.stop()


def two_by_two(t: dict) -> pd.DataFrame:
    return pd.DataFrame({_("B right"): [t["both_right"], t["only_b_right"]],
                         _("B wrong"): [t["only_a_right"], t["both_wrong"]]}, index=[_("A right"), _("A wrong")])


tests = analysis.pair_tests([s["variant_id"] for s in sets], retired)
pair = next((t for t in tests if (t["a"], t["b"]) == (a["variant_id"], b["variant_id"])), None)
flipped = pair is None
if flipped:                      # B is listed before A: the same test with the difference's sign turned
    pair = next(t for t in tests if (t["a"], t["b"]) == (b["variant_id"], a["variant_id"]))


def signed(e: dict | None) -> dict | None:
    """A difference B - A read as A - B."""
    if not flipped or not e or e.get("value") is None:
        return e
    low, high = e.get("low"), e.get("high")
    return {**e, "value": -e["value"], "low": None if high is None else -high, "high": None if low is None else -low}


many = len(tests) > 1
m = st.columns(5)
m[0].metric(_("Memes compared"), f"{rep['n']:,}")
m[1].metric(_("Cohen's kappa"), c.fmt_estimate(rep["kappa"], 3),
            help=_("agreement of the two answers beyond chance (unparseable is a third answer); 95% interval: "
                   "{method}", method=c.method_text(rep["kappa"])))
m[2].metric(_("McNemar p (exact)"), c.fmt_p(rep["mcnemar_p"]),
            help=_n(len(tests), "Holm-adjusted over the {n} pair below: {p}", "Holm-adjusted over the {n} pairs below: {p}",
                    p=c.fmt_p(pair["mcnemar_p_holm"])) if many else None)
m[3].metric(_("Accuracy A − B"), c.fmt_estimate(signed(pair["accuracy_diff"]), 3),
            help=_("paired difference on the memes both answered; 95% interval: {method}",
                   method=c.method_text(pair["accuracy_diff"])))
auroc_diff = pair["auroc_diff"]
m[4].metric(_("AUROC A − B"), c.fmt_estimate(signed(auroc_diff), 3),
            help=None if auroc_diff is None else
            (_("on the {n} memes both scored; 95% interval and p: {method}; p = {p}", n=f"{pair['n_auroc']:,}",
               method=c.method_text(auroc_diff), p=c.fmt_p(pair["auroc_p"]))
             + (_(", Holm-adjusted {p}", p=c.fmt_p(pair["auroc_p_holm"])) if many else "")))
st.text(c.reading_text(rep, "A", "B"))
if many:
    st.caption(_("With {n} pairs of prediction sets, p-values are also given adjusted for the number of "
                 "comparisons ({adjustment}): p = {p_mcnemar} for McNemar and {p_auroc} for the AUROC difference "
                 "of this pair.", n=len(tests), adjustment=c.adjustment_text(len(tests)),
                 p_mcnemar=c.fmt_p(pair["mcnemar_p_holm"]), p_auroc=c.fmt_p(pair["auroc_p_holm"])))

t_all, t_tox, t_non = st.columns(3)
t_all.caption(_("All memes"))
t_all.dataframe(two_by_two(rep["table"]))
t_tox.caption(_("True label: toxic"))
t_tox.dataframe(two_by_two(rep["by_label"]["toxic"]))
t_non.caption(_("True label: non-toxic"))
t_non.dataframe(two_by_two(rep["by_label"]["non_toxic"]))

with st.expander(_("Every pair of prediction sets ({n}), with Holm-adjusted p-values", n=len(tests)), expanded=False):
    by_id = {s["variant_id"]: s for s in sets}
    st.dataframe(pd.DataFrame([{
        "A": c.set_label(by_id[t["a"]]), "B": c.set_label(by_id[t["b"]]), "memes": t["n"],
        "accuracy A − B": c.fmt_estimate(t["accuracy_diff"]), "McNemar p": c.fmt_p(t["mcnemar_p"]),
        "McNemar p (Holm)": c.fmt_p(t["mcnemar_p_holm"]),
        "AUROC A − B": c.fmt_estimate(t["auroc_diff"]), "AUROC p": c.fmt_p(t["auroc_p"]),
        "AUROC p (Holm)": c.fmt_p(t["auroc_p_holm"]),
    } for t in tests]), hide_index=True, column_config={
        **c.columns(),
        "A": st.column_config.TextColumn("A", help=c.model_help(s["model_id"] for s in sets)),
        "B": st.column_config.TextColumn("B", help=c.model_help(s["model_id"] for s in sets)),
    })
    st.caption(_("Adjustment: {adjustment}. Accuracy: Newcombe's paired score interval and the exact McNemar test; "
                 "AUROC: paired DeLong, on the memes both sets scored. A pair is significant at 5% after adjustment "
                 "only where its Holm p < 0.05; docs/metrics.md explains the methods.",
                 adjustment=c.adjustment_text(len(tests))))

st.subheader(_("Scores: A against B"))
sample = db.fetch(q.pair_scores_sample, a["variant_id"], b["variant_id"], retired)
if len(sample):
    charts.show("score_scatter", sample, a["name"], b["name"])
    if len(sample) < rep["n"]:
        st.caption(_("A fixed sample of {k} of the {n} memes.", k=f"{len(sample):,}", n=f"{rep['n']:,}"))
else:
    st.caption(_("No meme has scores from both sets."))

st.subheader(_("Memes per cell"))
g1, g2, g3 = st.columns([4, 1, 1])
truth = c.url_select(_("True label"), list(TRUTH), "truth", format_func=c.option_text(TRUTH), container=g2)
per_cell = rep["table"] if truth == "any" else rep["by_label"][truth]
cell = c.url_select(_("Cell"), list(CELLS), "cell", default="only_a_right", radio=True, container=g1,
                    format_func=lambda k: f"{c.shown(CELLS[k])} ({int(per_cell.get(k, 0)):,})")
size = c.page_size_picker(container=g3)
total = int(per_cell.get(cell, 0))
offset, limit = c.pagination(total, page_size=size,
                             signature=(a["variant_id"], b["variant_id"], truth, cell, size, retired))
ocr_rows = c.variant_rows("ocr")
rows = db.fetch_page(q.pair_page, a["variant_id"], b["variant_id"], retired, cell,
                     None if truth == "any" else truth, c.default_ocr(ocr_rows), limit, offset)
if not rows:
    st.info(_("No memes in this cell."))


def card(r: dict) -> None:
    c.meme_image(r["thumbnail"], r["meme_id"], r["truth"], ctx="pair")
    st.markdown(c.truth_line(r["truth"], show_pred=False))
    st.markdown(f"A: **{c.answer_text(r['pred_a'])}** ({c.fmt_score(r['score_a'])}) · "
                f"B: **{c.answer_text(r['pred_b'])}** ({c.fmt_score(r['score_b'])})")
    c.text_block(_("OCR text"), r["ocr_text"])
    c.text_block(_("A's explanation"), r["explanation_a"])
    c.text_block(_("B's explanation"), r["explanation_b"])
    c.meme_link(r["meme_id"])


c.grid(rows, card)
