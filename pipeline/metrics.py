"""Classification metrics with 95% intervals, ROC points, and the A-vs-B agreement test.

Used by the dashboard and the HTML export. Everything here is a pure function of its inputs
(lists of labels / scores, already aligned meme by meme) and returns plain dataclasses whose
``as_dict()`` gives JSON-ready values (Python floats/ints/None, no NaN or infinity).

Labels
    ``"toxic"`` is the positive class, ``"non_toxic"`` the negative (pipeline.config). A row whose
    true label is None (or NaN) is dropped before anything is counted: ``n`` is the number of memes
    with a true label.

Unparseable answers (a prediction of None/NaN: the model said something that is neither label)
    * accuracy: counted as wrong;
    * recall: a toxic meme with an unparseable answer is a missed toxic meme. It is kept apart from
      the parsed misses in the confusion dict as ``unparsed_toxic`` (``fn`` counts only parsed
      "non_toxic" answers on toxic memes), and recall = tp / (tp + fn + unparsed_toxic);
    * precision: never a predicted positive, so precision = tp / (tp + fp);
    * F1 = 2 tp / (2 tp + fp + fn + unparsed_toxic), i.e. the toxic-class F1 with None read as
      "not predicted toxic";
    * a non-toxic meme with an unparseable answer is ``unparsed_non_toxic``: wrong for accuracy,
      not a true negative, no effect on precision/recall/F1;
    * unparseable_rate = (unparsed_toxic + unparsed_non_toxic) / n;
    * Cohen's kappa (agreement) treats "unparseable" as a third category of answer;
    * the agreement table counts an unparseable answer as wrong.

Intervals (all 95%)
    * Proportions (accuracy, precision, recall, unparseable rate): Wilson score interval,
      ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``; method "wilson".
    * F1, AUROC and kappa: percentile bootstrap over memes (``n_boot`` resamples, default 2000) from
      ``numpy.random.default_rng(seed)``: the same inputs and seed give identical numbers.
      F1 and kappa depend only on the counts in the confusion / joint-answer table, and resampling
      n memes with replacement is exactly a multinomial draw of those cell counts (probabilities =
      observed cell shares), so they are drawn that way: cost O(n_boot * cells), whatever n is.
      AUROC depends on the ranking, so memes are resampled by index (in chunks that bound memory)
      and each resample's AUROC is the Mann-Whitney statistic with ties counted one half.
      A resample where the statistic is undefined (a single class for AUROC; no true and no
      predicted toxic for F1; both answer columns constant and equal for kappa) is dropped;
      ``Estimate.n_boot`` reports how many resamples gave the interval. If fewer than half of
      them are usable the interval is left None.
    * Point values come from scikit-learn (f1_score, roc_auc_score, cohen_kappa_score,
      confusion_matrix); the tests check that the vectorised bootstrap statistics agree with them.

Large n (the dashboard must render in well under a second at 100,000 memes)
    Only the AUROC bootstrap grows with n (O(n_boot * n)). ``fast=None`` (default) bootstraps it
    while n_scored * n_boot <= AUTO_BOOTSTRAP_CELLS (1,000 memes at 2000 resamples, ~0.07 s) and
    otherwise uses DeLong's asymptotic interval (O(n log n); method "delong"), which at such sizes
    is as good as the bootstrap. ``fast=True`` forces DeLong, ``fast=False`` forces the bootstrap
    (4-6 s per call at 100k memes on 2 cores). Everything else costs little at any n: on 2 cores,
    100k memes take ~0.1-0.2 s for classification_metrics (most of it sklearn's roc_auc_score),
    ~0.05-0.1 s for agreement and ~0.05 s for roc_curve_points (which returns up to one point per
    distinct score; thin it before plotting if needed).

Agreement (prompt/model A vs B on the same memes)
    The 2x2 table of right/wrong, its split by true label, Cohen's kappa between A's and B's
    answers (bootstrap interval), and the exact two-sided McNemar test on the discordant cells
    (b = only A right, c = only B right): ``scipy.stats.binomtest(b, b + c, 0.5).pvalue``, None
    when b + c = 0. ``reading`` says in words what that p-value does and does not show.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.stats import binom, binomtest
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import cohen_kappa_score, confusion_matrix, f1_score, roc_auc_score, roc_curve

from pipeline.config import NON_TOXIC, TOXIC

CONFIDENCE = 0.95
Z = 1.959963984540054          # norm.ppf(0.975), for the DeLong interval
DEFAULT_N_BOOT = 2000
AUTO_BOOTSTRAP_CELLS = 2_000_000   # fast=None: bootstrap AUROC while n_scored * n_boot <= this
_CHUNK_CELLS = 4_000_000           # memory bound of one AUROC bootstrap chunk (int64 indices)
_MIN_USABLE_SHARE = 0.5            # interval needs at least this share of usable resamples


@dataclass(frozen=True)
class Estimate:
    """A point value with its 95% interval; None where undefined."""
    value: float | None     # None when undefined (e.g. precision with no predicted positives)
    low: float | None       # 95% interval
    high: float | None
    n: int                  # the denominator / sample size the value rests on
    method: str             # "wilson" | "bootstrap" | "delong"
    n_boot: int | None = None   # bootstrap only: resamples that gave a defined value (were used)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ClassificationReport:
    n: int                          # memes with a true label
    n_unparseable: int
    accuracy: Estimate
    precision: Estimate
    recall: Estimate
    f1: Estimate
    auroc: Estimate | None          # None when no scores were given
    unparseable_rate: Estimate
    confusion: dict = field(default_factory=dict)   # tp fp fn tn unparsed_toxic unparsed_non_toxic

    def as_dict(self) -> dict:
        return {
            "n": self.n,
            "n_unparseable": self.n_unparseable,
            "accuracy": self.accuracy.as_dict(),
            "precision": self.precision.as_dict(),
            "recall": self.recall.as_dict(),
            "f1": self.f1.as_dict(),
            "auroc": None if self.auroc is None else self.auroc.as_dict(),
            "unparseable_rate": self.unparseable_rate.as_dict(),
            "confusion": dict(self.confusion),
        }


@dataclass(frozen=True)
class AgreementReport:
    n: int                  # memes with a true label (both answers aligned to them)
    table: dict             # both_right, only_a_right, only_b_right, both_wrong
    by_label: dict          # {"toxic": {same 4 keys}, "non_toxic": {...}}, split by the true label
    kappa: Estimate         # Cohen's kappa between A's and B's answers, bootstrap interval
    mcnemar_p: float | None  # exact two-sided McNemar; None without discordant memes
    reading: str            # what the p-value does and does not show, in words

    def as_dict(self) -> dict:
        return {
            "n": self.n,
            "table": dict(self.table),
            "by_label": {k: dict(v) for k, v in self.by_label.items()},
            "kappa": self.kappa.as_dict(),
            "mcnemar_p": self.mcnemar_p,
            "reading": self.reading,
        }


# ----------------------------------------------------------------------------- input cleaning

_CODES = {TOXIC: 1, NON_TOXIC: 0}
_BAD = 9


def _missing(v) -> bool:
    """None, a float NaN (numpy or Python) or pandas' NA."""
    if v is None or type(v).__name__ == "NAType":
        return True
    return isinstance(v, (float, np.floating)) and math.isnan(v)


