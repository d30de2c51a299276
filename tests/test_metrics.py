"""Tests for pipeline.metrics: every figure is checked against arithmetic done by hand here."""
from __future__ import annotations

import json
import math
import time
import warnings

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, f1_score, roc_auc_score, roc_curve

from pipeline import metrics
from pipeline.metrics import (Estimate, agreement, classification_metrics, proportion_estimate,
                              roc_curve_points)

T, N = "toxic", "non_toxic"
Z = 1.959963984540054          # the 97.5% normal quantile


def wilson(k: int, n: int) -> tuple[float, float]:
    """Wilson score interval written out from its formula (no continuity correction)."""
    p = k / n
    centre = (p + Z**2 / (2 * n)) / (1 + Z**2 / n)
    half = Z * math.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2)) / (1 + Z**2 / n)
    return centre - half, centre + half


def confusion_example():
    # tp=8 (toxic, said toxic), fn=4 (toxic, said non_toxic), fp=2, tn=6: 20 memes
    y_true = [T] * 8 + [T] * 4 + [N] * 2 + [N] * 6
    y_pred = [T] * 8 + [N] * 4 + [T] * 2 + [N] * 6
    return y_true, y_pred


def assert_json_clean(d: dict) -> None:
    json.dumps(d, allow_nan=False)          # raises on NaN / infinity / numpy types


# ----------------------------------------------------------------------------- proportions

def test_wilson_interval_matches_formula():
    # 7/10: p = 0.7, z^2/n = 0.3841459; centre = (0.7 + 0.1920729) / 1.3841459 = 0.644493
    # half = 1.959964 * sqrt(0.021 + 0.0096036) / 1.3841459 = 1.959964 * 0.174939 / 1.3841459
    #      = 0.247715 -> [0.396778, 0.892208]
    low, high = wilson(7, 10)
    assert low == pytest.approx(0.396778, abs=1e-6) and high == pytest.approx(0.892208, abs=1e-6)
    e = proportion_estimate(7, 10)
    assert (e.value, e.n, e.method) == (0.7, 10, "wilson")
    assert e.low == pytest.approx(low, abs=1e-9) and e.high == pytest.approx(high, abs=1e-9)
    # the edges: 0/5 and 5/5 stay inside [0, 1]; 0/0 is undefined
    assert proportion_estimate(0, 5).low == pytest.approx(0.0, abs=1e-12)
    assert proportion_estimate(0, 5).high == pytest.approx(wilson(0, 5)[1], abs=1e-9)
    assert proportion_estimate(5, 5).high == pytest.approx(1.0, abs=1e-12)
    assert proportion_estimate(0, 0) == Estimate(None, None, None, 0, "wilson")


def test_confusion_example_figures():
    y_true, y_pred = confusion_example()
    r = classification_metrics(y_true, y_pred)
    assert r.confusion == dict(tp=8, fp=2, fn=4, tn=6, unparsed_toxic=0, unparsed_non_toxic=0)
    assert r.n == 20 and r.n_unparseable == 0
    # accuracy = (8 + 6) / 20 = 0.7 ; precision = 8 / (8 + 2) = 0.8 ; recall = 8 / (8 + 4) = 0.6667
    # f1 = 2 * 8 / (2 * 8 + 2 + 4) = 16 / 22 = 0.72727
    assert r.accuracy.value == pytest.approx(0.7)
    assert r.precision.value == pytest.approx(0.8)
    assert r.recall.value == pytest.approx(2 / 3)
    assert r.f1.value == pytest.approx(16 / 22)
    assert (r.accuracy.n, r.precision.n, r.recall.n, r.f1.n) == (20, 10, 12, 20)
    assert (r.accuracy.low, r.accuracy.high) == pytest.approx(wilson(14, 20))
    assert (r.precision.low, r.precision.high) == pytest.approx(wilson(8, 10))
    assert (r.recall.low, r.recall.high) == pytest.approx(wilson(8, 12))
    assert r.unparseable_rate.value == 0.0 and r.unparseable_rate.n == 20
    assert r.auroc is None                                   # no scores given
    assert r.f1.method == "bootstrap" and r.f1.n_boot == 2000
    assert 0.4 < r.f1.low < 16 / 22 < r.f1.high < 1.0
    d = r.as_dict()
    assert_json_clean(d)
    assert d["accuracy"]["value"] == pytest.approx(0.7) and d["auroc"] is None
    assert set(d["confusion"]) == {"tp", "fp", "fn", "tn", "unparsed_toxic", "unparsed_non_toxic"}


