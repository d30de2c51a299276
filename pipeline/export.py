"""Sharing an analysis without the dashboard: a one-file HTML report, and the raw tables as Parquet.

    export_html(db, "report.html", models=None, images=True, lang="en")   # vlmemes export --out report.html [--lang ru]
    export_parquet(db, "tables/")                               # python -m pipeline export --parquet tables/

The HTML report is one self-contained file that opens offline in any browser: the charts are Altair
charts rendered to inline SVG by vl-convert, the images are `data:` URIs, the CSS is inline and there
is no JavaScript at all (toxic images are blurred by CSS and revealed by a checkbox the image sits in).
It holds: a dataset summary; per prediction set (model x prompt version, `variants` with stage clip or
vlm) the metrics with 95% intervals (pipeline.metrics), the confusion matrix and the ROC curve; the
agreement table, Cohen's kappa, McNemar test and the paired differences in accuracy and AUROC of each
pair of sets (the first MAX_PAIRS pairs when there are more), with Holm-adjusted p-values over the
pairs shown; galleries of the most confident errors per set and of the disagreements per pair,
with thumbnails, CAM overlays, OCR text and the models' explanations; and the Modality section: per
set with answers on the two derived views (pipeline/views.py: caption removed, caption alone) the
numbers the dashboard's Modality page shows (pipeline.queries.modality_* and pipeline.modality). A
derived-view set (config `meme_view`) is never a prediction set of its own here: it has no section,
metrics, chart row or pair; it is counted only in the Modality section of the set it derives from.
Per VLM set with unparseable answers, why they stated no class (failure kinds: the Overview's table,
pipeline.queries.failure_kind_counts); and the Faithfulness section: per measured CAM method the CAM mass
on the caption against its area, by true label and by the correctness of the model's first CLIP set, and
per measured VLM set the explanations that quote the caption or possibly contradict their class line, with
the first few flagged answers (the Faithfulness page's numbers: pipeline.queries faithfulness_sources,
cam_caption_mass, answer_faithfulness, contradiction_examples; pipeline.faithfulness cam_summary,
answer_summary). The Calibration section: per shown set with scores, ECE and Brier with BCa intervals, the
ECE a calibrated model shows at that n, a reliability diagram, and for CLIP sets the F1 at the 0.5 rule, at a
threshold chosen by cross-validation (held out) and at one chosen on the same memes (labelled optimistic)
(pipeline.summary.calibration_summary). The Label issues section: the memes that at least two shown scored sets
confidently contradict, ranked by confident learning (pipeline.summary.label_issues), with every set's answer. The Map section: the first stored embedding map (pipeline/embedding_map.py) as an
image, points coloured by true label (an even sample of MAP_POINTS_DRAWN above that many memes). The Slices
section: the Slices page's numbers (pipeline/slices.py, queries.slice_counts) for every shown set in every slice
whose source the cache has (OCR: the engine with the most rows; template clusters: the first stored map), memes
per value, toxic share, accuracy / F1 / recall with 95% intervals, values under SMALL_SLICE memes flagged; the
template slice lists its SLICE_TEMPLATES_SHOWN largest clusters and counts the rest.

Language: every fixed text of the report (headings, table headers, notes, captions, chart titles
and axes, the statistical readings) is in `lang`, English or Russian (pipeline/i18n.py; Russian in
pipeline/locales/ru/report.py and stats.py); the numbers are the same in both. The template calls
`_(text, **fields)` (plain text, autoescaped), `_n(n, one, many, **fields)` (plural forms) and
`_m(text, **fields)` (a catalog string holding our own markup, its fields escaped). Data (meme and
OCR text, model explanations, model ids, prompt versions, file names) is never translated.

Safety rules the report keeps (tests/test_export.py checks each one):
  * the database is opened read-only and closed again; nothing is ever written to it;
  * model and OCR text is untrusted: the template autoescapes it, it is shown as plain text and cut
    to TEXT_LIMIT characters; the only markup inserted unescaped is the SVG vl-convert renders;
  * no URL outside the file: no external scripts, fonts, stylesheets or images;
  * no absolute local path: `runs.memes_root` and `runs.args` are never read, a model given as a
    local folder is shown by its last path component, paths inside failure messages likewise;
  * memes that are retired (no longer found by the latest scan) or have no label (label conflict)
    are left out of every metric and gallery, and the report says how many;
  * a report that shows any random-weight (smoke) prediction set or CAM method says so at the top
    and next to every table of numbers;
  * the file stays under SIZE_BUDGET bytes: when it would not, the embedded images are re-encoded
    smaller (IMAGE_LEVELS) until it does.
"""
from __future__ import annotations

import base64
import itertools
import json
import os
import re
import shlex
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import jinja2
from markupsafe import Markup

from pipeline import faithfulness, i18n, metrics, modality, queries
from pipeline import slices as slicing
from pipeline.config import NON_TOXIC, TOXIC
from pipeline.i18n import N_, translate, translate_n
from pipeline.queries import METRIC_NAMES, PREDICTION_STAGES
from pipeline.stages.vlm_answer import LOW_LABEL_MASS, is_low_label_mass, label_mass
from pipeline.store import Store, StoreError, connect
from pipeline.summary import metrics_summary as summary_metrics
from pipeline.summary import pair_comparison as summary_pair
from pipeline.views import CAPTION_ONLY, CAPTION_REMOVED, FULL

MAX_PAIRS = 6                 # agreement tables and disagreement galleries for at most this many pairs
GALLERY_LIMIT = 8             # cards per gallery (most confident first)
TEXT_LIMIT = 1500             # characters of one untrusted text shown in a card
SIZE_BUDGET = 10_000_000      # bytes; images are re-encoded smaller until the file fits
# (longest side px, JPEG quality) for embedded images; None = the stored JPEG as it is
IMAGE_LEVELS: tuple[tuple[int, int] | None, ...] = (None, (256, 75), (192, 65), (144, 55), (96, 45))
SMOKE_BANNER = N_("smoke run with random-weight models — these numbers are not results")
METRIC_LABELS = {"accuracy": N_("accuracy"), "precision": N_("precision"), "recall": N_("recall"),
                 "f1": N_("f1"), "auroc": N_("auroc"), "unparseable_rate": N_("unparseable rate")}
