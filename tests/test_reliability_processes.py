"""Reliability, process side: SIGKILL and Ctrl-C in the middle of a stage, kills during DuckDB
writes, two precomputes on one database, and items or batches that raise.

The crash tests run real processes (`python -m pipeline precompute --stages ocr --ocr-engine
tesseract` on synthetic memes; Tesseract takes ~0.5 s a meme, slow enough to interrupt) and look at
the DuckDB file afterwards through read-only connections, as the dashboard would. The item/batch
tests go through the real runner in-process with the real OCR stage. docs/reliability.md has the table.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import bad_inputs
import duckdb
import pytest
from bad_inputs import child_env, precompute_argv

from pipeline import runner
from pipeline.devtools.synthetic_memes import draw_meme, write_meme_folder
from pipeline.stages.ocr import OcrStage
from pipeline.store import Store, StoreError, connect

N_MEMES = 12
SNAPSHOT = {   # everything a run produces, minus what names the run (run ids, times, seconds)
    "memes": "SELECT meme_id, label, label_conflict, rel_path, width, height, format, n_bytes, n_frames, "
             "thumbnail, thumbnail_mime, retired FROM memes ORDER BY meme_id",
    "meme_paths": "SELECT meme_id, rel_path, label FROM meme_paths ORDER BY ALL",
    "variants": "SELECT variant_id, stage, model_id, name, config_hash, stage_version, config, is_smoke "
                "FROM variants ORDER BY ALL",
    "ocr": "SELECT meme_id, variant_id, model_id, config_hash, stage_version, engine, engine_version, text, boxes, "
           "mean_confidence FROM ocr ORDER BY meme_id, variant_id",
    "failures": "SELECT stage, meme_id, path, error_type, message FROM failures ORDER BY ALL",
}


class Child:
    """A `python -m pipeline ...` process in its own session (so a Ctrl-C can go to its whole group)."""

    def __init__(self, argv: list[str], logs: Path):
        self.out_path, self.err_path = logs.with_suffix(".out"), logs.with_suffix(".err")
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=err, env=child_env(), cwd=bad_inputs.REPO,
                                         start_new_session=True)
        self.pid = self.proc.pid

    def wait(self, timeout: float = 180) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"pid {self.pid} did not finish in {timeout} s:\n{self.err[-3000:]}")

    def ctrl_c(self) -> None:
        """What a terminal does on Ctrl-C: SIGINT to the whole foreground group (Tesseract children too)."""
        os.killpg(self.pid, signal.SIGINT)

    @property
    def out(self) -> str:
        return self.out_path.read_text(encoding="utf-8")

    @property
    def err(self) -> str:
        return self.err_path.read_text(encoding="utf-8")


def count_rows(db: Path, table: str = "ocr") -> int | None:
    """Rows in `table`, read the way the dashboard reads (short read-only connection); None if not readable yet."""
    if not db.exists():
        return None
    try:
        con = connect(db, read_only=True, retry_seconds=2)
    except StoreError:
        return None
    try:
        return con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
    except duckdb.CatalogException:
        return None
    finally:
        con.close()


def wait_for_rows(db: Path, n: int, child: Child, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            pytest.fail(f"the run ended (rc {child.proc.returncode}) before {n} rows were written:\n{child.err[-3000:]}")
        got = count_rows(db)
        if got is not None and got >= n:
            return got
        time.sleep(0.1)
    pytest.fail(f"fewer than {n} rows after {timeout} s")


def snapshot(db: Path) -> dict[str, list[tuple]]:
    store = Store(db, create=False)
    return {table: store.query(sql) for table, sql in SNAPSHOT.items()}


def runs(db: Path) -> list[tuple]:
    return Store(db, create=False).query("SELECT run_id, status, finished_at IS NOT NULL, counts FROM runs ORDER BY run_id")


@pytest.fixture(scope="module")
def memes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("slow-memes")
    write_meme_folder(root, n_toxic=N_MEMES // 2, n_non_toxic=N_MEMES // 2, seed=3, size=(320, 240))
    return root


@pytest.fixture(scope="module")
def uninterrupted(memes, tmp_path_factory) -> Path:
    """The reference: the same precompute, never interrupted."""
    db = tmp_path_factory.mktemp("reference") / "cache.duckdb"
    child = Child(precompute_argv(memes, db), db)
    assert child.wait() == 0, child.err[-3000:]
    return db


# ------------------------------------------------------------------------------- SIGKILL
def test_sigkill_mid_stage_then_rerun_equals_uninterrupted_run(memes, uninterrupted, tmp_path):
    db = tmp_path / "cache.duckdb"
    child = Child(precompute_argv(memes, db), tmp_path / "killed")
    wait_for_rows(db, 3, child)
    child.proc.kill()                      # SIGKILL: no handler, no cleanup, no summary
    child.wait()
    kept = count_rows(db)
    assert 3 <= kept < N_MEMES, "the kill must land in the middle of the OCR stage"
    assert runs(db) == [(1, "running", False, "{}")], "a killed run has no finished_at and no counts"

    rerun = Child(precompute_argv(memes, db), tmp_path / "rerun")
    assert rerun.wait() == 0, rerun.err[-3000:]                 # the run lock died with the killed process
    assert f"{N_MEMES - kept} to compute, {kept} cached" in rerun.out
    assert snapshot(db) == snapshot(uninterrupted), "kill + rerun must give exactly the uninterrupted contents"
    (_, status, finished, counts), = runs(db)[1:]
    assert (status, finished, json.loads(counts)["ocr"]["done"]) == ("ok", True, N_MEMES - kept)
    assert runs(db)[0][:3] == (1, "abandoned", False), "the next run marks the killed one abandoned"


WRITER = """
import sys
from pipeline.store import Store, now
db, i = sys.argv[1], int(sys.argv[2])
store = Store(db)
while True:   # batches of 50 rows + 1 failure row, each batch one transaction, as the runner writes them
    rows = [dict(meme_id=f"m{i + k:07d}", variant_id="v", model_id="x", config_hash="c", stage_version="1",
                 engine="x", engine_version="x", text="мем " * 50, boxes="[]", mean_confidence=0.5,
                 seconds=0.0, run_id=1, created_at=now()) for k in range(50)]
    store.save_results("ocr", rows, 1, [dict(stage="ocr", meme_id=f"m{i:07d}", path="p", error_type="E", message="m")])
    i += 50
    print(i, flush=True)
