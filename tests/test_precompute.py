"""The precompute as a whole: the cache key, reruns, --force, --limit, status, runs/failures provenance."""
from __future__ import annotations

import json

import pytest

from pipeline.cli import main
from pipeline.stages.ocr import OcrStage
from pipeline.store import Store


@pytest.fixture
def counted(monkeypatch):
    """Count processed memes and real Tesseract invocations (the real code still runs)."""
    import pytesseract
    calls = {"tesseract": 0, "process": 0}
    real_process, real_tess = OcrStage.process, pytesseract.image_to_data

    def process(self, memes, variant):
        calls["process"] += len(memes)
        return real_process(self, memes, variant)

    def image_to_data(*a, **k):
        calls["tesseract"] += 1
        return real_tess(*a, **k)

    monkeypatch.setattr(OcrStage, "process", process)
    monkeypatch.setattr(pytesseract, "image_to_data", image_to_data)
    return calls


def _ocr(db, memes, *extra):
    return main(["precompute", "--memes", str(memes), "--db", str(db), "--stages", "ocr",
                 "--ocr-engine", "tesseract", *extra])


def test_rerun_computes_nothing_and_force_recomputes(tmp_path, synthetic_memes, counted, capsys):
    db = tmp_path / "c.duckdb"
    assert _ocr(db, synthetic_memes) == 0
    first = dict(counted)
    assert first["process"] == 12 and first["tesseract"] >= 12
    store = Store(db)
    texts = store.query("SELECT m.rel_path, o.text, o.engine FROM ocr o JOIN memes m USING (meme_id)")
    assert len(texts) == 12 and {t[2] for t in texts} == {"tesseract"}
    capsys.readouterr()

    assert _ocr(db, synthetic_memes) == 0
    assert counted == first, "a rerun over an unchanged folder must not touch the engine"
    assert "all 12 results cached, nothing to compute" in capsys.readouterr().out
    counts = json.loads(store.query("SELECT counts FROM runs WHERE run_id = 2")[0][0])
    assert counts["ocr"]["cached"] == 12 and counts["ocr"]["done"] == 0

    assert _ocr(db, synthetic_memes, "--force") == 0
    assert counted["process"] == 24 and counted["tesseract"] > first["tesseract"]
    assert store.query("SELECT count(*) FROM ocr")[0][0] == 12, "--force replaces rows of the same key"


def test_changed_configuration_adds_rows_beside_old_ones(tmp_path, synthetic_memes):
    db = tmp_path / "c.duckdb"
    assert _ocr(db, synthetic_memes, "--limit", "2") == 0
    assert main(["precompute", "--memes", str(synthetic_memes), "--db", str(db), "--stages", "ocr",
                 "--ocr-engine", "craft-tesseract", "--limit", "2"]) == 0
    rows = Store(db).query("SELECT engine, count(*) FROM ocr GROUP BY engine ORDER BY engine")
    assert rows == [("craft-tesseract", 2), ("tesseract", 2)]
    variants = Store(db).query("SELECT stage, name FROM variants ORDER BY name")
    assert variants == [("ocr", "craft-tesseract"), ("ocr", "tesseract")]


def test_limit_processes_first_memes_only(tmp_path, synthetic_memes, counted):
    db = tmp_path / "c.duckdb"
    assert _ocr(db, synthetic_memes, "--limit", "3") == 0
    assert counted["process"] == 3
    assert Store(db).query("SELECT count(*) FROM memes")[0][0] == 12, "the scan still covers the whole folder"


def test_runs_record_provenance(tmp_path, synthetic_memes):
    db = tmp_path / "c.duckdb"
    _ocr(db, synthetic_memes, "--limit", "1")
    run = Store(db).query("SELECT status, args, versions, device, counts, models, finished_at, memes_root FROM runs")[0]
    status, args, versions, device, counts, models, finished, root = run
    assert status == "ok" and finished is not None and root == str(synthetic_memes.resolve())
    assert json.loads(args)["ocr_engine"] == "tesseract"
    assert {"python", "duckdb", "tesseract"} <= set(json.loads(versions))
    assert device.startswith("cpu")
    assert json.loads(counts)["ocr"]["done"] == 1
    assert json.loads(models)["ocr"] == "tesseract"


