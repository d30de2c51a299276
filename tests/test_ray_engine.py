"""`--engine ray`: the same stages on a real local Ray cluster that the tests start (`ray start --head`).

Checked: a Ray run gives the same rows as a local run (all four stages, tiny models) and a rerun with
either engine finds everything cached; a Ray worker SIGKILLed mid-stage is replaced and the run
completes with nothing lost or doubled; a driver SIGKILLed mid-run leaves its written batches, and the
rerun computes only the rest; the run record names the cluster's resources.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from dashboard_helpers import free_port, sql

from pipeline import progress
from pipeline.cli import main

# Ray's token authentication, as a real cluster should have it: the cluster and every driver share a token.
# Set before Ray is imported (it reads the mode once).
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
pytest.importorskip("ray")
REPO = Path(__file__).resolve().parent.parent
RAY = Path(sys.executable).with_name("ray")


@pytest.fixture(scope="module")
def cluster():
    """A one-node Ray cluster on this machine (2 CPUs, a small object store), stopped after the module."""
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))     # short: Ray's socket paths have a length limit
    port = free_port()
    env = dict(os.environ)
    subprocess.run([str(RAY), "start", "--head", "--port", str(port), "--num-cpus", "2", "--num-gpus", "0",
                    "--object-store-memory", str(300 * 2**20), "--include-dashboard", "false",
                    "--temp-dir", str(temp), "--disable-usage-stats"], check=True, env=env, capture_output=True,
                   timeout=180)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(RAY), "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


def precompute_args(memes: Path, db: Path, tiny_models: dict, stages: str = "ocr,clip,vlm,cam") -> list[str]:
    return ["precompute", "--memes", str(memes), "--db", str(db), "--stages", stages,
            "--clip-model", str(tiny_models["clip"]), "--vlm-model", str(tiny_models["qwen"]),
            "--ocr-engine", "tesseract", "--max-new-tokens", "12", "--max-pixels", str(112 * 112),
            "--precision", "fp32", "--device", "cpu"]


def table(db: Path, name: str, cols: str) -> set[tuple]:
    return set(sql(db, f"SELECT {cols} FROM {name}"))


def assert_same_scores(a: Path, b: Path, tol: float = 1e-4) -> None:
    scores = [dict(((m, v), s) for m, v, s in sql(db, "SELECT meme_id, variant_id, score FROM predictions"))
              for db in (a, b)]
    assert scores[0] and scores[0].keys() == scores[1].keys()
    far = {k: (s, scores[1][k]) for k, s in scores[0].items()
           if (s is None) != (scores[1][k] is None) or (s is not None and abs(s - scores[1][k]) >= tol)}
    assert not far, far


def test_a_ray_run_gives_the_rows_of_a_local_run(cluster, tmp_path, synthetic_memes, tiny_models, capsys):
    local, remote = tmp_path / "local.duckdb", tmp_path / "ray.duckdb"
    assert main(precompute_args(synthetic_memes, local, tiny_models) + ["--limit", "4"]) == 0
    assert main(precompute_args(synthetic_memes, remote, tiny_models)
                + ["--limit", "4", "--engine", "ray", "--ray-address", cluster]) == 0
    for name, cols in (("variants", "variant_id, stage, model_id, name"), ("ocr", "meme_id, variant_id, text"),
                       ("predictions", "meme_id, variant_id, label, raw_answer"),
                       ("heatmaps", "meme_id, variant_id, grid_h, grid_w")):
        assert table(local, name, cols) == table(remote, name, cols), name
    # scores: the same up to float summation order (another process may use other threads; a rounded
    # equality fails whenever a score sits on a rounding boundary)
    assert_same_scores(local, remote)
    # the CLIP stage's image embeddings (issue 17): the same keys, the same vectors up to float16 rounding
    embeddings = [{(m, v): e for m, v, e in sql(db, "SELECT meme_id, variant_id, embedding FROM embeddings")}
                  for db in (local, remote)]
    assert len(embeddings[0]) == 4 and embeddings[0].keys() == embeddings[1].keys()
    assert all(max(abs(a - b) for a, b in zip(e, embeddings[1][k])) < 1e-3 for k, e in embeddings[0].items())
    assert sql(remote, "SELECT count(*) FROM failures")[0][0] == 0
    device = sql(remote, "SELECT device FROM runs")[0][0]
    assert f"at {cluster}: 1 node(s), 2 CPU, 0 GPU" in device, device
    capsys.readouterr()
    # the cache keys are the engine's business no more than the rows: either engine finds all cached
    assert main(precompute_args(synthetic_memes, remote, tiny_models) + ["--limit", "4"]) == 0
    assert capsys.readouterr().out.count("nothing to compute") == 4


def many_memes(root: Path, n: int) -> Path:
    from pipeline.devtools.synthetic_memes import write_meme_folder
    write_meme_folder(root, n_toxic=n // 2, n_non_toxic=n - n // 2, seed=7)
    return root


def start_driver(memes: Path, db: Path, cluster: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline", "precompute", "--memes", str(memes), "--db", str(db),
                             "--stages", "ocr", "--ocr-engine", "tesseract", "--engine", "ray", "--ray-address",
                             cluster, *extra], cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_done(db: Path, proc: subprocess.Popen, at_least: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        p = progress.read(db)
        if p is not None and p.stage == "ocr" and p.done >= at_least:
            return
        assert proc.poll() is None, "the run ended before the test could interrupt it"
        time.sleep(0.05)
    raise AssertionError("no progress")


def ray_task_workers() -> list[int]:
    """Pids of Ray worker processes now running one of our OCR tasks (Ray names them ray::<task>)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if cmd.startswith(b"ray::") and b"MapBatches(run_task)" in cmd:
                pids.append(int(proc.name))
    return pids


