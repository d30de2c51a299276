"""The one read layer of the cache: ALL the SQL that reads it, as named functions `f(con, ...params) -> rows`,
for the dashboard, the HTML report (pipeline/export.py), `vlmemes status` and the stored metrics
(pipeline/summary.py, whose counts the precompute stores and the dashboard reads). No Streamlit here.
The writer is pipeline/store.py.

Rules kept here:
  * values always travel as DuckDB parameters (`$name`), never formatted into the SQL text;
  * table / ORDER BY fragments come only from the fixed whitelists below;
  * aggregation happens inside DuckDB; galleries page with LIMIT/OFFSET and fetch thumbnails only
    for the rows of the page;
  * every result is fully fetched (duckdb 2.0 refuses new work while a result is unfinished) and
    returned as plain Python (lists of dicts, dicts) or a pandas DataFrame, so it can be memoised.

`include_retired` (memes no longer found by the latest scan) is False on every page by default.
OCR text is stored trimmed (pipeline/stages/ocr.py), so "has text" is `text <> ''` and its length is `length(text)`.
A meme whose label is NULL (label_conflict) has no true label: it is left out of metrics,
errors and agreement, but shown in galleries that do not need a truth (heatmaps).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from pipeline import stages

PREDICTION_STAGES = stages.PREDICTION_STAGES   # the stages whose rows are predictions (clip, vlm)
ROC_MAX_POINTS = 200            # points kept per ROC curve for drawing; AUROC uses every meme
METRIC_NAMES = ("accuracy", "precision", "recall", "f1", "auroc", "unparseable_rate")
FINGERPRINT_KEY = "summary_fingerprint"         # meta key: the fingerprint the stored summary describes
# Bumped whenever pipeline.metrics computes any stored number differently (an interval method, a
# field of as_dict()): it is part of the fingerprint, so summaries stored by older code count as stale.
METRICS_VERSION = "3"                          # 3: summaries carry the calibration of each scored set

TABLES = ("meta", "runs", "failures", "memes", "meme_paths", "variants", "ocr", "predictions", "heatmaps",
          "view_images", "faithfulness", "summaries")

OUTCOMES = ("fp", "fn", "unparsed", "right")
CELLS = ("both_right", "only_a_right", "only_b_right", "both_wrong")
PRED_CLASSES = ("toxic", "non_toxic", "unparsed", "none")

QUERIES: dict[str, Callable[..., Any]] = {}


def query(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Register a query function (db.fetch only runs registered ones)."""
    QUERIES[fn.__name__] = fn
    return fn


def _records(con: duckdb.DuckDBPyConnection, sql: str, params: dict | list | None = None) -> list[dict]:
    cur = con.execute(sql, params or [])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def _df(con: duckdb.DuckDBPyConnection, sql: str, params: dict | list | None = None) -> pd.DataFrame:
    return con.execute(sql, params or []).df()


def like_pattern(text: str) -> str:
    """A case-insensitive substring pattern for ILIKE ... ESCAPE '\\' (the user's % and _ are literal)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# The label-token mass of a VLM score (pipeline.stages.vlm_answer.label_mass): the stored column, or for a
# cache no precompute has opened since the column exists, the same number from the stored log-probs.
_MASS_FROM_LOGITS = ("CASE WHEN p.stage = 'vlm' THEN exp(TRY_CAST(json_extract_string(p.logits, '$.toxic') AS DOUBLE))"
                     " + exp(TRY_CAST(json_extract_string(p.logits, '$.non_toxic') AS DOUBLE)) END")


def _note_sql(con: duckdb.DuckDBPyConnection) -> str:
    """predictions p's score_note (why a served VLM gave no score), NULL in caches from before the column."""
    has = con.execute("SELECT count(*) FROM duckdb_columns() WHERE schema_name = 'main' AND table_name = 'predictions' "
                      "AND column_name = 'score_note'").fetchall()[0][0]
    return "p.score_note" if has else "CAST(NULL AS VARCHAR)"


def _mass_sql(con: duckdb.DuckDBPyConnection) -> str:
    """The SQL expression (one of two fixed fragments) for predictions p's label mass."""
    has = con.execute("SELECT count(*) FROM duckdb_columns() WHERE schema_name = 'main' AND table_name = 'predictions' "
                      "AND column_name = 'label_mass'").fetchall()[0][0]
    return "p.label_mass" if has else _MASS_FROM_LOGITS


# =============================================================================== metrics counts
def fingerprint(con) -> str:
    """The metrics code's version, and counts and hash sums of memes (key, label, retired) and
    predictions (key, set, answer, score): equal fingerprints mean equal metrics (a collision of
    64-bit hash sums is negligible)."""
    hashed = "count(phash)" if _has_column(con, "memes", "phash") else "0"   # a hash filled in by a later scan
    row = con.execute(f"""
        SELECT (SELECT count(*) FROM memes), (SELECT coalesce(sum(hash(meme_key, label, retired)), 0) FROM memes),
               (SELECT count(*) FROM predictions),
               (SELECT coalesce(sum(hash(meme_key, variant_id, label, score)), 0) FROM predictions),
               (SELECT {hashed} FROM memes)
    """).fetchall()[0]
    return ":".join([f"m{METRICS_VERSION}", *(str(v) for v in row)])


def _has_column(con, table: str, column: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM duckdb_columns() WHERE schema_name = 'main' AND table_name = $t "
                            "AND column_name = $c", {"t": table, "c": column}).fetchall()[0][0])


@query
def stored_analysis(con, kind: str, include_retired: bool, current: bool | None = None) -> dict | None:
    """An analysis a precompute stored with the metrics (table analysis_summaries: "near_duplicates",
    "label_issues"; pipeline/summary.py), or None when not stored or not current (the same fingerprint)."""
    if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'main' "
                       "AND table_name = 'analysis_summaries'").fetchall()[0][0]:
        return None
    rows = con.execute("SELECT body FROM analysis_summaries WHERE kind = $kind AND include_retired = $retired",
                       {"kind": kind, "retired": include_retired}).fetchall()
    if not rows or not (summary_current(con) if current is None else current):
        return None
    return json.loads(rows[0][0])


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
        FROM predictions p JOIN memes m ON m.meme_key = p.meme_key
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