def test_unparseable_answers():
    # toxic memes:     T, T, N, None   -> tp=2, fn=1, unparsed_toxic=1
    # non-toxic memes: N, T, None, None -> tn=1, fp=1, unparsed_non_toxic=2
    y_true = [T, T, T, T, N, N, N, N]
    y_pred = [T, T, N, None, N, T, None, float("nan")]       # NaN (e.g. from pandas) = None
    r = classification_metrics(y_true, y_pred)
    assert r.confusion == dict(tp=2, fp=1, fn=1, tn=1, unparsed_toxic=1, unparsed_non_toxic=2)
    assert r.n == 8 and r.n_unparseable == 3
    # accuracy = (tp + tn) / n = 3 / 8: every unparseable answer is wrong
    assert r.accuracy.value == pytest.approx(3 / 8)
    # precision = tp / (tp + fp) = 2 / 3: an unparseable answer is never a predicted positive
    assert r.precision.value == pytest.approx(2 / 3) and r.precision.n == 3
    # recall = tp / (tp + fn + unparsed_toxic) = 2 / 4: an unparseable toxic meme is missed
    assert r.recall.value == pytest.approx(0.5) and r.recall.n == 4
    # f1 = 2 tp / (2 tp + fp + fn + unparsed_toxic) = 4 / 7
    assert r.f1.value == pytest.approx(4 / 7)
    assert r.unparseable_rate.value == pytest.approx(3 / 8)
    assert (r.unparseable_rate.low, r.unparseable_rate.high) == pytest.approx(wilson(3, 8))


def test_rows_without_true_label_are_dropped_and_bad_input_refused():
    r = classification_metrics([T, None, N, float("nan")], [T, T, N, N], [0.9, 0.8, 0.1, 0.2])
    assert r.n == 2 and r.accuracy.value == 1.0 and r.auroc.n == 2
    with pytest.raises(ValueError, match="length"):
        classification_metrics([T, N], [T])
    with pytest.raises(ValueError, match="Toxic"):
        classification_metrics([T, N], ["Toxic", N])
    with pytest.raises(ValueError, match="length"):
        agreement([T], [T], [T, N])


# ----------------------------------------------------------------------------- AUROC and ROC

def ranked_example():
    # toxic scores 0.9, 0.8, 0.6 ; non-toxic scores 0.7, 0.6, 0.1 ; one toxic meme without a score
    y_true = [T, N, T, T, N, N, T]
    scores = [0.9, 0.7, 0.8, 0.6, 0.6, 0.1, None]
    return y_true, scores


def test_auroc_hand_ranked():
    y_true, scores = ranked_example()
    r = classification_metrics(y_true, [T, T, T, N, N, N, None], scores)
    # pairs (toxic, non-toxic) with the toxic meme ranked higher, ties count 1/2:
    # 0.9 beats all 3 -> 3 ; 0.8 beats all 3 -> 3 ; 0.6 beats 0.1, ties 0.6, loses to 0.7 -> 1.5
    # AUROC = (3 + 3 + 1.5) / (3 * 3) = 7.5 / 9 = 0.8333
    assert r.auroc.value == pytest.approx(7.5 / 9)
    assert r.auroc.n == 6                                    # the score-less meme is skipped
    assert r.auroc.method == "bootstrap"                     # small n: bootstrap by default
    # with 3 + 3 memes some resamples have one class only: they are dropped and counted
    assert 1000 <= r.auroc.n_boot < 2000
    assert 0.0 <= r.auroc.low < r.auroc.value <= r.auroc.high <= 1.0