def _label_codes(values: Sequence, what: str, allow_missing: bool) -> np.ndarray:
    """toxic -> 1, non_toxic -> 0, None/NaN -> -1 (only if allowed); anything else is an error."""
    arr = np.asarray(values, dtype=object).reshape(-1)
    if arr.size != len(values):
        raise ValueError(f"{what} must be a flat sequence of labels")
    try:
        out = np.where(arr == TOXIC, 1, np.where(arr == NON_TOXIC, 0, _BAD)).astype(np.int8)
    except TypeError:                                        # e.g. pandas.NA refuses ==
        out = np.fromiter((_CODES.get(v, _BAD) if isinstance(v, str) else _BAD for v in arr),
                          dtype=np.int8, count=arr.size)
    for i in np.flatnonzero(out == _BAD):                    # the rare slow path: missing or invalid
        v = arr[i]
        if not (allow_missing and _missing(v)):
            raise ValueError(f"{what}[{i}] = {v!r}: expected {TOXIC!r}, {NON_TOXIC!r} or None")
        out[i] = -1
    return out


def _score_array(scores: Sequence) -> np.ndarray:
    try:
        return np.asarray(scores, dtype=float).reshape(-1)   # None -> NaN
    except (TypeError, ValueError):
        return np.array([np.nan if _missing(s) else float(s) for s in scores], dtype=float)


def _check_lengths(**seqs) -> None:
    lengths = {k: len(v) for k, v in seqs.items() if v is not None}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"inputs differ in length: {lengths}")


