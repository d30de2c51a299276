"""Statistics over rows fetched by SQL, computed with pipeline.metrics and memoised per file state.

SQL (dashboard/queries.py) fetches aligned labels/answers/scores; this module only calls
pipeline.metrics and thins what would be too big to chart. Results are plain dicts (as_dict()).
"""
from __future__ import annotations

import streamlit as st

from dashboard import db, queries as q
from pipeline.metrics import agreement, classification_metrics, roc_curve_points

ROC_MAX_POINTS = 400


@st.cache_data(max_entries=64, show_spinner="Computing metrics…")
def _classification(state: tuple, variant_id: str, include_retired: bool) -> dict:
    rows = db.fetch(q.prediction_rows, variant_id, include_retired)
    has_scores = any(s is not None for s in rows["scores"])
    report = classification_metrics(rows["y_true"], rows["y_pred"], rows["scores"] if has_scores else None)
    return report.as_dict()


def classification(variant_id: str, include_retired: bool) -> dict:
    """pipeline.metrics.classification_metrics(...).as_dict() for one prediction set."""
    return _classification(db.state_key(), variant_id, include_retired)


def thin(points: list[dict], max_points: int = ROC_MAX_POINTS) -> list[dict]:
    """Keep at most max_points points of a curve, always the first and last (charts stay light)."""
    if len(points) <= max_points:
        return points
    step = (len(points) - 1) / (max_points - 1)
    idx = sorted({round(i * step) for i in range(max_points)} | {0, len(points) - 1})
    return [points[i] for i in idx]


@st.cache_data(max_entries=64, show_spinner=False)
def _roc(state: tuple, variant_id: str, include_retired: bool) -> list[dict]:
    rows = db.fetch(q.prediction_rows, variant_id, include_retired)
    if not any(s is not None for s in rows["scores"]):
        return []
    return thin(roc_curve_points(rows["y_true"], rows["scores"]))


def roc(variant_id: str, include_retired: bool) -> list[dict]:
    """ROC points (fpr, tpr, threshold), thinned to at most ROC_MAX_POINTS."""
    return _roc(db.state_key(), variant_id, include_retired)


@st.cache_data(max_entries=32, show_spinner="Comparing…")
def _agreement(state: tuple, a: str, b: str, include_retired: bool, name_a: str, name_b: str) -> dict:
    rows = db.fetch(q.paired_rows, a, b, include_retired)
    return agreement(rows["y_true"], rows["pred_a"], rows["pred_b"], name_a=name_a, name_b=name_b).as_dict()


def agreement_report(a: str, b: str, include_retired: bool, name_a: str = "A", name_b: str = "B") -> dict:
    """pipeline.metrics.agreement(...).as_dict() on the memes both sets answered."""
    return _agreement(db.state_key(), a, b, include_retired, name_a, name_b)