LABEL_NAMES = {TOXIC: N_("toxic"), NON_TOXIC: N_("non_toxic")}        # a class as the report names it
RUN_STATUS = {"ok": N_("ok"), "failed": N_("failed"), "interrupted": N_("interrupted"),
              "running": N_("running"), "abandoned": N_("abandoned")}
LANGUAGE_NOTE = N_("{model} was trained on English text only: Russian prompts (ru-*) are outside its training "
                   "data, so its ru-* scores understate what image-text matching can do; compare en-*, or use a "
                   "multilingual model such as google/siglip2-base-patch16-224")
# the command that computes the derived views (the Modality page's); the cache by its file name only
VIEWS_COMMAND = "vlmemes precompute --db {db} --stages ocr,views,clip,vlm --views all"
# the command that fills the faithfulness table (the Faithfulness page's); it reads stored heatmaps and answers
FAITHFULNESS_COMMAND = "vlmemes precompute --db {db} --stages ocr,cam,vlm,faithfulness"
CONTRADICTIONS_SHOWN = 5      # possible contradictions listed per VLM set
LABEL_ISSUES_SHOWN = 12       # possible label issues listed (worst first)
MAP_POINTS_DRAWN = 4000       # points of the embedding map drawn in the report (an even sample above)
SLICE_TEMPLATES_SHOWN = 10    # template clusters listed in the Slices section (the largest; the rest counted)
# the Faithfulness page's names of pipeline.faithfulness.GROUPS
FAITH_GROUP_NAMES = {"all": N_("all memes"), TOXIC: N_("true label toxic"), NON_TOXIC: N_("true label non-toxic"),
                     "correct": N_("answer right"), "wrong": N_("answer wrong")}
NOT_MEASURED = N_("not measured yet")
TEMPLATES = Path(__file__).resolve().parent / "templates"


class ExportError(StoreError):
    """The export cannot be made as asked (one clear line; the CLI prints it)."""


# ============================================================================ local-path hygiene
_ABS_PATH = re.compile(r"""(?<![\w.:/-])(?:~|[A-Za-z]:)?[/\\](?:[^\s/\\'"<>|]+[/\\])+([^\s/\\'"<>|]*)""")


def public_name(model_id: str | None) -> str:
    """A model/engine id as the report shows it: HF ids as they are, local folders by their last component."""
    if not model_id:
        return ""
    text = str(model_id).rstrip("/\\")
    if text.startswith(("/", "~", ".", "\\")) or re.match(r"^[A-Za-z]:[/\\]", text):
        return PureWindowsPath(text).name if "\\" in text else PurePosixPath(text).name
    return text


def scrub_paths(text: str | None) -> str:
    """Replace every absolute (or ~) path inside free text by its last component."""
    if not text:
        return ""
    return _ABS_PATH.sub(lambda m: m.group(1) or "…", str(text))


# ============================================================================ data from the cache
@dataclass
class PredSet:
    variant_id: str
    stage: str
    model_id: str
    name: str                   # prompt version
    is_smoke: bool
    preds: dict[str, tuple[str | None, float | None]] = field(default_factory=dict)  # meme_id -> (label, score)

    @property
    def model(self) -> str:
        return public_name(self.model_id)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.model})"

    def matches(self, needles: list[str]) -> bool:
        return any(n in self.model_id or n in self.name for n in needles)


@dataclass
class CamMethod:
    variant_id: str
    model_id: str
    name: str
    is_smoke: bool

    @property
    def label(self) -> str:
        return f"{self.name} ({public_name(self.model_id)})"


def _rows(con, sql: str, params: list | None = None) -> list[tuple]:
    return con.execute(sql, params or []).fetchall()


def _open(db: str | Path):
    """A read-only connection; Store(create=False) first refuses a missing or non-DuckDB file clearly."""
    Store(db, create=False)
    return connect(db, read_only=True)


# ============================================================================ charts (Altair -> SVG)
def _svg(chart, label: str) -> Markup:
    """Render an Altair chart to inline SVG markup (our own renderer output, not untrusted text).

    Vega's generated ARIA descriptions are English ("X-axis for a linear scale ..."), so they are
    turned off and the chart is described by `label` (already in the report's language) instead."""
    import vl_convert
    from markupsafe import escape

    svg = vl_convert.vegalite_to_svg(chart.configure(aria=False).to_json())
    svg = re.sub(r"^<\?xml[^>]*>\s*", "", svg)
    if "xlink:" not in svg.replace('xmlns:xlink="http://www.w3.org/1999/xlink"', ""):
        svg = svg.replace(' xmlns:xlink="http://www.w3.org/1999/xlink"', "")
    svg = re.sub(r' aria-(?:roledescription|label)="[^"]*"', "", svg)    # what aria=False leaves (titles, groups)
    svg = svg.replace("<svg ", f'<svg role="img" aria-label="{escape(label)}" ', 1)
    return Markup(svg)


def roc_chart(points: list[dict], title: str, lang: str = "en") -> Markup | None:
    import altair as alt
    import pandas as pd

    if not points:
        return None
    df = pd.DataFrame({"fpr": [p["fpr"] for p in points], "tpr": [p["tpr"] for p in points]})
    diag = pd.DataFrame({"fpr": [0.0, 1.0], "tpr": [0.0, 1.0]})
    scale = alt.Scale(domain=[0, 1])
    curve = alt.Chart(df).mark_line(point=True, color="#1f5fa8").encode(
        x=alt.X("fpr:Q", title=translate(N_("false positive rate"), lang), scale=scale),
        y=alt.Y("tpr:Q", title=translate(N_("true positive rate (recall)"), lang), scale=scale), order="fpr:Q")
    chance = alt.Chart(diag).mark_line(strokeDash=[4, 4], color="#999").encode(x="fpr:Q", y="tpr:Q")
    return _svg((chance + curve).properties(width=220, height=220, title=title), title)


