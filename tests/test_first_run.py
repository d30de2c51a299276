"""The first run on a fresh machine: the built-in demo set, and the notices when models cannot be loaded.

The main command (`vlmemes start`, what scripts/main.sh runs after the setup) is run for real in a
fresh project folder with an empty memes_project/memes: it draws the demo set outside
memes_project/, precomputes it (real Tesseract OCR; the model stages fail to load offline, as on a
machine without the hub) and the dashboard then says on every page that misses a model which one and
the exact commands that fix it, instead of a refill command that would fail again.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from dashboard_helpers import PAGES, all_text, app_opener, free_port, sql, wait_healthy

from pipeline import demo

REPO = Path(__file__).resolve().parent.parent
MISSING_CLIP = "nonexistent-org/no-such-clip"
MISSING_VLM = "nonexistent-org/no-such-vlm"


def digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_demo_set_is_deterministic_and_labelled(tmp_path):
    a, b = demo.write_demo(tmp_path / "a"), demo.write_demo(tmp_path / "b")
    da, db_ = digests(a), digests(b)
    assert da == db_, "the demo set must be byte-for-byte the same on every machine"
    assert len(da) == 2 * demo.N_PER_LABEL == 24
    assert sum(k.startswith("Негативно/") for k in da) == demo.N_PER_LABEL
    assert sum(k.startswith("Нейтрально/") for k in da) == demo.N_PER_LABEL
    before = {p: p.stat().st_mtime_ns for p in a.rglob("*") if p.is_file()}
    demo.write_demo(a)                                  # complete: left as it is
    assert before == {p: p.stat().st_mtime_ns for p in a.rglob("*") if p.is_file()}
    assert demo.DEMO_DIR.parts[0] != "memes_project"


def run_start(project: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    env.pop("VLMEMES_DB", None)
    return subprocess.run([sys.executable, "-m", "pipeline", "start", "--no-dashboard", *args], cwd=project,
                          env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def demo_project(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """A fresh project folder with an empty memes_project/memes, after the main command ran in it."""
    project = tmp_path_factory.mktemp("fresh")
    (project / "memes_project" / "memes").mkdir(parents=True)
    (project / "memes_project" / "memes" / "README.md").write_text("put memes here")
    done = run_start(project, "--limit", "4", "--ocr-engine", "tesseract",
                     "--clip-model", MISSING_CLIP, "--vlm-model", MISSING_VLM)
    return project, done


def test_main_command_runs_the_demo_end_to_end(demo_project):
    project, done = demo_project
    out = done.stdout + done.stderr
    assert "this is the DEMO" in done.stdout and "memes_project/memes/Негативно/" in done.stdout, out
    db = project / demo.DEMO_DB
    assert db.is_file() and (project / demo.DEMO_DIR / "Негативно").is_dir(), out
    assert not any((project / "memes_project" / "memes").rglob("*.png")), "the demo must not go into memes_project"
    assert sql(db, "SELECT count(*) FROM memes")[0][0] == 24
    assert sql(db, "SELECT count(*) FROM ocr WHERE text <> ''")[0][0] == 4          # --limit 4, real Tesseract
    args = json.loads(sql(db, "SELECT args FROM runs")[0][0])
    assert args["demo"] is True
    stages = {s for (s,) in sql(db, "SELECT stage FROM failures WHERE meme_id IS NULL")}
    assert stages == {"clip", "vlm", "cam"}, out                   # models missing: recorded, not silently dropped
    assert done.returncode == 1 and "the dashboard shows what is cached" in done.stdout


def test_own_memes_are_not_replaced_by_the_demo(tmp_path):
    from pipeline.devtools.synthetic_memes import write_meme_folder
    project = tmp_path / "project"
    write_meme_folder(project / "memes_project" / "memes", n_toxic=1, n_non_toxic=1, seed=5)
    done = run_start(project, "--stages", "ocr", "--ocr-engine", "tesseract", "--db", "data/own.duckdb",
                     timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "DEMO" not in done.stdout and not (project / demo.DEMO_DIR).exists()
    assert sql(project / "data/own.duckdb", "SELECT count(*) FROM memes")[0][0] == 2


def open_app(monkeypatch, db: Path):
    return app_opener(monkeypatch)(db)


def test_every_page_that_misses_a_model_says_which_and_the_fix(demo_project, monkeypatch):
    project, _ = demo_project
    at = open_app(monkeypatch, project / demo.DEMO_DB)
    needs = {"": {"clip", "vlm", "cam"}, "errors": {"clip", "vlm"}, "disagreement": {"clip", "vlm"},
             "calibration": {"clip", "vlm"}, "label-issues": {"clip", "vlm"}, "slices": {"clip", "vlm"},
             "map": {"clip"}, "heatmaps": {"cam"}, "modality": {"clip", "vlm"}, "faithfulness": {"cam", "vlm"},
             "meme": {"clip", "vlm", "cam"}, "runs": set()}
    for page, path, *_ in PAGES:
        at.query_params.clear()
        at.switch_page(page)
        at.run()
        assert not at.exception, (page, [e.value for e in at.exception])
        text = all_text(at)
        assert "This is the demo: 24 synthetic memes" in text, page          # the demo is said on every page
        codes = "\n".join(str(c.value) for c in at.code)
        if needs[path]:
            assert "could not be loaded" in text, page
            rerun = next(line for line in codes.splitlines() if line.startswith("scripts/main.sh"))
            if needs[path] & {"clip", "cam"}:
                assert f"hf download {MISSING_CLIP} --local-dir models/no-such-clip" in codes, page
                assert "--clip-model models/no-such-clip" in rerun, page
            if "vlm" in needs[path]:
                assert f"hf download {MISSING_VLM} --local-dir models/no-such-vlm" in codes, page
                assert "--vlm-model models/no-such-vlm" in rerun, page
            assert "--stages clip" not in codes, (page, "a refill command that would fail again")
        else:
            assert "could not be loaded" not in text, page


def test_notice_goes_once_the_model_stage_has_results(smoke_db, copy_db, monkeypatch):
    """A later run that computed the stage clears the notice: only the latest attempt counts."""
    from pipeline.store import Store
    db = copy_db(smoke_db)
    store = Store(db)
    run = store.start_run("precompute", {"clip_model": MISSING_CLIP}, None, {}, "cpu", None)
    store.record_failures(run, [dict(stage="clip", error_type="StageLoadError", message="no such model")])
    store.update_run(run, status="failed")
    at = open_app(monkeypatch, db)
    assert "could not be loaded: CLIP" in all_text(at)
    last = sql(db, "SELECT max(run_id) FROM runs")[0][0]
    from dashboard_helpers import write
    write(db, "UPDATE predictions SET run_id = ? WHERE stage = 'clip'", [last + 1])
    at.run()
    assert "could not be loaded" not in all_text(at)
    assert "This is the demo" not in all_text(at)


def test_start_opens_the_dashboard_on_the_demo_cache(demo_project):
    """`vlmemes start` ends by becoming the dashboard on the demo cache (here: headless, then stopped)."""
    project, _ = demo_project
    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO), STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    log = project / "start.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline", "start", "--stages", "ocr", "--limit", "4",
                                 "--ocr-engine", "tesseract", "--headless", "--port", str(port),
                                 "--address", "127.0.0.1"], cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, log, timeout=180)
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).status == 200
        text = log.read_text()
        assert "all 4 results cached" in text and "this is the DEMO" in text, text
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
        assert b"streamlit" in cmdline and str(demo.DEMO_DB).encode() in cmdline, "start must exec the dashboard"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
