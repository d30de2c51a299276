"""Shared fixtures: synthetic memes, tiny random checkpoints, and caches built by the real pipeline.

`smoke_db` runs the real `python -m pipeline precompute` code (all four stages) with tiny
random-weight models on synthetic memes, once per test session; dashboard and export tests read it.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")
# Tiny models: thread start-up costs more than the arithmetic, so one thread is much faster.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parent.parent
SHARED_MEMES = REPO.parent / "shared" / "memes"


@pytest.fixture(scope="session")
def synthetic_memes(tmp_path_factory) -> Path:
    """A labelled folder of synthetic memes with known captions (6 toxic, 6 non_toxic)."""
    from pipeline.devtools.synthetic_memes import write_meme_folder
    root = tmp_path_factory.mktemp("memes")
    write_meme_folder(root, n_toxic=6, n_non_toxic=6, seed=0)
    return root


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """Tiny random CLIP, SigLIP and Qwen2.5-VL checkpoints, saved with save_pretrained."""
    from pipeline.devtools.__main__ import tiny_models as build
    return build(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def smoke_db(tmp_path_factory, synthetic_memes, tiny_models) -> Path:
    """A cache built by the real pipeline, every stage, with tiny random models (a smoke run)."""
    from pipeline.cli import main
    db = tmp_path_factory.mktemp("smoke") / "smoke.duckdb"
    code = main(["precompute", "--memes", str(synthetic_memes), "--db", str(db),
                 "--clip-model", str(tiny_models["clip"]), "--vlm-model", str(tiny_models["qwen"]),
                 "--ocr-engine", "tesseract", "--max-new-tokens", "24", "--max-pixels", str(112 * 112),
                 "--precision", "fp32", "--device", "cpu"])
    assert code == 0, "the smoke precompute failed"
    return db


@pytest.fixture
def empty_db(tmp_path) -> Path:
    """A cache with the schema and nothing in it."""
    from pipeline.store import Store
    db = tmp_path / "empty.duckdb"
    Store(db)
    return db


@pytest.fixture
def copy_db(tmp_path):
    """Copy a cache to a fresh folder (so a test may write to or move it)."""
    def _copy(src: Path, name: str = "copy.duckdb") -> Path:
        dst = tmp_path / name
        shutil.copy(src, dst)
        return dst
    return _copy


@pytest.fixture(scope="session")
def shared_memes() -> Path:
    if not SHARED_MEMES.is_dir():
        pytest.skip("../shared/memes is not present on this machine")
    return SHARED_MEMES


# ----------------------------------------------------------------------------- markers
# Every test gets the markers of what it touches, so `pytest -m "not browser and not process and not slow"`
# runs the fast part in seconds (markers are declared in pyproject.toml):
#   browser  its body drives Chromium (dashboard_helpers.chromium)
#   process  its body starts another process: a streamlit server (serve), the CLI or a script in a
#            subprocess, a process it kills
#   slow     it needs a real pipeline run, tiny models, the real memes, real OCR or a large synthetic cache
_SLOW_FIXTURES = {"smoke_db", "tiny_models", "synthetic_memes", "shared_memes", "dashboard_db", "hostile_db",
                  "hostile_report", "large_db"}
_PROCESS_CALLS = ("serve(", "subprocess.", "Popen(", "run_cli(", "os.kill(", "Process(", "Child(")
_SLOW_CALLS = ("OcrStage(", "REAL_MEMES", "synth_db(", "build_synth(", "write_meme_folder(")   # real OCR, real memes, big caches


def _spawning_helpers(module) -> tuple[str, ...]:
    """Calls `name(` of the module-level helpers of a test module whose own body starts a process."""
    import inspect
    names = []
    for name, obj in vars(module).items():
        if inspect.isfunction(obj) and not name.startswith("test_") and obj.__module__ == module.__name__:
            try:
                if any(call in inspect.getsource(obj) for call in _PROCESS_CALLS):
                    names.append(f"{name}(")
            except (OSError, TypeError):
                pass
    return tuple(names)


def pytest_collection_modifyitems(config, items):
    import inspect
    helpers: dict[str, tuple[str, ...]] = {}
    for item in items:
        sources = [item.function]
        for defs in getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {}).values():
            sources += [d.func for d in defs if REPO in Path(inspect.getfile(d.func)).resolve().parents]
        try:
            source = "\n".join(inspect.getsource(f) for f in sources)
        except (OSError, TypeError, AttributeError):
            source = ""
        module = getattr(item, "module", None)
        if module is not None and module.__name__ not in helpers:
            helpers[module.__name__] = _spawning_helpers(module)
        calls = _PROCESS_CALLS + (helpers.get(module.__name__, ()) if module is not None else ())
        if "chromium(" in source:
            item.add_marker(pytest.mark.browser)
        if any(call in source for call in calls):
            item.add_marker(pytest.mark.process)
        if _SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or any(call in source for call in _SLOW_CALLS):
            item.add_marker(pytest.mark.slow)
