"""The runner's contract with any stage, on fake stages that compute nothing (milliseconds per test):
batches, a wrong number of results, an item that raises, Ctrl-C, OCR text handed to a stage that reads it,
and a cached rerun that calls no stage at all. Real DuckDB file, real scan of a folder of tiny PNGs."""
from __future__ import annotations

import os
import signal

import duckdb
import pytest
from PIL import Image

from pipeline import runner
from pipeline.stages.base import MemeInput, Stage, Variant


def tiny_memes(root, n_toxic: int = 4, n_neutral: int = 3):
    for folder, n in (("Негативно", n_toxic), ("Нейтрально", n_neutral)):
        (root / folder).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (8, 8), (i * 30, len(folder), 7)).save(root / folder / f"{i}.png")
    return root


class FakeOcr(Stage):
    name, table, version = "ocr", "ocr", "1"
    provides_ocr_text = True

    def __init__(self):
        self.calls = 0

    def row_columns(self, variant):
        return dict(engine=variant.model_id)

    def make_variants(self):
        return [Variant(stage="ocr", model_id="fake-ocr", name="fake-ocr")]

    def process(self, memes, variant):
        self.calls += 1
        return [dict(engine_version="0", text=f"caption of {m.rel_path}", boxes="[]", mean_confidence=1.0)
                for m in memes]


class FakeJudge(Stage):
    """A prediction stage; `behaviour(batch_index, memes)` may change what process returns."""
    name, table, version = "clip", "predictions", "1"

    def __init__(self, batch_size=3, behaviour=None, needs_ocr_text=False):
        self.batch_size, self.behaviour, self.needs_ocr_text = batch_size, behaviour, needs_ocr_text
        self.batches: list[list[str]] = []
        self.seen_text: dict[str, str | None] = {}

    def make_variants(self):
        return [Variant(stage="clip", model_id="fake-judge", name="fake-v1", reads_ocr=self.needs_ocr_text)]

    def row_columns(self, variant):
        return dict(stage=variant.stage, prompt_version=variant.name, is_smoke=variant.is_smoke)

    def process(self, memes: list[MemeInput], variant):
        self.batches.append([m.rel_path for m in memes])
        self.seen_text.update({m.rel_path: m.ocr_text for m in memes})
        out = [dict(label="toxic", score=0.9, logits={"toxic": 1.0, "non_toxic": 0.0}) for _ in memes]
        if self.behaviour is not None:
            out = self.behaviour(len(self.batches) - 1, memes, out)
        return out


def run(tmp_path, judge: FakeJudge, ocr: FakeOcr | None = None, stages=("clip",)):
    ocr = ocr or FakeOcr()
    build = {"ocr": ocr, "clip": judge}.__getitem__
    code = runner.precompute(tmp_path / "memes", tmp_path / "c.duckdb", list(stages), build, {}, device="cpu")
    return code, duckdb.connect(str(tmp_path / "c.duckdb"), read_only=True)


@pytest.fixture(autouse=True)
def no_metrics_summary(monkeypatch):
    """The metrics summary (scipy, tested in test_dashboard_analysis) is not the runner's contract."""
    monkeypatch.setattr(runner.summary, "write", lambda store, run_id: 0)


@pytest.fixture
def memes(tmp_path):
    return tiny_memes(tmp_path / "memes")


def test_batches_are_cut_by_the_stage_batch_size_and_every_result_is_stored(memes, tmp_path):
    judge = FakeJudge(batch_size=3)
    code, con = run(tmp_path, judge)
    assert code == 0 and [len(b) for b in judge.batches] == [3, 3, 1]
    assert con.execute("SELECT count(*), min(stage), min(prompt_version) FROM predictions").fetchall() == [(7, "clip", "fake-v1")]


def test_a_wrong_number_of_results_fails_that_batch_only(memes, tmp_path):
    judge = FakeJudge(batch_size=3, behaviour=lambda i, memes, out: out[:-1] if i == 1 else out)
    code, con = run(tmp_path, judge)
    assert code == 1
    assert con.execute("SELECT count(*) FROM predictions").fetchall() == [(4,)]
    failed = con.execute("SELECT path, message FROM failures WHERE stage = 'clip' ORDER BY path").fetchall()
    assert [p for p, _ in failed] == sorted(judge.batches[1])
    assert all("returned 2 results for 3 memes" in m for _, m in failed)


def test_an_item_that_raises_is_recorded_with_its_path_and_the_rest_is_kept(memes, tmp_path):
    def one_bad(i, memes, out):
        return [ValueError("unreadable caption") if m.rel_path.endswith("Нейтрально/1.png") else o
                for m, o in zip(memes, out)]
    code, con = run(tmp_path, FakeJudge(behaviour=one_bad))
    assert code == 1
    assert con.execute("SELECT count(*) FROM predictions").fetchall() == [(6,)]
    assert con.execute("SELECT path, error_type, message FROM failures").fetchall() == [
        ("Нейтрально/1.png", "ValueError", "unreadable caption")]
    status = con.execute("SELECT status FROM runs").fetchall()
    con.close()
    code, con = run(tmp_path, FakeJudge())                  # the rerun computes only the failed meme
    assert code == 0 and con.execute("SELECT count(*) FROM predictions").fetchall() == [(7,)]
    assert status == [("failed",)]


def test_ctrl_c_finishes_the_batch_keeps_it_and_stops(memes, tmp_path):
    def interrupt(i, memes, out):
        if i == 1:
            os.kill(os.getpid(), signal.SIGINT)          # the first Ctrl-C: finish this batch, then stop
        return out
    judge = FakeJudge(batch_size=2, behaviour=interrupt)
    code, con = run(tmp_path, judge)
    assert code == 130 and len(judge.batches) == 2
    assert con.execute("SELECT count(*) FROM predictions").fetchall() == [(4,)]
    assert con.execute("SELECT status FROM runs").fetchall() == [("interrupted",)]
    assert con.execute("SELECT count(*) FROM failures").fetchall() == [(0,)]


def test_ocr_text_reaches_a_stage_that_reads_it_and_keys_its_variant(memes, tmp_path):
    ocr, judge = FakeOcr(), FakeJudge(needs_ocr_text=True)
    code, con = run(tmp_path, judge, ocr, stages=("ocr", "clip"))
    assert code == 0
    assert judge.seen_text and all(text == f"caption of {path}" for path, text in judge.seen_text.items())
    (ocr_variant,), = con.execute("SELECT variant_id FROM variants WHERE stage = 'ocr'").fetchall()
    (config,), = con.execute("SELECT config FROM variants WHERE stage = 'clip'").fetchall()
    assert ocr_variant in config and judge.ocr_source == ocr_variant


def test_a_cached_rerun_calls_no_stage(memes, tmp_path):
    run(tmp_path, FakeJudge(), stages=("ocr", "clip"))[1].close()
    ocr, judge = FakeOcr(), FakeJudge()
    code, con = run(tmp_path, judge, ocr, stages=("ocr", "clip"))
    assert code == 0 and ocr.calls == 0 and judge.batches == []
    counts = con.execute("SELECT counts FROM runs ORDER BY run_id DESC LIMIT 1").fetchall()[0][0]
    assert '"cached": 7' in counts and '"done": 0' in counts