def metrics_chart(rows: list[dict], lang: str = "en") -> Markup | None:
    """Point + 95% interval of every metric of every set, one panel per metric (titled in `lang`)."""
    import altair as alt
    import pandas as pd

    rows = [r for r in rows if r["value"] is not None]
    if not rows:
        return None
    df = pd.DataFrame(rows)
    df["low"] = df["low"].fillna(df["value"])
    df["high"] = df["high"].fillna(df["value"])
    df["metric"] = [translate(METRIC_LABELS[k], lang) for k in df["metric"]]
    y = alt.Y("set:N", title=None, sort=None)
    base = alt.Chart().encode(y=y)
    rule = base.mark_rule(color="#666").encode(x=alt.X("low:Q", title=None, scale=alt.Scale(domain=[0, 1])),
                                                x2="high:Q")
    point = base.mark_point(filled=True, size=50, color="#1f5fa8").encode(x="value:Q")
    chart = alt.layer(rule, point, data=df).properties(width=150).facet(
        column=alt.Column("metric:N", title=None, sort=[translate(METRIC_LABELS[k], lang) for k in METRIC_NAMES]))
    return _svg(chart, translate(N_("Every metric of every prediction set with its 95% interval"), lang))


# ============================================================================ images
class ImageEncoder:
    """data: URIs of stored JPEG blobs, re-encoded smaller at a given level (cached per blob)."""

    def __init__(self, level: tuple[int, int] | None):
        self.level = level
        self._cache: dict[int, str] = {}
        self.count = 0

    def uri(self, blob: bytes | None, mime: str | None = "image/jpeg") -> str | None:
        if not blob:
            return None
        self.count += 1
        key = id(blob)
        if key not in self._cache:
            data, mime = bytes(blob), (mime or "image/jpeg")
            if self.level is not None:
                from pipeline.images import BadImage, encode_jpeg, load_rgb
                side, quality = self.level
                try:
                    data, mime = encode_jpeg(load_rgb(data, max_side=side * 2), max_side=side, quality=quality), "image/jpeg"
                except BadImage:
                    pass            # a blob PIL cannot decode is embedded as stored; the browser decides
            if not re.fullmatch(r"image/(jpeg|png|webp|gif)", mime):
                mime = "image/jpeg"
            self._cache[key] = f"data:{mime};base64," + base64.b64encode(data).decode("ascii")
        return self._cache[key]


# ============================================================================ the report
def _cut(text: str | None, limit: int = TEXT_LIMIT) -> dict:
    """Untrusted text for the template: the first `limit` characters and how many were left out."""
    text = text or ""
    return {"text": text[:limit], "more": max(0, len(text) - limit)}


def _pick_pairs(sets: list[PredSet]) -> tuple[list[tuple[PredSet, PredSet]], int]:
    pairs = list(itertools.combinations(sets, 2))
    return pairs[:MAX_PAIRS], len(pairs)


def _load(con, models: list[str] | None, lang: str = "en") -> dict[str, Any]:
    """Everything the report needs except per-card details (those are read for shown memes only)."""
    memes = queries.report_memes(con)
    truth = {m: lab for m, lab, retired in memes if not retired and lab is not None}
    variant_rows = queries.report_variants(con)
    derived = queries.report_view_sets(con)          # derived-view sets: only in the Modality section
    all_sets = [PredSet(v["variant_id"], v["stage"], v["model_id"], v["name"], bool(v["is_smoke"]))
                for v in variant_rows if v["stage"] in PREDICTION_STAGES and v["variant_id"] not in derived]
    sets = [s for s in all_sets if s.matches(models)] if models else all_sets
    if models and not sets:
        known = ", ".join(s.label for s in all_sets) or translate(N_("none"), lang)
        raise ExportError(translate(N_("--models {models} matches no prediction set; the cache has: {known}"), lang,
                                    models=",".join(models), known=known))
    by_id = {s.variant_id: s for s in sets}
    if sets:
        for vid, meme_id, label, score, stage, logits in queries.report_predictions(con, list(by_id)):
            mass = label_mass(logits) if stage == "vlm" else None      # from the log-probs: any cache has them
            by_id[vid].preds[meme_id] = (label, score, mass)
    cams = [CamMethod(v["variant_id"], v["model_id"], v["name"], bool(v["is_smoke"]))
            for v in variant_rows if v["stage"] == "cam"]
    shown_models = {s.model_id for s in sets}
    if models:
        cams = [c for c in cams if c.model_id in shown_models] or cams
    ocr_variants = [v for v in variant_rows if v["stage"] == "ocr"]
    smoke_ids = {v["variant_id"] for v in variant_rows if v["is_smoke"]}
    return dict(memes=memes, truth=truth, sets=sets, cams=cams, ocr_variants=ocr_variants, smoke_ids=smoke_ids)


def _summary(con, data: dict) -> dict:
    memes = data["memes"]
    n_total = len(memes)
    n_retired = sum(1 for _, _, r in memes if r)
    n_unlabelled = sum(1 for _, lab, r in memes if not r and lab is None)
    truth = data["truth"]
    formats = queries.report_format_counts(con)
    animated = queries.meme_overview(con, False)["animated"]
    ocr = []
    for v in data["ocr_variants"]:
        n, n_empty, conf = queries.report_ocr_summary(con, v["variant_id"])
        ocr.append(dict(name=v["name"], model=public_name(v["model_id"]), n=n, n_empty=n_empty, conf=conf))
    cams = []
    for c in data["cams"]:
        n = queries.report_heatmap_count(con, c.variant_id)
        cams.append(dict(label=c.label, n=n, is_smoke=c.is_smoke))
    runs = []
    for r in queries.report_runs(con):
        try:
            used = json.loads(r["models"] or "{}")
        except ValueError:
            used = {}
        r["models"] = ", ".join(f"{k}: {public_name(str(v))}" for k, v in used.items()) if isinstance(used, dict) else ""
        r["device"] = scrub_paths(r["device"])
        runs.append(r)
    failures, newest = queries.report_failures(con, 20)
    recent = [dict(stage=s, error_type=e, path=public_name(p) if p and os.path.isabs(p) else p,
                   message=_cut(scrub_paths(m), 300)) for s, e, p, m in newest]
    return dict(
        n_total=n_total, n_retired=n_retired, n_unlabelled=n_unlabelled, n_eligible=len(truth),
        n_toxic=sum(1 for v in truth.values() if v == TOXIC), n_non_toxic=sum(1 for v in truth.values() if v == NON_TOXIC),
        formats=formats, animated=animated, ocr=ocr, cams=cams, runs=runs, failures=failures, recent_failures=recent,
    )