def test_status_command(tmp_path, synthetic_memes, capsys):
    db = tmp_path / "c.duckdb"
    _ocr(db, synthetic_memes, "--limit", "4")
    capsys.readouterr()
    assert main(["status", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "memes: 12 (6 toxic, 6 non_toxic, 0 label conflicts, 0 retired)" in out
    line = next(l for l in out.splitlines() if l.startswith("ocr"))
    assert line.split()[1] == "4" and "tesseract" in line
    assert "last run: #1 ok" in out


def test_status_on_missing_db_is_a_clear_error(tmp_path, capsys):
    assert main(["status", "--db", str(tmp_path / "nope.duckdb")]) == 2
    assert "no database at" in capsys.readouterr().err


def test_unloadable_model_fails_its_stage_while_others_finish(tmp_path, synthetic_memes, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    db = tmp_path / "c.duckdb"
    code = main(["precompute", "--memes", str(synthetic_memes), "--db", str(db), "--stages", "ocr,clip",
                 "--ocr-engine", "tesseract", "--clip-model", "nobody/no-such-clip-model", "--limit", "2"])
    assert code == 1
    store = Store(db)
    assert store.query("SELECT count(*) FROM ocr")[0][0] == 2
    fails = store.query("SELECT stage, error_type, message FROM failures")
    assert [(s, t) for s, t, _ in fails] == [("clip", "StageLoadError")]
    assert "nobody/no-such-clip-model" in fails[0][2]
    err = capsys.readouterr().err
    assert "[clip] cannot run" in err and len([l for l in err.splitlines() if "cannot run" in l]) == 1
    assert store.query("SELECT status FROM runs")[0][0] == "failed"


def test_cached_rerun_loads_no_model_library(smoke_db, synthetic_memes, tiny_models, copy_db):
    """A rerun over an unchanged folder must not even import torch (the cache answers everything), nor
    recompute the stored metrics (scipy: their fingerprint is unchanged)."""
    import subprocess
    import sys
    db = copy_db(smoke_db)
    args = ["precompute", "--memes", str(synthetic_memes), "--db", str(db),
            "--clip-model", str(tiny_models["clip"]), "--vlm-model", str(tiny_models["qwen"]),
            "--ocr-engine", "tesseract", "--max-new-tokens", "24", "--max-pixels", str(112 * 112),
            "--precision", "fp32", "--device", "cpu"]
    probe = ("import sys; from pipeline.cli import main; code = main(sys.argv[1:]); "
             "print('HEAVY', sorted(m for m in ('torch', 'transformers', 'pytorch_grad_cam', 'cv2', 'scipy') "
             "if m in sys.modules)); "
             "sys.exit(code)")
    out = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "HEAVY []" in out.stdout, out.stdout
    assert out.stdout.count("nothing to compute") == 6          # ocr, views, clip, vlm, cam, faithfulness


def test_each_stage_and_its_model_are_freed_before_the_next_stage(tmp_path, synthetic_memes, tiny_models, monkeypatch):
    """A full run must not hold every model at once (CPU: Qwen 7.5 GB + two CLIPs): a finished stage
    is let go, its model with it, before the next one loads."""
    import weakref

    import torch

    from pipeline import runner
    finished = []                                   # (stage name, weakref to the stage, weakref to its model)
    real_run_stage = runner.run_stage

    def spy(store, stage, *args):
        for name, stage_ref, model_ref in finished:
            assert stage_ref() is None, f"the {name} stage is still referenced when {stage.name} starts"
            assert model_ref is None or model_ref() is None, f"the {name} model is still alive at {stage.name}"
        summary = real_run_stage(store, stage, *args)
        model = stage.model if isinstance(getattr(stage, "model", None), torch.nn.Module) else None
        finished.append((stage.name, weakref.ref(stage), model and weakref.ref(model)))
        return summary
    monkeypatch.setattr(runner, "run_stage", spy)
    code = main(["precompute", "--memes", str(synthetic_memes), "--db", str(tmp_path / "c.duckdb"),
                 "--stages", "clip,vlm,cam", "--limit", "2", "--clip-model", str(tiny_models["clip"]),
                 "--vlm-model", str(tiny_models["qwen"]), "--max-new-tokens", "4", "--max-pixels", str(112 * 112),
                 "--precision", "fp32", "--device", "cpu"])
    assert code == 0
    assert [name for name, _, _ in finished] == ["clip", "vlm", "cam"]
    assert finished[1][2] is not None, "the VLM's model was loaded (the check above saw a real model)"