def test_auroc_delong_by_hand():
    y_true, scores = ranked_example()
    r = classification_metrics(y_true, [T] * 7, scores, fast=True)
    # DeLong: per toxic meme, share of non-toxic below (ties 1/2): V10 = [1, 1, 0.5]
    #         per non-toxic meme, share of toxic above (ties 1/2): V01 = [2/3, 5/6, 1]
    # var(V10) = (1/36 + 1/36 + 4/36) / 2 = 1/12 ; var(V01) = (1/36 + 0 + 1/36) / 2 = 1/36
    # se = sqrt(1/12 / 3 + 1/36 / 3) = sqrt(1/27) = 0.19245 ; 0.8333 - 1.96 * 0.19245 = 0.45614
    se = math.sqrt(1 / 27)
    assert r.auroc.method == "delong" and r.auroc.n_boot is None
    assert r.auroc.value == pytest.approx(7.5 / 9)
    assert r.auroc.low == pytest.approx(7.5 / 9 - Z * se) == pytest.approx(0.45614, abs=1e-5)
    assert r.auroc.high == 1.0                               # 1.2105 clipped to 1


def test_roc_curve_points_hand_ranked():
    y_true, scores = ranked_example()
    pts = roc_curve_points(y_true, scores)
    # thresholds high to low: 0.9 -> (fpr 0, tpr 1/3), 0.8 -> (0, 2/3), 0.7 -> (1/3, 2/3),
    # 0.6 -> (2/3, 1), 0.1 -> (1, 1). sklearn's drop_intermediate removes a point only if it is
    # collinear with its neighbours in this list (before the start point is added): none is.
    # The start point (0, 0) has threshold +inf in sklearn, None here.
    expected = [(0, 0, None), (0, 1 / 3, 0.9), (0, 2 / 3, 0.8), (1 / 3, 2 / 3, 0.7), (2 / 3, 1, 0.6),
                (1, 1, 0.1)]
    assert len(pts) == len(expected)
    for p, (fpr, tpr, thr) in zip(pts, expected):
        assert set(p) == {"fpr", "tpr", "threshold"}
        assert p["fpr"] == pytest.approx(fpr) and p["tpr"] == pytest.approx(tpr)
        assert p["threshold"] == (None if thr is None else pytest.approx(thr))
    # the trapezoid area under these points is the AUROC: 0 + 0 + 2/9 + 5/18 + 1/3 = 15/18
    area = sum((b["fpr"] - a["fpr"]) * (a["tpr"] + b["tpr"]) / 2 for a, b in zip(pts, pts[1:]))
    assert area == pytest.approx(7.5 / 9)
    json.dumps(pts, allow_nan=False)
    assert roc_curve_points([T, T], [0.1, 0.2]) == []        # one class: no curve
    assert roc_curve_points([], []) == []


def test_auroc_bootstrap_statistic_matches_sklearn_on_each_resample():
    # Each resample draws memes by index from the layout of the counts (non-toxic memes first, in
    # score order, then toxic ones); its AUROC must be sklearn's roc_auc_score on those memes.
    rng = np.random.default_rng(3)
    y = (rng.random(40) < 0.5).astype(np.int64)
    s = np.round(rng.random(40), 1)                          # many ties
    sc = metrics.ScoreCounts.from_rows(y, s)
    stats = metrics._auroc_bootstrap(sc, np.random.default_rng(5), 25)
    labels = np.repeat([0, 1], [sc.n_neg, sc.n_pos])
    points = np.concatenate([np.repeat(sc.scores, sc.neg), np.repeat(sc.scores, sc.pos)])
    assert sorted(points) == sorted(s) and labels.sum() == y.sum()
    idx = np.random.default_rng(5).integers(0, 40, size=(25, 40))   # the same resamples
    for stat, i in zip(stats, idx):
        if labels[i].min() == labels[i].max():
            assert math.isnan(stat)
        else:
            assert stat == pytest.approx(roc_auc_score(labels[i], points[i]))


def test_auroc_bootstrap_matches_resampling_memes_by_index():
    # Resampling the (score, label) cells must behave like resampling memes by index.
    rng = np.random.default_rng(12)
    n = 80
    y = (rng.random(n) < 0.4).astype(np.int64)
    s = np.round(y * 0.15 + rng.random(n), 2)
    r = classification_metrics([T if v else N for v in y], [T] * n, list(s), n_boot=4000)
    idx = rng.integers(0, n, size=(4000, n))
    yi, si = y[idx], s[idx]                                  # Mann-Whitney of every index resample
    wins = (si[:, :, None] > si[:, None, :]) + 0.5 * (si[:, :, None] == si[:, None, :])
    pairs = yi[:, :, None] * (1 - yi[:, None, :])            # (toxic, non-toxic) pairs
    with np.errstate(invalid="ignore"):
        ref = (wins * pairs).sum(axis=(1, 2)) / pairs.sum(axis=(1, 2))
    ref = ref[np.isfinite(ref)]
    assert ref[0] == pytest.approx(roc_auc_score(yi[0], si[0]))
    lo, hi = np.quantile(ref, [0.025, 0.975])
    assert r.auroc.method == "bootstrap"
    assert r.auroc.low == pytest.approx(lo, abs=0.02) and r.auroc.high == pytest.approx(hi, abs=0.02)