def _set_report(s: PredSet, truth: dict[str, str], counted: dict) -> dict:
    """One prediction set: its metrics as the dashboard computes them (pipeline.summary.metrics_summary,
    from SQL counts: `counted`), and its galleries."""
    ids = [m for m in truth if m in s.preds]
    rep = counted["classification"]
    fp = sorted((m for m in ids if truth[m] == NON_TOXIC and s.preds[m][0] == TOXIC),
                key=lambda m: -(s.preds[m][1] if s.preds[m][1] is not None else -1.0))
    fn = sorted((m for m in ids if truth[m] == TOXIC and s.preds[m][0] == NON_TOXIC),
                key=lambda m: (s.preds[m][1] if s.preds[m][1] is not None else 2.0))
    unparsed = [m for m in ids if s.preds[m][0] is None]
    masses = [s.preds[m][2] for m in ids if s.preds[m][2] is not None]
    return dict(set=s, report=rep, n_rows=len(s.preds), n_missing=len(truth) - len(ids), roc=counted["roc"],
                n_mass=len(masses), n_low_mass=sum(is_low_label_mass(x) for x in masses),
                metrics={k: rep.get(k) for k in METRIC_NAMES},
                galleries=[(N_("False positives: non_toxic memes judged toxic, highest p(toxic) first"), "fp", fp),
                           (N_("False negatives: toxic memes judged non_toxic, lowest p(toxic) first"), "fn", fn),
                           (N_("Unparseable answers: no class stated"), "unparsed", unparsed)])


def _pair_report(con, a: PredSet, b: PredSet, truth: dict[str, str]) -> dict:
    """One pair of sets: agreement from SQL counts and the paired tests on their aligned answers (the
    dashboard's queries and pipeline.metrics functions), and the memes where they disagree."""
    ids = [m for m in truth if m in a.preds and m in b.preds]
    rep = metrics.agreement_from_counts(metrics.answer_table(queries.pair_answer_counts(con, a.variant_id, b.variant_id, False)),
                                        name_a=a.label, name_b=b.label)
    paired = summary_pair(queries.set_answers(con, [a.variant_id, b.variant_id], False), a.variant_id, b.variant_id,
                          name_a=a.label, name_b=b.label)

    def gap(m: str) -> float:
        sa, sb = a.preds[m][1], b.preds[m][1]
        return -abs(sa - sb) if sa is not None and sb is not None else 0.0

    disagree = sorted((m for m in ids if a.preds[m][0] != b.preds[m][0]), key=gap)
    return dict(a=a, b=b, report=rep, kappa=rep.kappa.as_dict(), paired=paired, disagree=disagree)


def _share(e: metrics.Estimate) -> dict:
    """One driver share as the Modality page shows it: the Wilson estimate and k/n (k = value x n, as there)."""
    d = e.as_dict()
    return dict(d, k=round(d["value"] * d["n"]) if d["value"] is not None else 0)


def _modality_report(con, data: dict) -> dict:
    """The Modality section: for every set of queries.modality_sets whose full set is shown (the --models
    filter), the Modality page's numbers (its queries, pipeline.modality's functions) on the memes still in
    the folder (include_retired=False): coverage, drivers, the three-way table, the paired view tests.
    `available`: how many such sets the cache has before the filter."""
    shown = {s.variant_id: s for s in data["sets"]}
    found = queries.modality_sets(con)
    ocr_names = {v["variant_id"]: v["name"] for v in data["ocr_variants"]}
    out = []
    for m in found:
        s = shown.get(m["variant_id"])
        if s is None:
            continue
        ids = (m["variant_id"], m["removed_id"], m["only_id"])
        cover = queries.modality_coverage(con, *ids, m["ocr_source"], False)
        summary = modality.summary(modality.three_way_table(queries.modality_counts(con, *ids, False)))
        drivers = [dict(truth=t, shares=[dict(key=k, **_share(e)) for k, e in summary["drivers"][t].items()])
                   for t in (None, TOXIC, NON_TOXIC)]
        combos: dict[tuple, dict] = {}              # the three-way table, one row per answer combination
        for c in summary["cells"]:
            key = (c[FULL], c[CAPTION_REMOVED], c[CAPTION_ONLY])
            row = combos.setdefault(key, dict(answers=key, driver=modality.driver_cell(*key), by_truth={}, memes=0))
            row["by_truth"][c["truth"]] = c["memes"]
            row["memes"] += c["memes"]
        cells = sorted(combos.values(), key=lambda r: (-r["memes"], [str(a) for a in r["answers"]]))
        smoke = bool(m["is_smoke"]) or s.is_smoke or bool({m["removed_id"], m["only_id"]} & data["smoke_ids"])
        out.append(dict(set=s, removed_id=m["removed_id"], only_id=m["only_id"], is_smoke=smoke,
                        ocr=ocr_names.get(m["ocr_source"]) or m["ocr_source"] or "", coverage=cover,
                        n=summary["n"], drivers=drivers, cells=cells, tests=summary["tests"]))
    return dict(sets=out, available=len(found))


