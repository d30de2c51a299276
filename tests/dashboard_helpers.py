"""Shared pieces of the dashboard tests: the app path, its pages, and independent SQL for expectations.

The expectations here are written against the schema (pipeline/store.py) directly, not through
dashboard/queries.py, so a wrong dashboard query cannot agree with itself.
"""
from __future__ import annotations

import socket
from pathlib import Path

import duckdb

REPO = Path(__file__).resolve().parent.parent
APP = REPO / "dashboard" / "app.py"
ARTIFACTS = REPO / "tests" / "artifacts"

# page file (relative to app.py), URL path, a title the page always shows
PAGES = [
    ("views/overview.py", "", "Overview"),
    ("views/errors.py", "errors", "Errors"),
    ("views/disagreement.py", "disagreement", "Disagreement"),
    ("views/heatmaps.py", "heatmaps", "Heatmaps"),
    ("views/meme.py", "meme", "Meme"),
    ("views/runs.py", "runs", "Runs"),
]


def build_synth(path: Path, n: int = 240, seed: int = 3) -> Path:
    from pipeline.devtools.synth_db import synth_db
    return synth_db(path, n, seed=seed)


def sql(db: Path, query: str, params: list | None = None) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(query, params or []).fetchall()
    finally:
        con.close()


def prediction_sets(db: Path) -> list[tuple[str, str, str]]:
    """(variant_id, stage, name) of prediction sets that have rows, in the dashboard's order."""
    return sql(db, """
        SELECT v.variant_id, v.stage, v.name FROM variants v
        WHERE v.stage IN ('clip', 'vlm') AND EXISTS (SELECT 1 FROM predictions p WHERE p.variant_id = v.variant_id)
        ORDER BY list_position(['clip', 'vlm'], v.stage), v.model_id, v.name, v.variant_id""")


def variant_ids(db: Path, stage: str) -> list[str]:
    return [r[0] for r in sql(db, "SELECT variant_id FROM variants WHERE stage = ? ORDER BY model_id, name, variant_id",
                              [stage])]


def outcome_count(db: Path, variant: str, outcome: str, truth: str | None = None, ocr: str | None = None,
                  has_text: bool | None = None, contains: str | None = None) -> int:
    """Memes of one outcome (fp / fn / unparsed) of a prediction set, non-retired, with a true label."""
    cond = {"fp": "p.label = 'toxic' AND m.label = 'non_toxic'",
            "fn": "p.label = 'non_toxic' AND m.label = 'toxic'",
            "unparsed": "p.label IS NULL"}[outcome]
    rows = sql(db, f"""
        SELECT m.label, o.text, p.explanation, p.raw_answer FROM predictions p
        JOIN memes m USING (meme_id)
        LEFT JOIN ocr o ON o.meme_id = p.meme_id AND o.variant_id = ?
        WHERE p.variant_id = ? AND NOT m.retired AND m.label IS NOT NULL AND {cond}""", [ocr or "", variant])
    n = 0
    for label, text, expl, raw in rows:       # the filters in Python, independent of the SQL under test
        if truth and label != truth:
            continue
        if has_text is not None and bool((text or "").strip()) != has_text:
            continue
        if contains and not any(contains.lower() in (s or "").lower() for s in (text, expl, raw)):
            continue
        n += 1
    return n


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ browser
_QUIET = """() => {
    const n = document.getElementsByTagName('*').length, now = performance.now();
    const s = window.__vlmemesQuiet || (window.__vlmemesQuiet = {n: -1, t: now});
    if (n !== s.n) { s.n = n; s.t = now; return false; }
    return now - s.t > 400 && Array.from(document.images).every(i => i.complete);
}"""


def wait_idle(page) -> None:
    """Until the script run is over (the app root's data-test-script-state), the page has stopped
    changing for 0.4 s and every image is in. The quiet period matters: elements after a chart are
    drawn only once the chart's lazily loaded code has arrived, up to seconds after the run ended."""
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=60_000)
    page.evaluate("() => { window.__vlmemesQuiet = null; }")
    page.wait_for_function(_QUIET, polling=100, timeout=60_000)