"""


def test_sigkill_during_duckdb_writes_loses_at_most_the_open_batch(tmp_path):
    """Kill a process that does nothing but write batches (so the kill lands inside DuckDB: in a
    transaction, a commit or a checkpoint), three times; each time the file opens and holds whole batches."""
    db = tmp_path / "writes.duckdb"
    Store(db)
    before = 0
    for delay in (0.0, 0.13, 0.29):
        child = Child([bad_inputs.PYTHON or sys.executable, "-c", WRITER, str(db), str(before)], tmp_path / f"w{delay}")
        deadline = time.monotonic() + 60
        while len(child.out.split()) < 2 and time.monotonic() < deadline:   # a few batches written
            assert child.proc.poll() is None, child.err[-2000:]
            time.sleep(0.02)
        time.sleep(delay)
        child.proc.kill()
        child.wait()
        rows, failures = count_rows(db, "ocr"), count_rows(db, "failures")
        assert rows is not None, "the database must open after a kill"
        assert rows % 50 == 0 and failures == rows // 50, f"a half-written batch: {rows} rows, {failures} failures"
        assert rows > before, "the writer made no progress before the kill"
        before = rows
    store = Store(db)                      # and it is still writable
    store.record_failures(2, [dict(stage="ocr", message="after the kills")])
    assert count_rows(db, "failures") == before // 50 + 1


# ------------------------------------------------------------------------------- Ctrl-C
def test_ctrl_c_stops_after_the_current_batch_with_a_summary(memes, tmp_path):
    db = tmp_path / "cache.duckdb"
    child = Child(precompute_argv(memes, db), tmp_path / "ctrl-c")
    seen = wait_for_rows(db, 2, child)
    time.sleep(0.2)                        # most likely inside a Tesseract call now
    child.ctrl_c()
    assert child.wait(60) == 130
    assert "Interrupted: finishing the current batch" in child.err
    assert "done  cached  failed" in child.out and "run 1: interrupted" in child.out
    (_, status, finished, counts), = runs(db)
    kept = count_rows(db)
    assert status == "interrupted" and finished
    assert seen <= kept < N_MEMES
    assert json.loads(counts)["ocr"]["done"] == kept, "the summary counts exactly the rows written"
    # The Tesseract child got the SIGINT too: a meme it was reading must not be blamed as a failure.
    assert count_rows(db, "failures") == 0, Store(db, create=False).query("SELECT * FROM failures")


def test_second_ctrl_c_stops_at_once_and_the_file_stays_usable(memes, tmp_path):
    db = tmp_path / "cache.duckdb"
    child = Child(precompute_argv(memes, db), tmp_path / "ctrl-c-twice")
    wait_for_rows(db, 1, child)
    child.ctrl_c()
    time.sleep(0.05)
    child.ctrl_c()
    assert child.wait(60) == 130
    assert "stopped." in child.err
    (_, status, finished, _), = runs(db)
    assert status == "interrupted" and finished
    assert count_rows(db) < N_MEMES
    assert count_rows(db, "failures") == 0


# ------------------------------------------------------------------------------- two at once
def test_two_precomputes_on_one_database_second_refuses(memes, uninterrupted, tmp_path):
    db = tmp_path / "cache.duckdb"
    a = Child(precompute_argv(memes, db), tmp_path / "a")       # started together: one wins the lock
    b = Child(precompute_argv(memes, db), tmp_path / "b")
    deadline = time.monotonic() + 60
    while a.proc.poll() is None and b.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    loser = a if a.proc.poll() is not None else b
    first = b if loser is a else a
    assert loser.proc.returncode == 2, (loser.err[-2000:], first.err[-2000:])
    assert first.proc.poll() is None, "the other one goes on"
    assert "error: another precompute (" in loser.err and f"is writing to {db}" in loser.err

    wait_for_rows(db, 2, first)                                   # mid-run: the refusal names the holder
    t0 = time.monotonic()
    c = Child(precompute_argv(memes, db), tmp_path / "c")
    assert c.wait(60) == 2
    assert f"another precompute (pid {first.pid}) is writing to {db}" in c.err
    assert time.monotonic() - t0 < 20, "the refusal must be immediate, not after waiting for the lock"

    assert first.wait() == 0, first.err[-3000:]
    assert [r[:2] for r in runs(db)] == [(1, "ok")], "refused runs write no run rows"
    assert snapshot(db) == snapshot(uninterrupted), "and nothing else either"


# ------------------------------------------------------------------------------- items that raise
@pytest.fixture
def five_memes(tmp_path) -> Path:
    """Five captioned memes of distinct widths (240..256 px), so a patched reader can pick one out."""
    root = tmp_path / "memes"
    for i in range(5):
        folder = root / ("Негативно" if i % 2 else "Нейтрально")
        folder.mkdir(parents=True, exist_ok=True)
        draw_meme("КОГДА ПРИШЁЛ НА РАБОТУ", None, size=(240 + 4 * i, 180), seed=i).save(folder / f"мем {i}.png")
    return root


def _precompute(root: Path, db: Path, stage: OcrStage, before_stage=None) -> int:
    def build(name: str) -> OcrStage:
        if before_stage:
            before_stage()                 # runs after the scan, before the stage (a file can vanish here)
        return stage
    return runner.precompute(root, db, ["ocr"], build, args={}, device="cpu")


def test_an_item_that_raises_fails_alone(five_memes, tmp_path, monkeypatch):
    """Two real per-item problems: a file deleted after the scan, and a MemoryError on one image."""
    db = tmp_path / "cache.duckdb"
    real_read = OcrStage.read

    def read(self, image):
        if image.width == 248:
            raise MemoryError("cannot allocate 2.1 GiB for the detector input")
        return real_read(self, image)
    monkeypatch.setattr(OcrStage, "read", read)
    gone = five_memes / "Нейтрально" / "мем 4.png"
    code = _precompute(five_memes, db, OcrStage(engine="tesseract"), before_stage=gone.unlink)
    assert code == 1
    store = Store(db, create=False)
    failures = store.query("SELECT stage, path, error_type, message FROM failures ORDER BY path, stage")
    assert [f[:3] for f in failures] == [("ocr", "Нейтрально/мем 2.png", "MemoryError"),
                                         ("ocr", "Нейтрально/мем 4.png", "FileNotFoundError"),
                                         ("scan", "Нейтрально/мем 4.png", "FileNotFoundError")]
    assert "cannot allocate 2.1 GiB" in failures[0][3] and "No such file" in failures[1][3]
    assert failures[2][3].startswith("thumbnail failed: ")
    assert sorted(r[0] for r in store.query("SELECT rel_path FROM ocr JOIN memes USING (meme_id)")) == [
        "Негативно/мем 1.png", "Негативно/мем 3.png", "Нейтрально/мем 0.png"]
    (_, status, _, counts), = runs(db)
    assert status == "failed" and json.loads(counts)["ocr"] | {"seconds": 0} == dict(
        model="tesseract", done=3, cached=0, failed=2, seconds=0, error=None)


def test_a_batch_that_raises_fails_that_batch_and_is_retried_next_run(five_memes, tmp_path, monkeypatch):
    db = tmp_path / "cache.duckdb"
    real_process = OcrStage.process

    def process(self, memes, variant):
        if any(m.rel_path == "Негативно/мем 3.png" for m in memes):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return real_process(self, memes, variant)
    monkeypatch.setattr(OcrStage, "process", process)
    stage = OcrStage(engine="tesseract")
    stage.batch_size = 2                   # batches (sorted by path): [Нег/1, Нег/3], [Ней/0, Ней/2], [Ней/4]
    assert _precompute(five_memes, db, stage) == 1
    store = Store(db, create=False)
    assert store.query("SELECT path, error_type, message FROM failures ORDER BY path") == [
        ("Негативно/мем 1.png", "RuntimeError", "CUDA error: an illegal memory access was encountered"),
        ("Негативно/мем 3.png", "RuntimeError", "CUDA error: an illegal memory access was encountered")]
    assert count_rows(db) == 3

    monkeypatch.setattr(OcrStage, "process", real_process)
    assert _precompute(five_memes, db, OcrStage(engine="tesseract")) == 0, "failed items are retried"
    assert count_rows(db) == 5
    assert json.loads(runs(db)[1][3])["ocr"] | {"seconds": 0} == dict(
        model="tesseract", done=2, cached=3, failed=0, seconds=0, error=None)


def test_failures_caused_by_ctrl_c_are_not_recorded(five_memes, tmp_path, monkeypatch):
    """In-process Ctrl-C while an item is being read, and that item fails (as Tesseract does when the
    SIGINT reaches it): the run stops after the batch, the item is not blamed, a rerun computes it."""
    db = tmp_path / "cache.duckdb"
    real_read = OcrStage.read

    def read(self, image):
        if image.width == 248:             # Нейтрально/мем 2.png, 4th in path order
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)                # let the handler run
            raise RuntimeError("tesseract was killed by SIGINT")
        return real_read(self, image)
    monkeypatch.setattr(OcrStage, "read", read)
    assert _precompute(five_memes, db, OcrStage(engine="tesseract")) == 130
    assert count_rows(db, "failures") == 0
    assert count_rows(db) == 3
    assert runs(db)[0][1] == "interrupted"
    monkeypatch.setattr(OcrStage, "read", real_read)
    assert _precompute(five_memes, db, OcrStage(engine="tesseract")) == 0
    assert count_rows(db) == 5 and count_rows(db, "failures") == 0