def _failure_kinds(con, set_reports: list[dict]) -> list[dict]:
    """Why answers stated no class: per shown VLM set with unparseable answers (its n_unparseable, memes with a
    true label still in the folder), the Overview's counts by failure kind (queries.failure_kind_counts) and
    `not_measured`: the unparseable answers the faithfulness stage has not read yet."""
    kinds = queries.failure_kind_counts(con, False)
    out = []
    for sr in set_reports:
        s, n = sr["set"], int(sr["report"]["n_unparseable"] or 0)
        if s.stage != "vlm" or not n:
            continue
        got = kinds.get(s.variant_id, {})
        out.append(dict(set=s, unparseable=n, kinds={k: got.get(k, 0) for k in faithfulness.FAILURE_KINDS},
                        not_measured=n - sum(got.values())))
    return out


def _proportion(k: int, n: int) -> dict:
    """A share as the Faithfulness page shows it: the Wilson estimate of k/n, and k."""
    return dict(metrics.proportion_estimate(int(k), int(n)).as_dict(), k=int(k))


def _faithfulness_report(con, data: dict, n_unlabelled: int) -> dict:
    """The Faithfulness section: the Faithfulness page's numbers (its queries, pipeline.faithfulness's
    summaries) on the memes with a label still in the folder (include_retired=False).

    CAM: every measured CAM method the report shows (data["cams"]), grouped by correctness of the first
    full-view CLIP set of its model (the page's default). VLM: every measured full-view set the report shows
    (the --models filter), with its first CONTRADICTIONS_SHOWN possible contradictions on memes with a label.
    `available`: how many sources the cache has measured at all; `cams_available` / `answers_available`:
    how many CAM methods / full-view VLM sets, before the filter."""
    sources = queries.faithfulness_sources(con)
    cam_ids = {c.variant_id for c in data["cams"]}
    shown = {s.variant_id: s for s in data["sets"]}
    clips = [v for v in queries.variants_overview(con).to_dict("records")
             if v["stage"] == "clip" and not isinstance(v["meme_view"], str) and v["n_rows"] > 0]
    cams, answers = [], []
    for src in sources:
        if src["measure"] != "cam" or src["variant_id"] not in cam_ids:
            continue
        method = CamMethod(src["variant_id"], src["model_id"], src["name"], bool(src["is_smoke"]))
        clip = next((v for v in clips if v["model_id"] == src["model_id"]), None)
        groups = faithfulness.cam_summary(queries.cam_caption_mass(
            con, method.variant_id, clip["variant_id"] if clip else None, False))
        for g in groups:
            g["above_share"] = _proportion(g["above"], g["n"])
        cams.append(dict(method=method, clip_id=clip["variant_id"] if clip else None,
                         clip=f"{clip['name']} ({public_name(clip['model_id'])})" if clip else None,
                         is_smoke=method.is_smoke or bool(clip and clip["variant_id"] in data["smoke_ids"]),
                         groups=groups))
    for src in sources:
        s = shown.get(src["variant_id"])
        if src["measure"] != "answer" or src["meme_view"] is not None or s is None:
            continue
        groups = faithfulness.answer_summary(queries.answer_faithfulness(con, s.variant_id, False))
        for g in groups:
            g["quote_share"] = _proportion(g["quotes"], g["with_caption"])
            g["contradiction_share"] = _proportion(g["contradictions"], g["with_class"])
        total = next((g["contradictions"] for g in groups if g["group"] == "all"), 0)
        # the query also returns memes without a label: ask for enough and keep those with one
        flagged = [r for r in queries.contradiction_examples(con, s.variant_id, False,
                                                             CONTRADICTIONS_SHOWN + n_unlabelled)
                   if r["truth"] is not None][:CONTRADICTIONS_SHOWN]
        examples = [dict(meme_id=r["meme_id"], truth=r["truth"], label=r["label"], cue=_cut(r["cue"], 300),
                         explanation=_cut(r["explanation"])) for r in flagged]
        answers.append(dict(set=s, is_smoke=s.is_smoke or bool(src["is_smoke"]), groups=groups,
                            contradictions=total, examples=examples))
    return dict(cams=cams, answers=answers, available=len(sources),
                cams_available=sum(src["measure"] == "cam" for src in sources),
                answers_available=sum(src["measure"] == "answer" and src["meme_view"] is None for src in sources))


def _calibration_report(con, sets: list[PredSet]) -> dict:
    """The Calibration section: the Calibration page's numbers (pipeline.summary.calibration_summary, the stored
    ones while current) for every shown set with scores; the threshold analysis for CLIP sets only (their answer
    is the 0.5 rule on p(toxic))."""
    stored = queries.stored_calibration(con, False)
    per = stored["sets"] if stored is not None else queries.live_calibration(con, False)
    rows = []
    for s in sets:
        cal = per.get(s.variant_id)
        if cal:
            rows.append(dict(set=s, n=cal["n"], n_no_score=cal.get("n_no_score", 0), ece=cal["ece"],
                             null=cal["ece_null"], brier=cal["brier"], bins=cal["bins"],
                             threshold=cal["threshold"] if s.stage == "clip" else None))
    return dict(sets=rows)


def _label_issues_report(con, calibration: dict) -> dict:
    """The Label issues section: the Label issues page's ranking with its defaults (every shown set with
    scores as evidence, at least two of them contradicting the label), the first LABEL_ISSUES_SHOWN."""
    sets = [r["set"] for r in calibration["sets"]]
    if not sets:
        return dict(sets=[], issues=[], total=0, report=None)
    from pipeline.summary import label_issues
    report = label_issues(con, [s.variant_id for s in sets], False, min(2, len(sets)))
    return dict(sets=sets, issues=report["issues"][:LABEL_ISSUES_SHOWN], total=len(report["issues"]), report=report)


