"""Altair charts for the pages. Inputs are small, already aggregated tables (SQL does the counting).

Pages draw them with `show(name, *args)`: the Altair chart is built once per distinct input and
its Vega-Lite spec memoised (building and validating Altair objects costs ~50-100 ms a chart,
most of a warm page's time otherwise), then drawn with st.vega_lite_chart.
Streamlit sizes a chart's height from the element, not from .properties(height=N): charts on a
discrete y axis use alt.Step, the others get HEIGHTS[name].
Titles, legends and category names are in the visitor's language (dashboard.lang): the memo is
keyed by the language too. Data (set names, meme ids) is never translated.
"""
from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import lang
from dashboard.components import shown
from dashboard.lang import N_, _

LABELS = {"toxic": N_("toxic"), "non_toxic": N_("non-toxic"), "no label (conflict)": N_("no label (conflict)")}
LABEL_RANGE = ["#d62728", "#1f77b4", "#999999"]
HEIGHTS = {"caption_mass_histogram": 240, "reliability_diagram": 380, "threshold_curves": 320, "size_histogram": 260,
           "text_length_histogram": 220, "roc_curves": 380, "score_scatter": 400, "map_scatter": 560}
CELLS = {"both_right": N_("Both right"), "only_a_right": N_("Only A right"), "only_b_right": N_("Only B right"),
         "both_wrong": N_("Both wrong")}
CELL_RANGE = ["#2ca02c", "#1f77b4", "#ff7f0e", "#d62728"]
ANSWERS = {"toxic": N_("toxic"), "non_toxic": N_("non-toxic"), "unparseable": N_("unparseable")}


def _words(values: pd.Series, words: dict) -> pd.Series:
    """Category values in the visitor's language (values outside `words` stay as they are)."""
    return values.map(lambda v: shown(words[v]) if v in words else v)


def _label_scale() -> alt.Scale:
    return alt.Scale(domain=[shown(t) for t in LABELS.values()], range=LABEL_RANGE)


def _cell_scale() -> alt.Scale:
    return alt.Scale(domain=[shown(t) for t in CELLS.values()], range=CELL_RANGE)


COUNT_AXIS = alt.Axis(tickMinStep=1, format="d")     # counts of memes: whole-number ticks only


def label_bars(counts: dict) -> alt.Chart:
    df = pd.DataFrame({"label": [shown(t) for t in LABELS.values()],
                       "memes": [counts.get("toxic", 0), counts.get("non_toxic", 0), counts.get("no_label", 0)]})
    return (alt.Chart(df).mark_bar()
            .encode(x=alt.X("memes:Q", title=_("memes"), axis=COUNT_AXIS), y=alt.Y("label:N", sort=None, title=None),
                    color=alt.Color("label:N", scale=_label_scale(), legend=None),
                    tooltip=[alt.Tooltip("label:N", title=_("label")), alt.Tooltip("memes:Q", title=_("memes"))])
            .properties(height=alt.Step(28)))


def size_histogram(df: pd.DataFrame, cap: int) -> alt.Chart:
    df = df.assign(bucket=df["long_side"].map(lambda v: f"{v}+" if v >= cap else f"{v}–{v + 249}"),
                   label=_words(df["label"], LABELS))
    order = sorted(df["bucket"].unique(), key=lambda s: int(s.split("–")[0].rstrip("+")))
    return (alt.Chart(df).mark_bar()
            .encode(x=alt.X("bucket:N", sort=order, title=_("longer side (px)")),
                    y=alt.Y("memes:Q", stack=True, title=_("memes"), axis=COUNT_AXIS),
                    color=alt.Color("label:N", scale=_label_scale(), title=_("label")),
                    tooltip=[alt.Tooltip("bucket:N", title=_("longer side (px)")),
                             alt.Tooltip("label:N", title=_("label")), alt.Tooltip("memes:Q", title=_("memes"))])
            )


