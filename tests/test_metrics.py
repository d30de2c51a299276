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
from pipeline.metrics import Estimate, agreement, classification_metrics, proportion_estimate, roc_curve_points

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


def _auc_stat(x, y, axis=-1):
    """Mann-Whitney AUROC (ties 1/2) of toxic scores x against non-toxic scores y, batched."""
    return np.mean((x[..., :, None] > y[..., None, :]) + 0.5 * (x[..., :, None] == y[..., None, :]), axis=(-2, -1))


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
    assert proportion_estimate(0, 0) == Estimate(None, None, None, 0, "wilson", note="undefined: no memes")


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
    # F1 interval: Wilson on J = tp / (tp + fp + fn) = 8 / 14 -> [0.325906, 0.786192], mapped by
    # F1 = 2J / (1 + J): [0.651813 / 1.325906, 1.572384 / 1.786192] = [0.491598, 0.880300]
    assert (r.f1.method, r.f1.n_boot, r.f1.note) == ("wilson_jaccard", None, None)
    lo, hi = wilson(8, 14)
    assert (lo, hi) == pytest.approx((0.325906, 0.786192), abs=1e-6)
    assert (r.f1.low, r.f1.high) == pytest.approx((2 * lo / (1 + lo), 2 * hi / (1 + hi)))
    assert (r.f1.low, r.f1.high) == pytest.approx((0.491598, 0.880300), abs=1e-6)
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
    assert r.auroc.method == "hm_delong" and r.auroc.n_boot is None   # no resampling by default
    assert 0.0 <= r.auroc.low < r.auroc.value <= r.auroc.high <= 1.0


def test_auroc_delong_by_hand():
    y_true, scores = ranked_example()
    sc = metrics.ScoreCounts.from_rows(np.array([1, 0, 1, 1, 0, 0]), np.array([0.9, 0.7, 0.8, 0.6, 0.6, 0.1]))
    # DeLong: per toxic meme, share of non-toxic below (ties 1/2): V10 = [1, 1, 0.5]
    #         per non-toxic meme, share of toxic above (ties 1/2): V01 = [2/3, 5/6, 1]
    # var(V10) = (1/36 + 1/36 + 4/36) / 2 = 1/12 ; var(V01) = (1/36 + 0 + 1/36) / 2 = 1/36
    # se = sqrt(1/12 / 3 + 1/36 / 3) = sqrt(1/27) = 0.19245 ; 0.8333 - 1.96 * 0.19245 = 0.45614
    # (the old Wald interval, 0.8333 +- 1.96 se, was [0.45614, 1.2105] clipped to 1.)
    # On the logit scale: logit(5/6) = ln 5 = 1.609438, se_logit = se / (A (1 - A)) = 0.19245 / (5/36)
    # = 1.385641, half width 1.96 * 1.385641 = 2.715806 -> expit(-1.106368) = 0.248549,
    # expit(4.325244) = 0.986942
    se = math.sqrt(1 / 27)
    assert metrics._delong_se(sc, 7.5 / 9) == pytest.approx(se)
    lg, h = math.log(5), Z * se / (5 / 36)
    lo, hi = metrics._logit_limits(7.5 / 9, se)
    assert lo == pytest.approx(1 / (1 + math.exp(-(lg - h)))) == pytest.approx(0.248549, abs=1e-6)
    assert hi == pytest.approx(1 / (1 + math.exp(-(lg + h)))) == pytest.approx(0.986942, abs=1e-6)
    # the reported interval is the union of that and the Hanley-McNeil score interval
    r = classification_metrics(y_true, [T] * 7, scores).auroc
    hm_lo, hm_hi = metrics._hm_score_limits(7.5 / 9, 3, 3)
    assert (r.method, r.n_boot, r.note) == ("hm_delong", None, None)
    assert r.low == pytest.approx(min(lo, hm_lo)) and r.high == pytest.approx(max(hi, hm_hi))
    assert classification_metrics(y_true, [T] * 7, scores, fast=True).auroc == r


