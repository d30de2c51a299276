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
The SQL that counts lives here, not in dashboard/queries.py, because the precompute and the
dashboard must count the same way.
"""
from __future__ import annotations

import json

import numpy as np

ROC_MAX_POINTS = 200            # points kept per ROC curve for drawing; AUROC uses every meme
FINGERPRINT_KEY = "summary_fingerprint"         # meta key: the fingerprint the stored summary describes
# Bumped whenever pipeline.metrics computes any stored number differently (an interval method, a
# field of as_dict()): it is part of the fingerprint, so summaries stored by older code count as stale.
METRICS_VERSION = "2"


def fingerprint(con) -> str:
    """The metrics code's version, and counts and hash sums of memes (id, label, retired) and
    predictions (id, set, answer, score): equal fingerprints mean equal metrics (a collision of
    64-bit hash sums is negligible)."""
    row = con.execute("""
        SELECT (SELECT count(*) FROM memes), (SELECT coalesce(sum(hash(meme_id, label, retired)), 0) FROM memes),
               (SELECT count(*) FROM predictions),
               (SELECT coalesce(sum(hash(meme_id, variant_id, label, score)), 0) FROM predictions)
    """).fetchall()[0]
    return ":".join([f"m{METRICS_VERSION}", *(str(v) for v in row)])


def stored_fingerprint(con) -> str | None:
    rows = con.execute("SELECT value FROM meta WHERE key = ?", [FINGERPRINT_KEY]).fetchall()
    return rows[0][0] if rows else None


def prediction_counts(con, include_retired: bool) -> dict[str, dict]:
    """Per prediction set, counted in one statement over the memes with a true label:
        "answers": memes per (true label, answer), an int array [truth][answer] with truth 0 =
                   non_toxic, 1 = toxic and answer 0 = unparseable, 1 = non_toxic, 2 = toxic
                   (pipeline.metrics.answer_table's layout);
        "scores":  (distinct scores ascending, non-toxic memes, toxic memes) per score as numpy
                   arrays (pipeline.metrics.ScoreCounts), or None when the set has no scores.
    One GROUP BY (set, truth, answer, score) feeds both: the join with memes is done once."""
    sets = [r[0] for r in con.execute("SELECT DISTINCT variant_id FROM predictions ORDER BY 1").fetchall()]
    cols = con.execute("""
        SELECT list_position($sets, p.variant_id)::INTEGER AS k,
               list_position(['non_toxic', 'toxic'], m.label) AS t,
               CASE WHEN p.label IS NULL THEN 0 ELSE coalesce(list_position(['non_toxic', 'toxic'], p.label), -1) END AS a,
               CASE WHEN isfinite(p.score) THEN p.score END AS score,
               count(*) AS n
        FROM predictions p JOIN memes m USING (meme_id)
        WHERE m.label IS NOT NULL AND (NOT m.retired OR $retired)
        GROUP BY ALL
    """, {"sets": sets, "retired": include_retired}).fetchnumpy()
    if np.ma.is_masked(cols["t"]) or np.any(cols["a"] < 0):
        raise ValueError("the cache holds a label other than 'toxic' / 'non_toxic' in memes or predictions")
    k, t, a = (np.asarray(cols[c], dtype=np.int64) for c in ("k", "t", "a"))
    n = np.asarray(cols["n"], dtype=np.int64)
    answers = np.zeros((len(sets), 2, 3), dtype=np.int64)
    np.add.at(answers, (k - 1, t - 1, a), n)

    scored = ~np.ma.getmaskarray(cols["score"])
    k, t, n = k[scored], t[scored], n[scored]
    score = np.ma.getdata(cols["score"])[scored].astype(float)
    order = np.lexsort((score, k))
    k, t, n, score = k[order], t[order], n[order], score[order]
    start = np.flatnonzero(np.r_[k.size > 0, (k[1:] != k[:-1]) | (score[1:] != score[:-1])])   # one per (set, score)
    neg = np.add.reduceat(np.where(t == 1, n, 0), start) if start.size else np.zeros(0, np.int64)
    pos = np.add.reduceat(np.where(t == 2, n, 0), start) if start.size else np.zeros(0, np.int64)
    gk, gscore = k[start], score[start]
    out = {}
    for i, v in enumerate(sets, start=1):
        lo, hi = np.searchsorted(gk, [i, i + 1])
        out[v] = {"answers": answers[i - 1], "scores": (gscore[lo:hi], neg[lo:hi], pos[lo:hi]) if hi > lo else None}
    return out


def metrics_summary(con, include_retired: bool) -> dict[str, dict]:
    """{variant_id: {"classification": classification_from_counts(...).as_dict(), "roc": ROC points
    thinned to ROC_MAX_POINTS}} for every set in `predictions` (JSON-ready)."""
    from pipeline.metrics import ScoreCounts, classification_from_counts, roc_points_from_counts   # scipy: ~0.6 s
    out = {}
    for variant_id, c in prediction_counts(con, include_retired).items():
        sc = None if c["scores"] is None else ScoreCounts(*c["scores"])
        out[variant_id] = {"classification": classification_from_counts(c["answers"], sc).as_dict(),
                           "roc": [] if sc is None else roc_points_from_counts(sc, max_points=ROC_MAX_POINTS)}
    return out


def write(store, run_id: int) -> int:
    """At the end of run `run_id`: store the summary of the cache as it is now (both settings of
    include_retired) with its fingerprint, replacing the previous one; nothing is computed when the
    fingerprint is unchanged. Returns the number of rows written (0: unchanged, or no prediction set)."""
    with store.reader() as con:
        current = fingerprint(con)
        if stored_fingerprint(con) == current:
            return 0
        rows = [dict(include_retired=retired, variant_id=v, run_id=run_id,
                     classification=json.dumps(m["classification"]), roc=json.dumps(m["roc"]))
                for retired in (False, True) for v, m in metrics_summary(con, retired).items()]
    store.save_summaries(rows, current)
    return len(rows)