def text_length_histogram(df: pd.DataFrame, cap: int) -> alt.Chart:
    df = df.assign(bucket=df["chars"].map(lambda v: f"{v}+" if v >= cap else f"{v}–{v + 19}"))
    order = [b for _chars, b in sorted(zip(df["chars"], df["bucket"]))]
    return (alt.Chart(df).mark_bar(color="#7f7f7f")
            .encode(x=alt.X("bucket:N", sort=order, title=_("characters of OCR text")),
                    y=alt.Y("memes:Q", title=_("memes"), axis=COUNT_AXIS),
                    tooltip=[alt.Tooltip("bucket:N", title=_("characters of OCR text")),
                             alt.Tooltip("memes:Q", title=_("memes"))])
            )


def confusion_matrices(items: list[tuple[str, dict]]) -> alt.FacetChart:
    """One matrix per prediction set (title, pipeline.metrics confusion dict). Rows: true label;
    columns: the answer (toxic / non_toxic / unparseable). One faceted chart: one spec to build."""
    keys = [("toxic", "toxic", "tp"), ("toxic", "non_toxic", "fn"), ("toxic", "unparseable", "unparsed_toxic"),
            ("non_toxic", "toxic", "fp"), ("non_toxic", "non_toxic", "tn"),
            ("non_toxic", "unparseable", "unparsed_non_toxic")]
    df = pd.DataFrame([(title, t, a, int(conf.get(k, 0))) for title, conf in items for t, a, k in keys],
                      columns=["set", "true", "answer", "memes"])
    df["right"] = df["true"] == df["answer"]
    df["true"], df["answer"] = _words(df["true"], ANSWERS), _words(df["answer"], ANSWERS)
    base = alt.Chart().encode(
        x=alt.X("answer:N", sort=[shown(t) for t in ANSWERS.values()], title=_("answer"),
                axis=alt.Axis(labelAngle=0, orient="top")),
        y=alt.Y("true:N", sort=[shown(ANSWERS["toxic"]), shown(ANSWERS["non_toxic"])], title=_("true label")))
    rect = base.mark_rect().encode(
        color=alt.Color("memes:Q", scale=alt.Scale(scheme="blues"), legend=None),
        tooltip=[alt.Tooltip("set:N", title=_("prediction set")), alt.Tooltip("true:N", title=_("true label")),
                 alt.Tooltip("answer:N", title=_("answer")), alt.Tooltip("memes:Q", title=_("memes"))])
    text = base.mark_text(fontSize=14).encode(
        text="memes:Q", color=alt.condition("datum.memes > 0 && datum.right", alt.value("white"), alt.value("black")))
    return (alt.layer(rect, text, data=df).properties(height=alt.Step(44), width=alt.Step(100))
            .facet(facet=alt.Facet("set:N", title=None, header=alt.Header(labelFontSize=13, labelAnchor="start")),
                   columns=2, spacing=30)
            .resolve_scale(color="independent"))


def roc_curves(df: pd.DataFrame) -> alt.Chart:
    """df: set, fpr, tpr (one line per prediction set) plus the chance diagonal."""
    diag = alt.Chart(pd.DataFrame({"fpr": [0, 1], "tpr": [0, 1]})).mark_line(strokeDash=[4, 4], color="#999")\
        .encode(x="fpr:Q", y="tpr:Q")
    lines = (alt.Chart(df).mark_line()
             .encode(x=alt.X("fpr:Q", title=_("false positive rate"), scale=alt.Scale(domain=[0, 1])),
                     y=alt.Y("tpr:Q", title=_("true positive rate"), scale=alt.Scale(domain=[0, 1])),
                     color=alt.Color("set:N", title=_("prediction set"),
                                     legend=alt.Legend(orient="bottom", labelLimit=400, columns=2)),
                     order="fpr:Q",
                     tooltip=[alt.Tooltip("set:N", title=_("prediction set")),
                              alt.Tooltip("fpr:Q", format=".3f", title=_("false positive rate")),
                              alt.Tooltip("tpr:Q", format=".3f", title=_("true positive rate")),
                              alt.Tooltip("threshold:Q", format=".3f", title=_("threshold"))]))
    return diag + lines