def test_hm_score_limits_solve_the_score_equation():
    # the limits are the theta where (A - theta)^2 = z^2 V_HM(theta); V_HM with N* = (m + k) / 2:
    # V(theta) = theta (1 - theta) / (m k) * (1 + (N* - 1) ((1 - theta) / (2 - theta) + theta / (1 + theta)))
    for value, m, k in ((0.8, 26, 25), (1.0, 10, 10), (0.55, 5, 40), (0.0, 3, 3)):
        lo, hi = (float(x) for x in metrics._hm_score_limits(value, m, k))
        def f(t):
            ns = (m + k) / 2
            v = t * (1 - t) / (m * k) * (1 + (ns - 1) * ((1 - t) / (2 - t) + t / (1 + t)))
            return (value - t) ** 2 - Z**2 * v
        assert lo < hi and 0 <= lo <= value <= hi <= 1
        for t in (lo, hi):
            assert t in (0.0, 1.0) or abs(f(t)) < 1e-9


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


def test_stratified_auroc_resamples_match_resampling_memes_by_index_within_class():
    # The BCa bootstrap draws each class's score-group counts from a multinomial; that must behave
    # like resampling the toxic and the non-toxic memes by index, each within its class.
    rng = np.random.default_rng(12)
    n = 80
    y = (rng.random(n) < 0.4).astype(np.int64)
    s = np.round(y * 0.15 + rng.random(n), 2)
    sc = metrics.ScoreCounts.from_rows(y, s)
    stats = metrics._auroc_boot_stratified(sc, np.random.default_rng(1), 4000)
    sp, sn = s[y == 1], s[y == 0]
    ip = rng.integers(0, sp.size, size=(4000, sp.size))
    ineg = rng.integers(0, sn.size, size=(4000, sn.size))
    ref = _auc_stat(sp[ip], sn[ineg])
    assert ref[0] == pytest.approx(roc_auc_score(np.r_[np.ones(sp.size), np.zeros(sn.size)], np.r_[sp[ip[0]], sn[ineg[0]]]))
    assert np.all(np.isfinite(stats))                        # both classes in every resample
    assert np.quantile(stats, [0.025, 0.5, 0.975]) == pytest.approx(np.quantile(ref, [0.025, 0.5, 0.975]), abs=0.02)


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


def test_auroc_default_and_bca_agree_at_1200_memes():
    rng = np.random.default_rng(0)
    y = [T if v else N for v in rng.random(1200) < 0.5]
    s = list(rng.random(1200))
    pred = [T] * 1200
    default = classification_metrics(y, pred, s).auroc
    assert default.method == "hm_delong" and default.n_boot is None
    boot = classification_metrics(y, pred, s, n_boot=400, fast=False).auroc
    assert boot.method == "bca" and boot.n_boot == 400 and "400 resamples" in boot.method_detail
    # both intervals describe the same sampling spread: widths agree to within a third
    assert default.value == boot.value == pytest.approx(roc_auc_score([v == T for v in y], s))
    w_b, w_d = boot.high - boot.low, default.high - default.low
    assert abs(w_b - w_d) < w_d / 3


# ----------------------------------------------------------------------------- bootstrap

def test_bca_from_counts_matches_scipy_stratified_bca():
    # AUROC: scipy.stats.bootstrap with the toxic and the non-toxic scores as two samples resamples
    # each class on its own (stratified), with the jackknife over all memes: the same BCa.
    from scipy.stats import bootstrap
    rng = np.random.default_rng(3)
    x, z = np.round(rng.normal(1, 1, 26), 1), np.round(rng.normal(0, 1, 25), 1)
    ref = bootstrap((x, z), _auc_stat, vectorized=True, method="BCa", n_resamples=20000,
                    random_state=1).confidence_interval
    sc = metrics.ScoreCounts.from_rows(np.r_[np.ones(26, int), np.zeros(25, int)], np.r_[x, z])
    e = metrics.auroc_estimate(sc, rng=np.random.default_rng(2), n_boot=20000, fast=False)
    assert e.method == "bca" and e.n_boot == 20000
    assert e.low == pytest.approx(ref.low, abs=0.01) and e.high == pytest.approx(ref.high, abs=0.01)
    # F1 with tp 18, fn 8 (toxic), fp 6, tn 19: the toxic and non-toxic memes as two samples
    t_pred = np.r_[np.ones(18), np.zeros(8)]
    n_pred = np.r_[np.ones(6), np.zeros(19)]

    def f1(tpos, tneg, axis=-1):
        tp, fp = tpos.sum(axis=axis), tneg.sum(axis=axis)
        return 2 * tp / (2 * tp + fp + (tpos.shape[axis] - tp))
    ref = bootstrap((t_pred, n_pred), f1, vectorized=True, method="BCa", n_resamples=20000,
                    random_state=1).confidence_interval
    e = metrics.f1_estimate(18, 6, 8, 19, rng=np.random.default_rng(2), n_boot=20000, fast=False)
    assert e.low == pytest.approx(ref.low, abs=0.01) and e.high == pytest.approx(ref.high, abs=0.01)


