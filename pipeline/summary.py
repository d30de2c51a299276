"""Metrics of every prediction set, from counts made in SQL: computed by a precompute at its end and
stored in the cache (table `summaries`), so the dashboard's first visit after a run reads a few
rows instead of counting every answer again (~0.2 s at 100,000 memes and four prediction sets).

    metrics_summary(con, include_retired) -> {variant_id: {"classification": {...}, "roc": [...]}}
    fingerprint(con)        a digest of everything those numbers depend on
    write(store, run_id)    at the end of a run: recompute and store both settings of include_retired,
                            unless the fingerprint shows nothing they depend on has changed

The metrics depend only on memes (id, label, retired) and predictions (id, set, answer, score).
`fingerprint` sums a hash of exactly those columns over both tables (~15-70 ms at 100k memes), and
the stored rows count as current while the fingerprint stored with them (meta key
`summary_fingerprint`) equals the cache's (queries.stored_metrics); otherwise the dashboard computes
the same numbers live with metrics_summary. A fully cached rerun therefore computes nothing here.
(DuckDB's hash() may change with a DuckDB upgrade: the stored rows then merely count as stale.)
The SQL that counts (fingerprint, prediction_counts) is pipeline/queries.py's, the one read layer
of the dashboard, the report, `status` and this module, so the precompute and the dashboard count the
same way.
"""
from __future__ import annotations

import itertools
import json

from pipeline.queries import ROC_MAX_POINTS, fingerprint, prediction_counts, prediction_sets, set_answers, stored_fingerprint


def metrics_summary(con, include_retired: bool) -> dict[str, dict]:
    """{variant_id: {"classification": classification_from_counts(...).as_dict(), "roc": ROC points
    thinned to ROC_MAX_POINTS}} for every set in `predictions` (JSON-ready)."""
    from pipeline.metrics import ScoreCounts, classification_from_counts, roc_points_from_counts  # scipy: ~0.6 s
    out = {}
    for variant_id, c in prediction_counts(con, include_retired).items():
        sc = None if c["scores"] is None else ScoreCounts(*c["scores"])
        out[variant_id] = {"classification": classification_from_counts(c["answers"], sc).as_dict(),
                           "roc": [] if sc is None else roc_points_from_counts(sc, max_points=ROC_MAX_POINTS)}
    return out


def error_counts(classification: dict, truth: str | None) -> dict[str, int]:
    """queries.error_counts of a set without text filters (memes per outcome fp, fn, unparsed, right,
    of the true label `truth` or both), from its stored classification's confusion counts."""
    c = classification["confusion"]
    toxic, non = truth in (None, "toxic"), truth in (None, "non_toxic")
    return {"fp": c["fp"] * non, "fn": c["fn"] * toxic, "right": c["tp"] * toxic + c["tn"] * non,
            "unparsed": c["unparsed_toxic"] * toxic + c["unparsed_non_toxic"] * non}


def pair_comparison(answers: dict, a: str, b: str, name_a: str = "A", name_b: str = "B"):
    """pipeline.metrics.paired_comparison of prediction sets `a` and `b` on the memes both answered, from
    the aligned answers of pipeline.queries.set_answers (AUROC only when both sets have scores there)."""
    import numpy as np

    from pipeline.metrics import paired_comparison
    sa, sb = answers["sets"][a], answers["sets"][b]
    both = sa["answered"] & sb["answered"]
    scored = bool(np.isfinite(sa["score"][both]).any() and np.isfinite(sb["score"][both]).any())
    return paired_comparison(answers["truth"][both], sa["score"][both] if scored else None,
                             sb["score"][both] if scored else None, sa["label"][both], sb["label"][both],
                             name_a=name_a, name_b=name_b)


def pair_tests(con, variant_ids: list[str], include_retired: bool, answers: dict | None = None) -> list[dict]:
    """Every pair (A, B) of the given prediction sets, in list order, on the memes both answered:
    pipeline.metrics.PairedComparison.as_dict() plus "a", "b" (variant ids) and the Holm-adjusted
    p-values over all these pairs (``mcnemar_p_holm``, ``auroc_p_holm``, ``adjustment``); what the
    Disagreement page shows (JSON-ready). `answers`: set_answers of these sets, when at hand."""
    import itertools

    from pipeline.metrics import holm_adjust_comparisons
    answers = answers or set_answers(con, list(variant_ids), include_retired)
    keys = list(itertools.combinations(variant_ids, 2))
    comparisons = [pair_comparison(answers, a, b) for a, b in keys]
    return [dict(a=a, b=b, **d) for (a, b), d in zip(keys, holm_adjust_comparisons(comparisons))]


def pair_answer_rows(answers: dict, a: str, b: str) -> list[list]:
    """queries.pair_answer_counts(a, b) from the aligned answers of set_answers: [truth, answer A,
    answer B, memes] per combination on the memes both sets answered (answer None: unparseable)."""
    import numpy as np
    sa, sb = answers["sets"][a], answers["sets"][b]
    both = sa["answered"] & sb["answered"]

    def code(labels):
        return (labels[both] == "non_toxic") * 1 + (labels[both] == "toxic") * 2
    cell = (answers["truth"][both] == "toxic") * 9 + code(sa["label"]) * 3 + code(sb["label"])
    values, counts = np.unique(cell, return_counts=True)
    words = (None, "non_toxic", "toxic")
    return [[("non_toxic", "toxic")[v // 9], words[v // 3 % 3], words[v % 3], int(n)] for v, n in zip(values, counts)]


def _jsonable(x):
    """numpy scalars in the metrics' dicts as plain numbers (json.dumps default=)."""
    if hasattr(x, "item"):
        return x.item()
    raise TypeError(f"{type(x).__name__} is not JSON serialisable")


def write(store, run_id: int) -> int:
    """At the end of run `run_id`: store the summary of the cache as it is now (both settings of
    include_retired) with its fingerprint, replacing the previous one: the metrics of every prediction
    set, and the paired tests of every pair of them (the Disagreement page: DeLong over every meme,
    seconds at 1M memes); nothing is computed when the fingerprint is unchanged. Returns the number of
    metric rows written (0: unchanged, or no prediction set)."""
    with store.reader() as con:
        current = fingerprint(con)
        if stored_fingerprint(con) == current:
            return 0
        rows = [dict(include_retired=retired, variant_id=v, run_id=run_id,
                     classification=json.dumps(m["classification"]), roc=json.dumps(m["roc"]))
                for retired in (False, True) for v, m in metrics_summary(con, retired).items()]
        sets = prediction_sets(con)
        pair_rows = []
        for retired in (False, True) if len(sets) >= 2 else ():
            answers = set_answers(con, sets, retired)
            tables = {f"{a} {b}": pair_answer_rows(answers, a, b) for a, b in itertools.combinations(sets, 2)}
            pair_rows.append(dict(include_retired=retired, variant_ids=json.dumps(sets), run_id=run_id,
                                  tests=json.dumps(pair_tests(con, sets, retired, answers), default=_jsonable),
                                  tables=json.dumps(tables)))
    store.save_summaries(rows, current, pair_rows)
    return len(rows)
