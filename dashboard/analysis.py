"""Statistics for the pages: pipeline.metrics over counts made in SQL, memoised per file state.

Per prediction set (Overview) the metrics a precompute stored are used while they are
current, else the same numbers are computed now (pipeline/summary.py). The agreement of two sets
(Disagreement) is computed from SQL counts on demand; the paired tests of every pair of sets
(accuracy and AUROC differences, Holm-adjusted over the pairs) are the stored ones while current
(table pair_summaries), else computed now from their aligned answers (seconds at 1M memes).
Results are plain dicts (as_dict()).
"""
from __future__ import annotations

import streamlit as st

from dashboard import db
from dashboard.lang import _
from pipeline import queries as q
from pipeline import summary
from pipeline.metrics import agreement_from_counts, answer_table

ROC_MAX_POINTS = q.ROC_MAX_POINTS


def metrics(include_retired: bool) -> tuple[dict[str, dict], int | None]:
    """{variant_id: {"classification": ClassificationReport.as_dict(), "roc": points thinned to
    ROC_MAX_POINTS}} for every set with predictions, and the run that stored them (None: computed
    now, because the stored ones are not current; see pipeline/summary.py)."""
    stored = db.fetch(q.stored_metrics, include_retired, db.fetch(q.summary_current))
    if stored is not None:
        return stored["sets"], stored["run_id"]
    return db.fetch(q.live_metrics, include_retired), None


def calibration(include_retired: bool) -> tuple[dict[str, dict], int | None]:
    """{variant_id: pipeline.summary.calibration_summary's entry} for every set with scores, and the run
    that stored them (None: computed now, because the stored ones are not current)."""
    stored = db.fetch(q.stored_calibration, include_retired, db.fetch(q.summary_current))
    if stored is not None:
        return stored["sets"], stored["run_id"]
    with st.spinner(_("Computing the calibration of every scored prediction set…")):
        return db.fetch(q.live_calibration, include_retired), None


def label_issues(variant_ids: list[str], include_retired: bool, min_sets_against: int) -> dict:
    """pipeline.summary.label_issues of these sets: the one a precompute stored for its default sets (every
    scored set, two of them against) while current, else computed now (memoised per cache state)."""
    stored = db.fetch(q.stored_analysis, "label_issues", include_retired, db.fetch(q.summary_current))
    if stored and stored.get("variant_ids") == list(variant_ids) and stored["min_sets_against"] == int(min_sets_against):
        return stored
    with st.spinner(_("Ranking possible label issues…")):
        return db.fetch(q.label_issue_report, tuple(variant_ids), include_retired, int(min_sets_against))


@st.cache_data(max_entries=32, show_spinner=False)
def _agreement(state: tuple, a: str, b: str, include_retired: bool, name_a: str, name_b: str) -> dict:
    rows = db.fetch(q.stored_pair_answer_counts, a, b, include_retired, db.fetch(q.summary_current))
    table = answer_table(db.fetch(q.pair_answer_counts, a, b, include_retired) if rows is None else rows)
    return agreement_from_counts(table, name_a=name_a, name_b=name_b).as_dict()


def agreement_report(a: str, b: str, include_retired: bool, name_a: str = "A", name_b: str = "B") -> dict:
    """pipeline.metrics.agreement_from_counts(...).as_dict() on the memes both sets answered."""
    with st.spinner(_("Comparing…")):
        return _agreement(db.state_key(), a, b, include_retired, name_a, name_b)


def error_counts(variant_id: str, ocr_variant: str | None, truth: str | None, has_text: bool | None,
                 search: str | None, include_retired: bool) -> dict[str, int]:
    """queries.error_counts: without a text filter, read off the stored metrics' confusion counts while
    they are current (the same join of answers and labels, counted by the precompute; a second of SQL
    at 1M memes), else counted now."""
    if has_text is None and search is None:
        stored = db.fetch(q.stored_metrics, include_retired, db.fetch(q.summary_current))
        s = stored and stored["sets"].get(variant_id)
        if s:
            return summary.error_counts(s["classification"], truth)
    return db.fetch(q.error_counts, variant_id, ocr_variant, truth, has_text, search, include_retired)


def pair_tests(variant_ids: list[str], include_retired: bool) -> list[dict]:
    """summary.pair_tests of the given prediction sets: the ones a precompute stored while they are
    current (pipeline/summary.py), else computed now."""
    stored = db.fetch(q.stored_pair_tests, tuple(variant_ids), include_retired, db.fetch(q.summary_current))
    if stored is not None:
        return stored
    with st.spinner(_("Comparing every pair of prediction sets…")):
        return db.fetch(q.live_pair_tests, tuple(variant_ids), include_retired)