def score_scatter(df: pd.DataFrame, name_a: str, name_b: str) -> alt.Chart:
    """A's p(toxic) against B's, coloured by the right/wrong cell, shaped by the true label."""
    df = df.assign(cell=_words(df["cell"], CELLS), truth=_words(df["truth"], ANSWERS))
    return (alt.Chart(df).mark_point(filled=True, opacity=0.5, size=22)
            .encode(x=alt.X("score_a:Q", title=f"A: {name_a} p(toxic)", scale=alt.Scale(domain=[0, 1])),
                    y=alt.Y("score_b:Q", title=f"B: {name_b} p(toxic)", scale=alt.Scale(domain=[0, 1])),
                    color=alt.Color("cell:N", scale=_cell_scale(), title=_("who is right")),
                    shape=alt.Shape("truth:N", title=_("true label")),
                    tooltip=[alt.Tooltip("meme_id:N", title=_("meme id")), alt.Tooltip("truth:N", title=_("true label")),
                             alt.Tooltip("cell:N", title=_("who is right")),
                             alt.Tooltip("score_a:Q", format=".3f", title="A p(toxic)"),
                             alt.Tooltip("score_b:Q", format=".3f", title="B p(toxic)")])
            )


def caption_mass_histogram(df: pd.DataFrame) -> alt.Chart:
    """Memes per half-unit bin of log2(CAM mass on the caption / the caption's share of the area), by true label
    (df: bin, label, memes). 0 = the map covers the caption as much as its area; +1 = twice as much."""
    df = df.assign(label=_words(df["label"], LABELS))
    return (alt.Chart(df).mark_bar(opacity=0.75)
            .encode(x=alt.X("bin:Q", bin=alt.Bin(step=0.5), title=_("log2(CAM mass on the caption / its share of "
                                                                     "the area)")),
                    y=alt.Y("memes:Q", stack=None, title=_("memes"), axis=COUNT_AXIS),
                    color=alt.Color("label:N", scale=_label_scale(), title=_("true label")),
                    tooltip=[alt.Tooltip("label:N", title=_("true label")), alt.Tooltip("bin:Q", title="log2"),
                             alt.Tooltip("memes:Q", title=_("memes"))]))


def reliability_diagram(df: pd.DataFrame) -> alt.Chart:
    """Observed toxic share per score bin against the bin's mean p(toxic) (df: set, mean_score, frac_toxic,
    frac_low, frac_high, n, lo, hi), Wilson intervals as bars, point size = memes, the diagonal = calibrated."""
    diag = alt.Chart(pd.DataFrame({"x": [0, 1], "y": [0, 1]})).mark_line(strokeDash=[4, 4], color="#999")\
        .encode(x="x:Q", y="y:Q")
    x = alt.X("mean_score:Q", title=_("mean p(toxic) in the bin"), scale=alt.Scale(domain=[0, 1]))
    color = alt.Color("set:N", title=_("prediction set"), legend=alt.Legend(orient="bottom", labelLimit=400, columns=2))
    bars = alt.Chart(df).mark_rule(opacity=0.6).encode(x=x, y="frac_low:Q", y2="frac_high:Q", color=color)
    points = (alt.Chart(df).mark_point(filled=True, opacity=0.85)
              .encode(x=x, y=alt.Y("frac_toxic:Q", title=_("share of toxic memes (95% Wilson interval)"),
                                   scale=alt.Scale(domain=[0, 1])),
                      size=alt.Size("n:Q", title=_("memes"), legend=None), color=color,
                      tooltip=[alt.Tooltip("set:N", title=_("prediction set")),
                               alt.Tooltip("lo:Q", format=".2f", title=_("bin from")),
                               alt.Tooltip("hi:Q", format=".2f", title=_("bin to")),
                               alt.Tooltip("n:Q", title=_("memes")),
                               alt.Tooltip("mean_score:Q", format=".3f", title=_("mean p(toxic) in the bin")),
                               alt.Tooltip("frac_toxic:Q", format=".3f", title=_("share of toxic memes")),
                               alt.Tooltip("frac_low:Q", format=".3f", title=_("interval from")),
                               alt.Tooltip("frac_high:Q", format=".3f", title=_("interval to"))]))
    return diag + bars + points