# =============================================================================== what is there
@query
def table_counts(con) -> dict[str, int | None]:
    """Rows per known table; None for a table the file does not have (an older or foreign file)."""
    existing = {r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'").fetchall()}
    present = [t for t in TABLES if t in existing]
    counts: dict[str, int | None] = {t: None for t in TABLES}
    if present:
        sql = " UNION ALL ".join(f"SELECT '{t}' AS t, count(*) AS n FROM {t}" for t in present)  # whitelist names
        counts.update({t: int(n) for t, n in con.execute(sql).fetchall()})
    return counts


@query
def variants_overview(con) -> pd.DataFrame:
    """Every prediction set / heatmap method / OCR engine with its row count, runs and times."""
    return _df(con, """
        WITH per_run AS (
            SELECT variant_id, run_id, count(*) AS n, min(created_at) AS first_at, max(created_at) AS last_at,
                   bool_or(is_smoke) AS smoke
            FROM predictions GROUP BY ALL
            UNION ALL
            SELECT variant_id, run_id, count(*), min(created_at), max(created_at), bool_or(is_smoke)
            FROM heatmaps GROUP BY ALL
            UNION ALL
            SELECT variant_id, run_id, count(*), min(created_at), max(created_at), FALSE
            FROM ocr GROUP BY ALL
            UNION ALL
            SELECT variant_id, run_id, count(*), min(created_at), max(created_at), FALSE
            FROM view_images GROUP BY ALL
            UNION ALL
            SELECT variant_id, run_id, count(*), min(created_at), max(created_at), FALSE
            FROM faithfulness GROUP BY ALL
            UNION ALL
            SELECT variant_id, run_id, count(*), min(created_at), max(created_at), bool_or(is_smoke)
            FROM embeddings GROUP BY ALL
        ), rows AS (
            SELECT variant_id, CAST(sum(n) AS BIGINT) AS n_rows, min(first_at) AS first_at, max(last_at) AS last_at,
                   string_agg(CAST(run_id AS VARCHAR), ', ' ORDER BY run_id) AS run_ids, bool_or(smoke) AS rows_smoke
            FROM per_run GROUP BY variant_id
        )
        SELECT v.variant_id, v.stage, v.model_id, v.name, v.stage_version, v.config_hash,
               coalesce(v.is_smoke, FALSE) OR coalesce(r.rows_smoke, FALSE) AS is_smoke,
               coalesce(r.n_rows, 0) AS n_rows, r.first_at, r.last_at, r.run_ids, v.first_run_id,
               json_extract_string(v.config, '$.meme_view') AS meme_view
        FROM variants v LEFT JOIN rows r USING (variant_id)
        ORDER BY list_position(['ocr', 'views', 'clip', 'embedding', 'vlm', 'cam', 'faithfulness'], v.stage),
                 v.model_id, v.name, v.variant_id
    """)


# =============================================================================== status (`vlmemes status`)
@query
def cache_status(con) -> dict[str, Any]:
    """Meme counts, rows per variant, and the last run with its failures: what `vlmemes status` prints."""
    memes = con.execute("SELECT count(*), count(*) FILTER (label = 'toxic'), count(*) FILTER (label = 'non_toxic'), "
                        "count(*) FILTER (label_conflict), count(*) FILTER (retired) FROM memes").fetchall()[0]
    variants = con.execute("""
        SELECT v.stage, v.model_id, v.name, v.is_smoke, v.variant_id, coalesce(o.n, p.n, h.n, 0) AS n_rows
        FROM variants v
        LEFT JOIN (SELECT variant_id, count(*) n FROM ocr GROUP BY ALL) o USING (variant_id)
        LEFT JOIN (SELECT variant_id, count(*) n FROM predictions GROUP BY ALL) p USING (variant_id)
        LEFT JOIN (SELECT variant_id, count(*) n FROM heatmaps GROUP BY ALL) h USING (variant_id)
        ORDER BY list_position(['ocr', 'clip', 'vlm', 'cam'], v.stage), v.model_id, v.name
    """).fetchall()
    last = con.execute("""
        SELECT r.run_id, r.status, r.started_at, r.finished_at,
               (SELECT count(*) FROM failures f WHERE f.run_id = r.run_id)
        FROM runs r ORDER BY r.run_id DESC LIMIT 1
    """).fetchall()
    return {"memes": dict(zip(("total", "toxic", "non_toxic", "conflicts", "retired"), memes)),
            "variants": variants, "last_run": last[0] if last else None}


@query
def storage_by_column(con) -> dict[str, Any]:
    """Where the file's bytes are: {"block_size", "used_blocks", "columns": [(table, column, bytes)]
    largest first}. A column's bytes are its share of the storage blocks its segments (and their
    overflow blocks: long strings, blobs) use, a block shared by k columns counting 1/k to each; blocks
    no column uses (indexes, catalog, free lists) are the rest of used_blocks. Reads metadata only."""
    block_size, used = con.execute("SELECT block_size, used_blocks FROM pragma_database_size() "
                                   "WHERE database_name = current_database()").fetchall()[0]
    owners: dict[int, set] = {}
    for (table,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
                                "AND schema_name = 'main'").fetchall():
        for column, block, extra in con.execute(
                "SELECT column_name, block_id, additional_block_ids FROM pragma_storage_info(?) WHERE persistent",
                [table]).fetchall():
            for b in [block, *(extra or [])]:
                if b is not None and b >= 0:
                    owners.setdefault(b, set()).add((table, column))
    share: dict[tuple, float] = {}
    for cols in owners.values():
        for key in cols:
            share[key] = share.get(key, 0.0) + 1.0 / len(cols)
    columns = sorted(((t, c, int(n * block_size)) for (t, c), n in share.items()), key=lambda r: -r[2])
    return {"block_size": int(block_size), "used_blocks": int(used), "columns": columns}


# =============================================================================== overview
@query
def meme_overview(con, include_retired: bool) -> dict:
    rows = _records(con, """
        SELECT count(*) AS memes,
               count(*) FILTER (label = 'toxic') AS toxic,
               count(*) FILTER (label = 'non_toxic') AS non_toxic,
               count(*) FILTER (label IS NULL) AS no_label,
               count(*) FILTER (label_conflict) AS conflicts,
               count(*) FILTER (n_frames > 1) AS animated,
               count(*) FILTER (thumbnail_mime IS NULL) AS no_thumbnail,   -- not `thumbnail`: that reads every blob
               (SELECT count(*) FROM memes WHERE retired) AS retired_total
        FROM memes WHERE NOT retired OR $retired
    """, {"retired": include_retired})
    return rows[0]


@query
def size_histogram(con, include_retired: bool, bucket: int = 250, cap: int = 4000) -> pd.DataFrame:
    """Memes per bucket of the longer image side (the last bucket holds everything >= cap)."""
    return _df(con, """
        SELECT least(CAST(floor(greatest(width, height) / $bucket) AS BIGINT) * $bucket, $cap) AS long_side,
               coalesce(label, 'no label (conflict)') AS label, count(*) AS memes
        FROM memes WHERE (NOT retired OR $retired) AND width IS NOT NULL
        GROUP BY ALL ORDER BY long_side, label
    """, {"retired": include_retired, "bucket": bucket, "cap": cap})


@query
def size_summary(con, include_retired: bool) -> pd.DataFrame:
    return _df(con, """
        SELECT format, count(*) AS memes,
               min(width) AS min_width, CAST(median(width) AS INTEGER) AS median_width, max(width) AS max_width,
               min(height) AS min_height, CAST(median(height) AS INTEGER) AS median_height, max(height) AS max_height,
               round(median(n_bytes) / 1024.0, 1) AS median_kib,
               count(*) FILTER (n_frames > 1) AS animated
        FROM memes WHERE NOT retired OR $retired
        GROUP BY format ORDER BY memes DESC, format
    """, {"retired": include_retired})


@query
def ocr_coverage(con, include_retired: bool) -> pd.DataFrame:
    """Per OCR engine: memes read, memes with text, text length."""
    return _df(con, """
        WITH o AS (SELECT o.variant_id, length(o.text) AS len, o.mean_confidence
                   FROM ocr o ANTI JOIN (SELECT meme_key FROM memes WHERE retired AND NOT $retired) gone USING (meme_key))
        SELECT v.variant_id, v.name AS engine, v.model_id,
               count(o.variant_id) AS memes_read,
               (SELECT count(*) FROM memes WHERE NOT retired OR $retired) AS memes_total,
               count(*) FILTER (o.len > 0) AS with_text,
               round(avg(o.len) FILTER (o.len > 0), 1) AS mean_chars,
               CAST(median(o.len) FILTER (o.len > 0) AS INTEGER) AS median_chars,
               max(o.len) AS max_chars,
               round(avg(o.mean_confidence), 3) AS mean_confidence
        FROM variants v LEFT JOIN o USING (variant_id)
        WHERE v.stage = 'ocr'
        GROUP BY ALL ORDER BY engine, v.model_id
    """, {"retired": include_retired})


@query
def text_length_histogram(con, ocr_variant: str, include_retired: bool, bucket: int = 20, cap: int = 300
                          ) -> pd.DataFrame:
    return _df(con, """
        SELECT least(CAST(floor(length(o.text) / $bucket) AS BIGINT) * $bucket, $cap) AS chars,
               count(*) AS memes
        FROM ocr o ANTI JOIN (SELECT meme_key FROM memes WHERE retired AND NOT $retired) gone USING (meme_key)
        WHERE o.variant_id = $ocr AND o.text <> ''
        GROUP BY ALL ORDER BY chars
    """, {"ocr": ocr_variant, "retired": include_retired, "bucket": bucket, "cap": cap})


@query
def summary_current(con) -> bool:
    """Whether the stored summaries (summaries, pair_summaries) describe the data as it is: the stored
    fingerprint equals the cache's (one pass over memes and predictions: ~0.1 s per 100k memes)."""
    return stored_fingerprint(con) == fingerprint(con)


@query
def stored_metrics(con, include_retired: bool, current: bool | None = None) -> dict | None:
    """The metrics a precompute stored (pipeline/summary.py) as {"run_id", "sets": {variant_id:
    {"classification", "roc"}}}, or None when they may not describe the data as it is: an older cache
    without them, none stored, or answers / labels changed since (summary.fingerprint differs).
    `current`: summary_current(con) when the caller has it already (the dashboard memoises it)."""
    if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'main' AND table_name = 'summaries'"
                       ).fetchall()[0][0]:
        return None
    if not (summary_current(con) if current is None else current):
        return None
    rows = con.execute("""
        SELECT variant_id, classification, roc, run_id FROM summaries WHERE include_retired = $retired
    """, {"retired": include_retired}).fetchall()
    if not rows:
        return None
    return {"run_id": max(r[3] for r in rows),
            "sets": {v: {"classification": json.loads(c), "roc": json.loads(r)} for v, c, r, _ in rows}}


@query
def stored_calibration(con, include_retired: bool, current: bool | None = None) -> dict | None:
    """The calibration of every scored prediction set a precompute stored with its metrics
    (pipeline/summary.py) as {"run_id", "sets": {variant_id: calibration}}, or None when not stored
    (an older cache or older code) or not current (the same fingerprint as stored_metrics)."""
    if not con.execute("SELECT count(*) FROM duckdb_columns() WHERE schema_name = 'main' "
                       "AND table_name = 'summaries' AND column_name = 'calibration'").fetchall()[0][0]:
        return None
    if not (summary_current(con) if current is None else current):
        return None
    rows = con.execute("SELECT variant_id, calibration, run_id FROM summaries WHERE include_retired = $retired",
                       {"retired": include_retired}).fetchall()
    if not rows:
        return None
    return {"run_id": max(r[2] for r in rows), "sets": {v: json.loads(c) for v, c, _ in rows if c is not None}}


@query
def live_calibration(con, include_retired: bool) -> dict[str, dict]:
    """The same calibration computed now: pipeline.summary.calibration_summary."""
    from pipeline import summary
    return json.loads(json.dumps(summary.calibration_summary(con, include_retired, prediction_sets(con)),
                                 default=summary._jsonable))


@query
def prediction_sets(con) -> list[str]:
    """The prediction sets the dashboard lists (registered, with rows), in its order (variants_overview's):
    the key of the stored pair tests."""
    return [r[0] for r in con.execute("""
        SELECT v.variant_id FROM variants v
        WHERE v.stage IN (SELECT unnest($stages)) AND v.variant_id IN (SELECT DISTINCT variant_id FROM predictions)
          AND json_extract_string(v.config, '$.meme_view') IS NULL       -- derived views: the Modality page
        ORDER BY list_position(['ocr', 'clip', 'vlm', 'cam'], v.stage), v.model_id, v.name, v.variant_id
    """, {"stages": list(PREDICTION_STAGES)}).fetchall()]


@query
def stored_pair_tests(con, variant_ids: list[str] | tuple[str, ...], include_retired: bool,
                      current: bool | None = None) -> list[dict] | None:
    """The paired tests of every pair of `variant_ids` a precompute stored (pipeline/summary.py), or None
    when not stored for these sets or not current (the same fingerprint as stored_metrics; `current`:
    summary_current(con) when the caller has it)."""
    if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'main' "
                       "AND table_name = 'pair_summaries'").fetchall()[0][0]:
        return None
    rows = con.execute("SELECT tests FROM pair_summaries WHERE include_retired = $retired AND variant_ids = $ids",
                       {"retired": include_retired, "ids": json.dumps(list(variant_ids))}).fetchall()
    if not rows or not (summary_current(con) if current is None else current):
        return None
    return json.loads(rows[0][0])


@query
def stored_pair_answer_counts(con, a: str, b: str, include_retired: bool, current: bool | None = None
                              ) -> list[tuple] | None:
    """pair_answer_counts(a, b) as a precompute stored it with the pair tests (either order of the
    pair), or None when not stored or not current."""
    if not con.execute("SELECT count(*) FROM duckdb_columns() WHERE schema_name = 'main' "
                       "AND table_name = 'pair_summaries' AND column_name = 'tables'").fetchall()[0][0]:
        return None
    rows = con.execute("SELECT tables FROM pair_summaries WHERE include_retired = $retired AND tables IS NOT NULL",
                       {"retired": include_retired}).fetchall()
    if not rows or not (summary_current(con) if current is None else current):
        return None
    tables = json.loads(rows[0][0])
    if f"{a} {b}" in tables:
        return [tuple(r) for r in tables[f"{a} {b}"]]
    if f"{b} {a}" in tables:
        return [(t, pb, pa, n) for t, pa, pb, n in tables[f"{b} {a}"]]
    return None


@query
def live_metrics(con, include_retired: bool) -> dict[str, dict]:
    """The same metrics computed now: pipeline.summary.metrics_summary (prediction_counts, then pipeline.metrics)."""
    from pipeline import summary
    return summary.metrics_summary(con, include_retired)


@query
def label_issue_report(con, variant_ids: list[str] | tuple[str, ...], include_retired: bool,
                       min_sets_against: int = 2) -> dict:
    """Possible label issues ranked by confident learning on these sets' scores: pipeline.summary.label_issues."""
    from pipeline import summary
    return summary.label_issues(con, list(variant_ids), include_retired, min_sets_against)


