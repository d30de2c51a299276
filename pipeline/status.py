"""`python -m pipeline status`: what the cache holds, per stage and engine/model."""
from __future__ import annotations

from pathlib import Path

from pipeline.store import Store

VARIANT_COUNTS = """
SELECT v.stage, v.model_id, v.name, v.is_smoke, v.variant_id,
       coalesce(o.n, p.n, h.n, 0) AS n_rows
FROM variants v
LEFT JOIN (SELECT variant_id, count(*) n FROM ocr GROUP BY ALL) o USING (variant_id)
LEFT JOIN (SELECT variant_id, count(*) n FROM predictions GROUP BY ALL) p USING (variant_id)
LEFT JOIN (SELECT variant_id, count(*) n FROM heatmaps GROUP BY ALL) h USING (variant_id)
ORDER BY list_position(['ocr', 'clip', 'vlm', 'cam'], v.stage), v.model_id, v.name
"""


def status_report(db: str | Path) -> str:
    store = Store(db, create=False)
    memes = store.query("SELECT count(*), count(*) FILTER (label = 'toxic'), count(*) FILTER (label = 'non_toxic'), "
                        "count(*) FILTER (label_conflict), count(*) FILTER (retired) FROM memes WHERE true")[0]
    lines = [f"cache: {db}",
             f"memes: {memes[0]} ({memes[1]} toxic, {memes[2]} non_toxic, {memes[3]} label conflicts, {memes[4]} retired)",
             "", f"{'stage':<6} {'rows':>6}  {'engine/model':<45} {'version/method':<20} variant"]
    variants = store.query(VARIANT_COUNTS)
    if not variants:
        lines.append("(no stage results yet: run `python -m pipeline precompute`)")
    for stage, model, name, smoke, vid, n in variants:
        lines.append(f"{stage:<6} {n:>6}  {model:<45} {name:<20} {vid}" + ("  [random weights: smoke run]" if smoke else ""))
    runs = store.query("SELECT run_id, status, started_at, finished_at FROM runs ORDER BY run_id DESC LIMIT 1")
    if runs:
        run_id, status, started, finished = runs[0]
        n_fail = store.query("SELECT count(*) FROM failures WHERE run_id = ?", [run_id])[0][0]
        lines += ["", f"last run: #{run_id} {status}, started {started:%Y-%m-%d %H:%M:%S}, {n_fail} failures recorded"]
    return "\n".join(lines)