THRESHOLD_METRICS = {"accuracy": N_("accuracy"), "precision": N_("precision"), "recall": N_("recall"), "f1": N_("F1")}


def threshold_curves(df: pd.DataFrame, marks: pd.DataFrame) -> alt.Chart:
    """Accuracy, precision, recall and F1 as a function of the threshold (df: threshold, metric, value), with a
    vertical rule per marked threshold (marks: threshold, mark), e.g. the 0.5 default and the cross-validated one."""
    df = df.assign(metric=_words(df["metric"], THRESHOLD_METRICS))
    lines = (alt.Chart(df).mark_line()
             .encode(x=alt.X("threshold:Q", title=_("threshold on p(toxic)"), scale=alt.Scale(domain=[0, 1])),
                     y=alt.Y("value:Q", title=None, scale=alt.Scale(domain=[0, 1])),
                     color=alt.Color("metric:N", title=_("metric"), legend=alt.Legend(orient="bottom")),
                     tooltip=[alt.Tooltip("metric:N", title=_("metric")),
                              alt.Tooltip("threshold:Q", format=".2f", title=_("threshold")),
                              alt.Tooltip("value:Q", format=".3f", title=_("value"))]))
    rules = (alt.Chart(marks).mark_rule(strokeDash=[6, 3], color="#444")
             .encode(x="threshold:Q", tooltip=[alt.Tooltip("mark:N", title=_("threshold")),
                                               alt.Tooltip("threshold:Q", format=".3f", title=_("value"))]))
    labels = (alt.Chart(marks).mark_text(align="left", dx=4, dy=-6, color="#444")
              .encode(x="threshold:Q", y=alt.value(10), text="mark:N"))
    return lines + rules + labels


# ------------------------------------------------------------------------------------------- the Map page
# The map is drawn from a spec without data (memoised like the others) and the points as a separate Arrow
# table (x, y and one category column: ~1 MB at 100k memes), with a box selection named MAP_BRUSH.
MAP_BRUSH = "brush"
MAP_COLOURINGS = {"truth": N_("true label"), "correct": N_("right or wrong (set A)"),
                  "agree": N_("where A and B disagree")}
MAP_CORRECT = {"right": N_("right"), "wrong": N_("wrong"), "unparseable": N_("unparseable"),
               "none": N_("no answer or no true label")}
MAP_AGREE = {**CELLS, "none": N_("not answered by both")}
MAP_CATEGORIES = {"truth": (LABELS, LABEL_RANGE), "correct": (MAP_CORRECT, ["#2ca02c", "#d62728", "#ff7f0e", "#c7c7c7"]),
                  "agree": (MAP_AGREE, [*CELL_RANGE, "#c7c7c7"])}


def map_codes(df: pd.DataFrame, colouring: str):
    """The category index (into MAP_CATEGORIES[colouring]) of every point of queries.map_points_for's rows
    (truth 0 no label / 1 non_toxic / 2 toxic; answers a, b: 0 none, 1 unparseable, 2 non_toxic, 3 toxic)."""
    import numpy as np
    truth, a, b = (df[k].to_numpy(dtype=np.int8) for k in ("truth", "a", "b"))
    if colouring == "truth":
        return np.choose(truth, [2, 1, 0]).astype(np.int8)          # LABELS: toxic, non-toxic, no label
    right_a, right_b = (a == truth + 1) & (truth > 0), (b == truth + 1) & (truth > 0)
    if colouring == "correct":
        code = np.where(right_a, 0, np.where(a == 1, 2, 1))
        return np.where((a == 0) | (truth == 0), 3, code).astype(np.int8)
    code = np.where(right_a & right_b, 0, np.where(right_a, 1, np.where(right_b, 2, 3)))
    return np.where((a == 0) | (b == 0) | (truth == 0), 4, code).astype(np.int8)


def map_data(df: pd.DataFrame, colouring: str) -> pd.DataFrame:
    """What the map chart is given: x, y and the category `c` (in the visitor's language) of every point."""
    words, _range = MAP_CATEGORIES[colouring]
    return pd.DataFrame({"x": df["x"].to_numpy(), "y": df["y"].to_numpy(), "c": pd.Categorical.from_codes(
        map_codes(df, colouring), categories=[shown(t) for t in words.values()])})


