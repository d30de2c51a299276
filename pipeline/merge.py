"""`vlmemes merge A.duckdb B.duckdb … --db OUT`: caches computed on other machines or by colleagues, united.

The writing is Store.merge_from (pipeline/store.py): rows keyed by (meme, variant) — and memes by
their bytes' hash, variants by their cache key — are united; a key both caches hold with other values
(another label, score, OCR text, answer or heatmap) is a conflict: the row already in OUT is kept and
both versions are listed in `merge_conflicts` and printed, never silently overwritten. Runs and their
failures keep their origin (`runs.origin`, `failures.origin`: "<file>: run <id>"), with new run ids.
Merging is a run of its own (`runs.command = 'merge'`); merging the same file again adds nothing.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from tqdm import tqdm

from pipeline import summary
from pipeline.errors import VlmemesError
from pipeline.runner import git_commit, library_versions
from pipeline.store import Store, now

SHOWN_CONFLICTS = 10


def merge(sources: list[Path], out: Path) -> int:
    """Merge every cache of `sources` into `out` (created if new); returns the exit code (0: merged)."""
    out_resolved = out.resolve() if out.exists() else None
    for src in sources:
        if not src.is_file():
            raise VlmemesError(f"{src}: no such cache file")
        Store(src, create=False)                # a DuckDB file, or one clear line about what it is
    todo = [s for s in sources if s.resolve() != out_resolved]
    for s in sources:
        if s not in todo:
            print(f"{s}: is the output itself; skipped")
    store = Store(out)
    report: dict[str, dict] = {}
    with store.run_lock():
        run_id = store.start_run("merge", {"sources": [str(s) for s in todo], "db": str(out)}, None,
                                 library_versions(), "-", git_commit())
        status = "failed"
        try:
            for src in tqdm(todo, desc="merge", unit="cache"):
                origin = src.name
                report[str(src)] = store.merge_from(src, origin, run_id)
                tqdm.write(format_report(src, report[str(src)]))
            status = "ok"
        finally:
            store.update_run(run_id, status=status, finished_at=now(), counts=report)
        summary.write(store, run_id)
    conflicts = store.query("SELECT table_name, key, origin, kept, other FROM merge_conflicts WHERE run_id = ? "
                            "ORDER BY table_name, key", [run_id])
    if conflicts:
        print(f"{len(conflicts)} conflicting duplicate(s): same key, other values; the row already in {out} was kept, "
              f"both are in its table merge_conflicts (run {run_id}):", file=sys.stderr)
        for table, key, origin, kept, other in conflicts[:SHOWN_CONFLICTS]:
            print(f"  {table} {_short(key)}: kept {_short(kept)}; not taken from {origin}: {_short(other)}",
                  file=sys.stderr)
        if len(conflicts) > SHOWN_CONFLICTS:
            print(f"  … and {len(conflicts) - SHOWN_CONFLICTS} more", file=sys.stderr)
    print(f"merge run {run_id}: {len(todo)} cache(s) into {out}; {len(conflicts)} conflict(s)")
    return 0


def format_report(src: Path, tables: dict[str, dict]) -> str:
    parts = [f"{t} +{r['added']:,}" + (f" ={r['same']:,}" if r["same"] else "") +
             (f" !{r['conflicts']:,}" if r["conflicts"] else "") for t, r in tables.items()]
    return f"{src}: " + ", ".join(parts) + "   (+ added, = already there, ! conflicting)"


def _short(text: str, limit: int = 160) -> str:
    try:
        text = json.dumps(json.loads(text), ensure_ascii=False)
    except (TypeError, ValueError):
        pass
    return text if len(text) <= limit else text[:limit - 1] + "…"