def test_bca_refuses_a_collapsed_bootstrap():
    # every resample equal to the estimate (perfect separation): no BCa interval, a note instead
    e = metrics._bca_limits(1.0, np.ones(500), np.ones(10), np.ones(10))
    assert e is None
    sc = metrics.ScoreCounts.from_rows(np.r_[np.ones(10, int), np.zeros(10, int)], np.arange(20.0)[::-1])
    e = metrics.auroc_estimate(sc, n_boot=500, fast=False)
    assert e.value == 1.0 and e.low is None and e.high is None and "not estimable" in e.note


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
    assert one == classification_metrics(y, p, s, seed=1).as_dict()   # the defaults draw nothing
    boot0 = classification_metrics(y, p, s, seed=0, fast=False).as_dict()
    assert boot0 == classification_metrics(y, p, s, seed=0, fast=False).as_dict()
    other = classification_metrics(y, p, s, seed=1, fast=False).as_dict()
    assert (boot0["f1"], boot0["auroc"]) != (other["f1"], other["auroc"])
    assert boot0["accuracy"] == other["accuracy"]            # Wilson intervals use no randomness
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
    # interval: Wilson on p_o = 15/20 -> [0.531299, 0.888138], kappa = (p_o - 0.5) / 0.5
    # -> [0.062598, 0.776277]
    assert (r.kappa.n, r.kappa.method, r.kappa.n_boot) == (20, "wilson_agreement", None)
    lo, hi = wilson(15, 20)
    assert (r.kappa.low, r.kappa.high) == pytest.approx(((lo - 0.5) / 0.5, (hi - 0.5) / 0.5))
    assert (r.kappa.low, r.kappa.high) == pytest.approx((0.062598, 0.776277), abs=1e-6)


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
    assert r.auroc.method == "hm_delong" and r.f1.method == "wilson_jaccard"
    assert small < 1.0, f"51 memes took {small:.3f}s"

    y, p, q, s = synthetic(100_000)
    t0 = time.perf_counter()
    r = classification_metrics(y, p, s)
    agreement(y, p, q)
    roc_curve_points(y, s)
    big = time.perf_counter() - t0
    assert r.auroc.method == "hm_delong" and r.f1.high - r.f1.low < 0.02
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


# ----------------------------------------------------------------------------- degenerate intervals
# Each of these printed a zero-width interval with the percentile bootstrap (1.0 [1.0, 1.0],
# 0.5 [0.5, 0.5], kappa [1, 1]): now either a real interval or low/high None with a note.

def assert_real_or_marked(e: Estimate) -> None:
    assert_json_clean(e.as_dict())
    if e.low is None or e.high is None:
        assert e.low is None and e.high is None and e.note
    else:
        assert e.low < e.high and e.note is None
        assert e.value is None or e.low <= e.value <= e.high


def test_perfect_separation_gives_a_real_interval():
    y = [T] * 10 + [N] * 10
    s = list(np.arange(20.0)[::-1])                          # every toxic meme above every non-toxic one
    r = classification_metrics(y, y, s)
    assert r.auroc.value == 1.0 and r.auroc.method == "hm_delong"
    # Hanley-McNeil score interval at A = 1, m = k = 10: (1 - theta)^2 = z^2 V(theta) at theta = 0.800214
    assert r.auroc.low == pytest.approx(0.800214, abs=1e-5) and r.auroc.high == 1.0
    assert r.f1.value == 1.0 and r.f1.high == 1.0
    # F1 = 1: Wilson of 10/10 = [0.722467, 1] -> 2L / (1 + L) = 0.838875
    assert r.f1.low == pytest.approx(2 * wilson(10, 10)[0] / (1 + wilson(10, 10)[0]))
    for e in (r.auroc, r.f1, r.accuracy, r.precision, r.recall):
        assert_real_or_marked(e)
    # the same inverted: AUROC 0 gets [0, 0.2]
    inv = classification_metrics(y, y, [-v for v in s]).auroc
    assert inv.value == 0.0 and inv.low == 0.0 and inv.high == pytest.approx(1 - 0.800214, abs=1e-5)


