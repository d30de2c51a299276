"""Statistics for the pages: pipeline.metrics over counts made in SQL, memoised per file state.

Per prediction set (Overview) the metrics a precompute stored are used while they are
current, else the same numbers are computed now (pipeline/summary.py). The agreement of two sets
(Disagreement) is computed from SQL counts on demand; the paired tests of every pair of sets
(accuracy and AUROC differences, Holm-adjusted over the pairs) from their aligned answers.
Results are plain dicts (as_dict()).
"""
from __future__ import annotations

import itertools

import streamlit as st

from dashboard import db
from pipeline import queries as q
from pipeline import summary
from pipeline.metrics import agreement_from_counts, answer_table, holm_adjust_comparisons

ROC_MAX_POINTS = q.ROC_MAX_POINTS


def metrics(include_retired: bool) -> tuple[dict[str, dict], int | None]:
    """{variant_id: {"classification": ClassificationReport.as_dict(), "roc": points thinned to
    ROC_MAX_POINTS}} for every set with predictions, and the run that stored them (None: computed
    now, because the stored ones are not current; see pipeline/summary.py)."""
    stored = db.fetch(q.stored_metrics, include_retired)
    if stored is not None:
        return stored["sets"], stored["run_id"]
    return db.fetch(q.live_metrics, include_retired), None


@st.cache_data(max_entries=32, show_spinner="Comparing…")
def _agreement(state: tuple, a: str, b: str, include_retired: bool, name_a: str, name_b: str) -> dict:
    table = answer_table(db.fetch(q.pair_answer_counts, a, b, include_retired))
    return agreement_from_counts(table, name_a=name_a, name_b=name_b).as_dict()


def agreement_report(a: str, b: str, include_retired: bool, name_a: str = "A", name_b: str = "B") -> dict:
    """pipeline.metrics.agreement_from_counts(...).as_dict() on the memes both sets answered."""
    return _agreement(db.state_key(), a, b, include_retired, name_a, name_b)


@st.cache_data(max_entries=16, show_spinner="Comparing every pair of prediction sets…")
def _pair_tests(state: tuple, variant_ids: tuple[str, ...], include_retired: bool) -> list[dict]:
    answers = db.fetch(q.set_answers, list(variant_ids), include_retired)
    keys = list(itertools.combinations(variant_ids, 2))
    comparisons = [summary.pair_comparison(answers, a, b) for a, b in keys]
    return [dict(a=a, b=b, **d) for (a, b), d in zip(keys, holm_adjust_comparisons(comparisons))]


def pair_tests(variant_ids: list[str], include_retired: bool) -> list[dict]:
    """Every pair (A, B) of the given prediction sets, in list order, on the memes both answered:
    pipeline.metrics.PairedComparison.as_dict() plus "a", "b" (variant ids) and the Holm-adjusted
    p-values over all these pairs (``mcnemar_p_holm``, ``auroc_p_holm``, ``adjustment``)."""
    return _pair_tests(db.state_key(), tuple(variant_ids), include_retired)