def _slices_report(con, sets: list[PredSet]) -> dict:
    """The Slices section: the Slices page's numbers (queries.slice_counts, pipeline.slices.slice_metrics) of every
    shown set in every slice of pipeline.slices.SLICES whose source the cache has (queries.slice_sources: the OCR
    engine with the most rows, the first stored map; the near-duplicate slice once perceptual hashes are stored)
    and that has answers, on the memes with a label still in the folder (include_retired=False). The template
    slice keeps its SLICE_TEMPLATES_SHOWN largest clusters (most memes answered by one shown set) and the memes in
    none or not embedded, and counts the clusters left out (`hidden`)."""
    if not sets:
        return dict(slices=[], small_limit=slicing.SMALL_SLICE, shown_templates=SLICE_TEMPLATES_SHOWN)
    vids = [s.variant_id for s in sets]
    by_id = {s.variant_id: s for s in sets}
    sources = queries.slice_sources(con)
    names = {v["variant_id"]: v for v in queries.report_variants(con)}
    dups = queries.near_duplicate_report(con, False)
    if dups["n_groups"] and "in_group" not in dups:       # stored by code that did not list the members
        dups = queries.live_near_duplicates(con, False)
    out = []
    for key, (source, group_ids) in slicing.available(sources, dups).items():
        spec = slicing.SLICES[key]
        rows = queries.slice_counts(con, key, source, tuple(vids), False, group_ids)
        hidden = 0
        if key == "template":
            per_set: dict[tuple[str, str], int] = {}
            for value, vid, _truth, _answer, n in rows:
                per_set[(value, vid)] = per_set.get((value, vid), 0) + n
            size: dict[str, int] = {}
            for (value, _vid), n in per_set.items():
                size[value] = max(size.get(value, 0), n)
            clusters = slicing.ordered_values(key, [v for v in size if v not in spec.last])
            keep = set(sorted(clusters, key=lambda v: -size[v])[:SLICE_TEMPLATES_SHOWN]) | set(spec.last)
            hidden = len(clusters) - len(keep & set(clusters))
            rows = [r for r in rows if r[0] in keep]
        per = slicing.slice_metrics(rows, vids)
        if not per:
            continue
        values = slicing.ordered_values(key, {v for v, _vid in per})
        table = [dict(value=value, set=by_id[vid], **per[(value, vid)])
                 for value in values for vid in vids if (value, vid) in per]
        small = [value for value in values if any(per.get((value, vid), {}).get("small") for vid in vids)]
        variant = names.get(source, {}) if source else {}
        source_name = (f"{variant['name']} ({public_name(variant['model_id'])})" if spec.source == "ocr"
                       else public_name(variant["model_id"])) if variant else (source or "")
        out.append(dict(key=key, name=spec.name, help=spec.help, source=spec.source, source_name=source_name,
                        rows=table, small=small, hidden=hidden))
    return dict(slices=out, small_limit=slicing.SMALL_SLICE, shown_templates=SLICE_TEMPLATES_SHOWN)


def _map_report(con) -> dict:
    """The Map page's map as a static image: the first stored map (by model), its points coloured by true label,
    an evenly spaced sample of MAP_POINTS_DRAWN when there are more (pipeline/embedding_map.py stores them)."""
    maps = queries.map_variants(con) if "maps" in queries.table_names(con) else []
    if not maps:
        return dict(map=None, points=None, n=0, model=None)
    m = maps[0]
    df = queries.map_points_for(con, m["variant_id"], None, None, False)
    n = len(df)
    if n > MAP_POINTS_DRAWN:
        df = df.iloc[[round(i * (n - 1) / (MAP_POINTS_DRAWN - 1)) for i in range(MAP_POINTS_DRAWN)]]
    return dict(map=m, points=df, n=n, model=public_name(m["model_id"]))


def map_chart(points, lang: str = "en") -> Markup | None:
    """The embedding map's points coloured by true label (toxic, non-toxic, no label)."""
    import altair as alt

    if points is None or not len(points):
        return None
    words = {0: translate(N_("no label (conflict)"), lang), 1: translate(N_("non-toxic"), lang),
             2: translate(N_("toxic"), lang)}
    df = points.assign(label=points["truth"].map(words))[["x", "y", "label"]].round(3)
    chart = alt.Chart(df).mark_circle(size=12, opacity=0.6).encode(
        x=alt.X("x:Q", title=None, axis=alt.Axis(labels=False, ticks=False), scale=alt.Scale(zero=False)),
        y=alt.Y("y:Q", title=None, axis=alt.Axis(labels=False, ticks=False), scale=alt.Scale(zero=False)),
        color=alt.Color("label:N", title=translate(N_("true label"), lang),
                        scale=alt.Scale(domain=list(words.values()), range=["#999999", "#1f77b4", "#d62728"])))
    title = translate(N_("Map of the memes by their CLIP image embeddings"), lang)
    return _svg(chart.properties(width=420, height=420, title=title), title)


def reliability_chart(rows: list[dict], lang: str = "en") -> Markup | None:
    """Reliability diagram of the shown scored sets: toxic share per score bin (Wilson interval) against the
    bin's mean p(toxic), the diagonal = calibrated."""
    import altair as alt
    import pandas as pd

    df = pd.DataFrame([dict(set=r["set"].label, **b) for r in rows for b in r["bins"]])
    if not len(df):
        return None
    scale = alt.Scale(domain=[0, 1])
    x = alt.X("mean_score:Q", title=translate(N_("mean p(toxic) in the bin"), lang), scale=scale)
    color = alt.Color("set:N", title=None, legend=alt.Legend(orient="bottom", labelLimit=400, columns=1))
    diag = alt.Chart(pd.DataFrame({"x": [0.0, 1.0], "y": [0.0, 1.0]})).mark_line(strokeDash=[4, 4], color="#999")\
        .encode(x="x:Q", y="y:Q")
    bars = alt.Chart(df).mark_rule(opacity=0.6).encode(x=x, y="frac_low:Q", y2="frac_high:Q", color=color)
    points = alt.Chart(df).mark_point(filled=True).encode(
        x=x, y=alt.Y("frac_toxic:Q", title=translate(N_("share of toxic memes (95% Wilson interval)"), lang),
                     scale=scale), size=alt.Size("n:Q", legend=None), color=color)
    title = translate(N_("Reliability diagram"), lang)
    return _svg((diag + bars + points).properties(width=320, height=320, title=title), title)


