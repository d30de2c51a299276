"""A precompute in progress, seen from the dashboard: `<db>.progress.json` and the banner on every page.

A real precompute (real Tesseract on synthetic memes) runs in a subprocess while the test reads the
progress file; the dashboard's banner is checked through AppTest on a file the test writes, with a
live pid (running), a dead one (abandoned) and a finished run (the app reruns once and says so).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from dashboard_helpers import PAGES, all_text, app_opener

from pipeline import progress

REPO = Path(__file__).resolve().parent.parent


def test_writer_and_reader_round_trip(tmp_path):
    db = tmp_path / "c.duckdb"
    w = progress.ProgressWriter(db, run_id=3, n_stages=2)
    w.stage("ocr", 1, total=10, cached=2)
    w.advance(4, 1)
    p = progress.read(db)
    assert (p.run_id, p.status, p.stage, p.stage_index, p.n_stages, p.done, p.failed, p.total, p.cached) == \
        (3, "running", "ocr", 1, 2, 4, 1, 10, 2)
    w.finish("ok")
    assert progress.read(db).status == "ok" and progress.read(db).finished_at
    assert not list(tmp_path.glob("*.tmp")), "the file is replaced atomically, no temporary left"


def test_a_running_record_of_a_dead_process_reads_as_abandoned(tmp_path):
    db = tmp_path / "c.duckdb"
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    progress.progress_path(db).write_text(json.dumps(dict(run_id=1, status="running", pid=child.pid,
                                                          host=os.uname().nodename, started_at="2026-01-01T00:00:00")))
    assert progress.read(db).status == "abandoned"
    progress.progress_path(db).write_text("{not json")
    assert progress.read(db) is None


def test_a_real_precompute_reports_its_stage_and_counts(tmp_path):
    from pipeline.devtools.synthetic_memes import write_meme_folder
    memes = tmp_path / "memes"
    write_meme_folder(memes, n_toxic=3, n_non_toxic=3, seed=1)
    db = tmp_path / "c.duckdb"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "precompute", "--memes", str(memes), "--db", str(db),
                             "--stages", "ocr", "--ocr-engine", "tesseract"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen = []
    while proc.poll() is None:
        p = progress.read(db)
        if p is not None:
            seen.append((p.status, p.stage, p.done, p.total))
        time.sleep(0.05)
    assert proc.returncode == 0
    running = [s for s in seen if s[0] == "running" and s[1] == "ocr"]
    assert running, seen
    assert {s[3] for s in running} == {6}
    assert len({s[2] for s in running}) >= 2, ("done must advance while the stage runs", seen)
    final = progress.read(db)
    assert (final.status, final.stage, final.done, final.total, final.pid) == ("ok", "ocr", 6, 6, proc.pid)


def open_app(monkeypatch, db: Path):
    return app_opener(monkeypatch)(db)


def write_state(db: Path, **fields) -> None:
    base = dict(run_id=7, status="running", pid=os.getpid(), host=os.uname().nodename,
                started_at="2026-12-03T05:00:00", stage="vlm", stage_index=3, n_stages=4, done=12, failed=1,
                total=51, cached=0)
    progress.progress_path(db).write_text(json.dumps({**base, **fields}))


def test_dashboard_shows_the_running_run_on_every_page_and_refreshes_when_it_ends(smoke_db, copy_db, monkeypatch):
    db = copy_db(smoke_db)
    write_state(db)
    at = open_app(monkeypatch, db)
    for page, *_ in PAGES:
        at.query_params.clear()
        at.switch_page(page)
        at.run()
        assert not at.exception, page
        text = all_text(at)
        assert "Precompute run 7 in progress: stage vlm (3 of 4) · 12 of 51 done, 1 failed" in text, page
        assert "started 2026-12-03 05:00:00 UTC" in text
    write_state(db, status="ok", finished_at="2026-12-03T05:10:00")
    at.run()                           # the banner sees the end and reruns the whole app once
    assert not at.exception
    assert "in progress" not in all_text(at)
    assert any("Precompute run 7 ended (ok)" in str(t.value) for t in at.toast), [t.value for t in at.toast]
    at.run()
    assert not at.toast, "said once"


def test_dashboard_says_when_a_run_was_abandoned(smoke_db, copy_db, monkeypatch):
    db = copy_db(smoke_db)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    write_state(db, pid=child.pid)
    at = open_app(monkeypatch, db)
    text = all_text(at)
    assert "in progress" not in text and "Precompute run 7 stopped without finishing" in text


def test_browser_follows_a_real_precompute_and_shows_its_results_without_a_reload(tmp_path):
    """A real browser on the dashboard of a cache that does not exist yet; a real precompute starts:
    the banner appears with the stage and counts, and when the run ends the page shows the new memes
    without the visitor reloading."""
    from dashboard_helpers import ARTIFACTS, chromium, serve

    from pipeline.devtools.synthetic_memes import write_meme_folder
    memes = tmp_path / "memes"
    write_meme_folder(memes, n_toxic=12, n_non_toxic=12, seed=2)
    db = tmp_path / "live.duckdb"
    env = dict(os.environ, VLMEMES_PROGRESS_POLL_S="1")          # notice a new run within a second
    with serve(db, ARTIFACTS / "progress_server.log", env=env) as server, chromium() as b:
        page = b.page
        page.goto(f"{server.url}/")
        page.get_by_text("There is no cache at this path yet").wait_for(timeout=60_000)
        proc = subprocess.Popen([sys.executable, "-m", "pipeline", "precompute", "--memes", str(memes), "--db", str(db),
                                 "--stages", "ocr", "--ocr-engine", "tesseract"], env=dict(os.environ, PYTHONPATH=str(REPO)),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            page.get_by_text("in progress: stage ocr (1 of 1)").wait_for(timeout=60_000)
            assert proc.poll() is None, "the banner must show while the run is still going"
            assert proc.wait(timeout=180) == 0
            page.get_by_text("ended (ok)").first.wait_for(timeout=30_000)          # the toast
            page.get_by_text("in progress").wait_for(state="detached", timeout=30_000)
            metric = page.locator('[data-testid="stMetric"]').filter(has_text="Memes").first
            metric.wait_for(timeout=30_000)
            assert "24" in metric.inner_text()
        finally:
            if proc.poll() is None:
                proc.kill()
