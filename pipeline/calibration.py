"""Calibration of the zero-shot scores and the CLIP threshold: pure functions, no store.

Inputs are rows aligned meme by meme: ``y_true`` ("toxic" / "non_toxic" / None) and ``scores``
(p(toxic) in [0, 1], or None / NaN). A meme without a true label, or without a score, is left out
of everything here; ``input_counts`` says how many of each were left out (n_no_label counts memes
without a label, n_no_score memes with a label but no score), so the caller can say
"k memes without a score left out". A score outside [0, 1] (or infinite) is an error.

    reliability_bins            observed toxic share per score bin, Wilson interval (a reliability diagram)
    expected_calibration_error  ECE, equal-width bins weighted by count, BCa bootstrap interval
    ece_under_perfect_calibration   what ECE a perfectly calibrated model would show on these scores
    brier_score                 mean squared error of p(toxic), BCa bootstrap interval
    threshold_curve             accuracy / precision / recall / F1 / TPR / FPR as a function of the threshold
    cross_validated_threshold   the F1-best threshold chosen on k-1 folds, evaluated on the held-out fold
    in_sample_best_threshold    the F1-best threshold on all memes (flagged: chosen on the same memes)

Decision rule everywhere: predicted toxic iff score >= threshold (pipeline/stages/clip.py uses 0.5).

ECE and its bias. The plug-in ECE = sum_b |sum of scores in b - toxic memes in b| / n is biased
upward: a perfectly calibrated model shows ECE ~ 0.8 * sqrt(n_bins / n) / 2 from noise alone
(about 0.02 at 5,000 memes and 10 bins, 0.2 at 50). Its bootstrap interval is an interval for
that plug-in quantity and need not reach 0 even for a perfectly calibrated model.
``ece_under_perfect_calibration`` gives the yardstick: labels redrawn as Bernoulli(score)
("consistency resampling", Broecker & Smith 2007) and the ECE of each redraw, so the dashboard can
say "an ECE this large is / is not what a calibrated model shows at this n" (its p-value).

Bootstraps: rows resampled with replacement (not stratified: calibration is about the joint
distribution of score and label), ``numpy.random.default_rng(seed)``, ``n_boot`` resamples
(``DEFAULT_N_BOOT``), BCa limits from pipeline.metrics with the exact leave-one-out jackknife.
Cost O(n * n_boot): about 0.1 s at 5,000 memes, a few seconds at 100,000; pass a smaller
``n_boot`` for big sets on a page view, or precompute.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import brier_score_loss
from sklearn.model_selection import StratifiedKFold

from pipeline.i18n import N_
from pipeline.metrics import (
    DEFAULT_N_BOOT,
    Estimate,
    _bca_limits,
    _check_lengths,
    _f,
    _label_codes,
    _score_array,
    f1_estimate,
    proportion_estimate,
)

DEFAULT_N_BINS = 10
MIN_N = 10                      # fewer memes with a score and a label: no interval at all
_CHUNK_CELLS = 2_000_000        # indices drawn per bootstrap chunk (memory bound, ~16 MB)
# Estimate.method of the bootstraps here: BCa over memes resampled as rows, NOT metrics' "bca"
# (which is stratified by class); pipeline.metrics.METHOD_NAMES has its words.
METHOD = "bca_rows"

NOTE_NO_MEMES = N_("undefined: no memes with a score")
NOTE_TOO_FEW = N_("not estimable at this n: fewer than 10 memes with a score")
NOTE_BCA = N_("not estimable by BCa at this n: the resamples do not vary around the estimate")
NOTE_ONE_CLASS = N_("undefined: both classes are needed among the memes with a score")
NOTE_CV = N_("threshold chosen by cross-validation: for each fold the F1-best threshold on the other "
             "folds, F1 counted on the held-out fold only")
NOTE_CV_FEW = N_("not estimable at this n: cross-validation needs at least 2 memes of each class")
NOTE_IN_SAMPLE = N_("threshold chosen on the same memes it is evaluated on: its F1 is optimistic")


# ----------------------------------------------------------------------------- input cleaning

def _clean(y_true: Sequence, scores: Sequence) -> tuple[np.ndarray, np.ndarray, dict]:
    """(y 0/1, scores) of the memes with both a label and a score, and the counts left out."""
    _check_lengths(y_true=y_true, scores=scores)
    y = _label_codes(y_true, "y_true", allow_missing=True)
    s = _score_array(scores)
    if np.isinf(s).any():
        raise ValueError("scores must be finite p(toxic) values in [0, 1] (or None)")
    has_label, has_score = y >= 0, ~np.isnan(s)
    keep = has_label & has_score
    bad = keep & ((s < 0) | (s > 1))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"scores[{i}] = {s[i]!r}: expected p(toxic) in [0, 1] or None")
    counts = {"n_total": int(y.size), "n_used": int(keep.sum()),
              "n_no_label": int((~has_label).sum()), "n_no_score": int((has_label & ~has_score).sum())}
    return y[keep].astype(np.int64), s[keep], counts


def input_counts(y_true: Sequence, scores: Sequence) -> dict:
    """n_total, n_used (label and score), n_no_label, n_no_score (labelled, no score)."""
    return _clean(y_true, scores)[2]


# ----------------------------------------------------------------------------- reliability

def _uniform_bin_ids(s: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width bins [0, 1/B), ..., [(B-1)/B, 1] (np.histogram's convention)."""
    return np.minimum((s * n_bins).astype(np.int64), n_bins - 1)