def _f(x) -> float | None:
    """numpy/Python number -> Python float, NaN/inf -> None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


# ----------------------------------------------------------------------------- intervals

def proportion_estimate(k: int, n: int) -> Estimate:
    """k/n with its Wilson 95% interval; all None when n == 0."""
    k, n = int(k), int(n)
    if n == 0:
        return Estimate(None, None, None, 0, "wilson")
    ci = binomtest(k, n).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return Estimate(k / n, _f(ci.low), _f(ci.high), n, "wilson")


def _bootstrap_estimate(value, stats: np.ndarray, n: int) -> Estimate:
    """Percentile interval from the finite resample statistics."""
    value = _f(value)
    finite = stats[np.isfinite(stats)]
    used = int(finite.size)
    if value is None or used == 0 or used < _MIN_USABLE_SHARE * stats.size:
        return Estimate(value, None, None, n, "bootstrap", used)
    alpha = (1 - CONFIDENCE) / 2
    low, high = np.quantile(finite, [alpha, 1 - alpha])
    return Estimate(value, _f(low), _f(high), n, "bootstrap", used)


def _multinomial_counts(cells: np.ndarray, rng: np.random.Generator, n_boot: int) -> np.ndarray:
    """Cell counts of n_boot resamples of the n = cells.sum() memes: shape (n_boot, len(cells))."""
    n = int(cells.sum())
    return rng.multinomial(n, cells / n, size=n_boot)


def _f1_from_counts(tp, fp, fn_all):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(2 * tp + fp + fn_all > 0, 2 * tp / (2 * tp + fp + fn_all), np.nan)


def _kappa_from_tables(tables: np.ndarray) -> np.ndarray:
    """Cohen's kappa of k x k joint tables, shape (..., k, k); NaN where p_e == 1."""
    n = tables.sum(axis=(-2, -1)).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p_o = np.trace(tables, axis1=-2, axis2=-1) / n
        p_e = (tables.sum(axis=-1) * tables.sum(axis=-2)).sum(axis=-1) / n**2
        return np.where(p_e < 1 - 1e-12, (p_o - p_e) / (1 - p_e), np.nan)


def _auroc_bootstrap(y: np.ndarray, s: np.ndarray, rng: np.random.Generator, n_boot: int) -> np.ndarray:
    """AUROC of n_boot index resamples (Mann-Whitney, ties 1/2); NaN for one-class resamples.

    Each resample's memes are counted per (class, score rank group) cell; then
    2U = sum over groups of pos * (2 * negatives up to and including the group - negatives in it).
    """
    n = y.size
    _, group = np.unique(s, return_inverse=True)            # rank group of each meme's score
    k = int(group.max()) + 1
    cell = (group + k * y).astype(np.int64)                  # row 0: negatives, row 1: positives
    out = np.empty(n_boot)
    chunk = max(1, _CHUNK_CELLS // max(n, 1))
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(m, n))
        flat = (cell[idx] + (np.arange(m) * 2 * k)[:, None]).ravel()
        counts = np.bincount(flat, minlength=m * 2 * k).reshape(m, 2, k)
        neg, pos = counts[:, 0], counts[:, 1]
        twice_u = (pos * (2 * np.cumsum(neg, axis=1) - neg)).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start:start + m] = twice_u / (2.0 * pos.sum(axis=1) * neg.sum(axis=1))
    return out


def _delong_estimate(y: np.ndarray, s: np.ndarray, value: float) -> Estimate:
    """DeLong's asymptotic 95% interval for AUROC (normal approximation, clipped to [0, 1])."""
    pos, neg = np.sort(s[y == 1]), np.sort(s[y == 0])
    m, k = pos.size, neg.size
    if m < 2 or k < 2:
        return Estimate(_f(value), None, None, int(y.size), "delong")
    lo, hi = np.searchsorted(neg, pos, "left"), np.searchsorted(neg, pos, "right")
    v10 = (lo + 0.5 * (hi - lo)) / k                         # per positive: share of negatives below
    lo, hi = np.searchsorted(pos, neg, "left"), np.searchsorted(pos, neg, "right")
    v01 = (m - hi + 0.5 * (hi - lo)) / m                     # per negative: share of positives above
    se = math.sqrt(v10.var(ddof=1) / m + v01.var(ddof=1) / k)
    return Estimate(_f(value), max(0.0, value - Z * se), min(1.0, value + Z * se), int(y.size), "delong")


# ----------------------------------------------------------------------------- classification