@query
def live_pair_tests(con, variant_ids: list[str] | tuple[str, ...], include_retired: bool) -> list[dict]:
    """The same paired tests computed now: pipeline.summary.pair_tests (set_answers, then pipeline.metrics)."""
    from pipeline import summary
    return summary.pair_tests(con, list(variant_ids), include_retired)


@query
def low_mass_counts(con, threshold: float, include_retired: bool) -> dict[str, tuple[int, int]]:
    """Per VLM prediction set: (scores whose label-token mass is below `threshold`, scores with a mass),
    over the memes with a true label. The memes left out (label conflicts, retired ones) are few: an anti
    join with them, not a join of every answer with its meme (every prediction has its memes row)."""
    rows = con.execute(f"""
        SELECT p.variant_id, count(*) FILTER (mass < $t), count(mass)
        FROM (SELECT p.variant_id, p.meme_key, {_mass_sql(con)} AS mass FROM predictions p WHERE p.stage = 'vlm') p
        ANTI JOIN (SELECT meme_key FROM memes WHERE label IS NULL OR (retired AND NOT $retired)) gone USING (meme_key)
        GROUP BY ALL
    """, {"t": float(threshold), "retired": include_retired}).fetchall()
    return {v: (int(low), int(n)) for v, low, n in rows}


# =============================================================================== errors
_ERROR_ORDER = {
    "fp": "score DESC NULLS LAST, meme_id",        # most confident "toxic" on a non-toxic meme first
    "fn": "score ASC NULLS LAST, meme_id",         # most confident "non_toxic" on a toxic meme first
    "unparsed": "meme_id",
    "right": "abs(score - 0.5) DESC NULLS LAST, meme_id",
}

_ERRORS_SCORED = """
        SELECT p.meme_id, p.meme_key, m.label AS truth, p.label AS pred, p.score,
               CASE WHEN p.label IS NULL THEN 'unparsed'
                    WHEN p.label = m.label THEN 'right'
                    WHEN p.label = 'toxic' THEN 'fp' ELSE 'fn' END AS outcome,
               m.rel_path, m.width, m.height, p.explanation, p.raw_answer, __MASS__ AS label_mass
        FROM predictions p
        JOIN memes m ON m.meme_key = p.meme_key
        WHERE p.variant_id = $variant AND m.label IS NOT NULL
          AND (NOT m.retired OR $retired)
          AND ($truth IS NULL OR m.label = $truth)
"""
# The OCR join only when a text filter needs it (at 1M memes a join of every answer with its OCR row
# costs as much as the rest of the query).
_ERRORS_BASE = {
    False: "WITH scored AS (" + _ERRORS_SCORED + ")",
    True: "WITH scored AS (" + _ERRORS_SCORED.replace("""
        WHERE p.variant_id""", """
        LEFT JOIN ocr o ON o.meme_key = p.meme_key AND o.variant_id = $ocr
        WHERE p.variant_id""") + """
          AND ($has_text IS NULL OR (coalesce(o.text, '') <> '') = $has_text)
          AND ($pattern IS NULL OR o.text ILIKE $pattern ESCAPE '\\' OR p.explanation ILIKE $pattern ESCAPE '\\'
               OR p.raw_answer ILIKE $pattern ESCAPE '\\')
    )""",
}


def _error_params(variant_id, ocr_variant, truth, has_text, search, include_retired) -> dict:
    return {"variant": variant_id, "ocr": ocr_variant or "", "truth": truth, "has_text": has_text,
            "pattern": like_pattern(search) if search else None, "retired": include_retired}


def _error_base(con, params: dict) -> tuple[str, dict]:
    """The CTE `scored` for these filters (with the cards' fields: the page's top-N carries them, no
    join back), and the parameters it uses."""
    text_filter = params["has_text"] is not None or params["pattern"] is not None
    sql = _ERRORS_BASE[text_filter].replace("__MASS__", _mass_sql(con))     # one of two fixed fragments
    return sql, params if text_filter else {k: v for k, v in params.items() if k not in ("has_text", "pattern")}


@query
def error_counts(con, variant_id: str, ocr_variant: str | None, truth: str | None, has_text: bool | None,
                 search: str | None, include_retired: bool) -> dict[str, int]:
    """Memes per outcome (fp, fn, unparsed, right) of one prediction set under the filters."""
    base, params = _error_base(con, _error_params(variant_id, ocr_variant, truth, has_text, search, include_retired))
    if "has_text" not in params:
        params.pop("ocr")
    rows = con.execute(base + "SELECT outcome, count(*) FROM scored GROUP BY outcome", params).fetchall()
    counts = {k: 0 for k in OUTCOMES}
    counts.update({k: int(n) for k, n in rows})
    return counts


@query
def error_page(con, variant_id: str, ocr_variant: str | None, truth: str | None, has_text: bool | None,
               search: str | None, include_retired: bool, outcome: str, limit: int, offset: int) -> list[dict]:
    """One gallery page of an outcome, most confident mistakes first, with the card's fields."""
    order = _ERROR_ORDER[outcome]                         # KeyError for anything not whitelisted
    base, params = _error_base(con, _error_params(variant_id, ocr_variant, truth, has_text, search, include_retired))
    params.update(outcome=outcome, limit=int(limit), offset=int(offset))
    rows = _records(con, base + f"""
        , page AS (SELECT * FROM scored WHERE outcome = $outcome ORDER BY {order} LIMIT $limit OFFSET $offset)
        SELECT page.meme_id, page.meme_key, page.truth, page.pred, page.score, page.outcome, page.label_mass,
               page.rel_path, page.width, page.height, o.text AS ocr_text, page.explanation, page.raw_answer
        FROM page
        LEFT JOIN ocr o ON o.meme_key = page.meme_key AND o.variant_id = $ocr
        ORDER BY {order.replace('score', 'page.score').replace('meme_id', 'page.meme_id')}
    """, params)
    return _with_thumbnails(con, rows)


def _with_thumbnails(con, rows: list[dict]) -> list[dict]:
    """Add each row's thumbnail, read for these memes only (a semi join on the memes key: DuckDB
    looks the ids up instead of scanning every thumbnail blob)."""
    if not rows:
        return rows
    thumbs = dict(con.execute(
        "SELECT m.meme_id, m.thumbnail FROM memes m SEMI JOIN (SELECT unnest($ids) AS meme_id) ids USING (meme_id)",
        {"ids": [r["meme_id"] for r in rows]}).fetchall())
    for r in rows:
        r["thumbnail"] = thumbs.get(r["meme_id"])
    return rows


# =============================================================================== disagreement
_PAIR_BASE = """
    WITH pair AS (
        SELECT a.meme_id, a.meme_key, m.label AS truth, a.label AS pred_a, b.label AS pred_b, a.score AS score_a,
               b.score AS score_b,
               CASE WHEN coalesce(a.label = m.label, FALSE) AND coalesce(b.label = m.label, FALSE) THEN 'both_right'
                    WHEN coalesce(a.label = m.label, FALSE) THEN 'only_a_right'
                    WHEN coalesce(b.label = m.label, FALSE) THEN 'only_b_right'
                    ELSE 'both_wrong' END AS cell,
               m.rel_path, a.explanation AS explanation_a, b.explanation AS explanation_b
        FROM predictions a
        JOIN predictions b ON b.meme_key = a.meme_key AND b.variant_id = $b
        JOIN memes m ON m.meme_key = a.meme_key
        WHERE a.variant_id = $a AND m.label IS NOT NULL AND (NOT m.retired OR $retired)
    )
"""


@query
def pair_answer_counts(con, a: str, b: str, include_retired: bool) -> list[tuple]:
    """Memes per (true label, A's answer, B's answer) on the memes both sets answered."""
    return con.execute(_PAIR_BASE + "SELECT truth, pred_a, pred_b, count(*) FROM pair GROUP BY ALL",
                       {"a": a, "b": b, "retired": include_retired}).fetchall()


@query
def set_answers(con, variant_ids: list[str], include_retired: bool) -> dict[str, Any]:
    """Per prediction set, its answers on the memes with a true label, aligned on one meme axis:
    {"truth": object array of 'toxic'/'non_toxic' per meme, "sets": {variant_id: {"label": object array
    (None = unparseable or not answered), "score": float array (NaN = none), "answered": bool array}}}.
    What the paired comparisons of every pair of sets need (pipeline.metrics.paired_comparison).
    Answers travel as small integer codes and are laid out with numpy (~0.3 s at 100k memes x 4 sets)."""
    params = {"sets": list(variant_ids), "retired": include_retired}
    toxic = con.execute("SELECT label = 'toxic' AS toxic FROM memes WHERE label IS NOT NULL AND (NOT retired OR $retired) "
                        "ORDER BY meme_id", {"retired": include_retired}).fetchnumpy()["toxic"]
    cols = con.execute("""
        WITH axis AS (SELECT meme_key, (row_number() OVER (ORDER BY meme_id) - 1)::INTEGER AS i
                      FROM memes WHERE label IS NOT NULL AND (NOT retired OR $retired))
        SELECT axis.i, (list_position($sets, p.variant_id) - 1)::INTEGER AS k,
               (CASE p.label WHEN 'toxic' THEN 2 WHEN 'non_toxic' THEN 1 ELSE 0 END)::TINYINT AS a,
               CASE WHEN isfinite(p.score) THEN p.score END AS score
        FROM predictions p JOIN axis USING (meme_key) WHERE p.variant_id IN (SELECT unnest($sets))
    """, params).fetchnumpy()
    n = len(toxic)
    words = np.array([None, "non_toxic", "toxic"], dtype=object)       # index = answer code
    k_all, i_all, a_all = (np.asarray(cols[c]) for c in ("k", "i", "a"))
    score_all = np.ma.filled(np.ma.asarray(cols["score"], dtype=float), np.nan)
    out = {}
    for k, v in enumerate(variant_ids):
        sel = k_all == k
        i = i_all[sel]
        answered = np.zeros(n, dtype=bool)
        answered[i] = True
        code = np.zeros(n, dtype=np.int8)
        code[i] = a_all[sel]
        score = np.full(n, np.nan)
        score[i] = score_all[sel]
        out[v] = {"label": words[code], "score": score, "answered": answered}
    return {"truth": np.where(np.asarray(toxic, dtype=bool), "toxic", "non_toxic").astype(object), "sets": out}


@query
def labelled_meme_ids(con, include_retired: bool) -> list[str]:
    """The ids of the memes with a true label in set_answers' order (its meme axis)."""
    return [r[0] for r in con.execute("SELECT meme_id FROM memes WHERE label IS NOT NULL AND (NOT retired OR $retired) "
                                      "ORDER BY meme_id", {"retired": include_retired}).fetchall()]