def test_counts_and_rows_give_the_same_reports():
    # SQL hands the dashboard counts; the export hands rows: both must end in identical reports.
    rng = np.random.default_rng(21)
    n = 300
    y = [T if v else N for v in rng.random(n) < 0.45]
    y[3] = None                                              # a label conflict: no true label
    a = list(rng.choice(np.array([T, N, None], dtype=object), n, p=[0.4, 0.5, 0.1]))
    b = list(rng.choice(np.array([T, N, None], dtype=object), n, p=[0.5, 0.4, 0.1]))
    s = list(np.round(rng.random(n), 2))
    s[5] = None
    rows = classification_metrics(y, a, s).as_dict()
    from collections import Counter
    table = metrics.answer_table((t, p, k) for (t, p), k in Counter(zip(y, a)).items())
    keep = [i for i in range(n) if y[i] is not None and s[i] is not None]
    sc = metrics.ScoreCounts.from_rows(np.array([y[i] == T for i in keep], dtype=np.int64),
                                       np.array([s[i] for i in keep]))
    assert metrics.classification_from_counts(table, sc).as_dict() == rows
    assert rows["confusion"]["tp"] + rows["confusion"]["fn"] + rows["confusion"]["unparsed_toxic"] == \
        sum(1 for v in y if v == T)
    pair = metrics.answer_table((t, p, q, k) for (t, p, q), k in Counter(zip(y, a, b)).items())
    assert metrics.agreement_from_counts(pair).as_dict() == agreement(y, a, b).as_dict()
    assert metrics.roc_points_from_counts(sc) == roc_curve_points(y, s)
    with pytest.raises(ValueError, match="answer"):
        metrics.answer_table([(T, "Toxic", 3)])
    with pytest.raises(ValueError, match="true label"):
        metrics.answer_table([("maybe", T, 3)])


def test_point_values_match_sklearn():
    rng = np.random.default_rng(8)
    for _ in range(10):
        n = int(rng.integers(5, 60))
        y = rng.integers(0, 2, n)
        p = rng.integers(-1, 2, n)                            # -1: unparseable
        q = rng.integers(-1, 2, n)
        s = np.round(rng.random(n), 1)
        lab = {1: T, 0: N, -1: None}
        r = classification_metrics([lab[v] for v in y], [lab[v] for v in p], list(s))
        assert r.f1.value == pytest.approx(f1_score(y, np.where(p == 1, 1, 0), zero_division=np.nan), nan_ok=True)
        if 0 < y.sum() < n:
            assert r.auroc.value == pytest.approx(roc_auc_score(y, s))
            pts = roc_curve_points([lab[v] for v in y], list(s))
            fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
            assert [(d["fpr"], d["tpr"]) for d in pts] == pytest.approx(list(zip(fpr, tpr)))
        k = agreement([lab[v] for v in y], [lab[v] for v in p], [lab[v] for v in q]).kappa.value
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = cohen_kappa_score(p, q, labels=[-1, 0, 1])
        assert k == pytest.approx(ref, nan_ok=True) if not math.isnan(ref) else k is None


def test_auroc_auto_method_switch():
    rng = np.random.default_rng(0)
    y = [T if v else N for v in rng.random(1200) < 0.5]
    s = list(rng.random(1200))
    pred = [T] * 1200
    # 1200 * 2000 = 2.4e6 > AUTO_BOOTSTRAP_CELLS (1e6): DeLong; 1200 * 400 = 4.8e5: bootstrap
    assert classification_metrics(y, pred, s).auroc.method == "delong"
    boot = classification_metrics(y, pred, s, n_boot=400).auroc
    assert boot.method == "bootstrap" and boot.n_boot == 400
    delong = classification_metrics(y, pred, s, fast=True).auroc
    # both intervals describe the same sampling spread: widths agree to within a third
    assert delong.value == boot.value
    w_b, w_d = boot.high - boot.low, delong.high - delong.low
    assert abs(w_b - w_d) < w_d / 3


