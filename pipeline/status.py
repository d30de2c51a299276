"""`vlmemes status`: what the cache holds, per stage and engine/model (SQL: pipeline.queries.cache_status)."""
from __future__ import annotations

from pathlib import Path

from pipeline import queries
from pipeline.store import Store


def status_report(db: str | Path) -> str:
    with Store(db, create=False).reader() as con:
        s = queries.cache_status(con)
    m = s["memes"]
    lines = [f"cache: {db}",
             f"memes: {m['total']} ({m['toxic']} toxic, {m['non_toxic']} non_toxic, {m['conflicts']} label conflicts, "
             f"{m['retired']} retired)",
             "", f"{'stage':<6} {'rows':>6}  {'engine/model':<45} {'version/method':<20} variant"]
    if not s["variants"]:
        lines.append("(no stage results yet: run `vlmemes precompute`)")
    for stage, model, name, smoke, vid, n in s["variants"]:
        lines.append(f"{stage:<6} {n:>6}  {model:<45} {name:<20} {vid}" + ("  [random weights: smoke run]" if smoke else ""))
    if s["last_run"]:
        run_id, status, started, _finished, n_fail = s["last_run"]
        lines += ["", f"last run: #{run_id} {status}, started {started:%Y-%m-%d %H:%M:%S}, {n_fail} failures recorded"]
    return "\n".join(lines)
