"""Model-source resolution: offline machines fail a stage in seconds with an actionable message."""
from __future__ import annotations

import time

import pytest

from pipeline import hf
from pipeline.stages.base import StageLoadError


@pytest.fixture
def unreachable_hub(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")     # discard port on loopback: refused at once
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))     # an empty local cache
    hf.hub_reachable.cache_clear()
    yield
    hf.hub_reachable.cache_clear()


def test_hub_id_without_network_or_cache_fails_fast(unreachable_hub):
    t0 = time.monotonic()
    assert hf.hub_reachable() is False
    with pytest.raises(StageLoadError, match="cannot be reached.*hf download nobody/some-model"):
        hf.resolve_source("nobody/some-model")
    assert time.monotonic() - t0 < 10


def test_local_folder_is_used_as_is(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert hf.resolve_source(str(tmp_path)) == str(tmp_path)
    with pytest.raises(StageLoadError, match="no config.json"):
        hf.resolve_source(str(tmp_path.parent))
    with pytest.raises(StageLoadError, match="does not exist"):
        hf.resolve_source(str(tmp_path / "missing"))