def test_all_tied_scores_are_not_estimable():
    r = classification_metrics([T] * 10 + [N] * 10, [T] * 20, [0.5] * 20)
    assert r.auroc.value == 0.5 and r.auroc.low is None and r.auroc.high is None
    assert "all scores tied" in r.auroc.note
    assert_real_or_marked(r.auroc)
    boot = classification_metrics([T] * 10 + [N] * 10, [T] * 20, [0.5] * 20, fast=False).auroc
    assert boot.low is None and "all scores tied" in boot.note and boot.n_boot == 2000


def test_identical_answers_kappa_has_a_lower_bound():
    y = [T, N] * 10
    p = [T] * 12 + [N] * 8
    a = agreement(y, p, p)
    assert a.kappa.value == 1.0 and a.kappa.high == 1.0
    # Wilson of 20/20 = [0.838875, 1]; p_e = 0.6^2 + 0.4^2 = 0.52; (0.838875 - 0.52) / 0.48 = 0.664323
    lo = wilson(20, 20)[0]
    assert a.kappa.low == pytest.approx((lo - 0.52) / 0.48) == pytest.approx(0.664323, abs=1e-5)
    assert_real_or_marked(a.kappa)
    # BCa cannot form an interval there: marked, not [1, 1]
    b = agreement(y, p, p, fast=False).kappa
    assert b.low is None and "not estimable" in b.note
    # both sets constant and equal: kappa itself undefined, with a note
    c = agreement(y, [T] * 20, [T] * 20).kappa
    assert c.value is None and c.low is None and "chance agreement 1" in c.note


def test_single_class_and_tiny_n():
    one = classification_metrics([T] * 6, [T] * 6, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    assert one.auroc.value is None and "no non-toxic memes" in one.auroc.note
    assert one.f1.value == 1.0
    assert_real_or_marked(one.auroc)
    assert_real_or_marked(one.f1)
    tiny = classification_metrics([T, N], [T, N], [0.9, 0.1])   # one meme per class
    assert tiny.auroc.value == 1.0 and tiny.auroc.method == "hm_delong"
    assert 0 < tiny.auroc.low < 0.5 and tiny.auroc.high == 1.0
    for e in (tiny.auroc, tiny.f1, tiny.accuracy, tiny.precision, tiny.recall, tiny.unparseable_rate):
        assert_real_or_marked(e)
    none = classification_metrics([N] * 3, [N] * 3)
    assert none.f1.value is None and "no toxic memes and none said toxic" in none.f1.note
    assert_real_or_marked(none.f1)


def test_random_small_inputs_never_give_a_zero_width_interval():
    rng = np.random.default_rng(30)
    for _ in range(200):
        n = int(rng.integers(1, 12))
        lab = np.array([T, N, None], dtype=object)
        y = list(rng.choice(lab[:2], n))
        p = list(rng.choice(lab, n))
        q = list(rng.choice(lab, n))
        s = list(np.round(rng.random(n), 1))
        r = classification_metrics(y, p, s)
        for e in (r.accuracy, r.precision, r.recall, r.f1, r.auroc, r.unparseable_rate):
            assert_real_or_marked(e)
        assert_real_or_marked(agreement(y, p, q).kappa)


def test_new_intervals_contain_known_values_at_large_n():
    # a binormal scorer with AUROC 0.8 at 4000 memes; F1 and kappa from known cell probabilities
    rng = np.random.default_rng(31)
    d = math.sqrt(2) * 0.8416212335729143                      # Phi^-1(0.8)
    y = rng.random(4000) < 0.5
    s = np.where(y, rng.normal(d, 1, 4000), rng.normal(0, 1, 4000))
    r = classification_metrics(list(np.where(y, T, N)), list(np.where(s > d / 2, T, N)), list(s))
    assert r.auroc.low < 0.8 < r.auroc.high and r.auroc.high - r.auroc.low < 0.04
    f1_true = 0.6613 / (0.6613 + 0.5 * 0.3387 + 0.5 * 0.3387) * 1.0  # sens = spec = Phi(d/2) = 0.7602..
    sens = 0.5 * (1 + math.erf(d / 2 / math.sqrt(2)))
    f1_true = 2 * sens / (2 * sens + (1 - sens) + (1 - sens))
    assert r.f1.low < f1_true < r.f1.high


# ----------------------------------------------------------------------------- paired comparisons

def paired_example(n=200, seed=40, rho=0.5):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.5).astype(np.int64)
    z = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], n)
    sa = np.round(z[:, 0] + 1.2 * y, 1)
    sb = np.round(z[:, 1] + 0.8 * y, 1)
    return y, sa, sb