def test_a_worker_killed_mid_stage_is_replaced_and_nothing_is_lost(cluster, tmp_path):
    memes = many_memes(tmp_path / "memes", 16)
    db = tmp_path / "c.duckdb"
    proc = start_driver(memes, db, cluster, "--ray-workers", "1")
    wait_done(db, proc, 2)
    deadline = time.monotonic() + 30
    while not ray_task_workers() and time.monotonic() < deadline:
        time.sleep(0.05)
    victims = ray_task_workers()
    assert victims, "no Ray worker running an OCR task was found"
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    assert proc.wait(timeout=300) == 0
    assert sql(db, "SELECT count(*), count(DISTINCT meme_id) FROM ocr")[0] == (16, 16)
    assert sql(db, "SELECT count(*) FROM failures")[0][0] == 0
    assert sql(db, "SELECT status FROM runs")[0][0] == "ok"


def test_a_driver_killed_mid_run_leaves_its_batches_and_the_rerun_finishes(cluster, tmp_path):
    memes = many_memes(tmp_path / "memes", 16)
    db = tmp_path / "c.duckdb"
    proc = start_driver(memes, db, cluster, "--ray-workers", "1")
    wait_done(db, proc, 3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    kept = sql(db, "SELECT count(*) FROM ocr")[0][0]
    assert 3 <= kept < 16
    texts_before = dict(sql(db, "SELECT meme_id, text FROM ocr"))
    rerun = start_driver(memes, db, cluster)
    assert rerun.wait(timeout=300) == 0
    assert sql(db, "SELECT count(*), count(DISTINCT meme_id) FROM ocr")[0] == (16, 16)
    assert {k: v for k, v in sql(db, "SELECT meme_id, text FROM ocr") if k in texts_before} == texts_before
    runs = sql(db, "SELECT status, counts FROM runs ORDER BY run_id")
    assert [s for s, _ in runs] == ["abandoned", "ok"]
    assert json.loads(runs[1][1])["ocr"]["done"] == 16 - kept         # only the missing ones were computed
    assert sql(db, "SELECT count(*) FROM failures")[0][0] == 0


def test_a_served_vlm_is_asked_from_many_ray_workers(cluster, tmp_path, tmp_path_factory):
    """The VLM stage on Ray with the served backend: light actors, each asking a real llama-server;
    the rows equal those of a local run against the same server."""
    from llama_server import LlamaServer, require_llama_server, tiny_gguf

    from pipeline.devtools.synthetic_memes import write_meme_folder
    require_llama_server()
    gguf = tiny_gguf(tmp_path_factory)
    memes = tmp_path / "memes"
    write_meme_folder(memes, n_toxic=2, n_non_toxic=2, seed=3, size=(160, 120))
    with LlamaServer(gguf.model, gguf.mmproj, extra_args=["--alias", "tiny", "-np", "2"],
                     log=tmp_path / "server.log") as srv:
        def argv(db: Path, *extra: str) -> list[str]:
            return ["precompute", "--memes", str(memes), "--db", str(db), "--stages", "vlm", "--vlm-backend", "openai",
                    "--vlm-url", srv.url, "--vlm-model", "tiny", "--vlm-random-weights", "--max-new-tokens", "8",
                    "--max-pixels", str(112 * 112), "--vlm-top-logprobs", "400", "--vlm-prefill", "continue", *extra]
        local, remote = tmp_path / "local.duckdb", tmp_path / "ray.duckdb"
        assert main(argv(local)) == 0
        assert main(argv(remote, "--engine", "ray", "--ray-address", cluster, "--ray-workers", "2")) == 0
    cols = "meme_id, variant_id, raw_answer"
    assert table(local, "predictions", cols) == table(remote, "predictions", cols)
    assert_same_scores(local, remote, tol=1e-3)
    assert len(table(remote, "predictions", cols)) == 8                 # 4 memes x 2 prompts
