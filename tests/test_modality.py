"""pipeline/modality.py: the three-way table, the driver shares and the paired view tests equal counts made
independently, meme by meme, from the answers."""
from __future__ import annotations

import random
from collections import Counter

import pytest
from scipy.stats import binomtest

from pipeline import modality
from pipeline.views import CAPTION_ONLY, CAPTION_REMOVED, FULL

ANSWERS = ("toxic", "non_toxic", None)


def _memes(seed: int, n: int = 300) -> list[tuple]:
    rng = random.Random(seed)
    return [(rng.choice(("toxic", "non_toxic")), rng.choice(ANSWERS), rng.choice(ANSWERS), rng.choice(ANSWERS))
            for _ in range(n)]


def _rows(memes):
    return [(*k, n) for k, n in Counter(memes).items()]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_table_and_drivers_equal_counts_meme_by_meme(seed):
    memes = _memes(seed)
    table = modality.three_way_table(_rows(memes))
    assert table.sum() == len(memes)
    cells = {(r["truth"], r[FULL], r[CAPTION_REMOVED], r[CAPTION_ONLY]): r["memes"] for r in modality.table_rows(table)}
    assert cells == dict(Counter(memes))
    for truth in (None, "toxic", "non_toxic"):
        chosen = [m for m in memes if truth is None or m[0] == truth]
        toxic_full = [m for m in chosen if m[1] == "toxic"]
        image = sum(m[2] == "toxic" for m in toxic_full)
        text = sum(m[2] != "toxic" and m[3] == "toxic" for m in toxic_full)
        both = sum(m[2] != "toxic" and m[3] != "toxic" for m in toxic_full)
        shares = modality.drivers(table, truth)
        assert {k: (e.value * e.n if e.value is not None else 0) for k, e in shares.items()} == pytest.approx(
            {"image-driven": image, "text-driven": text, "needs both": both})
        assert all(e.n == len(toxic_full) for e in shares.values())
        assert all(e.low <= e.value <= e.high for e in shares.values() if e.n)
        for m in toxic_full:                              # the same rule, one meme at a time
            assert modality.driver_cell(*m[1:]) in modality.DRIVERS


def test_view_tests_equal_independent_mcnemar_and_holm():
    memes = _memes(5, 120)
    tests = modality.view_tests(modality.three_way_table(_rows(memes)))
    col = {FULL: 1, CAPTION_REMOVED: 2, CAPTION_ONLY: 3}
    raw = []
    for t, (a, b) in zip(tests, modality.PAIRS):
        assert (t["a"], t["b"]) == (a, b) and t["n"] == len(memes)
        only_a = sum(m[col[a]] == "toxic" and m[col[b]] != "toxic" for m in memes)
        only_b = sum(m[col[b]] == "toxic" and m[col[a]] != "toxic" for m in memes)
        assert (t["only_a"], t["only_b"]) == (only_a, only_b)
        assert t["toxic_a"] == sum(m[col[a]] == "toxic" for m in memes)
        p = binomtest(only_a, only_a + only_b, 0.5).pvalue
        assert t["decision_p"] == pytest.approx(p)
        raw.append(p)
        right_a = sum(m[col[a]] == m[0] for m in memes)
        assert t["accuracy"]["accuracy_a"]["value"] == pytest.approx(right_a / len(memes))
        assert "McNemar" in t["reading"]
    order = sorted(range(3), key=lambda i: raw[i])     # Holm by hand
    adjusted, running = [0.0] * 3, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (3 - rank) * raw[i]))
        adjusted[i] = running
    assert [t["decision_p_holm"] for t in tests] == pytest.approx(adjusted)


def test_no_discordant_memes_and_no_memes_read_plainly():
    same = [("toxic", "toxic", "toxic", "toxic")] * 4 + [("non_toxic", "non_toxic", "non_toxic", "non_toxic")] * 3
    tests = modality.view_tests(modality.three_way_table(_rows(same)))
    assert all(t["decision_p"] is None and "no decision" in t["reading"] for t in tests)
    empty = modality.summary(modality.three_way_table([]))
    assert empty["n"] == 0 and empty["cells"] == []
    assert all(e.value is None for e in empty["drivers"][None].values())
    assert all("nothing to compare" in t["reading"] for t in empty["tests"])


def test_rows_of_the_wrong_width_are_refused():
    with pytest.raises(ValueError):
        modality.three_way_table([("toxic", "toxic", "toxic", 3)])