# ----------------------------------------------------------------------------- bootstrap

def test_f1_bootstrap_matches_resampling_memes_by_index():
    # The F1 bootstrap draws confusion-cell counts from a multinomial; that must behave like
    # resampling the memes themselves. Reference: index resampling, F1 computed per resample.
    rng = np.random.default_rng(11)
    n = 60
    y_true = np.where(rng.random(n) < 0.5, T, N)
    right = rng.random(n) < 0.7
    y_pred = np.where(right, y_true, np.where(y_true == T, N, T)).astype(object)
    y_pred[rng.random(n) < 0.3] = None                      # many unparseable answers
    r = classification_metrics(list(y_true), list(y_pred), n_boot=4000)
    t = y_true == T
    said_toxic = y_pred == T
    ref = []
    for i in rng.integers(0, n, size=(4000, n)):
        tp = np.sum(t[i] & said_toxic[i])
        ref.append(2 * tp / (2 * tp + np.sum(~t[i] & said_toxic[i]) + np.sum(t[i] & ~said_toxic[i])))
    lo, hi = np.quantile(ref, [0.025, 0.975])
    assert r.f1.low == pytest.approx(lo, abs=0.02) and r.f1.high == pytest.approx(hi, abs=0.02)


def test_percentile_interval_and_dropped_resamples():
    # 1001 resample values 0.000, 0.001, ..., 1.000: the 2.5% and 97.5% percentiles are 0.025 and
    # 0.975 exactly (linear interpolation at positions 25 and 975); 300 NaN resamples are dropped
    stats = np.concatenate([np.arange(1001) / 1000, np.full(300, np.nan)])
    e = metrics._bootstrap_estimate(0.5, stats, n=7)
    assert (e.value, e.n, e.method, e.n_boot) == (0.5, 7, "bootstrap", 1001)
    assert e.low == pytest.approx(0.025) and e.high == pytest.approx(0.975)
    # fewer than half of the resamples usable (1001 of 2302): no interval, the count is reported
    e = metrics._bootstrap_estimate(0.5, np.concatenate([stats, np.full(1001, np.nan)]), n=7)
    assert (e.value, e.low, e.high, e.n_boot) == (0.5, None, None, 1001)


def test_vectorised_statistics_match_sklearn():
    rng = np.random.default_rng(7)
    for _ in range(20):
        t = rng.integers(0, 2, 30).astype(bool)
        p = rng.integers(0, 2, 30).astype(bool)
        tp, fp, fn = np.sum(t & p), np.sum(~t & p), np.sum(t & ~p)
        ref = f1_score(t, p, zero_division=np.nan)
        assert metrics._f1_from_counts(tp, fp, fn) == pytest.approx(ref, nan_ok=True)
        a, b = rng.integers(0, 3, 30), rng.integers(0, 3, 30)
        joint = np.zeros((3, 3), dtype=int)
        np.add.at(joint, (a, b), 1)
        assert metrics._kappa_from_tables(joint) == pytest.approx(cohen_kappa_score(a, b))


def test_seeded_results_are_identical_and_seed_matters():
    rng = np.random.default_rng(1)
    y = [T if v else N for v in rng.random(51) < 0.5]
    p = [T if v else N for v in rng.random(51) < 0.5]
    q = [T if v else N for v in rng.random(51) < 0.5]
    s = list(rng.random(51))
    one = classification_metrics(y, p, s, seed=0).as_dict()
    assert one == classification_metrics(y, p, s, seed=0).as_dict()
    other = classification_metrics(y, p, s, seed=1).as_dict()
    assert (one["f1"], one["auroc"]) != (other["f1"], other["auroc"])
    assert one["accuracy"] == other["accuracy"]              # Wilson intervals use no randomness
    assert agreement(y, p, q, seed=4).as_dict() == agreement(y, p, q, seed=4).as_dict()


# ----------------------------------------------------------------------------- agreement

