"""Shared pieces of the dashboard tests: the app path, its pages, independent SQL for expectations,
an AppTest opener, and a real `streamlit run` server and Chromium page for the browser tests.

The expectations here are written against the schema (pipeline/store.py) directly, not through
pipeline/queries.py, so a wrong dashboard query cannot agree with itself.
"""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pytest

REPO = Path(__file__).resolve().parent.parent
APP = REPO / "dashboard" / "app.py"
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")

# page file (relative to app.py), URL path, a title the page always shows,
# a text the page shows only once its data is there (what the browser tests wait for)
PAGES = [
    ("views/overview.py", "", "Overview", "Metrics per model × prompt version"),
    ("views/errors.py", "errors", "Errors", "False positives"),
    ("views/disagreement.py", "disagreement", "Disagreement", "Cohen's kappa"),
    ("views/calibration.py", "calibration", "Calibration", "Reliability diagram"),
    ("views/label_issues.py", "label-issues", "Label issues", "Memes checked"),
    ("views/slices.py", "slices", "Slices", "Slice by"),
    ("views/map.py", "map", "Map", "Colour by"),
    ("views/heatmaps.py", "heatmaps", "Heatmaps", "Overlay opacity (%)"),
    ("views/modality.py", "modality", "Modality", "--views all"),      # the smoke cache has no derived views
    ("views/faithfulness.py", "faithfulness", "Faithfulness", "Does CLIP look at the caption?"),
    ("views/meme.py", "meme", "Meme", "Model answers"),
    ("views/runs.py", "runs", "Runs", "Counts per stage"),
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


def write(db: Path, statement: str, params: list | None = None) -> None:
    """Change a test's own copy of a cache (the dashboard never writes)."""
    con = duckdb.connect(str(db))
    try:
        con.execute(statement, params or [])
    finally:
        con.close()


def prediction_sets(db: Path) -> list[tuple[str, str, str]]:
    """(variant_id, stage, name) of prediction sets that have rows, in the dashboard's order (the sets of
    derived views, which only the Modality page shows, left out)."""
    return sql(db, """
        SELECT v.variant_id, v.stage, v.name FROM variants v
        WHERE v.stage IN ('clip', 'vlm') AND EXISTS (SELECT 1 FROM predictions p WHERE p.variant_id = v.variant_id)
          AND json_extract_string(v.config, '$.meme_view') IS NULL
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


# ------------------------------------------------------------------ AppTest
def app_opener(monkeypatch):
    """open(db) -> an AppTest of dashboard/app.py reading `db`, after its first (Overview) run."""
    from streamlit.testing.v1 import AppTest

    def _open(db: Path) -> AppTest:
        monkeypatch.setenv("VLMEMES_DB", str(db))
        at = AppTest.from_file(str(APP), default_timeout=90)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        return at
    return _open


def all_text(at) -> str:
    """Every text an AppTest run shows (markdown, captions, notices, titles, code blocks), one string."""
    kinds = ("markdown", "text", "caption", "info", "warning", "error", "success", "title", "code")
    return "\n".join(str(e.value) for kind in kinds for e in getattr(at, kind))


def goto(at, page: str, /, **params):
    """Open `page` with exactly these query params (as a link would), run it, and fail on any exception."""
    at.query_params.clear()
    at.query_params.update({k: str(v) for k, v in params.items()})
    at.switch_page(page)
    at.run()
    assert not at.exception, (page, params, [e.value for e in at.exception])
    return at


# ------------------------------------------------------------------ server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    log: Path


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    """Until a Streamlit server at `url` answers /_stcore/health with 200; fails the test with the end of
    `log` (and kills the server) if it exits or is not up within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"streamlit did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def holm_by_hand(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjustment written out independently of pipeline.metrics (for checking it)."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    out, running = [0.0] * len(pvalues), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        out[i] = running
    return out


@contextlib.contextmanager
def serve(db: Path, log: Path, *extra: str, env: dict | None = None):
    """`streamlit run dashboard/app.py --server.headless true ... -- --db db` on a free port until the block ends.

    Yields once /_stcore/health answers 200; fails the test with the end of `log` if the server exits or
    is not up within 60 s. The server writes to the file `log`, not a pipe (an unread pipe can fill up and
    stall it); VLMEMES_DB is removed from its environment so only --db names the cache.
    """
    port = free_port()
    env = dict(env or os.environ, STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    env.pop("VLMEMES_DB", None)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true",
             "--server.port", str(port), "--server.fileWatcherType", "none", *extra, "--", "--db", str(db)],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc, log)
    try:
        yield Server(url, proc, log)
    finally:
        stop_process(proc, 15)


def stop_process(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ------------------------------------------------------------------ browser
@dataclass
class Browser:
    """One Chromium page; `requests` collects every URL the browser asked for (external ones are aborted)."""
    page: object
    requests: list[str] = field(default_factory=list)

    def external(self) -> list[str]:
        out = []
        for u in self.requests:
            parts = urllib.parse.urlsplit(u)
            if parts.scheme in ("data", "blob", "about"):
                continue
            if parts.hostname not in ("127.0.0.1", "localhost"):
                out.append(u)
        return out


@contextlib.contextmanager
def chromium(viewport=(1400, 2000)):
    """Debian Chromium (skips the test where it is missing) with one page; requests to other hosts are aborted."""
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (/usr/bin/chromium)")
    from playwright.sync_api import sync_playwright
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM),
                                    args=["--no-sandbox", "--disable-background-networking"])
        try:
            context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
            b = Browser(context.new_page())
            context.on("request", lambda r: b.requests.append(r.url))
            context.on("websocket", lambda ws: b.requests.append(ws.url))

            def local_only(route):
                host = urllib.parse.urlsplit(route.request.url).hostname
                return route.continue_() if host in ("127.0.0.1", "localhost") else route.abort()

            context.route("**/*", local_only)
            b.page.set_default_timeout(30_000)
            yield b
        finally:
            browser.close()


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
