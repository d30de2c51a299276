"""`vlmemes status`: what the cache holds, per stage and engine/model (SQL: pipeline.queries.cache_status; the
image embeddings' rows: queries.embedding_counts)."""
from __future__ import annotations

from pathlib import Path

from pipeline import queries
from pipeline.store import Store


def status_report(db: str | Path) -> str:
    with Store(db, create=False).reader() as con:
        s = queries.cache_status(con)
        vectors = queries.embedding_counts(con)     # the CLIP stage's image embeddings (table `embeddings`)
    m = s["memes"]
    lines = [f"cache: {db}",
             f"memes: {m['total']} ({m['toxic']} toxic, {m['non_toxic']} non_toxic, {m['conflicts']} label conflicts, "
             f"{m['retired']} retired)",
             "", f"{'stage':<9} {'rows':>6}  {'engine/model':<45} {'version/method':<20} variant"]
    if not s["variants"]:
        lines.append("(no stage results yet: run `vlmemes precompute`)")
    for stage, model, name, smoke, vid, n in s["variants"]:
        n = vectors.get(vid, n)
        lines.append(f"{stage:<9} {n:>6}  {model:<45} {name:<20} {vid}" + ("  [random weights: smoke run]" if smoke else ""))
    if s["last_run"]:
        run_id, status, started, _finished, n_fail = s["last_run"]
        lines += ["", f"last run: #{run_id} {status}, started {started:%Y-%m-%d %H:%M:%S}, {n_fail} failures recorded"]
    return "\n".join(lines)
