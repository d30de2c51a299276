"""pipeline/label_issues.py: planted label errors are found, mild single-set doubts are not."""
from __future__ import annotations

import numpy as np

from pipeline.label_issues import label_issue_report, rank_label_issues


def _sets(n=200, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.5
    a = np.clip(np.where(y, 0.75, 0.25) + rng.normal(0, 0.1, n), 0, 1)
    b = np.clip(np.where(y, 0.7, 0.3) + rng.normal(0, 0.1, n), 0, 1)
    labels = np.where(y, "toxic", "non_toxic").astype(object)
    return y, a, b.astype(object), labels


def test_planted_mislabel_ranks_first_and_mild_doubt_is_not_flagged():
    y, a, b, labels = _sets()
    labels[5] = "non_toxic" if y[5] else "toxic"           # planted: both sets contradict it
    a[5], b[5] = (0.95, 0.9) if y[5] else (0.05, 0.1)
    labels[6] = "non_toxic" if y[6] else "toxic"           # a milder planted error
    a[6], b[6] = (0.85, 0.8) if y[6] else (0.15, 0.2)
    a[7] = 0.45 if y[7] else 0.55                           # one set mildly against meme 7
    b[3] = None
    a[9], b[9] = np.nan, None                               # no score at all: left out
    labels[10] = None
    r = label_issue_report(list(range(200)), labels, {"clip": a, "siglip": b})
    ids = [i["meme_id"] for i in r["issues"]]
    assert ids[:2] == [5, 6] and 7 not in ids
    top = r["issues"][0]
    assert top["label"] != top["suggested"] and top["n_sets_against"] == 2 and top["quality"] < 0.1
    assert set(top["evidence"]) == {"clip", "siglip"}
    assert r["method"] == "confident_learning" and r["note"] is None
    assert (r["n_used"], r["n_no_score"], r["n_no_label"]) == (198, 1, 1)
    assert all(i["n_sets_against"] >= 2 for i in r["issues"])
    assert rank_label_issues(list(range(200)), labels, {"clip": a, "siglip": b}) == r["issues"]
    single = rank_label_issues(list(range(200)), labels, {"clip": a, "siglip": b}, min_sets_against=1)
    assert set(ids) <= {i["meme_id"] for i in single}


def test_tiny_and_one_class_fall_back():
    r = label_issue_report(["a", "b", "c"], ["toxic", "toxic", "non_toxic"],
                           {"clip": [0.9, 0.1, 0.2]}, min_sets_against=1)
    assert [i["meme_id"] for i in r["issues"]] == ["b"] and r["min_sets_against"] == 1
    one = label_issue_report(list("abcd"), ["toxic"] * 4, {"clip": [0.9, 0.8, 0.1, None]})
    assert one["method"] == "self_confidence" and one["note"] is not None
    assert [i["meme_id"] for i in one["issues"]] == ["c"] and one["n_no_score"] == 1
    none = label_issue_report(["a"], [None], {"clip": [0.3]})
    assert none["issues"] == [] and none["n_used"] == 0
