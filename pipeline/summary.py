"""Metrics of every prediction set, from counts made in SQL: computed by a precompute at its end and
stored in the cache (table `summaries`), so the dashboard's first visit after a run reads a few
rows instead of counting every answer again (~0.2 s at 100,000 memes and four prediction sets).

    metrics_summary(con, include_retired) -> {variant_id: {"classification": {...}, "roc": [...]}}
    calibration_summary(con, include_retired) -> {variant_id: {...}}: reliability bins, ECE, Brier and the
                            threshold analysis of every set with scores (pipeline/calibration.py)
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

from pipeline.queries import (
    ROC_MAX_POINTS,
    fingerprint,
    labelled_meme_ids,
    live_near_duplicates,
    prediction_counts,
    prediction_sets,
    set_answers,
    stored_fingerprint,
)


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


CALIBRATION_FULL_BOOT_MAX_N = 20_000     # above: fewer bootstrap resamples (cost ~ n x resamples)
CALIBRATION_BOOT_CELLS = 40_000_000      # resamples x memes above that size
CALIBRATION_MIN_BOOT = 200


def calibration_n_boot(n: int) -> int:
    """Bootstrap resamples for the calibration intervals of n memes: DEFAULT_N_BOOT up to
    CALIBRATION_FULL_BOOT_MAX_N memes, then fewer (40M resample cells, at least 200): ~0.5 s a set at
    100,000 memes instead of ~3 s. The count used is stored with each interval (Estimate.n_boot)."""
    from pipeline.metrics import DEFAULT_N_BOOT
    if n <= CALIBRATION_FULL_BOOT_MAX_N:
        return DEFAULT_N_BOOT
    return max(CALIBRATION_MIN_BOOT, CALIBRATION_BOOT_CELLS // n)


def calibration_from_scores(y, s) -> dict:
    """The calibration of one set from aligned true labels (0/1) and p(toxic) scores (JSON-ready):
    n, reliability "bins", "ece" and "brier" (Estimate.as_dict(), BCa over memes), "ece_null" (the ECE a
    perfectly calibrated model shows on these scores, with the p-value of the observed one), and
    "threshold": the metrics at every threshold 0..1 ("curve"), at the 0.5 rule ("default"), the F1-best
    threshold chosen on these same memes ("in_sample", flagged so) and the one chosen by 5-fold
    cross-validation with its held-out F1 ("cv"). pipeline/calibration.py does the statistics."""
    import numpy as np

    from pipeline import calibration as cal
    labels = np.where(np.asarray(y) == 1, "toxic", "non_toxic")
    scores = np.asarray(s, dtype=float)
    n = int(scores.size)
    n_boot = calibration_n_boot(n)
    curve = cal.threshold_curve(labels, scores)
    cv = cal.cross_validated_threshold(labels, scores)
    cv.pop("folds", None)                       # meme positions: for audits in code, not worth storing
    return {"n": n, "bins": cal.reliability_bins(labels, scores),
            "ece": cal.expected_calibration_error(labels, scores, n_boot=n_boot).as_dict(),
            "ece_null": cal.ece_under_perfect_calibration(labels, scores, n_sim=min(1000, n_boot)),
            "brier": cal.brier_score(labels, scores, n_boot=n_boot).as_dict(),
            "threshold": {"curve": curve, "default": next(r for r in curve if r["threshold"] == 0.5),
                          "in_sample": cal.in_sample_best_threshold(labels, scores), "cv": cv}}


def calibration_summary(con, include_retired: bool, variant_ids: list[str] | None = None) -> dict[str, dict]:
    """{variant_id: calibration_from_scores(...) plus "n_no_score" (memes with a true label and an answer
    but no score)} for every set with scores (of `variant_ids`, else of every set in `predictions`), from the
    same counts as metrics_summary (memes per distinct score and true label)."""
    import numpy as np
    out = {}
    for variant_id, c in prediction_counts(con, include_retired).items():
        if c["scores"] is None or (variant_ids is not None and variant_id not in variant_ids):
            continue
        scores, neg, pos = c["scores"]
        s = np.concatenate([np.repeat(scores, neg), np.repeat(scores, pos)])
        y = np.concatenate([np.zeros(int(neg.sum()), np.int64), np.ones(int(pos.sum()), np.int64)])
        out[variant_id] = {**calibration_from_scores(y, s),
                           "n_no_score": int(np.asarray(c["answers"]).sum()) - int(s.size)}
    return out


def label_issues(con, variant_ids: list[str], include_retired: bool, min_sets_against: int = 2) -> dict:
    """pipeline.label_issues.label_issue_report over the memes with a true label, the zero-shot scores of
    `variant_ids` as out-of-sample probabilities; each issue's evidence also carries every set's answer
    ({variant_id: {"score", "answer"}}). JSON-ready."""
    import numpy as np

    from pipeline.label_issues import label_issue_report
    answers = set_answers(con, list(variant_ids), include_retired)
    ids = labelled_meme_ids(con, include_retired)
    report = label_issue_report(ids, answers["truth"], {v: answers["sets"][v]["score"] for v in variant_ids},
                                min_sets_against=min_sets_against)
    where = {m: i for i, m in enumerate(ids)} if report["issues"] else {}
    for issue in report["issues"]:
        i = where[issue["meme_id"]]
        issue["evidence"] = {v: {"score": issue["evidence"][v],
                                 "answer": answers["sets"][v]["label"][i] if answers["sets"][v]["answered"][i] else None,
                                 "answered": bool(answers["sets"][v]["answered"][i])} for v in variant_ids}
    return json.loads(json.dumps(report, default=lambda x: x.item() if isinstance(x, np.generic) else str(x)))


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
    set (with its calibration when it has scores), the paired tests of every pair of them (the
    Disagreement page: DeLong over every meme, seconds at 1M memes), the near-duplicate groups and the label
    issues of the default sets (table analysis_summaries); nothing is computed when the fingerprint is unchanged. Returns the number of
    metric rows written (0: unchanged, or no prediction set)."""
    with store.reader() as con:
        current = fingerprint(con)
        if stored_fingerprint(con) == current:
            return 0
        rows = []
        shown = prediction_sets(con)                # derived-view sets: metrics, but no calibration of their own
        for retired in (False, True):
            calibration = calibration_summary(con, retired, shown)
            rows += [dict(include_retired=retired, variant_id=v, run_id=run_id,
                          classification=json.dumps(m["classification"]), roc=json.dumps(m["roc"]),
                          calibration=json.dumps(calibration[v], default=_jsonable) if v in calibration else None)
                     for v, m in metrics_summary(con, retired).items()]
        sets = shown
        analysis_rows = []
        for retired in (False, True):
            analysis_rows.append(dict(include_retired=retired, kind="near_duplicates", run_id=run_id,
                                      body=json.dumps(live_near_duplicates(con, retired), default=_jsonable)))
            scored = [v for v in sets if v in calibration_sets(rows, retired)]
            if scored:
                issues = label_issues(con, scored, retired, min(2, len(scored)))
                analysis_rows.append(dict(include_retired=retired, kind="label_issues", run_id=run_id,
                                          body=json.dumps(dict(issues, variant_ids=scored), default=_jsonable)))
        pair_rows = []
        for retired in (False, True) if len(sets) >= 2 else ():
            answers = set_answers(con, sets, retired)
            tables = {f"{a} {b}": pair_answer_rows(answers, a, b) for a, b in itertools.combinations(sets, 2)}
            pair_rows.append(dict(include_retired=retired, variant_ids=json.dumps(sets), run_id=run_id,
                                  tests=json.dumps(pair_tests(con, sets, retired, answers), default=_jsonable),
                                  tables=json.dumps(tables)))
    store.save_summaries(rows, current, pair_rows, analysis_rows)
    return len(rows)


def calibration_sets(rows: list[dict], include_retired: bool) -> set[str]:
    """The sets with a stored calibration (a score on a labelled meme) among summary rows."""
    return {r["variant_id"] for r in rows if r["include_retired"] == include_retired and r["calibration"] is not None}
