"""The dashboard and a running precompute on the same DuckDB file, as real processes.

`streamlit run dashboard/app.py` serves a copy of smoke_db while a real
`python -m pipeline precompute --stages ocr --ocr-engine tesseract` adds 16 new synthetic memes to
the same file, and Chromium loads the dashboard's pages one after another the whole time:

* every page load shows its page, never an exception box or lock wording (a "being written …
  retrying" notice is the designed fallback; how often it showed is printed, and the page must
  still come up with its content within the same load);
* the precompute finishes, successfully, in a bounded time although the dashboard keeps reading;
* once it is done, a reload shows the new results (memes and runs equal to the file);
* an idle dashboard (browser open, no page running) holds no handle on the file: the server
  process has no descriptor for it and a writer gets the file at once, without waiting.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import duckdb
import pytest
from bad_inputs import child_env, precompute_argv
from dashboard_helpers import ARTIFACTS, REPO, chromium, serve, sql, wait_idle
from test_dashboard_safety import metric_values, open_page, problems

N_NEW = 16
PRECOMPUTE_BOUND_S = 150          # generous: ~10-30 s of Tesseract on 2 loaded cores, plus start-up
WAIT_BOUND_S = 10                 # the precompute's total time waiting to open the file for writing
BUSY = "being written by a precompute"
# Remembers whether the busy notice was ever on the page during this load (it is gone once a rerun succeeds).
WATCH_BUSY = """
new MutationObserver(() => {
    if (document.body && document.body.textContent.includes(%r)) window.__vlmemesBusy = true;
}).observe(document, {childList: true, subtree: true, characterData: true});
""" % BUSY
# `python -m pipeline ...`, with pipeline.store.connect timed: how long the writer waited for the file
TIMED_PIPELINE = """
import atexit, sys, time
import pipeline.store as store
from pipeline.cli import main
waits, connect = [], store.connect
def timed(path, read_only, *a, **kw):
    t = time.monotonic()
    try:
        return connect(path, read_only, *a, **kw)
    finally:
        waits.append(time.monotonic() - t)
store.connect = timed
atexit.register(lambda: print(f"WRITER-WAIT n={len(waits)} total={sum(waits):.3f} max={max(waits):.3f}"))
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def setup(smoke_db, synthetic_memes, tmp_path_factory):
    """A copy of the cache, and a memes folder = the cache's 12 memes + 16 new ones."""
    from pipeline.devtools.synthetic_memes import write_meme_folder
    tmp = tmp_path_factory.mktemp("concurrency")
    db = tmp / "live.duckdb"
    shutil.copy(smoke_db, db)
    memes = tmp / "memes"
    shutil.copytree(synthetic_memes, memes)
    new = tmp / "new"
    write_meme_folder(new, n_toxic=N_NEW // 2, n_non_toxic=N_NEW // 2, seed=17, size=(320, 240))
    for f in new.rglob("*.*"):
        f.rename(memes / f.parent.name / f"new {f.name}")
    return db, memes, tmp


def held_by(pid: int, path: Path) -> list[str]:
    """The server process's open descriptors on the database (or its .wal)."""
    out = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(str(path.resolve())):
            out.append(target)
    return out


def test_pages_load_while_a_precompute_writes_and_show_its_results_after(setup):
    db, memes, tmp = setup
    n_before = sql(db, "SELECT count(*) FROM memes WHERE NOT retired")[0][0]
    meme_id = sql(db, "SELECT min(meme_id) FROM memes")[0][0]
    pages = [("", "Overview", "Metrics per model × prompt version"), ("runs", "Runs", "Counts per stage"),
             ("errors", "Errors", "False positives"),
             (f"meme?meme={meme_id}", "Meme", "Model answers"), ("heatmaps", "Heatmaps", "Overlay opacity (%)"),
             ("disagreement", "Disagreement", "Memes per cell")]
    with serve(db, tmp / "streamlit.log") as server, chromium() as b:
        page = b.page
        page.add_init_script(WATCH_BUSY)
        open_page(page, f"{server.url}/", "Overview", "Metrics per model")  # warm the server's imports first
        assert metric_values(page)["Memes"] == f"{n_before:,}"

        log = tmp / "precompute.log"
        with open(log, "w") as out:
            started = time.monotonic()
            argv = precompute_argv(memes, db)
            argv[1:3] = ["-c", TIMED_PIPELINE]                      # instead of -m pipeline
            child = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                     env=child_env(), cwd=REPO)
        loads, busy, seen = 0, 0, set()
        try:
            while child.poll() is None and time.monotonic() - started < PRECOMPUTE_BOUND_S:
                path, heading, text = pages[loads % len(pages)]
                page.goto(f"{server.url}/{path}")
                page.get_by_role("heading", name=heading).first.wait_for(timeout=60_000)
                page.get_by_text(text, exact=False).first.wait_for(timeout=60_000)   # busy reruns end here too
                wait_idle(page)
                assert not problems(page), (path, problems(page))
                busy += page.evaluate("() => window.__vlmemesBusy === true")
                if heading == "Overview":
                    seen.add(metric_values(page)["Memes"])
                loads += 1
            rc = child.wait(timeout=max(1.0, PRECOMPUTE_BOUND_S - (time.monotonic() - started)))
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        seconds = time.monotonic() - started
        output = log.read_text()
        assert rc == 0, output[-3000:]
        assert f"{N_NEW} to compute" in output, output[-3000:]
        n_open, waited, longest = re.search(r"WRITER-WAIT n=(\d+) total=([\d.]+) max=([\d.]+)", output).groups()
        print(f"\nprecompute of {N_NEW} memes: {seconds:.1f} s with {loads} page loads meanwhile "
              f"({busy} showed the busy notice); it opened the file {n_open} times and waited {waited} s "
              f"in all for it (longest {longest} s); Overview showed Memes = {sorted(seen)}")
        assert float(waited) < WAIT_BOUND_S, "the dashboard kept the writer waiting"
        assert loads >= 3, "the precompute finished before the pages were exercised"

        # afterwards a reload shows what the file now holds
        n_after, n_ocr = sql(db, "SELECT count(*) FILTER (NOT retired), (SELECT count(*) FROM ocr) FROM memes")[0]
        assert n_after == n_before + N_NEW and n_ocr == n_after
        open_page(page, f"{server.url}/", "Overview", "Metrics per model")
        assert metric_values(page)["Memes"] == f"{n_after:,}"
        assert seen <= {f"{n:,}" for n in range(n_before, n_after + 1)}
        page.screenshot(path=str(ARTIFACTS / "concurrency_overview_after.png"))
        last_run, status = sql(db, "SELECT run_id, status FROM runs ORDER BY run_id DESC LIMIT 1")[0]
        open_page(page, f"{server.url}/runs", "Runs", "Counts per stage")
        chosen = page.get_by_role("combobox", name="Run").first.input_value()
        assert chosen.startswith(f"run {last_run} · {status} · "), chosen

        # idle: no descriptor on the file, and a writer opens it at once (no retry loop)
        wait_idle(page)
        assert held_by(server.proc.pid, db) == []
        t0 = time.monotonic()
        con = duckdb.connect(str(db))
        try:
            con.execute("CREATE TEMP TABLE probe AS SELECT 1").fetchall()
        finally:
            con.close()
        assert time.monotonic() - t0 < 2
        assert not problems(page)