def _card_details(con, meme_ids: list[str], sets: list[PredSet], cams: list[CamMethod], images: bool) -> dict[str, dict]:
    """Per shown meme: thumbnail, overlays, OCR texts and every shown set's answer."""
    if not meme_ids:
        return {}
    cards: dict[str, dict] = {}
    found = queries.report_cards(con, meme_ids, images, [c.variant_id for c in cams], [s.variant_id for s in sets])
    for r in found["memes"]:
        rel = r["rel_path"] or ""
        r["rel_path"] = public_name(rel) if os.path.isabs(rel) else rel
        cards[r["meme_id"]] = dict(meme=r, overlays=[], ocr=[], answers={})
    if images and cams:
        order = {c.variant_id: i for i, c in enumerate(cams)}
        for meme_id, vid, overlay in sorted(found["overlays"], key=lambda r: order[r[1]]):
            cam = cams[order[vid]]
            caption = cam.name if len({c.model_id for c in cams}) == 1 else cam.label
            cards[meme_id]["overlays"].append(dict(label=cam.label, caption=caption, is_smoke=cam.is_smoke, blob=overlay))
    for meme_id, engine, text in found["ocr"]:
        cards[meme_id]["ocr"].append(dict(engine=engine, text=_cut(text, 800)))
    by_id = {s.variant_id: s for s in sets}
    for meme_id, vid, label, score, explanation, raw in found["answers"]:
        mass = by_id[vid].preds.get(meme_id, (None, None, None))[2]
        cards[meme_id]["answers"][vid] = dict(label=label, score=score, explanation=_cut(explanation),
                                              low_mass=mass if is_low_label_mass(mass) else None,
                                              raw=_cut(raw) if raw and (label is None or not explanation) else None)
    return cards


def build_report(db: str | Path, models: list[str] | None = None, images: bool = True,
                 lang: str = "en") -> dict[str, Any]:
    """All numbers, charts and gallery cards of the report (images as blobs, not yet encoded), its
    texts in `lang` (the numbers do not depend on it)."""
    if lang not in i18n.LANGS:
        raise ExportError(f"--lang {lang}: expected one of {', '.join(i18n.LANGS)}")
    con = _open(db)
    try:
        data = _load(con, models, lang)
        summary = _summary(con, data)
        truth, sets, cams = data["truth"], data["sets"], data["cams"]
        counted = summary_metrics(con, False) if sets else {}          # what the dashboard shows, from SQL counts
        set_reports = [_set_report(s, truth, counted[s.variant_id]) for s in sets]
        pairs, n_pairs = _pick_pairs(sets)
        pair_reports = [_pair_report(con, a, b, truth) for a, b in pairs]
        # several pairs shown: each p-value also adjusted (Holm) over the pairs shown
        for pr, adjusted in zip(pair_reports, metrics.holm_adjust_comparisons([pr["paired"] for pr in pair_reports])):
            pr["tests"] = adjusted
            pr["adjustment"] = metrics.adjustment_text(len(pair_reports), lang)
            pr["reading"] = metrics.reading_text(pr["report"].as_dict(), pr["a"].label, pr["b"].label, lang)
        shown: list[str] = []
        for sr in set_reports:
            sr["galleries"] = [dict(title=translate(t, lang), kind=k, total=len(ids), ids=ids[:GALLERY_LIMIT])
                               for t, k, ids in sr["galleries"]]
            for g in sr["galleries"]:
                shown += g["ids"]
        for pr in pair_reports:
            pr["total"] = len(pr["disagree"])
            pr["disagree"] = pr["disagree"][:GALLERY_LIMIT]
            shown += pr["disagree"]
        calibration_report = _calibration_report(con, sets)
        label_issue_report = _label_issues_report(con, calibration_report)
        map_report = _map_report(con)
        slices_report = _slices_report(con, sets)
        shown += [i["meme_id"] for i in label_issue_report["issues"]]
        cards = _card_details(con, list(dict.fromkeys(shown)), sets, cams, images)
        modality_report = _modality_report(con, data)
        failure_kinds = _failure_kinds(con, set_reports)
        faithfulness_report = _faithfulness_report(con, data, summary["n_unlabelled"])
    finally:
        con.close()
    for c in cards.values():
        c["toxic"] = truth.get(c["meme"]["meme_id"]) == TOXIC
    calibration_report["svg"] = reliability_chart(calibration_report["sets"], lang)
    map_report["svg"] = map_chart(map_report.pop("points"), lang)
    for sr in set_reports:
        sr["roc_svg"] = roc_chart(sr["roc"], translate(N_("ROC: {name}"), lang, name=sr["set"].label), lang)
    chart_rows = [dict(set=sr["set"].label, metric=k, **{x: (sr["metrics"][k] or {}).get(x) for x in ("value", "low", "high")})
                  for sr in set_reports for k in METRIC_NAMES if k != "unparseable_rate"]
    smoke = any(s.is_smoke for s in sets) or any(c.is_smoke for c in cams) or \
        any(m["is_smoke"] for m in modality_report["sets"]) or \
        any(f["is_smoke"] for f in faithfulness_report["cams"] + faithfulness_report["answers"])
    for m in modality_report["sets"]:
        for t in m["tests"]:
            t["reading_shown"] = modality.reading_text(t, lang)
    from pipeline.stages.clip_prompts import language_note
    notes = [translate(LANGUAGE_NOTE, lang, model=s.model_id) for s in sets
             if s.stage == "clip" and language_note(s.model_id, s.name)]       # its English text, in `lang`
    language_notes = [scrub_paths(n) for n in dict.fromkeys(n for n in notes if n)]
    return dict(
        db_name=Path(db).name, generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        summary=summary, sets=set_reports, pairs=pair_reports, n_pairs=n_pairs, max_pairs=MAX_PAIRS,
        cams=cams, cards=cards, truth=truth, images=images, smoke=smoke, smoke_banner=translate(SMOKE_BANNER, lang),
        models_filter=models or [], gallery_limit=GALLERY_LIMIT, text_limit=TEXT_LIMIT, low_label_mass=LOW_LABEL_MASS,
        metrics_svg=metrics_chart(chart_rows, lang), metric_names=METRIC_NAMES, language_notes=language_notes,
        modality=modality_report, views_command=VIEWS_COMMAND.format(db=shlex.quote(Path(db).name)), lang=lang,
        failure_kinds=failure_kinds, failure_kind_names=faithfulness.FAILURE_KINDS, faithfulness=faithfulness_report,
        faithfulness_command=FAITHFULNESS_COMMAND.format(db=shlex.quote(Path(db).name)),
        quote_min_words=faithfulness.QUOTE_MIN_WORDS, contradictions_shown=CONTRADICTIONS_SHOWN,
        calibration=calibration_report, label_issues=label_issue_report, map=map_report, slices=slices_report,
    )


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = lambda x, d=3: "–" if x is None else f"{x:.{d}f}"
    env.filters["pval"] = lambda p: "–" if p is None else (f"{p:.3g}" if p >= 0.001 else "< 0.001")
    return env


