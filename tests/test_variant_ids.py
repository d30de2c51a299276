"""The cache keys stay what they were: variant ids of every stage, for 153 option combinations, equal the
ids recorded from the code before the stage refactor (tests/data/variant_ids.json, tests/variant_snapshot.py)."""
from __future__ import annotations

import json

import pytest
from variant_snapshot import COMBOS, RECORDING, build, snapshot


def test_recording_covers_every_combination():
    recorded = json.loads(RECORDING.read_text(encoding="utf-8"))
    assert {k: len(v) for k, v in recorded.items()} == {k: len(v) for k, v in COMBOS.items()}


@pytest.mark.parametrize("stage", sorted(COMBOS))
def test_variant_ids_equal_the_recorded_ones(stage):
    recorded = json.loads(RECORDING.read_text(encoding="utf-8"))[stage]
    now = snapshot()[stage]
    assert [r["options"] for r in now] == [r["options"] for r in recorded]
    changed = [(r["options"], name) for r, old in zip(now, recorded) for name in set(r["variants"]) | set(old["variants"])
               if r["variants"].get(name) != old["variants"].get(name)]
    assert not changed, f"{len(changed)} cache keys changed, e.g. {changed[:3]}"


def test_a_changed_setting_changes_the_key():
    """The comparison can fail: one setting more gives other ids."""
    base = build("vlm", COMBOS["vlm"][0])
    other = build("vlm", {**COMBOS["vlm"][0], "max_new_tokens": 25})
    assert {v.variant_id for v in base.variants()}.isdisjoint(v.variant_id for v in other.variants())


@pytest.mark.parametrize("stage, options", [("vlm", {**COMBOS["vlm"][0], "prompt_versions": ["label-first-ocr-v1"]}),
                                            ("clip", {**COMBOS["clip"][0], "prompt_sets": ["ru-ocr-v1+pad"]})])
def test_a_variant_that_reads_ocr_text_is_keyed_by_its_ocr_source(stage, options):
    """By construction (Stage.variants): every variant that reads OCR text names the OCR variant it read,
    so another OCR engine gives it another cache key (label-first-ocr-v1 did not record it before)."""
    keys = []
    for source in ("ocr-a", "ocr-b"):
        s = build(stage, options)
        s.ocr_source = source
        (v,) = [v for v in s.variants() if s.table_of(v) == s.table]     # not CLIP's image embedding
        assert v.reads_ocr and v.config["ocr_source"] == source
        keys.append(v.variant_id)
    assert keys[0] != keys[1]