def classification_metrics(
    y_true: Sequence[str],
    y_pred: Sequence[str | None],
    scores: Sequence[float | None] | None = None,
    *,
    seed: int = 0,
    n_boot: int = DEFAULT_N_BOOT,
    fast: bool | None = None,
) -> ClassificationReport:
    """Accuracy, precision, recall, F1, AUROC and unparseable rate of one set of predictions.

    ``scores`` (higher = more toxic, e.g. P(toxic)) gives AUROC over the memes that have a score;
    None/NaN scores are skipped. ``fast`` picks AUROC's interval method (see the module docstring).
    """
    _check_lengths(y_true=y_true, y_pred=y_pred, scores=scores)
    t_all = _label_codes(y_true, "y_true", allow_missing=True)
    keep = t_all >= 0
    t = t_all[keep]
    p = _label_codes(y_pred, "y_pred", allow_missing=True)[keep]
    n = int(t.size)
    parsed = p >= 0

    if parsed.any():
        # labels 0..k-1 in order keep sklearn on its fast integer path
        (tn, fp), (fn, tp) = confusion_matrix(t[parsed], p[parsed], labels=[0, 1]).tolist()
    else:
        tp = fn = fp = tn = 0
    u_tox = int(np.sum(~parsed & (t == 1)))
    u_non = int(np.sum(~parsed & (t == 0)))
    n_unp = u_tox + u_non
    confusion = dict(tp=tp, fp=fp, fn=fn, tn=tn, unparsed_toxic=u_tox, unparsed_non_toxic=u_non)

    seq_f1, seq_auc = np.random.SeedSequence(seed).spawn(2)

    # F1 of the toxic class; an unparseable answer reads as "not predicted toxic".
    if n and (tp + fp + fn + u_tox) > 0:
        f1_value = f1_score(t, np.where(parsed, p, 0), pos_label=1, zero_division=np.nan)
        cells = np.array([tp, fp, fn + u_tox, tn + u_non])
        c = _multinomial_counts(cells, np.random.default_rng(seq_f1), n_boot)
        f1 = _bootstrap_estimate(f1_value, _f1_from_counts(c[:, 0], c[:, 1], c[:, 2]), n)
    else:
        f1 = Estimate(None, None, None, n, "bootstrap", 0)

    auroc = None
    if scores is not None:
        s = _score_array(scores)[keep]
        has = ~np.isnan(s)
        ys, ss = t[has].astype(np.int64), s[has]
        auroc = auroc_estimate(ys, ss, rng=np.random.default_rng(seq_auc), n_boot=n_boot, fast=fast)

    return ClassificationReport(
        n=n,
        n_unparseable=n_unp,
        accuracy=proportion_estimate(tp + tn, n),
        precision=proportion_estimate(tp, tp + fp),
        recall=proportion_estimate(tp, tp + fn + u_tox),
        f1=f1,
        auroc=auroc,
        unparseable_rate=proportion_estimate(n_unp, n),
        confusion=confusion,
    )


def auroc_estimate(y: np.ndarray, s: np.ndarray, *, rng: np.random.Generator, n_boot: int,
                   fast: bool | None) -> Estimate:
    """AUROC of 0/1 labels ``y`` against finite scores ``s`` with a bootstrap or DeLong interval."""
    n = int(y.size)
    use_delong = fast if fast is not None else n * n_boot > AUTO_BOOTSTRAP_CELLS
    method = "delong" if use_delong else "bootstrap"
    if n == 0 or y.min() == y.max():                         # one class: undefined
        return Estimate(None, None, None, n, method, None if use_delong else 0)
    value = float(roc_auc_score(y, s))
    if use_delong:
        return _delong_estimate(y, s, value)
    return _bootstrap_estimate(value, _auroc_bootstrap(y, s, rng, n_boot), n)


def roc_curve_points(y_true: Sequence[str], scores: Sequence[float | None]) -> list[dict]:
    """ROC curve as [{fpr, tpr, threshold}] (sklearn.metrics.roc_curve, toxic positive).

    Rows without a true label or without a score are skipped; [] when only one class is left.
    The first point (0, 0) has threshold None (sklearn's +inf: nothing predicted toxic), so the
    list serialises to strict JSON.
    """
    _check_lengths(y_true=y_true, scores=scores)
    t = _label_codes(y_true, "y_true", allow_missing=True)
    s = _score_array(scores)
    keep = (t >= 0) & ~np.isnan(s)
    t, s = t[keep], s[keep]
    if t.size == 0 or t.min() == t.max():
        return []
    fpr, tpr, thr = roc_curve(t, s, pos_label=1)
    return [{"fpr": float(a), "tpr": float(b), "threshold": _f(c)} for a, b, c in zip(fpr, tpr, thr)]


# ----------------------------------------------------------------------------- agreement

_TABLE_KEYS = ("both_right", "only_a_right", "only_b_right", "both_wrong")