def text_functions(lang: str) -> dict[str, Any]:
    """What the template translates with, bound to `lang`: `_` (plain text: autoescaped where shown),
    `_n` (the plural form for a count), `_m` (a catalog string with our own markup: the translation
    is trusted, its fields are escaped), and the statistical texts and class names."""
    def _(text: str, /, **fields: object) -> str:
        return translate(text, lang, **fields)

    def _n(n: int, one: str, many: str, /, **fields: object) -> str:
        return translate_n(n, one, many, lang, **fields)

    def _m(text: str, /, **fields: object) -> Markup:
        return Markup(translate(text, lang)).format(**fields)

    def label(value: str | None) -> str:
        return translate(LABEL_NAMES[value], lang) if value in LABEL_NAMES else translate(N_("unparseable"), lang)

    return dict(_=_, _n=_n, _m=_m, label_t=label,
                note_t=lambda note: metrics.note_text(note, lang),
                method_t=lambda e: metrics.method_text(e, lang),
                metric_t=lambda k: translate(METRIC_LABELS[k], lang) if k in METRIC_LABELS else k,
                view_t=lambda v: translate(modality.VIEW_NAMES[v], lang),
                driver_t=lambda d: translate(modality.DRIVER_NAMES[d], lang) if d in modality.DRIVER_NAMES
                else translate(N_("not toxic on the full meme"), lang),
                status_t=lambda s: translate(RUN_STATUS[s], lang) if s in RUN_STATUS else s,
                kind_t=lambda k: translate(faithfulness.FAILURE_KIND_NAMES[k], lang)
                if k in faithfulness.FAILURE_KIND_NAMES else k,
                group_t=lambda g: translate(FAITH_GROUP_NAMES[g], lang) if g in FAITH_GROUP_NAMES else g,
                slice_value_t=lambda v: slicing.value_text(v, _),
                slice_values_t=lambda values: ", ".join(slicing.value_text(v, _) for v in values),
                not_measured=translate(NOT_MEASURED, lang))


def render_html(report: dict[str, Any], level: tuple[int, int] | None = None) -> tuple[str, int]:
    """The report as one HTML string (images encoded at `level`) and the number of images embedded."""
    encoder = ImageEncoder(level)
    html = _environment().get_template("report.html.j2").render(**report, img=encoder.uri,
                                                                **text_functions(report.get("lang", "en")))
    return html, encoder.count


def export_html(db: str | Path, out: str | Path, models: list[str] | None = None, images: bool = True,
                lang: str = "en") -> Path:
    """Write the self-contained HTML report of the cache `db` to `out`, its texts in `lang` ("en" or
    "ru"); returns the path written."""
    if lang not in i18n.LANGS:
        raise ExportError(f"--lang {lang}: expected one of {', '.join(i18n.LANGS)}")
    out = Path(out)
    if out.is_dir():
        raise ExportError(translate(N_("--out {out} is a directory; give a file name such as {example}"), lang,
                                    out=out, example=out / "report.html"))
    if not out.resolve().parent.is_dir():
        raise ExportError(translate(N_("the directory {folder!r} for --out does not exist"), lang,
                                    folder=out.resolve().parent.name))
    report = build_report(db, models=models, images=images, lang=lang)
    for level in IMAGE_LEVELS if images else (None,):
        html, n_images = render_html(report, level)
        size = len(html.encode("utf-8"))
        if size <= SIZE_BUDGET:
            break
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, out)
    how = "" if level is None else translate(N_(", images re-encoded to <= {side} px (JPEG quality {quality}) to fit"),
                                             lang, side=level[0], quality=level[1])
    note = (translate(N_(" — over the {budget:.0f} MB budget even at the smallest images"), lang, budget=SIZE_BUDGET / 1e6)
            if size > SIZE_BUDGET else "")
    print(translate(N_("wrote {out} ({size:.2f} MB): {sets} prediction sets, {pairs} of {n_pairs} pairs, "
                       "{images} images{how}{note}"), lang, out=out, size=size / 1e6, sets=len(report["sets"]),
                    pairs=len(report["pairs"]), n_pairs=report["n_pairs"], images=n_images, how=how, note=note))
    return out


# ============================================================================ Parquet
def _quote_path(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def export_parquet(db: str | Path, out_dir: str | Path) -> dict[str, int]:
    """One Parquet file per table of the cache (BLOB columns kept as binary); returns {table: rows}."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"--parquet {out_dir} is a file; give a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, int] = {}
    con = _open(db)
    try:
        tables = queries.table_names(con)
        for table in tables:
            target = out_dir / f"{table}.parquet"
            ident = '"' + table.replace('"', '""') + '"'
            con.execute(f"COPY (SELECT * FROM {ident}) TO {_quote_path(target)} (FORMAT parquet)").fetchall()
            written[table] = _rows(con, f"SELECT count(*) FROM {ident}")[0][0]
    finally:
        con.close()
    for table, n in written.items():
        path = out_dir / f"{table}.parquet"
        print(f"wrote {path} ({n} rows, {path.stat().st_size / 1e6:.2f} MB)")
    return written