def mcnemar_example():
    # toxic memes:     both right 3, only A right 1, only B right 4, both wrong 1 (A unparseable)
    # non-toxic memes: both right 2, only A right 0, only B right 2, both wrong 1
    y_true = [T] * 9 + [N] * 5
    pred_a = [T, T, T] + [T] + [N] * 4 + [None] + [N, N] + [T, T] + [T]
    pred_b = [T, T, T] + [N] + [T] * 4 + [N] + [N, N] + [N, N] + [T]
    return y_true, pred_a, pred_b


def test_agreement_table_by_label_and_exact_mcnemar():
    r = agreement(*mcnemar_example())
    assert r.n == 14
    assert r.table == dict(both_right=5, only_a_right=1, only_b_right=6, both_wrong=2)
    assert r.by_label == {
        T: dict(both_right=3, only_a_right=1, only_b_right=4, both_wrong=1),
        N: dict(both_right=2, only_a_right=0, only_b_right=2, both_wrong=1),
    }
    # b = 1, c = 6: two-sided exact p = 2 * (C(7,0) + C(7,1)) / 2^7 = 2 * 8 / 128 = 0.125
    assert r.mcnemar_p == pytest.approx(2 * (math.comb(7, 0) + math.comb(7, 1)) / 2**7)
    assert r.mcnemar_p == pytest.approx(0.125)
    # 7 discordant memes: a 6-to-1 split gives 0.125, 7-to-0 gives 2/128 = 0.016 < 0.05
    assert "p = 0.125" in r.reading and "does not show" in r.reading
    assert "7 to 0" in r.reading and "only large differences" in r.reading
    assert "equivalent" not in r.reading
    assert_json_clean(r.as_dict())


def test_reading_when_significant_and_when_tiny():
    # 8 memes only B gets right, none only A: p = 2 / 2^8 = 0.0078
    y = [T] * 8
    r = agreement(y, [N] * 8, [T] * 8, name_a="v1", name_b="v2")
    assert r.mcnemar_p == pytest.approx(2 / 256)
    assert "unlikely" in r.reading and "v2" in r.reading
    # 5 discordant memes: even 5-to-0 gives 2/32 = 0.0625, so nothing could reach 0.05
    r = agreement([T] * 5, [N] * 5, [T] * 5)
    assert r.mcnemar_p == pytest.approx(2 / 32)
    assert "no split at all could reach p < 0.05" in r.reading


def test_cohen_kappa_from_formula():
    # A vs B answers on 20 memes: (T,T)=7, (T,N)=3, (N,T)=2, (N,N)=8
    # p_o = (7 + 8) / 20 = 0.75 ; A says toxic 10/20, B says toxic 9/20
    # p_e = 0.5 * 0.45 + 0.5 * 0.55 = 0.5 ; kappa = (0.75 - 0.5) / (1 - 0.5) = 0.5
    pred_a = [T] * 7 + [T] * 3 + [N] * 2 + [N] * 8
    pred_b = [T] * 7 + [N] * 3 + [T] * 2 + [N] * 8
    y_true = [T, N] * 10
    r = agreement(y_true, pred_a, pred_b)
    assert r.kappa.value == pytest.approx(0.5)
    assert (r.kappa.n, r.kappa.method, r.kappa.n_boot) == (20, "bootstrap", 2000)
    assert -0.2 < r.kappa.low < 0.5 < r.kappa.high <= 1.0


def test_cohen_kappa_counts_unparseable_as_its_own_answer():
    # A = [T, None, N, N], B = [T, N, N, None]: agree on 2 of 4 -> p_o = 0.5
    # marginals A: T 1/4, N 2/4, None 1/4 ; B the same -> p_e = 1/16 + 4/16 + 1/16 = 0.375
    # kappa = (0.5 - 0.375) / (1 - 0.375) = 0.2
    r = agreement([T, T, N, N], [T, None, N, N], [T, N, N, None])
    assert r.kappa.value == pytest.approx(0.2)
    assert r.table == dict(both_right=2, only_a_right=1, only_b_right=0, both_wrong=1)


# ----------------------------------------------------------------------------- degenerate inputs