def reliability_bins(y_true: Sequence, scores: Sequence, n_bins: int = DEFAULT_N_BINS,
                     strategy: str = "uniform") -> list[dict]:
    """Per score bin: lo, hi, n, mean_score, frac_toxic and its Wilson 95% frac_low / frac_high.

    ``strategy="uniform"``: equal-width bins on [0, 1] (a bin is [lo, hi), the last [lo, 1]);
    ``"quantile"``: edges at the score quantiles (tied edges merged, so fewer bins may come back).
    Empty bins are omitted. Memes without a label or a score are left out (see input_counts)."""
    if n_bins < 1:
        raise ValueError("n_bins must be >= 1")
    y, s, _ = _clean(y_true, scores)
    if s.size == 0:
        return []
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
        ids = _uniform_bin_ids(s, n_bins)
    elif strategy == "quantile":
        edges = np.unique(np.quantile(s, np.linspace(0.0, 1.0, n_bins + 1)))
        if edges.size == 1:
            edges = np.array([edges[0], edges[0]])
        ids = np.clip(np.searchsorted(edges[1:-1], s, side="right"), 0, edges.size - 2)
    else:
        raise ValueError(f"strategy must be 'uniform' or 'quantile', not {strategy!r}")
    nb = edges.size - 1
    cnt = np.bincount(ids, minlength=nb)
    sum_s = np.bincount(ids, weights=s, minlength=nb)
    sum_y = np.bincount(ids, weights=y, minlength=nb)
    out = []
    for b in np.flatnonzero(cnt):
        p = proportion_estimate(int(sum_y[b]), int(cnt[b]))
        out.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": int(cnt[b]),
                    "mean_score": float(sum_s[b] / cnt[b]), "frac_toxic": p.value,
                    "frac_low": p.low, "frac_high": p.high})
    return out


# ----------------------------------------------------------------------------- bootstrap helpers