@query
def meme_cards(con, meme_ids: list[str]) -> list[dict]:
    """meme_id, truth (the folder label), rel_path and thumbnail of the given memes, in the given order."""
    rows = _records(con, "SELECT m.meme_id, m.label AS truth, m.rel_path FROM memes m "
                         "SEMI JOIN (SELECT unnest($ids) AS meme_id) ids USING (meme_id)", {"ids": list(meme_ids)})
    by_id = {r["meme_id"]: r for r in _with_thumbnails(con, rows)}
    return [by_id[m] for m in meme_ids if m in by_id]


NEAR_DUPLICATE_GROUPS_SHOWN = 200     # groups listed (mixed-label first, then by size); every group is counted


@query
def near_duplicate_report(con, include_retired: bool, max_distance: int | None = None) -> dict:
    """live_near_duplicates, as a precompute stored it while current (the default max_distance only)."""
    if max_distance is None:
        stored = stored_analysis(con, "near_duplicates", include_retired)
        if stored is not None:
            return stored
    return live_near_duplicates(con, include_retired, max_distance)


@query
def live_near_duplicates(con, include_retired: bool, max_distance: int | None = None) -> dict:
    """Groups of near-duplicate images by perceptual hash (memes.phash, stored by the scan;
    pipeline.near_duplicates.near_duplicate_groups, within max_distance bits, transitively):
    {"n_memes", "n_hashed", "n_groups", "n_in_groups", "n_mixed", "max_distance", "groups": the first
    NEAR_DUPLICATE_GROUPS_SHOWN as [{"memes": [meme_id, ...], "toxic", "non_toxic", "unlabelled", "mixed"}],
    the groups that carry both labels first (label noise, or the same picture in both classes), then by size}.
    A cache scanned before hashes were stored has n_hashed = 0 until a precompute scans it again."""
    from pipeline import near_duplicates as nd
    d = nd.DEFAULT_MAX_DISTANCE if max_distance is None else int(max_distance)
    n_memes = con.execute("SELECT count(*) FROM memes WHERE NOT retired OR $retired",
                          {"retired": include_retired}).fetchall()[0][0]
    out = {"n_memes": n_memes, "n_hashed": 0, "n_groups": 0, "n_in_groups": 0, "n_mixed": 0, "max_distance": d,
           "groups": []}
    if not con.execute("SELECT count(*) FROM duckdb_columns() WHERE schema_name = 'main' AND table_name = 'memes' "
                       "AND column_name = 'phash'").fetchall()[0][0]:
        return out
    found = con.execute("SELECT meme_id, phash, label FROM memes WHERE phash IS NOT NULL AND (NOT retired OR $retired) "
                        "ORDER BY meme_id", {"retired": include_retired}).fetchall()
    ids, labels = [r[0] for r in found], {r[0]: r[2] for r in found}
    groups = nd.near_duplicate_groups(ids, np.array([r[1] for r in found], dtype=np.int64), d)
    rows = []
    for g in groups:
        got = [labels[m] for m in g]
        t, n = got.count("toxic"), got.count("non_toxic")
        rows.append({"memes": list(g), "toxic": t, "non_toxic": n, "unlabelled": len(g) - t - n, "mixed": t > 0 and n > 0})
    rows.sort(key=lambda r: (not r["mixed"], -len(r["memes"]), r["memes"][0]))
    out.update(n_hashed=len(ids), n_groups=len(rows), n_in_groups=sum(len(r["memes"]) for r in rows),
               n_mixed=sum(r["mixed"] for r in rows), groups=rows[:NEAR_DUPLICATE_GROUPS_SHOWN],
               in_group=sorted(m for r in rows for m in r["memes"]))
    return out


def _slice_sql(con, slice_key: str, source: str | None, group_ids) -> tuple[str, str, dict]:
    """(value expression, source join, their parameters) of pipeline.slices.SLICES[slice_key]: fixed text from
    the whitelist (KeyError for anything else); `source` and `group_ids` become $source and $group_ids where
    the slice reads them. A cache whose map has no template column reads the template slice as 'not embedded'
    (its map predates the clusters; the next precompute stores them)."""
    from pipeline.slices import NOT_EMBEDDED, SLICES, SOURCE_JOINS
    spec = SLICES[slice_key]
    expression = spec.expression
    if slice_key == "template" and not _has_column(con, "map_points", "template"):
        expression = f"'{NOT_EMBEDDED}'"
    params = {"source": source} if spec.source else {}
    if "$group_ids" in expression:
        params["group_ids"] = list(group_ids)
    return expression, SOURCE_JOINS.get(spec.source, ""), params


@query
def slice_counts(con, slice_key: str, source: str | None, variant_ids: list[str] | tuple[str, ...],
                 include_retired: bool, group_ids: list[str] | tuple[str, ...] = ()) -> list[tuple]:
    """(slice value, variant_id, truth, answer, memes) of the given prediction sets on the memes with a true
    label, the slice being pipeline.slices.SLICES[slice_key] (its fixed SQL expression; `source`: the variant of
    the slice's source, the OCR engine or the image model of the map; `group_ids`: the memes in a near-duplicate
    group, for the near_duplicate slice)."""
    expression, join, params = _slice_sql(con, slice_key, source, group_ids)
    params.update(sets=list(variant_ids), retired=include_retired)
    return [tuple(r) for r in con.execute(f"""
        SELECT {expression} AS value, p.variant_id, m.label AS truth, p.label AS answer, count(*) AS n
        FROM predictions p JOIN memes m ON m.meme_key = p.meme_key
        {join}
        WHERE m.label IS NOT NULL AND (NOT m.retired OR $retired) AND p.variant_id IN (SELECT unnest($sets))
        GROUP BY ALL ORDER BY ALL
    """, params).fetchall()]


@query
def slice_value_counts(con, slice_key: str, source: str | None, include_retired: bool,
                       group_ids: list[str] | tuple[str, ...] = ()) -> list[tuple[str, int]]:
    """(value, memes) of pipeline.slices.SLICES[slice_key] over the memes (retired ones with include_retired),
    in the slice's display order: the choices of the dashboard's slice of every page."""
    from pipeline.slices import ordered_values
    expression, join, params = _slice_sql(con, slice_key, source, group_ids)
    counts = dict(con.execute(f"""
        SELECT {expression} AS value, count(*) FROM memes m {join}
        WHERE NOT m.retired OR $retired GROUP BY ALL
    """, {**params, "retired": include_retired}).fetchall())
    return [(v, counts[v]) for v in ordered_values(slice_key, counts)]


def slice_meme_keys(con, slice_key: str, value: str, source: str | None,
                    group_ids: list[str] | tuple[str, ...] = ()):
    """The meme_key of every meme (retired ones too: pages leave those out themselves) whose value of
    pipeline.slices.SLICES[slice_key] is `value`, as an Arrow table (column meme_key), for
    store.slice_views. Not memoised: the dashboard's reader calls it once per connection."""
    expression, join, params = _slice_sql(con, slice_key, source, group_ids)
    return con.sql(f"SELECT m.meme_key FROM memes m {join} WHERE ({expression}) = $value",
                   params={**params, "value": value}).to_arrow_table()


@query
def slice_sources(con) -> dict[str, str | None]:
    """The variant a global slice reads for each source: "ocr", the OCR engine with the most rows (ties: first
    by id); "map", the first image model with a stored map (by model, as the Map page lists them)."""
    ocr = con.execute("SELECT variant_id FROM ocr GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1").fetchall()
    maps = con.execute("""SELECT mp.variant_id FROM maps mp LEFT JOIN variants v USING (variant_id)
                          ORDER BY coalesce(v.model_id, mp.variant_id), mp.variant_id LIMIT 1""").fetchall()
    return {"ocr": ocr[0][0] if ocr else None, "map": maps[0][0] if maps else None}