def test_holm_hand_example():
    # p = 0.01, 0.04, None, 0.03, 0.5 -> m = 4; sorted 0.01, 0.03, 0.04, 0.5
    # 4 * 0.01 = 0.04 ; 3 * 0.03 = 0.09 ; 2 * 0.04 = 0.08 -> max(0.09, 0.08) = 0.09 ; 1 * 0.5 = 0.5
    assert metrics.holm([0.01, 0.04, None, 0.03, 0.5]) == pytest.approx([0.04, 0.09, None, 0.09, 0.5])
    assert metrics.holm([0.4, 0.3]) == pytest.approx([0.6, 0.6])         # 2 * 0.3 = 0.6, max(0.6, 0.4)
    assert metrics.holm([0.9, 0.6]) == [1.0, 1.0]                         # capped at 1
    assert metrics.holm([]) == [] and metrics.holm([None]) == [None]


def test_paired_auroc_difference_against_sklearn_and_a_paired_bootstrap(monkeypatch):
    y, sa, sb = paired_example()
    lab = list(np.where(y == 1, T, N))
    pa, pb = list(np.where(sa > 0.6, T, N)), list(np.where(sb > 0.4, T, N))
    sa_l, sb_l = list(sa), list(sb)
    sa_l[0] = None                                           # meme 0 has no score in A: dropped
    r = metrics.paired_comparison(lab, sa_l, sb_l, pa, pb)
    keep = np.arange(1, y.size)
    assert r.n == 200 and r.n_auroc == 199
    auc_a, auc_b = roc_auc_score(y[keep], sa[keep]), roc_auc_score(y[keep], sb[keep])
    assert r.auroc_a.value == pytest.approx(auc_a) and r.auroc_b.value == pytest.approx(auc_b)
    assert r.auroc_diff.value == pytest.approx(auc_a - auc_b) and r.auroc_diff.method == "mover_logit"
    monkeypatch.setattr(metrics, "_PAIRED_AUROC_METHOD", "delong_paired")     # the Wald interval
    wald = metrics.paired_comparison(lab, sa_l, sb_l, pa, pb)
    assert wald.auroc_diff.method == "delong_paired" and wald.auroc_p == r.auroc_p
    se = (wald.auroc_diff.high - wald.auroc_diff.low) / (2 * Z)
    # the reported (MOVER) interval holds the difference and is of the same size
    assert r.auroc_diff.low < r.auroc_diff.value < r.auroc_diff.high
    assert 0.8 < (r.auroc_diff.high - r.auroc_diff.low) / (2 * Z * se) < 1.5
    # brute force: resample memes (pairs kept together) within each class, AUROC difference each time
    rng = np.random.default_rng(1)
    yk, ak, bk = y[keep], sa[keep], sb[keep]
    pos, neg = np.flatnonzero(yk == 1), np.flatnonzero(yk == 0)
    ip = pos[rng.integers(0, pos.size, (2000, pos.size))]
    ineg = neg[rng.integers(0, neg.size, (2000, neg.size))]
    diffs = _auc_stat(ak[ip], ak[ineg]) - _auc_stat(bk[ip], bk[ineg])
    assert se == pytest.approx(diffs.std(), rel=0.12)
    z = wald.auroc_diff.value / se
    assert r.auroc_p == pytest.approx(math.erfc(abs(z) / math.sqrt(2)))
    assert_json_clean(r.as_dict())