def _table(right_a: np.ndarray, right_b: np.ndarray) -> dict:
    return {
        "both_right": int(np.sum(right_a & right_b)),
        "only_a_right": int(np.sum(right_a & ~right_b)),
        "only_b_right": int(np.sum(~right_a & right_b)),
        "both_wrong": int(np.sum(~right_a & ~right_b)),
    }


def _min_significant_split(d: int) -> int | None:
    """Smallest k such that a k-to-(d-k) discordant split gives exact McNemar p < 0.05, or None.

    For p = 1/2 the two-sided exact p of k > d/2 is 2 * P(X >= k), X ~ Binomial(d, 1/2) (what
    binomtest gives), so all splits are checked at once.
    """
    ks = np.arange((d + 2) // 2, d + 1)
    p = np.minimum(1.0, 2 * binom.sf(ks - 1, d, 0.5))
    hit = np.flatnonzero(p < 0.05)
    return int(ks[hit[0]]) if hit.size else None


def _reading(n: int, b: int, c: int, p: float | None, name_a: str, name_b: str) -> str:
    if n == 0:
        return "No memes with a true label: there is nothing to compare."
    d = b + c
    if d == 0:
        return (f"{name_a} and {name_b} are right and wrong on exactly the same {n} memes, so McNemar's "
                f"test has nothing to compare. This does not show they are equally good in general, "
                f"only that these {n} memes do not separate them.")
    diff = (b - c) / n
    head = (f"{name_a} is right where {name_b} is wrong on {b} memes, {name_b} right where {name_a} is "
            f"wrong on {c} (accuracy difference {diff:+.1%} over {n} memes); exact McNemar p = {p:.3g}.")
    if p < 0.05:
        return head + (f" A split this uneven would be unlikely (p < 0.05) if {name_a} and {name_b} "
                       f"were equally accurate on memes like these; on its own it says nothing about how "
                       f"large or how important the difference is.")
    k = _min_significant_split(d)
    if k is None:
        power = (f"with only {d} memes where exactly one of them is right, no split at all could "
                 f"reach p < 0.05, so this comparison cannot detect any difference")
    else:
        smallest = (2 * k - d) / n                             # accuracy gap of that split
        size = ("only large differences are detectable at this sample size" if smallest >= 0.05
                else "a smaller true difference could go unnoticed")
        power = (f"with {d} memes where exactly one of them is right, p < 0.05 would need a split "
                 f"of at least {k} to {d - k}, an accuracy difference of {smallest:.1%} over {n} "
                 f"memes; {size}")
    return head + (f" p >= 0.05 does not show that {name_a} and {name_b} are equally good: {power}.")


def agreement(
    y_true: Sequence[str],
    pred_a: Sequence[str | None],
    pred_b: Sequence[str | None],
    *,
    seed: int = 0,
    n_boot: int = DEFAULT_N_BOOT,
    name_a: str = "A",
    name_b: str = "B",
) -> AgreementReport:
    """Compare two sets of answers on the same memes (rows aligned; None = unparseable = wrong)."""
    _check_lengths(y_true=y_true, pred_a=pred_a, pred_b=pred_b)
    t_all = _label_codes(y_true, "y_true", allow_missing=True)
    keep = t_all >= 0
    t = t_all[keep]
    a = _label_codes(pred_a, "pred_a", allow_missing=True)[keep]
    b_ = _label_codes(pred_b, "pred_b", allow_missing=True)[keep]
    n = int(t.size)
    right_a, right_b = a == t, b_ == t

    table = _table(right_a, right_b)
    by_label = {TOXIC: _table(right_a[t == 1], right_b[t == 1]),
                NON_TOXIC: _table(right_a[t == 0], right_b[t == 0])}

    if n:
        # answer categories as 0 = unparseable, 1 = non_toxic, 2 = toxic (sklearn's fast path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            kappa_value = cohen_kappa_score(a + 1, b_ + 1, labels=[0, 1, 2])
        joint = np.zeros((3, 3), dtype=np.int64)
        np.add.at(joint, (a + 1, b_ + 1), 1)
        counts = _multinomial_counts(joint.ravel(), np.random.default_rng(seed), n_boot)
        kappa = _bootstrap_estimate(kappa_value, _kappa_from_tables(counts.reshape(-1, 3, 3)), n)
    else:
        kappa = Estimate(None, None, None, 0, "bootstrap", 0)

    bb, cc = table["only_a_right"], table["only_b_right"]
    p = float(binomtest(bb, bb + cc, 0.5).pvalue) if bb + cc else None
    return AgreementReport(n=n, table=table, by_label=by_label, kappa=kappa, mcnemar_p=p,
                           reading=_reading(n, bb, cc, p, name_a, name_b))