@query
def pair_scores_sample(con, a: str, b: str, include_retired: bool, n: int = 3000) -> pd.DataFrame:
    """A fixed pseudo-random sample of memes with both scores (for the scatter plot): the first n by
    hash(meme_id). Looked for first among the 1.5 n memes with a true label that come first by that hash
    (the answers of those memes only are joined, not every answer of both sets: 0.8 s at 1M memes);
    when fewer than n of them have both scores, among all (the same rows either way: every meme that
    comes before the n-th found is among those candidates)."""
    params = {"a": a, "b": b, "retired": include_retired, "n": int(n)}
    first = _df(con, _PAIR_BASE.replace("FROM predictions a", """FROM (
            SELECT meme_key FROM memes WHERE label IS NOT NULL AND (NOT retired OR $retired)
            ORDER BY hash(meme_id), meme_id LIMIT $k) candidates
        JOIN predictions a ON a.meme_key = candidates.meme_key""") + """
        SELECT meme_id, truth, cell, score_a, score_b FROM pair
        WHERE score_a IS NOT NULL AND score_b IS NOT NULL
        ORDER BY hash(meme_id), meme_id LIMIT $n
    """, {**params, "k": int(n) + int(n) // 2})
    if len(first) >= int(n):
        return first
    return _df(con, _PAIR_BASE + """
        SELECT meme_id, truth, cell, score_a, score_b FROM pair
        WHERE score_a IS NOT NULL AND score_b IS NOT NULL
        ORDER BY hash(meme_id), meme_id LIMIT $n
    """, params)


@query
def pair_page(con, a: str, b: str, include_retired: bool, cell: str, truth: str | None, ocr_variant: str | None,
              limit: int, offset: int) -> list[dict]:
    """One gallery page of a cell, largest score difference first."""
    if cell not in CELLS:
        raise ValueError(cell)
    rows = _records(con, _PAIR_BASE + """
        , page AS (SELECT * FROM pair WHERE cell = $cell AND ($truth IS NULL OR truth = $truth)
                   ORDER BY abs(coalesce(score_a, 0.5) - coalesce(score_b, 0.5)) DESC, meme_id
                   LIMIT $limit OFFSET $offset)
        SELECT page.*, o.text AS ocr_text
        FROM page
        LEFT JOIN ocr o ON o.meme_key = page.meme_key AND o.variant_id = $ocr
        ORDER BY abs(coalesce(page.score_a, 0.5) - coalesce(page.score_b, 0.5)) DESC, page.meme_id
    """, {"a": a, "b": b, "retired": include_retired, "cell": cell, "truth": truth, "ocr": ocr_variant or "",
          "limit": int(limit), "offset": int(offset)})
    return _with_thumbnails(con, rows)


# =============================================================================== heatmaps
_PRED_CLASS = "CASE WHEN p.meme_key IS NULL THEN 'none' WHEN p.label IS NULL THEN 'unparsed' ELSE p.label END"
# `f`: the heatmaps shown, (meme_id, truth, rel_path, width, height). The answers of the prediction set
# are joined only when an answer filter needs them (for every heatmap); otherwise the page joins them
# for its own rows (at 1M memes the join of every heatmap with its answer is most of the query).
_HEATMAP_BASE = {
    False: """
    WITH f AS (
        SELECT h.meme_id, h.meme_key, m.label AS truth, m.rel_path, m.width, m.height
        FROM heatmaps h
        JOIN memes m ON m.meme_key = h.meme_key
        WHERE h.variant_id = $cam AND (NOT m.retired OR $retired) AND ($truth IS NULL OR m.label = $truth)
    )
""",
    True: f"""
    WITH h AS (
        SELECT h.meme_id, h.meme_key, m.label AS truth, p.label AS pred, m.rel_path, m.width, m.height,
               {_PRED_CLASS} AS pred_class
        FROM heatmaps h
        JOIN memes m ON m.meme_key = h.meme_key
        LEFT JOIN predictions p ON p.meme_key = h.meme_key AND p.variant_id = $pred
        WHERE h.variant_id = $cam AND (NOT m.retired OR $retired)
    ), f AS (
        SELECT meme_id, meme_key, truth, rel_path, width, height FROM h
        WHERE ($truth IS NULL OR truth = $truth)
          AND ($pred_class IS NULL OR pred_class = $pred_class)
          AND ($correct IS NULL OR (truth IS NOT NULL AND pred_class <> 'none'
                                    AND coalesce(pred = truth, FALSE) = $correct))
    )
""",
}


def _heatmap_base(cam_variant, pred_variant, truth, pred_class, correct, include_retired) -> tuple[str, dict]:
    """The CTE `f` for these filters, and its parameters."""
    params = {"cam": cam_variant, "truth": truth, "retired": include_retired}
    answer_filter = pred_class is not None or correct is not None
    if answer_filter:
        params.update(pred=pred_variant or "", pred_class=pred_class, correct=correct)
    return _HEATMAP_BASE[answer_filter], params


@query
def heatmap_count(con, cam_variant: str, pred_variant: str | None, truth: str | None, pred_class: str | None,
                  correct: bool | None, include_retired: bool) -> int:
    base, params = _heatmap_base(cam_variant, pred_variant, truth, pred_class, correct, include_retired)
    return int(con.execute(base + "SELECT count(*) FROM f", params).fetchall()[0][0])


@query
def heatmap_page(con, cam_variant: str, pred_variant: str | None, truth: str | None, pred_class: str | None,
                 correct: bool | None, include_retired: bool, ocr_variant: str | None, limit: int, offset: int
                 ) -> list[dict]:
    base, params = _heatmap_base(cam_variant, pred_variant, truth, pred_class, correct, include_retired)
    params.update(pred=pred_variant or "", ocr=ocr_variant or "", limit=int(limit), offset=int(offset))
    rows = _records(con, base + f"""
        , page AS (SELECT * FROM f ORDER BY rel_path, meme_id LIMIT $limit OFFSET $offset)
        SELECT page.meme_id, page.meme_key, page.truth, p.label AS pred, {_PRED_CLASS} AS pred_class, p.score,
               page.rel_path, page.width, page.height, o.boxes, o.text AS ocr_text
        FROM page
        LEFT JOIN predictions p ON p.meme_key = page.meme_key AND p.variant_id = $pred
        LEFT JOIN ocr o ON o.meme_key = page.meme_key AND o.variant_id = $ocr
        ORDER BY page.rel_path, page.meme_id
    """, params)
    # The overlays in two steps: the rows' positions from the key columns, then the blobs of those
    # rows only. A join or IN-list on the key would make DuckDB read every overlay of the method
    # (~200 MB at 100k memes); one key lookup per meme scans the key column once per card.
    overlays = {}
    if rows:
        found = con.execute("SELECT rowid, meme_id FROM heatmaps WHERE variant_id = $cam AND meme_key IN "
                            "(SELECT unnest($keys))", {"cam": cam_variant, "keys": [r["meme_key"] for r in rows]}
                            ).fetchall()
        ids = dict(found)
        overlays = {ids[rid]: blob for rid, blob in con.execute(
            "SELECT rowid, overlay FROM heatmaps WHERE rowid IN (SELECT unnest($rowids))",
            {"rowids": list(ids)}).fetchall()}
    for r in rows:
        r["overlay"] = overlays.get(r["meme_id"])
    return _with_thumbnails(con, rows)


# =============================================================================== one meme
# One meme's rows are looked up by its integer key (40x faster than by the text id at 1M memes).
_KEY_OF_ID = "(SELECT meme_key FROM memes WHERE meme_id = $id)"

@query
def find_meme(con, text: str) -> list[str]:
    """Meme ids equal to `text` or starting with it (at most 2: enough to tell 'ambiguous')."""
    return [r[0] for r in con.execute(
        "SELECT meme_id FROM memes WHERE meme_id = $t OR starts_with(meme_id, $t) ORDER BY meme_id = $t DESC, "
        "meme_id LIMIT 2", {"t": text}).fetchall()]


SEARCH_LIMIT = 50                # memes listed at most by a file-name search


@query
def search_memes(con, text: str, include_retired: bool, limit: int = SEARCH_LIMIT) -> list[dict]:
    """Memes whose stored path (memes.rel_path or any of its meme_paths) contains `text`, case-insensitive
    (the user's % and _ are literal), at most `limit`, by path: meme_id, rel_path (the first matching
    path, else the first seen), label, label_conflict, retired."""
    return _records(con, """
        WITH hit AS (
            SELECT meme_id, rel_path FROM memes WHERE rel_path ILIKE $pattern ESCAPE '\\'
            UNION
            SELECT meme_id, rel_path FROM meme_paths WHERE rel_path ILIKE $pattern ESCAPE '\\'
        ), first_hit AS (SELECT meme_id, min(rel_path) AS rel_path FROM hit GROUP BY meme_id)
        SELECT m.meme_id, h.rel_path, m.label, m.label_conflict, m.retired
        FROM first_hit h JOIN memes m USING (meme_id)
        WHERE NOT m.retired OR $retired
        ORDER BY h.rel_path, m.meme_id LIMIT $limit
    """, {"pattern": like_pattern(text), "retired": include_retired, "limit": int(limit)})


@query
def meme(con, meme_id: str) -> dict | None:
    """The memes row, plus the folder of the run that last saw it (for the original file)."""
    rows = _records(con, """
        SELECT m.*, coalesce(r_last.memes_root, r_first.memes_root) AS memes_root
        FROM memes m
        LEFT JOIN runs r_last ON r_last.run_id = m.last_seen_run_id
        LEFT JOIN runs r_first ON r_first.run_id = m.first_run_id
        WHERE m.meme_id = $id
    """, {"id": meme_id})
    return rows[0] if rows else None


@query
def meme_paths(con, meme_id: str) -> pd.DataFrame:
    return _df(con, f"SELECT rel_path, label, last_seen_run_id FROM meme_paths WHERE meme_key = {_KEY_OF_ID} "
               "ORDER BY rel_path",
               {"id": meme_id})


@query
def meme_ocr(con, meme_id: str) -> list[dict]:
    return _records(con, f"""
        SELECT o.variant_id, coalesce(v.name, o.engine) AS name, o.engine, o.engine_version, o.text, o.boxes,
               o.mean_confidence, o.created_at, o.run_id
        FROM ocr o LEFT JOIN variants v USING (variant_id)
        WHERE o.meme_key = {_KEY_OF_ID} ORDER BY name, o.variant_id
    """, {"id": meme_id})


@query
def meme_predictions(con, meme_id: str) -> list[dict]:
    return _records(con, f"""
        SELECT p.variant_id, p.stage, p.model_id, p.prompt_version, p.label, p.score, {_mass_sql(con)} AS label_mass,
               {_note_sql(con)} AS score_note, p.logits, p.prompt,
               p.raw_answer, p.explanation, coalesce(v.is_smoke, FALSE) OR coalesce(p.is_smoke, FALSE) AS is_smoke,
               p.created_at, p.run_id
        FROM predictions p LEFT JOIN variants v USING (variant_id)
        WHERE p.meme_key = {_KEY_OF_ID}
        ORDER BY list_position(['clip', 'vlm'], p.stage), p.model_id, p.prompt_version, p.variant_id
    """, {"id": meme_id})


@query
def meme_heatmaps(con, meme_id: str) -> list[dict]:
    return _records(con, f"""
        SELECT h.variant_id, h.method, h.model_id, h.grid_h, h.grid_w, h.overlay,
               coalesce(v.is_smoke, FALSE) OR coalesce(h.is_smoke, FALSE) AS is_smoke, h.created_at
        FROM heatmaps h LEFT JOIN variants v USING (variant_id)
        WHERE h.meme_key = {_KEY_OF_ID} ORDER BY h.model_id, h.method, h.variant_id
    """, {"id": meme_id})


@query
def meme_failures(con, meme_id: str) -> pd.DataFrame:
    return _df(con, """
        SELECT run_id, stage, error_type, message, path, created_at FROM failures
        WHERE meme_id = $id ORDER BY created_at DESC, run_id DESC
    """, {"id": meme_id})


# =============================================================================== modality (issue 16)
# Derived-view prediction sets (pipeline/views.py) carry in their variant config the view (`meme_view`),
# the full-view set they derive from (`of`) and the OCR variant they read (`ocr_source`).
_VIEW_OF = "json_extract_string(v.config, '$.meme_view')"


@query
def modality_sets(con) -> list[dict]:
    """The full-view prediction sets with answers on both derived views: variant_id, stage, model_id, name,
    is_smoke of the full set, removed_id / only_id (its caption-removed / caption-only sets), ocr_source, and
    the views stage's variants of that OCR source (removed_views / only_views, None when not computed)."""
    return _records(con, f"""
        WITH derived AS (
            SELECT json_extract_string(v.config, '$.of') AS of, {_VIEW_OF} AS view, v.variant_id,
                   json_extract_string(v.config, '$.ocr_source') AS ocr_source
            FROM variants v
            WHERE v.stage IN (SELECT unnest($stages)) AND {_VIEW_OF} IS NOT NULL
              AND v.variant_id IN (SELECT DISTINCT variant_id FROM predictions)
        ), views AS (
            SELECT {_VIEW_OF} AS view, json_extract_string(v.config, '$.ocr_source') AS ocr_source,
                   max(v.variant_id) AS variant_id
            FROM variants v WHERE v.stage = 'views' GROUP BY ALL
        )
        SELECT b.variant_id, b.stage, b.model_id, b.name, coalesce(b.is_smoke, FALSE) AS is_smoke,
               r.variant_id AS removed_id, o.variant_id AS only_id, r.ocr_source,
               vr.variant_id AS removed_views, vo.variant_id AS only_views
        FROM variants b
        JOIN derived r ON r.of = b.variant_id AND r.view = 'caption-removed'
        JOIN derived o ON o.of = b.variant_id AND o.view = 'caption-only' AND o.ocr_source IS NOT DISTINCT FROM r.ocr_source
        LEFT JOIN views vr ON vr.view = 'caption-removed' AND vr.ocr_source IS NOT DISTINCT FROM r.ocr_source
        LEFT JOIN views vo ON vo.view = 'caption-only' AND vo.ocr_source IS NOT DISTINCT FROM r.ocr_source
        ORDER BY list_position(['clip', 'vlm'], b.stage), b.model_id, b.name, b.variant_id
    """, {"stages": list(PREDICTION_STAGES)})


_MODALITY_BASE = """
    WITH three AS (
        SELECT f.meme_id, f.meme_key, m.label AS truth, m.rel_path, f.label AS full_label, r.label AS removed_label,
               o.label AS only_label, f.score AS full_score, r.score AS removed_score, o.score AS only_score,
               CASE WHEN f.label IS DISTINCT FROM 'toxic' THEN 'not toxic on the full meme'
                    WHEN r.label = 'toxic' THEN 'image-driven'
                    WHEN o.label = 'toxic' THEN 'text-driven'
                    ELSE 'needs both' END AS cell
        FROM predictions f
        JOIN memes m ON m.meme_key = f.meme_key
        JOIN predictions r ON r.meme_key = f.meme_key AND r.variant_id = $removed
        JOIN predictions o ON o.meme_key = f.meme_key AND o.variant_id = $only
        WHERE f.variant_id = $full AND m.label IS NOT NULL AND (NOT m.retired OR $retired)
    )
"""


@query
def modality_counts(con, full: str, removed: str, only: str, include_retired: bool) -> list[tuple]:
    """Memes per (true label, answer on the full meme, caption removed, caption only), on the memes with a
    true label answered on all three views (pipeline.modality.three_way_table's rows)."""
    return con.execute(_MODALITY_BASE + "SELECT truth, full_label, removed_label, only_label, count(*) FROM three "
                       "GROUP BY ALL", {"full": full, "removed": removed, "only": only,
                                        "retired": include_retired}).fetchall()


# A caption = a letter or a digit in the OCR text: pipeline.views.has_caption (Python's isalnum) in SQL.
HAS_CAPTION_SQL = r"regexp_matches(coalesce({text}, ''), '[\pL\pN]')"


@query
def modality_coverage(con, full: str, removed: str, only: str, ocr_source: str | None,
                      include_retired: bool) -> dict[str, int]:
    """Of the memes with a true label answered on the full view: `three` answered on all three views,
    `no_text` without OCR text (no letter or digit in the OCR source's text, or no OCR row: they get no
    derived view), `pending` the rest (not computed yet, or failed: the Runs page lists failures)."""
    row = con.execute(f"""
        SELECT count(*),
               count(*) FILTER (r.meme_key IS NOT NULL AND o.meme_key IS NOT NULL),
               count(*) FILTER (NOT {HAS_CAPTION_SQL.format(text='t.text')})
        FROM predictions f
        JOIN memes m ON m.meme_key = f.meme_key
        LEFT JOIN predictions r ON r.meme_key = f.meme_key AND r.variant_id = $removed
        LEFT JOIN predictions o ON o.meme_key = f.meme_key AND o.variant_id = $only
        LEFT JOIN ocr t ON t.meme_key = f.meme_key AND t.variant_id = $ocr
        WHERE f.variant_id = $full AND m.label IS NOT NULL AND (NOT m.retired OR $retired)
    """, {"full": full, "removed": removed, "only": only, "ocr": ocr_source or "",
          "retired": include_retired}).fetchall()[0]
    full_n, three, no_text = (int(x) for x in row)
    return {"full": full_n, "three": three, "no_text": no_text, "pending": max(0, full_n - three - no_text)}


MODALITY_CELLS = ("image-driven", "text-driven", "needs both", "not toxic on the full meme")


@query
def modality_cell_counts(con, full: str, removed: str, only: str, include_retired: bool, truth: str | None
                         ) -> dict[str, int]:
    rows = con.execute(_MODALITY_BASE + "SELECT cell, count(*) FROM three WHERE $truth IS NULL OR truth = $truth "
                       "GROUP BY ALL", {"full": full, "removed": removed, "only": only, "retired": include_retired,
                                        "truth": truth}).fetchall()
    return {k: dict(rows).get(k, 0) for k in MODALITY_CELLS}


@query
def modality_page(con, full: str, removed: str, only: str, include_retired: bool, cell: str, truth: str | None,
                  removed_views: str | None, only_views: str | None, limit: int, offset: int) -> list[dict]:
    """One gallery page of a cell (MODALITY_CELLS), by path: the three answers and scores, the full
    thumbnail and the stored thumbnails of the two derived images (None where the views stage did not run)."""
    if cell not in MODALITY_CELLS:
        raise ValueError(cell)
    rows = _records(con, _MODALITY_BASE + """
        SELECT meme_id, meme_key, truth, rel_path, full_label, removed_label, only_label, full_score, removed_score,
               only_score
        FROM three WHERE cell = $cell AND ($truth IS NULL OR truth = $truth)
        ORDER BY rel_path, meme_id LIMIT $limit OFFSET $offset
    """, {"full": full, "removed": removed, "only": only, "retired": include_retired, "cell": cell, "truth": truth,
          "limit": int(limit), "offset": int(offset)})
    rows = _with_thumbnails(con, rows)
    keys = [r["meme_key"] for r in rows]
    derived = {}
    if rows:
        for key, variant, thumb in con.execute(
                "SELECT meme_key, variant_id, thumbnail FROM view_images WHERE variant_id IN ($a, $b) "
                "AND meme_key IN (SELECT unnest($keys))",
                {"a": removed_views or "", "b": only_views or "", "keys": keys}).fetchall():
            derived[key, variant] = thumb
    for r in rows:
        r["removed_thumbnail"] = derived.get((r["meme_key"], removed_views))
        r["only_thumbnail"] = derived.get((r["meme_key"], only_views))
    return rows


@query
def meme_views(con, meme_id: str) -> list[dict]:
    """The stored derived images of one meme (views stage): view, OCR source, has_caption, thumbnail."""
    return _records(con, f"""
        SELECT i.variant_id, i.view, json_extract_string(v.config, '$.ocr_source') AS ocr_source, i.has_caption,
               i.n_boxes, i.thumbnail, i.width, i.height
        FROM view_images i LEFT JOIN variants v USING (variant_id)
        WHERE i.meme_key = {_KEY_OF_ID} ORDER BY list_position(['caption-removed', 'caption-only'], i.view), i.variant_id
    """, {"id": meme_id})


# =============================================================================== faithfulness (issue 16)
# The faithfulness stage measures each CAM method and VLM set per meme; its variant config names the
# measured `source`. A source measured under several configs (a new OCR engine, new rules) is read from
# its newest one (highest first_run_id): the one this code writes.
_FAITH_CURRENT = """
    SELECT json_extract_string(config, '$.source') AS source, arg_max(variant_id, first_run_id) AS fv
    FROM variants WHERE stage = 'faithfulness' GROUP BY 1"""
_GONE = "(SELECT meme_key FROM memes WHERE label IS NULL OR (retired AND NOT $retired))"


@query
def failure_kind_counts(con, include_retired: bool) -> dict[str, dict[str, int]]:
    """Per VLM prediction set: its answers without a class, over the memes with a true label, by
    pipeline.faithfulness.FAILURE_KINDS (only those measured: the rest are 'not measured yet')."""
    rows = con.execute(f"""
        WITH cur AS ({_FAITH_CURRENT})
        SELECT cur.source, f.failure_kind, count(*) FROM faithfulness f JOIN cur ON f.variant_id = cur.fv
        ANTI JOIN {_GONE} gone USING (meme_key)
        WHERE f.failure_kind IS NOT NULL GROUP BY ALL""", {"retired": include_retired}).fetchall()
    out: dict[str, dict[str, int]] = {}
    for source, kind, n in rows:
        out.setdefault(source, {})[kind] = int(n)
    return out


@query
def faithfulness_sources(con) -> list[dict]:
    """The measured CAM methods and VLM sets (full view first): variant_id, stage, model_id, name, is_smoke,
    measure, meme_view (a derived view, or None), rows (memes measured by the newest config)."""
    return _records(con, f"""
        WITH cur AS ({_FAITH_CURRENT})
        SELECT v.variant_id, v.stage, v.model_id, v.name, v.is_smoke,
               json_extract_string(fv.config, '$.measure') AS measure, {_VIEW_OF} AS meme_view, n.rows
        FROM cur JOIN variants v ON v.variant_id = cur.source JOIN variants fv ON fv.variant_id = cur.fv
        JOIN (SELECT variant_id, count(*) AS rows FROM faithfulness GROUP BY 1) n ON n.variant_id = cur.fv
        ORDER BY list_position(['cam', 'vlm'], v.stage), {_VIEW_OF} IS NOT NULL,
                 v.model_id, v.name""")


RATIO_BINS_LIMIT = 3           # the caption-mass histogram: log2(mass / area) beyond ±3 (8x) falls in its end bins
_GROUP_OF = """CASE WHEN grouping(truth) = 0 THEN truth WHEN grouping(correct) = 0 THEN
                    CASE WHEN correct THEN 'correct' ELSE 'wrong' END ELSE 'all' END"""


@query
def cam_caption_mass(con, cam_variant: str, clip_variant: str | None, include_retired: bool) -> dict[str, dict]:
    """Memes with a true label and a caption, per group: 'all', by true label ('toxic', 'non_toxic') and,
    with `clip_variant`, by its answer ('correct', 'wrong'; unparseable is wrong): n, above (CAM mass on the
    caption > the caption's share of the area), the medians of mass, area and mass / area, and a histogram
    of log2(mass / area) in half-unit bins (bins: {bin: n}; beyond ±RATIO_BINS_LIMIT in the end bins)."""
    params = {"cam": cam_variant, "clip": clip_variant, "retired": include_retired}
    bin_params = {**params, "clip_bins": float(RATIO_BINS_LIMIT)}
    base = f"""
        WITH cur AS ({_FAITH_CURRENT}),
        rows AS (
            SELECT m.label AS truth, CASE WHEN p.meme_key IS NULL THEN NULL ELSE coalesce(p.label = m.label, FALSE)
                                     END AS correct,
                   f.caption_mass AS mass, f.caption_area AS area, f.caption_ratio AS ratio
            FROM faithfulness f JOIN cur ON f.variant_id = cur.fv AND cur.source = $cam
            JOIN memes m USING (meme_key)
            LEFT JOIN predictions p ON p.meme_key = f.meme_key AND p.variant_id = $clip
            WHERE f.has_caption AND f.caption_mass IS NOT NULL AND f.caption_area > 0 AND m.label IS NOT NULL
              AND (NOT m.retired OR $retired))"""
    groups = {r.pop("grp"): r for r in _records(con, base + f"""
        SELECT {_GROUP_OF} AS grp, count(*) AS n, count(*) FILTER (mass > area) AS above, median(mass) AS mass,
               median(area) AS area, median(ratio) AS ratio
        FROM rows GROUP BY GROUPING SETS ((), (truth), (correct))
        HAVING grouping(correct) = 1 OR correct IS NOT NULL""", params)}
    for g in groups.values():
        g["bins"] = {}
    for grp, b, n in con.execute(base + f"""
            SELECT {_GROUP_OF} AS grp, least(greatest(floor(2 * log2(greatest(ratio, 1e-6))) / 2, -$clip_bins),
                                                 $clip_bins - 0.5) AS bin, count(*) FROM rows
            WHERE ratio IS NOT NULL GROUP BY GROUPING SETS ((bin), (truth, bin), (correct, bin))
            HAVING grouping(correct) = 1 OR correct IS NOT NULL""", bin_params).fetchall():
        if grp in groups:
            groups[grp]["bins"][float(b)] = int(n)
    return groups


@query
def answer_faithfulness(con, vlm_variant: str, include_retired: bool) -> list[dict]:
    """Answers of one VLM set on memes with a true label, per (truth, correct: the answer's class is the
    truth; an unparseable answer is wrong): n, measured (has a faithfulness row), with_caption (of those, the
    OCR text has words), quotes (the explanation quotes the caption), with_class (measured answers stating
    a class), contradictions (possible contradiction with its own class line)."""
    return _records(con, f"""
        WITH cur AS ({_FAITH_CURRENT})
        SELECT m.label AS truth, coalesce(p.label = m.label, FALSE) AS correct, count(*) AS n,
               count(*) FILTER (f.has_caption) AS with_caption, count(*) FILTER (f.quotes_caption) AS quotes,
               count(*) FILTER (f.contradiction) AS contradictions, count(f.meme_key) AS measured,
               count(*) FILTER (p.label IS NOT NULL AND f.meme_key IS NOT NULL) AS with_class
        FROM predictions p JOIN memes m USING (meme_key)
        LEFT JOIN (SELECT f.* FROM faithfulness f JOIN cur ON f.variant_id = cur.fv AND cur.source = $vlm) f
               ON f.meme_key = p.meme_key
        WHERE p.variant_id = $vlm AND m.label IS NOT NULL AND (NOT m.retired OR $retired)
        GROUP BY ALL ORDER BY truth, correct""", {"vlm": vlm_variant, "retired": include_retired})


@query
def contradiction_examples(con, vlm_variant: str, include_retired: bool, limit: int) -> list[dict]:
    """Answers of one VLM set flagged as a possible contradiction: meme_id, truth, label, cue, explanation."""
    return _records(con, f"""
        WITH cur AS ({_FAITH_CURRENT})
        SELECT m.meme_id, m.label AS truth, p.label, f.contradiction_cue AS cue, p.explanation
        FROM faithfulness f JOIN cur ON f.variant_id = cur.fv AND cur.source = $vlm
        JOIN predictions p ON p.meme_key = f.meme_key AND p.variant_id = $vlm JOIN memes m ON m.meme_key = f.meme_key
        WHERE f.contradiction AND (NOT m.retired OR $retired) ORDER BY m.meme_key LIMIT $limit""",
                    {"vlm": vlm_variant, "retired": include_retired, "limit": int(limit)})


@query
def meme_faithfulness(con, meme_id: str) -> dict[str, dict]:
    """One meme's newest faithfulness row per measured CAM method / VLM set (source variant id -> row)."""
    rows = _records(con, f"""
        WITH cur AS ({_FAITH_CURRENT})
        SELECT cur.source, f.measure, f.has_caption, f.caption_mass, f.caption_area, f.caption_ratio, f.boxes_seen,
               f.quote_overlap, f.quotes_caption, f.quoted_words, f.contradiction, f.contradiction_cue,
               f.failure_kind
        FROM faithfulness f JOIN cur ON f.variant_id = cur.fv WHERE f.meme_key = {_KEY_OF_ID}""", {"id": meme_id})
    for r in rows:
        r["quoted_words"] = json.loads(r["quoted_words"]) if r["quoted_words"] else []
    return {r["source"]: r for r in rows}


# =============================================================================== runs
@query
def runs(con) -> list[dict]:
    return _records(con, """
        SELECT r.*, date_diff('second', r.started_at, r.finished_at) AS seconds,
               coalesce(f.n, 0) AS failures
        FROM runs r LEFT JOIN (SELECT run_id, count(*) AS n FROM failures GROUP BY run_id) f USING (run_id)
        ORDER BY r.run_id DESC
    """)


@query
def failure_summary(con) -> pd.DataFrame:
    return _df(con, """
        SELECT run_id, stage, error_type, count(*) AS failures, min(created_at) AS first_at
        FROM failures GROUP BY ALL ORDER BY run_id DESC, failures DESC, stage, error_type
    """)


_FAILURES_WHERE = "WHERE ($run IS NULL OR run_id = $run) AND ($stage IS NULL OR stage = $stage)"


@query
def failures_count(con, run_id: int | None, stage: str | None) -> int:
    return int(con.execute(f"SELECT count(*) FROM failures {_FAILURES_WHERE}",
                           {"run": run_id, "stage": stage}).fetchall()[0][0])


@query
def failures_page(con, run_id: int | None, stage: str | None, limit: int, offset: int) -> pd.DataFrame:
    return _df(con, f"""
        SELECT run_id, stage, error_type, message, path, meme_id, created_at FROM failures {_FAILURES_WHERE}
        ORDER BY run_id DESC, created_at, stage, path LIMIT $limit OFFSET $offset
    """, {"run": run_id, "stage": stage, "limit": int(limit), "offset": int(offset)})


@query
def failure_stages(con) -> list[str]:
    return [r[0] for r in con.execute("SELECT DISTINCT stage FROM failures WHERE stage IS NOT NULL ORDER BY 1")
            .fetchall()]


# =============================================================================== the HTML report (pipeline/export.py)
# The report never reads runs.memes_root or runs.args (local paths): its queries name their columns.
@query
def report_memes(con) -> list[tuple]:
    """(meme_id, label, retired) of every meme."""
    return con.execute("SELECT meme_id, label, retired FROM memes").fetchall()


@query
def report_variants(con) -> list[dict]:
    """Every variant in stage order (ocr, clip, vlm, cam), then model and name."""
    return _records(con, "SELECT variant_id, stage, model_id, name, is_smoke FROM variants "
                         "ORDER BY list_position(['ocr', 'clip', 'vlm', 'cam'], stage), model_id, name")


@query
def report_predictions(con, variant_ids: list[str]) -> list[tuple]:
    """(variant_id, meme_id, label, score, stage, logits) of the given prediction sets."""
    return con.execute("SELECT variant_id, meme_id, label, score, stage, logits FROM predictions "
                       "WHERE variant_id IN (SELECT unnest(?))", [list(variant_ids)]).fetchall()


@query
def report_format_counts(con) -> list[tuple]:
    return con.execute("SELECT coalesce(format, '?'), count(*) FROM memes WHERE NOT retired GROUP BY 1 "
                       "ORDER BY 2 DESC").fetchall()


@query
def report_ocr_summary(con, variant_id: str) -> tuple:
    """(rows, rows without text, mean confidence) of one OCR variant."""
    return con.execute("SELECT count(*), count(*) FILTER (coalesce(trim(text), '') = ''), avg(mean_confidence) "
                       "FROM ocr WHERE variant_id = ?", [variant_id]).fetchall()[0]


@query
def report_heatmap_count(con, variant_id: str) -> int:
    return con.execute("SELECT count(*) FROM heatmaps WHERE variant_id = ?", [variant_id]).fetchall()[0][0]


@query
def report_runs(con) -> list[dict]:
    return _records(con, "SELECT run_id, command, started_at, finished_at, status, device, git_commit, models, "
                         "is_smoke FROM runs ORDER BY run_id")


@query
def report_failures(con, recent: int = 20) -> tuple[list[tuple], list[tuple]]:
    """Failures per (stage, error type), and the `recent` newest (stage, error type, path, message)."""
    per_kind = con.execute("SELECT stage, error_type, count(*) FROM failures GROUP BY ALL ORDER BY 3 DESC, 1, 2").fetchall()
    newest = con.execute("SELECT stage, error_type, path, message FROM failures ORDER BY created_at DESC LIMIT ?",
                         [int(recent)]).fetchall()
    return per_kind, newest


@query
def report_cards(con, meme_ids: list[str], images: bool, cam_variants: list[str],
                 set_variants: list[str]) -> dict[str, list]:
    """What the report's gallery cards show of these memes: meme rows (with thumbnails when `images`),
    CAM overlays of `cam_variants`, every OCR text, and the answers of `set_variants`."""
    cols = "meme_id, label, rel_path, width, height, format" + (", thumbnail, thumbnail_mime" if images else "")
    out = {"memes": _records(con, f"SELECT {cols} FROM memes WHERE meme_id IN (SELECT unnest(?))", [meme_ids]),
           "overlays": [], "ocr": [], "answers": []}
    if images and cam_variants:
        out["overlays"] = con.execute(
            "SELECT meme_id, variant_id, overlay FROM heatmaps WHERE meme_id IN (SELECT unnest(?)) "
            "AND variant_id IN (SELECT unnest(?)) AND overlay IS NOT NULL", [meme_ids, cam_variants]).fetchall()
    out["ocr"] = con.execute(
        "SELECT o.meme_id, coalesce(v.name, o.engine), o.text FROM ocr o LEFT JOIN variants v USING (variant_id) "
        "WHERE o.meme_id IN (SELECT unnest(?)) ORDER BY 2", [meme_ids]).fetchall()
    if set_variants:
        out["answers"] = con.execute(
            "SELECT meme_id, variant_id, label, score, explanation, raw_answer FROM predictions "
            "WHERE meme_id IN (SELECT unnest(?)) AND variant_id IN (SELECT unnest(?))", [meme_ids, set_variants]).fetchall()
    return out


@query
def table_names(con) -> list[str]:
    return [t for (t,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
                                      "AND schema_name = 'main' ORDER BY table_name").fetchall()]


# =============================================================================== first run (dashboard/first_run.py)
@query
def demo_runs(con) -> int:
    """How many runs of this cache were on the built-in demo set (pipeline/demo.py: runs.args has demo=true)."""
    return int(con.execute("SELECT count(*) FROM runs WHERE try_cast(json_extract(args, '$.demo') AS BOOLEAN)")
               .fetchall()[0][0])


@query
def missing_models(con) -> list[dict]:
    """Model stages whose model could not be loaded in the latest run that tried them, and that have no
    rows from that run or later: [{stage, run_id, message, args}] (args: that run's options, JSON)."""
    return _records(con, """
        WITH load_failures AS (
            SELECT f.stage, f.run_id, f.message, r.args,
                   row_number() OVER (PARTITION BY f.stage ORDER BY f.run_id DESC, f.created_at DESC) AS k
            FROM failures f JOIN runs r USING (run_id)
            WHERE f.meme_id IS NULL AND f.stage IN ('ocr', 'clip', 'vlm', 'cam')
        ), produced AS (
            SELECT stage, max(run_id) AS run_id FROM predictions GROUP BY stage
            UNION ALL SELECT 'cam', max(run_id) FROM heatmaps
            UNION ALL SELECT 'ocr', max(run_id) FROM ocr
        )
        SELECT l.stage, l.run_id, l.message, l.args
        FROM load_failures l
        WHERE l.k = 1 AND NOT EXISTS (SELECT 1 FROM produced p WHERE p.stage = l.stage AND p.run_id >= l.run_id)
        ORDER BY list_position(['ocr', 'clip', 'vlm', 'cam'], l.stage)
    """)


# ---- report: modality
@query
def report_view_sets(con) -> dict[str, str]:
    """{variant_id: view} of every derived-view prediction set (its config names a `meme_view`: pipeline/views.py).
    The report shows them only in its Modality section (modality_sets), never as prediction sets of their own."""
    return dict(con.execute(f"SELECT v.variant_id, {_VIEW_OF} FROM variants v "
                            f"WHERE v.stage IN (SELECT unnest($stages)) AND {_VIEW_OF} IS NOT NULL",
                            {"stages": list(PREDICTION_STAGES)}).fetchall())


# =============================================================================== embeddings (issue 17, similar memes)
# The CLIP stage's image embeddings (table `embeddings`, pipeline/stages/clip.py): one L2-normalised FLOAT[] per
# meme and image model (embedding variant), rounded to float16 precision. Nearest neighbours are a brute-force
# cosine scan of one variant's vectors in DuckDB (list_cosine_similarity; timing at 100k memes: docs/benchmarks.md).
# A cache from before the table reads it as an empty temporary table (store.LATER_TABLES).
SIMILAR_LIMIT = 8               # neighbours the Meme page lists


@query
def embedding_counts(con) -> dict[str, int]:
    """Stored vectors per embedding variant (`vlmemes status`)."""
    return {v: int(n) for v, n in con.execute("SELECT variant_id, count(*) FROM embeddings GROUP BY ALL").fetchall()}


@query
def meme_embedding_variants(con, meme_id: str) -> list[dict]:
    """The embedding variants (image models) this meme has a vector of: variant_id, stage, model_id, name,
    is_smoke, dim, rows (memes with a vector of that variant), by model."""
    return _records(con, f"""
        SELECT e.variant_id, coalesce(v.stage, 'embedding') AS stage, e.model_id,
               coalesce(v.name, 'image-embedding') AS name,
               coalesce(v.is_smoke, FALSE) OR coalesce(e.is_smoke, FALSE) AS is_smoke, e.dim, n.rows
        FROM embeddings e LEFT JOIN variants v USING (variant_id)
        JOIN (SELECT variant_id, count(*) AS rows FROM embeddings GROUP BY ALL) n USING (variant_id)
        WHERE e.meme_key = {_KEY_OF_ID}
        ORDER BY e.model_id, e.variant_id""", {"id": meme_id})


@query
def similar_memes(con, meme_id: str, variant_id: str, include_retired: bool, limit: int = SIMILAR_LIMIT
                  ) -> list[dict]:
    """The `limit` memes nearest to `meme_id` by the cosine similarity of their `variant_id` embeddings, most
    similar first (ties by meme key), the meme itself left out (and retired memes unless include_retired):
    meme_id, meme_key, label, rel_path, similarity, thumbnail ([] when the meme has no such vector)."""
    rows = _records(con, f"""
        WITH me AS (SELECT meme_key, embedding FROM embeddings WHERE variant_id = $variant AND meme_key = {_KEY_OF_ID}),
        near AS (
            SELECT e.meme_key, list_cosine_similarity(e.embedding, me.embedding) AS similarity
            FROM embeddings e CROSS JOIN me
            WHERE e.variant_id = $variant AND e.meme_key <> me.meme_key
              AND ($retired OR e.meme_key NOT IN (SELECT meme_key FROM memes WHERE retired))
            ORDER BY similarity DESC, e.meme_key LIMIT $limit)
        SELECT m.meme_id, m.meme_key, m.label, m.rel_path, near.similarity
        FROM near JOIN memes m USING (meme_key)
        ORDER BY near.similarity DESC, near.meme_key""",
                    {"id": meme_id, "variant": variant_id, "retired": include_retired, "limit": int(limit)})
    return _with_thumbnails(con, rows)


@query
def memes_set_answers(con, meme_ids: list[str]) -> list[dict]:
    """The answers of every full-view prediction set (CLIP, VLM; not the derived views) to these memes:
    meme_id, variant_id, stage, model_id, name, is_smoke, label, score, in the dashboard's set order."""
    return _records(con, f"""
        SELECT m.meme_id, p.variant_id, v.stage, v.model_id, v.name, coalesce(v.is_smoke, FALSE) AS is_smoke,
               p.label, p.score
        FROM predictions p JOIN variants v USING (variant_id)
        JOIN memes m ON m.meme_key = p.meme_key
        WHERE p.meme_key IN (SELECT meme_key FROM memes WHERE meme_id IN (SELECT unnest($ids)))
          AND v.stage IN (SELECT unnest($stages)) AND {_VIEW_OF} IS NULL
        ORDER BY m.meme_id, list_position(['clip', 'vlm'], v.stage), v.model_id, v.name, v.variant_id""",
                    {"ids": list(meme_ids), "stages": list(PREDICTION_STAGES)})


# =============================================================================== map (issue 17, the Map page)
# ---- this section: pipeline/embedding_map.py and dashboard/views/map.py (edit only these functions here)
# The 2-D layout of each embedding variant's vectors (UMAP, or PCA for a few memes), computed by a precompute
# (pipeline/embedding_map.py) into `map_points`, with one `maps` row per variant: its fingerprint, method and
# size. A cache from before the tables reads them as empty temporary tables (store.LATER_TABLES).
MAP_VERSION = "2"               # bump when the layout changes (method, parameters): stored maps count as stale; 2: templates
# answer codes of map_points_for: 0 = no answer, 1 = unparseable, 2 = non_toxic, 3 = toxic; truth: 0 = no label
MAP_ANSWERS = (None, "unparseable", "non_toxic", "toxic")
MAP_TRUTHS = (None, "non_toxic", "toxic")


@query
def map_fingerprints(con) -> dict[str, str]:
    """{embedding variant: "p<MAP_VERSION>:<count>:<hash sum>"} over the non-retired memes with a vector of
    that variant: what a stored map was computed from (equal: the map is current)."""
    return {v: f"p{MAP_VERSION}:{n}:{h}" for v, n, h in con.execute("""
        SELECT e.variant_id, count(*), coalesce(sum(hash(e.meme_key, m.meme_id)), 0)
        FROM embeddings e JOIN memes m USING (meme_key) WHERE NOT m.retired
        GROUP BY ALL ORDER BY 1""").fetchall()}


@query
def stored_map_fingerprints(con) -> dict[str, str]:
    """{embedding variant: the fingerprint its stored map was computed from}."""
    return dict(con.execute("SELECT variant_id, fingerprint FROM maps ORDER BY 1").fetchall())


def map_vectors(con, variant_id: str) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(meme keys, meme ids, n x dim float32 matrix) of the non-retired memes' `variant_id` vectors, by key.
    Not memoised by the dashboard (~300 MB at 100k memes x 768)."""
    tab = con.sql("""
        SELECT e.meme_key, m.meme_id, e.embedding FROM embeddings e JOIN memes m USING (meme_key)
        WHERE e.variant_id = $v AND NOT m.retired ORDER BY e.meme_key""", params={"v": variant_id}).to_arrow_table()
    keys = np.asarray(tab.column("meme_key").to_numpy(), dtype=np.int64)
    ids = tab.column("meme_id").to_pylist()
    emb = tab.column("embedding").combine_chunks()
    if len(keys) == 0:
        return keys, ids, np.zeros((0, 0), np.float32)
    flat = np.asarray(emb.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
    return keys, ids, flat.reshape(len(keys), -1)


@query
def map_variants(con) -> list[dict]:
    """The stored maps, by model: variant_id, model_id, name, is_smoke, method, n (memes laid out), run_id,
    seconds, map_version, current (computed from the embeddings as they are now)."""
    rows = _records(con, """
        SELECT mp.variant_id, coalesce(v.model_id, mp.variant_id) AS model_id,
               coalesce(v.name, 'image-embedding') AS name, coalesce(v.is_smoke, FALSE) AS is_smoke,
               mp.method, mp.n, mp.run_id, mp.seconds, mp.map_version, mp.fingerprint
        FROM maps mp LEFT JOIN variants v USING (variant_id)
        ORDER BY model_id, mp.variant_id""")
    now = map_fingerprints(con) if rows else {}
    for r in rows:
        r["current"] = now.get(r["variant_id"]) == r.pop("fingerprint")
    return rows


@query
def map_points_for(con, variant_id: str, set_a: str | None, set_b: str | None, include_retired: bool
                   ) -> pd.DataFrame:
    """The stored map of `variant_id`, one row per meme (retired ones only with include_retired), by key:
    meme_key, meme_id, x, y (float32), truth (int8: 0 no label, 1 non_toxic, 2 toxic) and a, b (int8: the
    answers of prediction sets `set_a`, `set_b`; 0 no answer or no set, 1 unparseable, 2 non_toxic, 3 toxic)."""
    return _df(con, """
        SELECT mp.meme_key, mp.meme_id, mp.x, mp.y,
               (CASE m.label WHEN 'non_toxic' THEN 1 WHEN 'toxic' THEN 2 ELSE 0 END)::TINYINT AS truth,
               (CASE WHEN a.meme_key IS NULL THEN 0 WHEN a.label = 'non_toxic' THEN 2 WHEN a.label = 'toxic' THEN 3
                     ELSE 1 END)::TINYINT AS a,
               (CASE WHEN b.meme_key IS NULL THEN 0 WHEN b.label = 'non_toxic' THEN 2 WHEN b.label = 'toxic' THEN 3
                     ELSE 1 END)::TINYINT AS b
        FROM map_points mp JOIN memes m USING (meme_key)
        LEFT JOIN predictions a ON a.meme_key = mp.meme_key AND a.variant_id = $a
        LEFT JOIN predictions b ON b.meme_key = mp.meme_key AND b.variant_id = $b
        WHERE mp.variant_id = $v AND (NOT m.retired OR $retired)
        ORDER BY mp.meme_key""", {"v": variant_id, "a": set_a or "", "b": set_b or "", "retired": include_retired})
# ---- end of the map section
