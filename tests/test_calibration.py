"""pipeline/calibration.py on planted structure with known answers."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, f1_score, precision_score, recall_score

from pipeline import calibration as C


def _calibrated(n=5000, seed=1):
    rng = np.random.default_rng(seed)
    s = rng.beta(2, 2, n)
    y = np.where(rng.random(n) < s, "toxic", "non_toxic")
    return y, s


def test_ece_calibrated_vs_miscalibrated():
    y, s = _calibrated()
    good = C.expected_calibration_error(y, s, n_boot=500)
    assert good.value < 0.03 and good.low is not None and good.low <= good.value <= good.high
    null = C.ece_under_perfect_calibration(y, s, n_sim=300)
    assert null["p_value"] > 0.05 and good.value <= null["null_q95"]
    squashed = 0.5 + 0.3 * (s - 0.5) + 0.1                   # under-confident and shifted
    bad = C.expected_calibration_error(y, squashed, n_boot=500)
    assert bad.value > 0.1 and bad.low > good.high
    assert C.ece_under_perfect_calibration(y, squashed, n_sim=300)["p_value"] < 0.01
    assert bad.method == "bca_rows" and bad.n_boot == 500 and "500 resamples" in bad.method_detail
    # the same seed gives the same interval
    assert C.expected_calibration_error(y, squashed, n_boot=500) == bad


def test_ece_exact_value_and_small_n():
    y = ["toxic", "non_toxic", "toxic", "non_toxic"]
    s = [0.95, 0.05, 0.55, 0.45]          # bins 9, 0, 5, 4: |0.95-1| + |0.05| + |0.55-1| + |0.45| = 1.0
    e = C.expected_calibration_error(y, s)
    assert e.value == pytest.approx(0.25) and e.low is None and e.note == C.NOTE_TOO_FEW and e.n == 4
    empty = C.expected_calibration_error([None, "toxic"], [0.3, None])
    assert empty.value is None and empty.note == C.NOTE_NO_MEMES


def test_brier_equals_sklearn_and_missing_counted():
    y, s = _calibrated(800, seed=3)
    b = C.brier_score(y, s, n_boot=300)
    yy = (y == "toxic").astype(int)
    assert b.value == pytest.approx(brier_score_loss(yy, s), abs=1e-12)
    assert b.low < b.value < b.high
    y2 = list(y) + [None, "toxic", "non_toxic"]
    s2 = list(s) + [0.4, None, float("nan")]
    assert C.brier_score(y2, s2, n_boot=300) == b
    assert C.input_counts(y2, s2) == {"n_total": 803, "n_used": 800, "n_no_label": 1, "n_no_score": 2}
    with pytest.raises(ValueError):
        C.brier_score(["toxic"], [1.5])


def test_reliability_bins():
    y = ["toxic", "non_toxic", "non_toxic", "toxic", "toxic", None]
    s = [0.05, 0.08, 0.5, 0.55, 1.0, 0.3]
    bins = C.reliability_bins(y, s, n_bins=10)
    assert [(b["lo"], b["n"]) for b in bins] == [(0.0, 2), (0.5, 2), (0.9, 1)]     # empty bins omitted
    assert bins[0]["mean_score"] == pytest.approx(0.065) and bins[0]["frac_toxic"] == 0.5
    assert 0 < bins[0]["frac_low"] < 0.5 < bins[0]["frac_high"] < 1
    assert bins[2]["hi"] == 1.0 and bins[2]["frac_toxic"] == 1.0 and bins[2]["frac_high"] == 1.0
    yq, sq = _calibrated(1000)
    q = C.reliability_bins(yq, sq, n_bins=5, strategy="quantile")
    assert [b["n"] for b in q] == [200] * 5


def test_threshold_curve_matches_direct_computation():
    y, s = _calibrated(600, seed=5)
    yy = (y == "toxic").astype(int)
    curve = C.threshold_curve(y, s)
    assert len(curve) == 101
    at = next(r for r in curve if r["threshold"] == 0.5)
    pred = (s >= 0.5).astype(int)
    assert at["accuracy"] == pytest.approx((pred == yy).mean())
    assert at["precision"] == pytest.approx(precision_score(yy, pred))
    assert at["recall"] == pytest.approx(recall_score(yy, pred)) and at["tpr"] == at["recall"]
    assert at["f1"] == pytest.approx(f1_score(yy, pred))
    assert at["fpr"] == pytest.approx(((pred == 1) & (yy == 0)).sum() / (yy == 0).sum())
    assert at["n_pred_toxic"] == pred.sum()
    top = C.threshold_curve(y, s, thresholds=[1.01])[0]
    assert top["n_pred_toxic"] == 0 and top["precision"] is None and top["recall"] == 0.0


def test_cv_threshold_uses_held_out_folds():
    # a constructed case: the in-sample best threshold sits on a single lucky meme
    y = ["toxic"] * 10 + ["non_toxic"] * 10
    s = [0.9, 0.85, 0.8, 0.75, 0.7, 0.3, 0.28, 0.26, 0.24, 0.22,   # 5 toxic memes scored low
         0.6, 0.55, 0.5, 0.45, 0.4, 0.35, 0.2, 0.15, 0.1, 0.05]
    ins = C.in_sample_best_threshold(y, s)
    assert ins["chosen_on_same_memes"] is True and ins["threshold"] == pytest.approx(0.22)
    assert ins["f1"] == pytest.approx(2 * 10 / (2 * 10 + 6))
    cv = C.cross_validated_threshold(y, s, k=5, seed=0)
    assert cv["chosen_on_same_memes"] is False and cv["k"] == 5 and len(cv["fold_thresholds"]) == 5
    folds = [set(f) for f in cv["folds"]]
    assert sorted(i for f in folds for i in f) == list(range(20))          # each meme held out once
    assert cv["f1"] < ins["f1"]                                            # held out is not optimistic
    # each fold's threshold is what the other folds choose: recompute it without the held-out memes
    for f, t in zip(cv["folds"], cv["fold_thresholds"]):
        train = [i for i in range(20) if i not in set(f)]
        assert C.in_sample_best_threshold([y[i] for i in train], [s[i] for i in train])["threshold"] == t
    few = C.cross_validated_threshold(["toxic", "non_toxic", "non_toxic"], [0.9, 0.1, 0.2])
    assert few["threshold"] is None and few["note"] == C.NOTE_CV_FEW