def test_degenerate_inputs_give_none_not_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error")                        # no sklearn/numpy warnings either
        empty = classification_metrics([], [], [])
        assert empty.n == 0 and empty.accuracy.value is None and empty.f1.value is None
        assert empty.auroc.value is None and empty.unparseable_rate.value is None
        assert_json_clean(empty.as_dict())

        # all toxic, all right: everything 1, AUROC undefined (one class)
        r = classification_metrics([T] * 5, [T] * 5, [0.1, 0.2, 0.3, 0.4, 0.5])
        assert (r.accuracy.value, r.precision.value, r.recall.value, r.f1.value) == (1, 1, 1, 1)
        assert r.auroc.value is None and r.auroc.low is None and r.auroc.n == 5

        # all non-toxic, all said non-toxic: no predicted positives and no toxic memes
        r = classification_metrics([N] * 4, [N] * 4)
        assert r.accuracy.value == 1.0
        assert r.precision.value is None and r.precision.n == 0
        assert r.recall.value is None and r.recall.n == 0
        assert r.f1.value is None and r.f1.low is None

        # all unparseable: accuracy 0, recall 0 (2 missed toxic), precision undefined,
        # f1 = 2*0 / (0 + 0 + 0 + 2) = 0, unparseable rate 1
        r = classification_metrics([T, T, N], [None, None, None], [None, None, None])
        assert r.accuracy.value == 0.0 and r.recall.value == 0.0 and r.precision.value is None
        assert r.f1.value == 0.0 and r.unparseable_rate.value == 1.0 and r.n_unparseable == 3
        assert r.auroc.value is None and r.auroc.n == 0
        assert_json_clean(r.as_dict())

        a = agreement([], [], [])
        assert a.n == 0 and a.kappa.value is None and a.mcnemar_p is None
        assert "nothing to compare" in a.reading
        assert_json_clean(a.as_dict())

        # same answers everywhere: kappa undefined (p_e = 1), no discordant memes
        a = agreement([T, N, T], [T, T, T], [T, T, T])
        assert a.kappa.value is None and a.mcnemar_p is None
        assert a.table == dict(both_right=2, only_a_right=0, only_b_right=0, both_wrong=1)
        assert "nothing to compare" in a.reading and "does not show" in a.reading

        a = agreement([T, N], [None, None], [None, None])
        assert a.table["both_wrong"] == 2 and a.kappa.value is None


# ----------------------------------------------------------------------------- speed

def synthetic(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.where(rng.random(n) < 0.5, T, N)
    s = np.clip((y == T) * 0.3 + rng.random(n) * 0.7, 0, 1)
    p = np.where(s > 0.5, T, N).astype(object)
    p[rng.random(n) < 0.05] = None
    q = np.where(s > 0.45, T, N).astype(object)
    return list(y), list(p), list(q), list(s)


def test_speed_51_memes_and_100k_memes():
    y, p, q, s = synthetic(51)
    t0 = time.perf_counter()
    r = classification_metrics(y, p, s)
    agreement(y, p, q)
    small = time.perf_counter() - t0
    assert r.auroc.method == "bootstrap" and r.f1.n_boot == 2000
    assert small < 1.0, f"51 memes took {small:.3f}s"

    y, p, q, s = synthetic(100_000)
    t0 = time.perf_counter()
    r = classification_metrics(y, p, s)
    agreement(y, p, q)
    roc_curve_points(y, s)
    big = time.perf_counter() - t0
    assert r.auroc.method == "delong"                        # chosen automatically at this size
    assert r.f1.n_boot == 2000 and r.f1.high - r.f1.low < 0.02
    assert big < 3.0, f"100k memes took {big:.3f}s"          # ~0.3-0.4 s measured on 2 cores


def test_roc_thinning_keeps_the_ends_and_at_most_max_points():
    rng = np.random.default_rng(4)
    y = (rng.random(5000) < 0.5).astype(np.int64)
    sc = metrics.ScoreCounts.from_rows(y, rng.random(5000))
    full = metrics.roc_points_from_counts(sc)
    thin = metrics.roc_points_from_counts(sc, max_points=400)
    assert len(full) == 5001 and len(thin) == 400
    assert thin[0] == full[0] == {"fpr": 0.0, "tpr": 0.0, "threshold": None} and thin[-1] == full[-1]
    assert all(p in full for p in thin[::37])                  # points of the curve, not new ones
    assert [p["fpr"] for p in thin] == sorted(p["fpr"] for p in thin)
    assert metrics.roc_points_from_counts(sc, max_points=10_000) == full