def _boot_indices(n: int, n_boot: int, rng: np.random.Generator):
    """Chunks of resample indices, shape (chunk, n), n_boot rows in all."""
    per = max(1, _CHUNK_CELLS // max(n, 1))
    done = 0
    while done < n_boot:
        c = min(per, n_boot - done)
        yield rng.integers(0, n, size=(c, n))
        done += c


def _ece_value(y: np.ndarray, s: np.ndarray, n_bins: int) -> float:
    ids = _uniform_bin_ids(s, n_bins)
    diff = np.bincount(ids, weights=s - y, minlength=n_bins)
    return float(np.abs(diff).sum() / s.size)


def _bootstrap_estimate(value: float, boot: np.ndarray, jack: np.ndarray, n: int, n_boot: int) -> Estimate:
    lim = _bca_limits(value, boot, jack, np.ones(jack.size))
    if lim is None:
        return Estimate(value, None, None, n, METHOD, n_boot=n_boot, note=NOTE_BCA)
    return Estimate(value, max(0.0, lim[0]), lim[1], n, METHOD, n_boot=n_boot)


def expected_calibration_error(y_true: Sequence, scores: Sequence, n_bins: int = DEFAULT_N_BINS, *,
                               n_boot: int = DEFAULT_N_BOOT, seed: int = 0) -> Estimate:
    """ECE = sum over equal-width bins of n_b / n * |mean score - toxic share| (= sum_b
    |sum(s - y)| / n), with a BCa bootstrap 95% interval of that plug-in value (method "bca_rows").
    n = memes with a label and a score; under MIN_N memes the value comes without an interval."""
    y, s, _ = _clean(y_true, scores)
    n = int(s.size)
    if n == 0:
        return Estimate(None, None, None, 0, METHOD, note=NOTE_NO_MEMES)
    value = _ece_value(y, s, n_bins)
    if n < MIN_N:
        return Estimate(value, None, None, n, METHOD, note=NOTE_TOO_FEW)
    ids = _uniform_bin_ids(s, n_bins)
    d = s - y
    diff = np.bincount(ids, weights=d, minlength=n_bins)
    # exact jackknife: leaving meme i out changes only its own bin
    total = np.abs(diff).sum()
    jack = (total - np.abs(diff[ids]) + np.abs(diff[ids] - d)) / (n - 1)
    rng = np.random.default_rng(seed)
    boot = []
    for idx in _boot_indices(n, n_boot, rng):
        c = idx.shape[0]
        key = (np.arange(c)[:, None] * n_bins + ids[idx]).ravel()
        sums = np.bincount(key, weights=d[idx].ravel(), minlength=c * n_bins).reshape(c, n_bins)
        boot.append(np.abs(sums).sum(axis=1) / n)
    return _bootstrap_estimate(value, np.concatenate(boot), jack, n, n_boot)


def ece_under_perfect_calibration(y_true: Sequence, scores: Sequence, n_bins: int = DEFAULT_N_BINS, *,
                                  n_sim: int = 1000, seed: int = 0) -> dict:
    """The ECE a perfectly calibrated model would show on these scores: labels redrawn as
    Bernoulli(score) n_sim times. Returns ece (observed), null_mean, null_q95 (95th percentile of
    the redraws) and p_value = (1 + redraws with ECE >= observed) / (1 + n_sim); None values
    when there are no memes. A p_value >= 0.05 means the observed ECE is within what noise alone
    gives at this n (not that the model is calibrated)."""
    y, s, counts = _clean(y_true, scores)
    n = int(s.size)
    if n == 0:
        return {"ece": None, "null_mean": None, "null_q95": None, "p_value": None, "n": 0, "n_sim": n_sim}
    obs = _ece_value(y, s, n_bins)
    rng = np.random.default_rng(seed)
    ids = _uniform_bin_ids(s, n_bins)
    sims = []
    per = max(1, _CHUNK_CELLS // n)
    done = 0
    while done < n_sim:
        c = min(per, n_sim - done)
        ysim = rng.random((c, n)) < s
        d = s[None, :] - ysim
        key = (np.arange(c)[:, None] * n_bins + ids[None, :]).ravel()
        sums = np.bincount(key, weights=d.ravel(), minlength=c * n_bins).reshape(c, n_bins)
        sims.append(np.abs(sums).sum(axis=1) / n)
        done += c
    sims = np.concatenate(sims)
    return {"ece": obs, "null_mean": float(sims.mean()), "null_q95": float(np.quantile(sims, 0.95)),
            "p_value": float((1 + np.count_nonzero(sims >= obs - 1e-12)) / (1 + n_sim)), "n": n, "n_sim": n_sim}


def brier_score(y_true: Sequence, scores: Sequence, *, n_boot: int = DEFAULT_N_BOOT, seed: int = 0) -> Estimate:
    """Brier score mean((p(toxic) - [toxic])^2) (sklearn.metrics.brier_score_loss), with a BCa
    bootstrap 95% interval (method "bca_rows"); lower is better, 0.25 = always saying 0.5."""
    y, s, _ = _clean(y_true, scores)
    n = int(s.size)
    if n == 0:
        return Estimate(None, None, None, 0, METHOD, note=NOTE_NO_MEMES)
    value = float(brier_score_loss(y, s, pos_label=1)) if np.unique(y).size > 1 else float(np.mean((s - y) ** 2))
    if n < MIN_N:
        return Estimate(value, None, None, n, METHOD, note=NOTE_TOO_FEW)
    sq = (s - y) ** 2
    jack = (sq.sum() - sq) / (n - 1)
    rng = np.random.default_rng(seed)
    boot = np.concatenate([sq[idx].mean(axis=1) for idx in _boot_indices(n, n_boot, rng)])
    return _bootstrap_estimate(value, boot, jack, n, n_boot)


# ----------------------------------------------------------------------------- thresholds

def _counts_at(y: np.ndarray, s: np.ndarray, thresholds: np.ndarray):
    """tp, fp at each threshold (predicted toxic iff s >= t); n_pos, n_neg."""
    pos, neg = np.sort(s[y == 1]), np.sort(s[y == 0])
    tp = pos.size - np.searchsorted(pos, thresholds, side="left")
    fp = neg.size - np.searchsorted(neg, thresholds, side="left")
    return tp.astype(np.int64), fp.astype(np.int64), int(pos.size), int(neg.size)


def _ratio(a: np.ndarray, b: np.ndarray) -> list[float | None]:
    return [None if bb == 0 else float(aa / bb) for aa, bb in zip(a, b)]


def threshold_curve(y_true: Sequence, scores: Sequence, thresholds: Sequence[float] | None = None) -> list[dict]:
    """accuracy, precision, recall (= tpr), f1, tpr, fpr and n_pred_toxic at each threshold
    (predicted toxic iff score >= threshold), on the memes with a label and a score. Default
    thresholds: 0, 0.01, ..., 1 (0.5 among them). A value is None where undefined (precision with
    nothing predicted toxic, recall without toxic memes, fpr without non-toxic memes)."""
    y, s, _ = _clean(y_true, scores)
    t = np.round(np.linspace(0.0, 1.0, 101), 10) if thresholds is None else np.asarray(thresholds, dtype=float)
    tp, fp, m, k = _counts_at(y, s, t)
    n = m + k
    fn, tn = m - tp, k - fp
    acc = _ratio(tp + tn, np.full(t.size, n))
    prec = _ratio(tp, tp + fp)
    rec = _ratio(tp, np.full(t.size, m))
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    fpr = _ratio(fp, np.full(t.size, k))
    return [{"threshold": float(t[i]), "accuracy": acc[i], "precision": prec[i], "recall": rec[i],
             "f1": f1[i], "tpr": rec[i], "fpr": fpr[i], "n_pred_toxic": int(tp[i] + fp[i])}
            for i in range(t.size)]


def _best_threshold(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    """(threshold, F1) maximising the toxic-class F1 over the candidate thresholds = the distinct
    scores; a tie goes to the threshold nearest 0.5, then the lower one. (0.5, 0.0) without toxic memes."""
    cand = np.unique(s)
    if cand.size == 0 or not (y == 1).any():
        return 0.5, 0.0
    tp, fp, m, _ = _counts_at(y, s, cand)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(m + tp + fp > 0, 2 * tp / (m + tp + fp), 0.0)   # 2tp / (2tp + fp + fn)
    best = f1.max()
    tied = np.flatnonzero(f1 >= best - 1e-12)
    i = tied[np.lexsort((cand[tied], np.abs(cand[tied] - 0.5)))[0]]
    return float(cand[i]), float(best)


def in_sample_best_threshold(y_true: Sequence, scores: Sequence) -> dict:
    """The F1-best threshold on all memes with a label and a score: threshold, f1 (optimistic:
    chosen and evaluated on the same memes), chosen_on_same_memes=True, note, and the counts."""
    y, s, counts = _clean(y_true, scores)
    if s.size == 0 or np.unique(y).size < 2:
        return {"threshold": None, "f1": None, "chosen_on_same_memes": True, "note": NOTE_ONE_CLASS, **counts}
    t, f1 = _best_threshold(y, s)
    return {"threshold": t, "f1": f1, "chosen_on_same_memes": True, "note": NOTE_IN_SAMPLE, **counts}


def cross_validated_threshold(y_true: Sequence, scores: Sequence, k: int = 5, seed: int = 0) -> dict:
    """k-fold cross-validated threshold (StratifiedKFold, shuffled with ``seed``).

    For each fold the F1-best threshold is chosen on the other k-1 folds and applied to the
    held-out fold; the held-out predictions of all folds are pooled into one confusion table.
    Returns threshold (median of the fold thresholds: the one to show), fold_thresholds,
    f1 (pooled held-out F1, float), f1_estimate (its Estimate.as_dict(), Wilson-Jaccard),
    f1_folds (each held-out fold's F1), folds (held-out meme positions within the memes used,
    for audit), k (k used: lowered to the smaller class's count when that is below k),
    chosen_on_same_memes=False, note, and the counts of input_counts."""
    y, s, counts = _clean(y_true, scores)
    m, kk = int((y == 1).sum()), int((y == 0).sum())
    k_used = min(int(k), m, kk)
    base = {"chosen_on_same_memes": False, **counts}
    if k_used < 2:
        return {"threshold": None, "fold_thresholds": [], "f1": None, "f1_estimate": None, "f1_folds": [],
                "folds": [], "k": k_used, "note": NOTE_CV_FEW if min(m, kk) > 0 else NOTE_ONE_CLASS, **base}
    skf = StratifiedKFold(n_splits=k_used, shuffle=True, random_state=seed)
    tp = fp = fn = tn = 0
    fold_t, fold_f1, folds = [], [], []
    for train, test in skf.split(np.zeros(y.size), y):
        t, _ = _best_threshold(y[train], s[train])
        pred = s[test] >= t
        yt = y[test] == 1
        a, b, c = int((pred & yt).sum()), int((pred & ~yt).sum()), int((~pred & yt).sum())
        tp, fp, fn, tn = tp + a, fp + b, fn + c, tn + int((~pred & ~yt).sum())
        fold_t.append(t)
        fold_f1.append(_f(2 * a / (2 * a + b + c)) if 2 * a + b + c else None)
        folds.append(test.tolist())
    est = f1_estimate(tp, fp, fn, tn)
    return {"threshold": float(np.median(fold_t)), "fold_thresholds": fold_t,
            "f1": est.value, "f1_estimate": est.as_dict(), "f1_folds": fold_f1, "folds": folds,
            "k": k_used, "note": NOTE_CV, **base}