def map_scatter(colouring: str) -> alt.Chart:
    """The Map page's scatter (no data: the page passes map_data's table), coloured by `colouring` (a key of
    MAP_COLOURINGS), with a box selection (MAP_BRUSH) over x and y."""
    words, colours = MAP_CATEGORIES[colouring]
    brush = alt.selection_interval(name=MAP_BRUSH, encodings=["x", "y"])
    return (alt.Chart().mark_circle(size=10, opacity=0.6)
            .encode(x=alt.X("x:Q", title=None, axis=alt.Axis(labels=False, ticks=False), scale=alt.Scale(zero=False)),
                    y=alt.Y("y:Q", title=None, axis=alt.Axis(labels=False, ticks=False), scale=alt.Scale(zero=False)),
                    color=alt.Color("c:N", title=shown(MAP_COLOURINGS[colouring]),
                                    scale=alt.Scale(domain=[shown(t) for t in words.values()], range=colours),
                                    legend=alt.Legend(orient="bottom", labelLimit=400)),
                    tooltip=[alt.Tooltip("c:N", title=shown(MAP_COLOURINGS[colouring]))])
            .add_params(brush))


def parse_box(raw: str | None) -> tuple[float, float, float, float] | None:
    """A box "x0,x1,y0,y1" (the page's ?box=) as floats, ordered; None when absent or malformed."""
    try:
        x0, x1, y0, y1 = (float(v) for v in (raw or "").split(","))
    except ValueError:
        return None
    if not all(map(lambda v: v == v and abs(v) != float("inf"), (x0, x1, y0, y1))):
        return None
    return min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)


def box_of(selection: Any) -> tuple[float, float, float, float] | None:
    """The box of a chart selection event (st.vega_lite_chart(on_select=...)'s value: {"selection":
    {MAP_BRUSH: {"x": [x0, x1], "y": [y0, y1]}}}); None when nothing is selected."""
    try:
        brush = (selection or {}).get("selection", {}).get(MAP_BRUSH) or {}
        (x0, x1), (y0, y1) = brush["x"], brush["y"]
        return parse_box(f"{float(x0)},{float(x1)},{float(y0)},{float(y1)}")
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def in_box(df: pd.DataFrame, box: tuple[float, float, float, float] | None) -> pd.DataFrame:
    """The rows of `df` (x, y, ...) inside the box (edges included); none without a box."""
    if box is None:
        return df.iloc[0:0]
    x0, x1, y0, y1 = box
    return df[(df["x"] >= x0) & (df["x"] <= x1) & (df["y"] >= y0) & (df["y"] <= y1)]


def show_map(df: pd.DataFrame, colouring: str, key: str) -> Any:
    """Draw the map of queries.map_points_for's rows; returns the selection event (box_of reads it)."""
    return st.vega_lite_chart(map_data(df, colouring), spec=spec("map_scatter", (colouring,), lang.current()),
                              width="stretch", height=HEIGHTS["map_scatter"], on_select="rerun",
                              selection_mode=MAP_BRUSH, key=key)


BUILDERS = {f.__name__: f for f in (label_bars, size_histogram, text_length_histogram, confusion_matrices,
                                     roc_curves, score_scatter, caption_mass_histogram, reliability_diagram,
                                     threshold_curves, map_scatter)}


@st.cache_data(max_entries=256, show_spinner=False)
def spec(name: str, args: tuple, language: str = "en") -> dict:
    """The Vega-Lite spec of BUILDERS[name](*args), built with Altair once per input and interface
    language (the builders translate their titles with dashboard.lang, whose language for this run is
    `language`). Not validated against the schema here (half of the cost):
    tests/test_dashboard_apptest.py validates every chart."""
    return BUILDERS[name](*args).to_dict(validate=False)


def show(name: str, *args: Any, container: Any = None, width: Any = "stretch") -> None:
    (container or st).vega_lite_chart(spec=spec(name, args, lang.current()), width=width,
                                      height=HEIGHTS.get(name, "content"))