def test_paired_accuracy_difference_newcombe10_and_mcnemar():
    y_true, pred_a, pred_b = mcnemar_example()
    r = metrics.paired_comparison(y_true, None, None, pred_a, pred_b)
    # a = both right 5, b = only A 1, c = only B 6, d = both wrong 2; n = 14
    # p1 = 6/14, p2 = 11/14; Wilson: [0.213808, 0.674094], [0.524108, 0.924286]
    # phi = (5*2 - 1*6) / sqrt(6 * 8 * 11 * 3) = 4 / 39.799 = 0.100504
    # delta = sqrt((p1-l1)^2 - 2 phi (p1-l1)(u2-p2) + (u2-p2)^2), eps likewise with (u1-p1), (p2-l2)
    # -> -0.357143 - 0.243605 = -0.600748 ; -0.357143 + 0.340306 = -0.016837
    p1, p2 = 6 / 14, 11 / 14
    (l1, u1), (l2, u2) = wilson(6, 14), wilson(11, 14)
    phi = 4 / math.sqrt(6 * 8 * 11 * 3)
    lo = p1 - p2 - math.sqrt((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2)
    hi = p1 - p2 + math.sqrt((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2)
    e = r.accuracy_diff
    assert (e.value, e.method, e.n) == (pytest.approx(-5 / 14), "newcombe10", 14)
    assert (e.low, e.high) == pytest.approx((lo, hi))
    assert (e.low, e.high) == pytest.approx((-0.600748, -0.016837), abs=1e-6)
    assert r.mcnemar_p == pytest.approx(0.125) == agreement(y_true, pred_a, pred_b).mcnemar_p
    assert r.auroc_diff is None and r.auroc_p is None and r.n_auroc == 0
    assert r.accuracy_a.value == pytest.approx(6 / 14) and r.accuracy_b.value == pytest.approx(11 / 14)


def test_paired_counts_path_equals_rows_and_holm_is_named():
    from collections import Counter
    y, sa, sb = paired_example(n=120, seed=41)
    lab = list(np.where(y == 1, T, N))
    pa, pb = list(np.where(sa > 0.6, T, N)), list(np.where(sb > 0.4, T, N))
    rows = metrics.paired_comparison(lab, list(sa), list(sb), pa, pb, name_a="v1", name_b="v2")
    table = metrics.answer_table((t, p, q, k) for (t, p, q), k in Counter(zip(lab, pa, pb)).items())
    score_rows = [(t, a, b, k) for (t, a, b), k in Counter(zip(lab, sa.tolist(), sb.tolist())).items()]
    counts = metrics.paired_comparison_from_counts(table, score_rows, name_a="v1", name_b="v2")
    dc, dr = counts.as_dict(), rows.as_dict()
    assert dc.keys() == dr.keys()
    for key in dc:
        if isinstance(dc[key], dict):
            for k2 in dc[key]:
                assert dc[key][k2] == (pytest.approx(dr[key][k2]) if isinstance(dr[key][k2], float) else dr[key][k2])
        else:
            assert dc[key] == (pytest.approx(dr[key]) if isinstance(dr[key], float) else dr[key])
    assert counts.auroc_diff.value == pytest.approx(rows.auroc_diff.value)
    assert counts.auroc_diff.low == pytest.approx(rows.auroc_diff.low)
    other = metrics.paired_comparison(lab, list(sb), list(sa), pb, pa)
    adj = metrics.holm_adjust_comparisons([rows, other])
    assert adj[0]["auroc_p_holm"] == pytest.approx(min(1.0, 2 * rows.auroc_p))
    assert "Holm" in adj[0]["adjustment"] and adj[0]["mcnemar_p_holm"] == pytest.approx(min(1, 2 * rows.mcnemar_p))
    for d in adj:
        assert_json_clean(d)


def test_paired_degenerate_cases():
    y = [T] * 5 + [N] * 5
    s = list(np.arange(10.0)[::-1])
    r = metrics.paired_comparison(y, s, s, y, y)               # the same set twice
    assert r.auroc_diff.value == 0.0 and r.auroc_diff.low is None and "variance is 0" in r.auroc_diff.note
    assert r.auroc_p is None and r.mcnemar_p is None
    assert r.accuracy_diff.value == 0.0 and r.accuracy_diff.low < 0 < r.accuracy_diff.high
    one = metrics.paired_comparison([T] * 4, [0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1], [T] * 4, [N] * 4)
    assert one.auroc_diff.value is None and "both classes" in one.auroc_diff.note
    assert_json_clean(one.as_dict())
    assert_json_clean(metrics.paired_comparison([], [], [], [], []).as_dict())
