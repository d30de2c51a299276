"""Classification metrics with 95% intervals, ROC points, and the A-vs-B agreement test.

Used by the dashboard and the HTML export. Everything here is a pure function of its inputs and
returns plain dataclasses whose ``as_dict()`` gives JSON-ready values (Python floats/ints/None, no
NaN or infinity). Two ways in, one computation:
    * counts (what SQL gives): ``answer_table`` of (truth, answer[, answer B], memes) rows and
      ``ScoreCounts`` (memes per distinct score and true label), passed to
      ``classification_from_counts``, ``auroc_estimate``, ``roc_points_from_counts`` and
      ``agreement_from_counts``. The dashboard counts in DuckDB, so no meme-level rows leave it;
    * rows (labels / scores aligned meme by meme): ``classification_metrics``, ``roc_curve_points``
      and ``agreement`` count them with numpy and call the functions above.

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

Intervals (all 95%; chosen by simulation at 26 toxic + 25 non-toxic memes, see
benchmarks/coverage.py and docs/metrics.md, where every candidate's coverage is tabled)
    * Proportions (accuracy, precision, recall, unparseable rate): Wilson score interval,
      ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``; method "wilson".
    * F1 (toxic class): J = tp / (tp + fp + fn_all) is a binomial proportion given its denominator,
      and F1 = 2J / (1 + J); the Wilson interval of J mapped through that: "wilson_jaccard".
    * AUROC: the Hanley-McNeil score interval (theta with (A - theta)^2 <= z^2 V_HM(theta), V_HM
      with Newcombe's N* = (m + k) / 2), joined with DeLong's interval on the logit scale where that
      reaches further: "hm_delong". O(k) on k distinct scores, any n.
    * Cohen's kappa: the Wilson interval of the observed agreement p_o, mapped by
      kappa = (p_o - p_e) / (1 - p_e) with p_e from the observed answer shares: "wilson_agreement".
    * ``fast=False`` gives a stratified BCa bootstrap instead for F1, AUROC and kappa (method "bca";
      ``n_boot`` resamples from ``numpy.random.default_rng(seed)``; toxic and non-toxic memes are
      resampled within their class, kappa's joint table as one multinomial; the jackknife is done
      on the counts). It is the same interval as ``scipy.stats.bootstrap(method="BCa")`` with the two
      classes as two samples (tested) and costs O(n_boot * k): fine at n ~ 50, slow at 100k.
      ``fast=None`` / ``True`` (default) use the methods above, which draw nothing (``seed`` unused).
    * ``Estimate.method_detail`` names the method in words, with the number of resamples for a
      resampling method ("stratified BCa bootstrap, 2000 resamples"); ``n_boot`` is that number
      (None for the analytic methods).
    * Point values are the textbook formulas on the counts (F1 = 2tp / (2tp + fp + fn), AUROC =
      Mann-Whitney U / (n_pos n_neg), Cohen's kappa from the joint table); the tests check them
      against scikit-learn (f1_score, roc_auc_score, cohen_kappa_score, roc_curve).

Degenerate cases: never a zero-width interval at a boundary
    An interval is either a real one (low < high) from a method that is valid there, or low =
    high = None with ``Estimate.note`` saying why ("not estimable at this n: all scores tied (one
    distinct score)", "undefined: no toxic memes with a score", ...). Perfect separation (AUROC 1 at
    10 + 10 memes) gives [0.80, 1]; F1 = 1 gives [2L / (1 + L), 1] with L Wilson's lower limit;
    identical answers (kappa 1) give [(L - p_e) / (1 - p_e), 1]; all scores tied is not estimable;
    a BCa bootstrap that collapses (all resamples equal) is reported as not estimable, never as
    [x, x]. ``as_dict()`` stays JSON-ready (no NaN).

Speed (the dashboard calls classification_from_counts per prediction set on every page view)
    Everything is O(cells) from counts: about 2 ms per set at 51 and 1,000 memes and 2-5 ms at
    100,000 memes (k = 1,000 to 100,000 distinct scores), measured on 2 shared cores. The
    row-level functions add the counting (numpy sort of the scores, ~10-20 ms per 100k memes).
    roc_points_from_counts returns one point per distinct score, or at most ``max_points`` of them.

Agreement (prompt/model A vs B on the same memes)
    The 2x2 table of right/wrong, its split by true label, Cohen's kappa between A's and B's
    answers, and the exact two-sided McNemar test on the discordant cells (b = only A right,
    c = only B right): ``scipy.stats.binomtest(b, b + c, 0.5).pvalue``, None when b + c = 0.
    ``reading`` says in words what that p-value does and does not show.

Paired comparisons (paired_comparison, paired_comparison_from_counts -> PairedComparison)
    Accuracy A - B with Newcombe's (1998) method-10 interval for paired proportions and the exact
    McNemar p; AUROC A - B over the memes scored by both sets (``n_auroc``; a meme without a score
    in either set is dropped): MOVER interval from the two logit-DeLong intervals with the paired
    DeLong (1988) correlation, and the paired DeLong z-test p. ``holm()``
    adjusts a list of p-values (Holm-Bonferroni step-down); holm_adjust_comparisons() adds
    ``*_p_holm`` and the named ``adjustment`` to each comparison when several pairs are shown.

Texts in the reader's language (English or Russian, pipeline/i18n.py; Russian in
pipeline/locales/ru/stats.py)
    The results keep English (``note``, ``method_detail``, ``reading``, ``adjustment``; the stored
    summaries too); these give the same texts in ``lang`` at display time, from the stored values:
        note_text(note, lang)                       an Estimate note (each one a fixed N_ string)
        method_text(estimate_or_dict, lang)         the interval method with resamples (method_detail)
        reading_text(agreement_dict, name_a, name_b, lang)   the McNemar reading (n, b, c, p)
        adjustment_text(n_pairs, lang)              the Holm adjustment named by holm_adjust_comparisons
    In English each equals the stored text (method_detail says "1 resample", not "1 resamples").
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.special import ndtr, ndtri
from scipy.stats import binom, binomtest

from pipeline.config import NON_TOXIC, TOXIC
from pipeline.i18n import N_, translate, translate_n

CONFIDENCE = 0.95
Z = 1.959963984540054          # norm.ppf(0.975)
DEFAULT_N_BOOT = 2000              # resamples of the BCa bootstrap (fast=False)
_CHUNK_CELLS = 4_000_000           # memory bound of one unstratified bootstrap chunk (benchmark only)


METHOD_NAMES = {                  # Estimate.method -> words for a reader (Estimate.method_detail)
    "wilson": N_("Wilson score"),
    "wilson_jaccard": N_("Wilson on tp/(tp+fp+fn), mapped to F1"),
    "delong_logit": N_("DeLong, logit scale"),
    "hm_score": N_("Hanley-McNeil score"),
    "hm_delong": N_("Hanley-McNeil score joined with DeLong logit"),
    "wilson_agreement": N_("Wilson on the observed agreement, mapped to kappa"),
    "bca": N_("stratified BCa bootstrap"),
    "bca_rows": N_("BCa bootstrap over memes"),        # pipeline/calibration.py: rows resampled, not by class
    "delong_paired": N_("paired DeLong"),
    "mover_delong": N_("MOVER from the two AUROC intervals, paired DeLong correlation"),
    "mover_logit": N_("MOVER from the two logit-DeLong intervals, paired DeLong correlation"),
    "newcombe10": N_("Newcombe paired score (method 10)"),
    "bootstrap": N_("percentile bootstrap"),
    "delong": N_("DeLong"),
}


@dataclass(frozen=True)
class Estimate:
    """A point value with its 95% interval; None where undefined or not estimable."""
    value: float | None     # None when undefined (e.g. precision with no predicted positives)
    low: float | None       # 95% interval; None (both) when it cannot be estimated, see note
    high: float | None
    n: int                  # the denominator / sample size the value rests on
    method: str             # key of METHOD_NAMES, e.g. "wilson", "delong_logit", "bca"
    n_boot: int | None = None   # resampling methods only: resamples drawn (and used); else None
    note: str | None = None     # why there is no interval (or no value), e.g. "not estimable at
                                # this n: all scores tied"; None when the interval is there
    method_detail: str = ""     # words for the method, with the resamples: "stratified BCa
                                # bootstrap, 2000 resamples"; filled in from method and n_boot

    def __post_init__(self) -> None:
        if not self.method_detail:
            object.__setattr__(self, "method_detail", method_text(self, "en"))
        if self.note is None and self.low is None and self.value is not None:
            object.__setattr__(self, "note", N_("not estimable at this n"))

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
        return Estimate(None, None, None, 0, "wilson", note=N_("undefined: no memes"))
    ci = binomtest(k, n).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return Estimate(k / n, _f(ci.low), _f(ci.high), n, "wilson")


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


def _auroc_from_counts(neg: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUROC (ties 1/2) from memes per score group, groups in ascending score order.

    Works on (..., k) arrays: 2U = sum over groups of pos * (2 * negatives up to and including the
    group - negatives in it); NaN where a class is absent.
    """
    twice_u = (pos * (2 * np.cumsum(neg, axis=-1) - neg)).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return twice_u / (2.0 * pos.sum(axis=-1) * neg.sum(axis=-1))


def _auroc_bootstrap(sc: ScoreCounts, rng: np.random.Generator, n_boot: int) -> np.ndarray:
    """AUROC of n_boot unstratified resamples of the memes by index (in chunks that bound memory):
    the resampling of the old percentile interval, kept for benchmarks/coverage.py's comparison.

    The memes are laid out from the counts (non-toxic ones first, each as its score group), and
    each resample is counted per (class, group) cell; drawing indices is ~3x faster here than a
    multinomial draw over the cells, which is the same distribution.
    """
    k = sc.scores.size
    groups = np.arange(k)
    cell = np.concatenate([np.repeat(groups, sc.neg), np.repeat(groups, sc.pos) + k])   # 0..k-1: neg, k..: pos
    n = cell.size
    out = np.empty(n_boot)
    chunk = max(1, _CHUNK_CELLS // max(n, 2 * k))
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(m, n))
        flat = (cell[idx] + (np.arange(m) * 2 * k)[:, None]).ravel()
        counts = np.bincount(flat, minlength=m * 2 * k).reshape(m, 2, k)
        out[start:start + m] = _auroc_from_counts(counts[:, 0], counts[:, 1])
    return out


# ----------------------------------------------------------------------------- interval methods
# Each method returns (low, high) or None where it cannot give an interval; the callers turn None
# into an Estimate with note = "not estimable ...". All are vectorised where the benchmark needs it.

def _wilson_limits(k, n):
    """Wilson score limits for k of n (arrays allowed; n > 0)."""
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    p = k / n
    z2 = Z * Z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z * np.sqrt(np.maximum(p * (1 - p) / n + z2 / (4 * n * n), 0.0)) / (1 + z2 / n)
    low = np.where(k <= 0, 0.0, np.clip(centre - half, 0.0, 1.0))
    high = np.where(k >= n, 1.0, np.clip(centre + half, 0.0, 1.0))
    return low, high


def _f1_jaccard_wilson(tp, m):
    """F1 interval: Wilson on J = tp / m (m = tp + fp + fn + unparsed toxic), mapped by F1 = 2J / (1 + J).

    Given m, tp is binomial(m, J) when memes are drawn at random (the cells are multinomial), so
    this is the Wilson interval of a proportion carried through a monotone map: it stays inside
    [0, 1] and is not degenerate at F1 = 1 or 0.
    """
    lo, hi = _wilson_limits(tp, m)
    return 2 * lo / (1 + lo), 2 * hi / (1 + hi)


def _hm_variance(theta, m, k):
    """Hanley-McNeil variance function of the Mann-Whitney AUROC at theta, with m - 1 and k - 1
    (toxic / non-toxic memes less one) both replaced by N* - 1, N* = (m + k) / 2 (Newcombe 2006)."""
    n_star = (m + k) / 2.0
    return theta * (1 - theta) / (m * k) * (1 + (n_star - 1) * ((1 - theta) / (2 - theta) + theta / (1 + theta)))


def _hm_score_limits(value, m, k, iters: int = 60):
    """Score-type AUROC interval: the theta in [0, 1] with (value - theta)^2 <= Z^2 V_HM(theta),
    found by bisection on each side of the estimate (arrays allowed). At value = 1 the upper limit
    is 1 and the lower one a real bound (V_HM(1) = 0 is only reached at theta = 1)."""
    value = np.asarray(value, dtype=float)
    m, k = np.asarray(m, dtype=float), np.asarray(k, dtype=float)

    def inside(theta):
        return (value - theta) ** 2 <= Z * Z * _hm_variance(theta, m, k)

    out = []
    for far in (np.zeros_like(value), np.ones_like(value)):     # lower limit, then upper
        a, b = far.copy(), value.copy()                          # outside (or the end), inside
        a_in = inside(a)
        for _ in range(iters):
            mid = (a + b) / 2
            ins = inside(mid)
            a, b = np.where(ins, a, mid), np.where(ins, mid, b)
        out.append(np.where(a_in, far, b))
    return out[0], out[1]


def _delong_components(sc: ScoreCounts):
    """Per score group: V10 (share of non-toxic memes below a toxic meme there, ties 1/2) and V01
    (share of toxic memes above a non-toxic meme there)."""
    m, k = sc.n_pos, sc.n_neg
    v10 = (np.cumsum(sc.neg) - 0.5 * sc.neg) / k
    v01 = (m - np.cumsum(sc.pos) + 0.5 * sc.pos) / m
    return v10, v01


def _delong_se(sc: ScoreCounts, value: float) -> float:
    """DeLong's standard error of the Mann-Whitney AUROC, from the counts (needs m, k >= 2)."""
    m, k = sc.n_pos, sc.n_neg
    v10, v01 = _delong_components(sc)
    var10 = (sc.pos * (v10 - value) ** 2).sum() / (m - 1)
    var01 = (sc.neg * (v01 - value) ** 2).sum() / (k - 1)
    return math.sqrt(max(var10 / m + var01 / k, 0.0))


def _logit_limits(value, se):
    """Wald limits on the logit scale, value in (0, 1), se on the original scale (delta method)."""
    value, se = np.asarray(value, dtype=float), np.asarray(se, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        lg = np.log(value / (1 - value))
        h = Z * se / (value * (1 - value))
        return 1 / (1 + np.exp(-(lg - h))), 1 / (1 + np.exp(-(lg + h)))


def _bca_limits(value: float, boot: np.ndarray, jack: np.ndarray, jack_w: np.ndarray):
    """BCa limits (Efron 1987) from resample statistics and leave-one-out values.

    ``jack`` holds the statistic with one meme of a kind left out and ``jack_w`` how many memes
    are of that kind (the jackknife from counts). Returns None where BCa cannot be formed: all
    resamples on one side of the estimate, or a constant jackknife (e.g. perfect separation).
    """
    boot = boot[np.isfinite(boot)]
    if boot.size == 0:
        return None
    prop = (np.count_nonzero(boot < value) + 0.5 * np.count_nonzero(boot == value)) / boot.size
    keep = (jack_w > 0) & np.isfinite(jack)
    jack, w = jack[keep], jack_w[keep].astype(float)
    if not 0 < prop < 1 or w.sum() < 2:
        return None
    d = (w * jack).sum() / w.sum() - jack
    s2 = (w * d * d).sum()
    if s2 <= 1e-300:
        return None
    a = (w * d ** 3).sum() / (6 * s2 ** 1.5)
    z0 = ndtri(prop)
    zq = np.array([-Z, Z])
    q = ndtr(z0 + (z0 + zq) / (1 - a * (z0 + zq)))
    low, high = np.quantile(boot, q)
    if not high > low:
        return None
    return float(low), float(high)


def _fce_kappa_se(joint: np.ndarray) -> float | None:
    """Fleiss, Cohen & Everitt (1969) large-sample standard error of Cohen's kappa (k x k table)."""
    n = joint.sum()
    p = joint / n
    r, c = p.sum(axis=1), p.sum(axis=0)
    p_o, p_e = np.trace(p), float(r @ c)
    if p_e >= 1 - 1e-12:
        return None
    kap = (p_o - p_e) / (1 - p_e)
    diag = np.diag(p)
    t1 = (diag * (1 - (r + c) * (1 - kap)) ** 2).sum()
    off = p * (c[:, None] + r[None, :]) ** 2
    t2 = (1 - kap) ** 2 * (off.sum() - np.trace(off))
    t3 = (kap - p_e * (1 - kap)) ** 2
    var = (t1 + t2 - t3) / (n * (1 - p_e) ** 2)
    return math.sqrt(var) if var > 0 else 0.0


def _auroc_boot_stratified(sc: ScoreCounts, rng: np.random.Generator, n_boot: int) -> np.ndarray:
    """AUROC of n_boot stratified resamples: the toxic and the non-toxic memes are each resampled
    with replacement within their class (a multinomial draw over the score groups), so every
    resample keeps both classes and their sizes."""
    m, k = sc.n_pos, sc.n_neg
    pos = rng.multinomial(m, sc.pos / m, size=n_boot)
    neg = rng.multinomial(k, sc.neg / k, size=n_boot)
    return _auroc_from_counts(neg, pos)


def _auroc_jackknife(sc: ScoreCounts):
    """Leave-one-out AUROC per kind of meme (a toxic or a non-toxic meme of each score group) and
    how many memes are of that kind: the BCa acceleration from counts."""
    m, k = sc.n_pos, sc.n_neg
    twice_u = (sc.pos * (2 * np.cumsum(sc.neg) - sc.neg)).sum()
    below = 2 * np.cumsum(sc.neg) - sc.neg                 # 2 x (non-toxic below + half the tied ones)
    above = 2 * (m - np.cumsum(sc.pos)) + sc.pos           # 2 x (toxic above + half the tied ones)
    with np.errstate(invalid="ignore", divide="ignore"):
        drop_pos = (twice_u - below) / (2.0 * (m - 1) * k)
        drop_neg = (twice_u - above) / (2.0 * m * (k - 1))
    return np.concatenate([drop_pos, drop_neg]), np.concatenate([sc.pos, sc.neg])


def _f1_boot_stratified(tp, fn, fp, tn, rng: np.random.Generator, n_boot: int) -> np.ndarray:
    """F1 of n_boot resamples stratified by the true label (fn includes unparsed toxic memes)."""
    m, k = tp + fn, fp + tn
    tp_b = rng.binomial(m, tp / m, size=n_boot) if m else np.zeros(n_boot, np.int64)
    fp_b = rng.binomial(k, fp / k, size=n_boot) if k else np.zeros(n_boot, np.int64)
    return _f1_from_counts(tp_b, fp_b, m - tp_b)


def _f1_jackknife(tp, fp, fn, tn):
    """Leave-one-out F1 per confusion cell (tp, fp, fn, tn) and the memes in each."""
    jack = np.array([_f1_from_counts(tp - 1, fp, fn), _f1_from_counts(tp, fp - 1, fn),
                     _f1_from_counts(tp, fp, fn - 1), _f1_from_counts(tp, fp, fn)], dtype=float)
    return jack, np.array([tp, fp, fn, tn])


def _kappa_jackknife(joint: np.ndarray):
    """Leave-one-out kappa per cell of the joint answer table and the memes in each."""
    cells = joint.ravel()
    tables = np.repeat(joint[None], cells.size, axis=0).reshape(cells.size, -1)
    tables[np.arange(cells.size), np.arange(cells.size)] -= 1
    tables = np.maximum(tables, 0).reshape((cells.size,) + joint.shape)
    return _kappa_from_tables(tables), cells


def _kappa_wilson_limits(joint: np.ndarray):
    """Kappa interval from the Wilson interval of the observed agreement p_o (memes on the diagonal
    of the joint answer table, out of n), mapped by kappa = (p_o - p_e) / (1 - p_e) with the chance
    agreement p_e taken from the observed answer shares. (None, None) where kappa is undefined."""
    n = joint.sum()
    if n == 0:
        return None, None
    r, c = joint.sum(axis=1) / n, joint.sum(axis=0) / n
    p_e = float(r @ c)
    if p_e >= 1 - 1e-12:
        return None, None
    lo, hi = _wilson_limits(np.trace(joint), n)
    return max(-1.0, (float(lo) - p_e) / (1 - p_e)), min(1.0, (float(hi) - p_e) / (1 - p_e))


# ----------------------------------------------------------------------------- aggregated inputs
# Every statistic here depends only on counts: memes per (true label, answer) cell, and for AUROC /
# ROC memes per (score, true label). SQL can count them (pipeline/summary.py) so that no meme-level
# rows leave the database; the row-level functions below count them with numpy and call the same code.

_ANSWER_INDEX = {None: 0, NON_TOXIC: 1, TOXIC: 2}          # answer axis: unparseable, non_toxic, toxic


@dataclass(frozen=True)
class ScoreCounts:
    """Memes per distinct score and true class, scores ascending: all that AUROC and ROC need."""
    scores: np.ndarray      # float64, distinct, ascending (no NaN)
    neg: np.ndarray         # int64: non-toxic memes with that score
    pos: np.ndarray         # int64: toxic memes with that score

    def __post_init__(self) -> None:
        if not (self.scores.shape == self.neg.shape == self.pos.shape and self.scores.ndim == 1):
            raise ValueError("ScoreCounts: scores, neg and pos must be 1-d arrays of one length")
        if self.scores.size > 1 and not np.all(np.diff(self.scores) > 0):
            raise ValueError("ScoreCounts: scores must be distinct and ascending")

    @classmethod
    def from_rows(cls, y: np.ndarray, s: np.ndarray) -> ScoreCounts:
        """From aligned 0/1 labels and finite scores."""
        values, group = np.unique(s, return_inverse=True)
        k = values.size
        return cls(values.astype(float), np.bincount(group[y == 0], minlength=k).astype(np.int64),
                   np.bincount(group[y == 1], minlength=k).astype(np.int64))

    @property
    def n_pos(self) -> int:
        return int(self.pos.sum())

    @property
    def n_neg(self) -> int:
        return int(self.neg.sum())

    @property
    def n(self) -> int:
        return self.n_pos + self.n_neg


def answer_table(rows: Iterable[Sequence]) -> np.ndarray:
    """Memes per (true label, answer, [answer B, ...]) from ``(truth, answer, [answer B,] memes)`` rows.

    E.g. the rows of ``SELECT truth, answer, count(*) ... GROUP BY ALL``. Returns an int64 array
    indexed [truth][answer]...: truth 0 = non_toxic, 1 = toxic; answer 0 = unparseable (None/NaN),
    1 = non_toxic, 2 = toxic. Rows without a true label are dropped; any other value is an error.
    """
    rows = [tuple(r) for r in rows]
    width = {len(r) for r in rows}
    if len(width) > 1 or (width and min(width) < 3):
        raise ValueError("answer_table: rows must be (truth, answer, ..., count) of one width")
    n_answers = (width.pop() - 2) if width else 1
    table = np.zeros((2,) + (3,) * n_answers, dtype=np.int64)
    for r in rows:
        truth, answers, count = r[0], r[1:-1], int(r[-1])
        if _missing(truth):
            continue
        if truth not in _CODES:
            raise ValueError(f"true label {truth!r}: expected {TOXIC!r}, {NON_TOXIC!r} or None")
        idx = [_CODES[truth]]
        for a in answers:
            a = None if _missing(a) else a
            if a not in _ANSWER_INDEX:
                raise ValueError(f"answer {a!r}: expected {TOXIC!r}, {NON_TOXIC!r} or None")
            idx.append(_ANSWER_INDEX[a])
        table[tuple(idx)] += count
    return table


def _table_from_codes(t: np.ndarray, *answers: np.ndarray) -> np.ndarray:
    """answer_table from aligned code arrays (truth 0/1; answers -1/0/1)."""
    table = np.zeros((2,) + (3,) * len(answers), dtype=np.int64)
    np.add.at(table, (t,) + tuple(a + 1 for a in answers), 1)
    return table


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
    Counts the rows and calls classification_from_counts.
    """
    _check_lengths(y_true=y_true, y_pred=y_pred, scores=scores)
    t_all = _label_codes(y_true, "y_true", allow_missing=True)
    keep = t_all >= 0
    t = t_all[keep]
    p = _label_codes(y_pred, "y_pred", allow_missing=True)[keep]
    score_counts = None
    if scores is not None:
        s = _score_array(scores)[keep]
        has = ~np.isnan(s)
        score_counts = ScoreCounts.from_rows(t[has], s[has])
    return classification_from_counts(_table_from_codes(t, p), score_counts, seed=seed, n_boot=n_boot, fast=fast)


def classification_from_counts(
    table: np.ndarray,
    score_counts: ScoreCounts | None = None,
    *,
    seed: int = 0,
    n_boot: int = DEFAULT_N_BOOT,
    fast: bool | None = None,
) -> ClassificationReport:
    """classification_metrics from counts: ``table`` = answer_table(...) of one prediction set
    (shape (2, 3)), ``score_counts`` = its memes per (score, true label) or None without scores."""
    table = np.asarray(table, dtype=np.int64)
    if table.shape != (2, 3):
        raise ValueError(f"answer table of one prediction set has shape (2, 3), not {table.shape}")
    (u_non, tn, fp), (u_tox, fn, tp) = (map(int, row) for row in table)
    n = u_non + tn + fp + u_tox + fn + tp
    n_unp = u_tox + u_non
    confusion = dict(tp=tp, fp=fp, fn=fn, tn=tn, unparsed_toxic=u_tox, unparsed_non_toxic=u_non)

    seq_f1, seq_auc = np.random.SeedSequence(seed).spawn(2)
    f1 = f1_estimate(tp, fp, fn + u_tox, tn + u_non, rng=np.random.default_rng(seq_f1), n_boot=n_boot,
                     fast=fast)

    auroc = None
    if score_counts is not None:
        auroc = auroc_estimate(score_counts, rng=np.random.default_rng(seq_auc), n_boot=n_boot, fast=fast)

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


def f1_estimate(tp: int, fp: int, fn_all: int, tn_all: int, *, rng: np.random.Generator | None = None,
                n_boot: int = DEFAULT_N_BOOT, fast: bool | None = None) -> Estimate:
    """Toxic-class F1 = 2 tp / (2 tp + fp + fn_all) with its 95% interval.

    ``fn_all`` counts every toxic meme not said toxic (parsed misses and unparseable answers),
    ``tn_all`` every non-toxic meme not said toxic. Default: Wilson interval of J = tp / (tp + fp +
    fn_all) mapped by F1 = 2J / (1 + J) (method "wilson_jaccard"); ``fast=False``: stratified BCa
    with ``n_boot`` resamples (method "bca").
    """
    tp, fp, fn_all, tn_all = int(tp), int(fp), int(fn_all), int(tn_all)
    n = tp + fp + fn_all + tn_all
    m = tp + fp + fn_all
    use_bca = fast is False
    method, nb = ("bca", n_boot) if use_bca else ("wilson_jaccard", None)
    if m == 0:
        note = (N_("undefined: no memes") if n == 0 else
                N_("undefined: no toxic memes and none said toxic"))
        return Estimate(None, None, None, n, method, nb, note=note)
    value = 2 * tp / (2 * tp + fp + fn_all)
    if not use_bca:
        lo, hi = _f1_jaccard_wilson(tp, m)
        return Estimate(value, _f(lo), _f(hi), n, method)
    rng = rng if rng is not None else np.random.default_rng(0)
    boot = _f1_boot_stratified(tp, fn_all, fp, tn_all, rng, n_boot)
    jack, w = _f1_jackknife(tp, fp, fn_all, tn_all)
    lim = _bca_limits(value, boot, jack, w)
    if lim is None:
        return Estimate(value, None, None, n, method, nb,
                        note=N_("not estimable by BCa at this n: the resamples do not vary around the estimate"))
    return Estimate(value, lim[0], lim[1], n, method, nb)


def _auroc_analytic(sc: ScoreCounts, value: float) -> Estimate:
    """The default AUROC interval (method "hm_delong"): the Hanley-McNeil score interval, widened
    to DeLong's logit-scale interval where that one reaches further (the union of the two).

    The score interval is what keeps coverage at n ~ 50 near AUROC 1 and stays a real interval at
    perfect separation ([0.8, 1] at 10 + 10 memes); DeLong's variance is nonparametric and guards
    against score shapes the Hanley-McNeil variance does not fit, which matters at large n.
    DeLong is skipped where its variance is 0 (AUROC 0 or 1) or a class has a single meme.
    All scores tied: not estimable.
    """
    n, m, k = sc.n, sc.n_pos, sc.n_neg
    if sc.scores.size < 2:
        return Estimate(value, None, None, n, "hm_delong",
                        note=N_("not estimable at this n: all scores tied (one distinct score)"))
    lo, hi = (float(x) for x in _hm_score_limits(value, m, k))
    se = _delong_se(sc, value) if m >= 2 and k >= 2 else 0.0
    if se > 0 and 0 < value < 1:
        dlo, dhi = _logit_limits(value, se)
        lo, hi = min(lo, float(dlo)), max(hi, float(dhi))
    return Estimate(value, _f(lo), _f(hi), n, "hm_delong")


def auroc_estimate(sc: ScoreCounts, *, rng: np.random.Generator | None = None, n_boot: int = DEFAULT_N_BOOT,
                   fast: bool | None = None) -> Estimate:
    """AUROC of memes counted per (score, true label) with its 95% interval.

    Default (``fast`` None or True): Hanley-McNeil score interval joined with DeLong's logit
    interval (see _auroc_analytic); O(k) on k distinct scores at any n. ``fast=False``:
    stratified BCa bootstrap with ``n_boot`` resamples (O(n_boot * k); slow at large k).
    """
    n = sc.n
    use_bca = fast is False
    method, nb = ("bca", n_boot) if use_bca else ("hm_delong", None)
    if sc.n_pos == 0 or sc.n_neg == 0:                       # one class (or none): undefined
        note = (N_("undefined: no memes with a score") if n == 0 else
                N_("undefined: no toxic memes with a score") if sc.n_pos == 0 else
                N_("undefined: no non-toxic memes with a score"))
        return Estimate(None, None, None, n, method, nb, note=note)
    value = float(_auroc_from_counts(sc.neg, sc.pos))
    if not use_bca:
        return _auroc_analytic(sc, value)
    if sc.scores.size < 2:
        return Estimate(value, None, None, n, method, nb,
                        note=N_("not estimable at this n: all scores tied (one distinct score)"))
    rng = rng if rng is not None else np.random.default_rng(0)
    jack, w = _auroc_jackknife(sc)
    lim = _bca_limits(value, _auroc_boot_stratified(sc, rng, n_boot), jack, w)
    if lim is None:
        return Estimate(value, None, None, n, method, nb,
                        note=N_("not estimable by BCa at this n: the resamples do not vary around the "
                                "estimate (e.g. perfect separation)"))
    return Estimate(value, lim[0], lim[1], n, method, nb)


def kappa_estimate(joint: np.ndarray, *, rng: np.random.Generator | None = None, n_boot: int = DEFAULT_N_BOOT,
                   fast: bool | None = None) -> Estimate:
    """Cohen's kappa of a k x k joint answer table (A's answer x B's answer) with its 95% interval.

    Default: Wilson interval of the observed agreement mapped to kappa with the observed chance
    agreement (method "wilson_agreement"); ``fast=False``: BCa bootstrap (method "bca").
    """
    joint = np.asarray(joint, dtype=np.int64)
    n = int(joint.sum())
    use_bca = fast is False
    method, nb = ("bca", n_boot) if use_bca else ("wilson_agreement", None)
    value = _f(_kappa_from_tables(joint)) if n else None
    if value is None:
        note = (N_("undefined: no memes") if n == 0 else
                N_("undefined: both answer sets give one and the same answer to every meme (chance agreement 1)"))
        return Estimate(None, None, None, n, method, nb, note=note)
    if not use_bca:
        lo, hi = _kappa_wilson_limits(joint)
        return Estimate(value, min(lo, value), max(hi, value), n, method)   # no rounding past the value
    rng = rng if rng is not None else np.random.default_rng(0)
    boot = _kappa_from_tables(rng.multinomial(n, joint.ravel() / n, size=n_boot).reshape((-1,) + joint.shape))
    jack, w = _kappa_jackknife(joint)
    lim = _bca_limits(value, boot, jack, w.ravel())
    if lim is None:
        return Estimate(value, None, None, n, method, nb,
                        note=N_("not estimable by BCa at this n: the resamples do not vary around the "
                                "estimate (e.g. identical answers)"))
    return Estimate(value, lim[0], lim[1], n, method, nb)


def roc_curve_points(y_true: Sequence[str], scores: Sequence[float | None]) -> list[dict]:
    """ROC curve as [{fpr, tpr, threshold}], toxic positive: see roc_points_from_counts.

    Rows without a true label or without a score are skipped.
    """
    _check_lengths(y_true=y_true, scores=scores)
    t = _label_codes(y_true, "y_true", allow_missing=True)
    s = _score_array(scores)
    keep = (t >= 0) & ~np.isnan(s)
    return roc_points_from_counts(ScoreCounts.from_rows(t[keep], s[keep]))


def roc_points_from_counts(sc: ScoreCounts, max_points: int | None = None) -> list[dict]:
    """One point per distinct score, thresholds high to low, as sklearn.metrics.roc_curve with
    drop_intermediate=False; [] when a class is missing. The first point (0, 0) has threshold
    None (sklearn's +inf: nothing predicted toxic), so the list serialises to strict JSON.

    ``max_points`` thins a longer curve for drawing: evenly spaced points, always the first and last.
    """
    if sc.n_pos == 0 or sc.n_neg == 0:
        return []
    fpr = np.concatenate([[0.0], np.cumsum(sc.neg[::-1]) / sc.n_neg])
    tpr = np.concatenate([[0.0], np.cumsum(sc.pos[::-1]) / sc.n_pos])
    thr = np.concatenate([[np.nan], sc.scores[::-1]])
    if max_points is not None and fpr.size > max_points:
        keep = np.unique(np.round(np.linspace(0, fpr.size - 1, max(2, max_points))).astype(np.int64))
        fpr, tpr, thr = fpr[keep], tpr[keep], thr[keep]
    return [{"fpr": a, "tpr": b, "threshold": _f(c)} for a, b, c in zip(fpr.tolist(), tpr.tolist(), thr.tolist())]


# ----------------------------------------------------------------------------- agreement

_TABLE_KEYS = ("both_right", "only_a_right", "only_b_right", "both_wrong")


def _min_significant_split(d: int) -> int | None:
    """Smallest k such that a k-to-(d-k) discordant split gives exact McNemar p < 0.05, or None.

    For p = 1/2 the two-sided exact p of k > d/2 is 2 * P(X >= k), X ~ Binomial(d, 1/2) (what
    binomtest gives), so all splits are checked at once.
    """
    ks = np.arange((d + 2) // 2, d + 1)
    p = np.minimum(1.0, 2 * binom.sf(ks - 1, d, 0.5))
    hit = np.flatnonzero(p < 0.05)
    return int(ks[hit[0]]) if hit.size else None


def _reading(n: int, b: int, c: int, p: float | None, name_a: str, name_b: str, lang: str = "en") -> str:
    """What the exact McNemar p of b (only A right) vs c (only B right) of n memes does and does not
    show, in `lang`. The English is composed of fragments that are catalog keys; fragments with a
    count are plural entries (translate_n) whose English singular and plural are the same text, so
    the English reading stays word for word what it always was (and what the summaries store)."""
    def t(text: str, **fields) -> str:
        return translate(text, lang, **fields)

    def tn(k: int, text: str, **fields) -> str:
        return translate_n(k, text, text, lang, **fields)

    if n == 0:
        return t(N_("No memes with a true label: there is nothing to compare."))
    d = b + c
    if d == 0:
        return tn(n, N_("{name_a} and {name_b} are right and wrong on exactly the same {n} memes, so McNemar's "
                        "test has nothing to compare. This does not show they are equally good in general, "
                        "only that these {n} memes do not separate them."), name_a=name_a, name_b=name_b)
    diff = (b - c) / n
    head = t(N_("{only_a}, {only_b} (accuracy difference {diff:+.1%} {over_n}); exact McNemar p = {p:.3g}."),
             only_a=tn(b, N_("{name_a} is right where {name_b} is wrong on {n} memes"), name_a=name_a, name_b=name_b),
             only_b=t(N_("{name_b} right where {name_a} is wrong on {c}"), name_a=name_a, name_b=name_b, c=c),
             diff=diff, over_n=tn(n, N_("over {n} memes")), p=p)
    if p < 0.05:
        return head + t(N_(" A split this uneven would be unlikely (p < 0.05) if {name_a} and {name_b} "
                           "were equally accurate on memes like these; on its own it says nothing about how "
                           "large or how important the difference is."), name_a=name_a, name_b=name_b)
    k = _min_significant_split(d)
    if k is None:
        power = tn(d, N_("with only {n} memes where exactly one of them is right, no split at all could "
                         "reach p < 0.05, so this comparison cannot detect any difference"))
    else:
        smallest = (2 * k - d) / n                             # accuracy gap of that split
        size = (t(N_("only large differences are detectable at this sample size")) if smallest >= 0.05
                else t(N_("a smaller true difference could go unnoticed")))
        power = t(N_("{with_d}, p < 0.05 would need a split of at least {k} to {rest}, an accuracy "
                     "difference of {smallest:.1%} {over_n}; {size}"),
                  with_d=tn(d, N_("with {n} memes where exactly one of them is right")), k=k, rest=d - k,
                  smallest=smallest, over_n=tn(n, N_("over {n} memes")), size=size)
    return head + t(N_(" p >= 0.05 does not show that {name_a} and {name_b} are equally good: {power}."),
                    name_a=name_a, name_b=name_b, power=power)


# ----------------------------------------------------------------------------- texts in a language
# The stored results (as_dict(), the summaries table) keep English; these give the texts of a result
# in the reader's language at display time (pipeline/i18n.py; Russian in pipeline/locales/ru/stats.py).

def note_text(note: str | None, lang: str) -> str:
    """An ``Estimate.note`` (why there is no interval or no value) in `lang`; "" for None.

    Every note is one fixed catalog string (the ``N_`` literals of this module), so the English note
    is its own key; a note this code does not know (e.g. stored by older code) comes back in English."""
    if not note:
        return ""
    return translate(note, lang)


def method_text(e: dict | Estimate | None, lang: str) -> str:
    """The interval method of an Estimate (or its as_dict()) in words, with the number of resamples
    of a resampling method, in `lang`; "" for None. In English it is ``Estimate.method_detail``
    ("stratified BCa bootstrap, 2000 resamples"). An unknown method key is shown as it is."""
    if e is None:
        return ""
    if isinstance(e, Estimate):
        method, n_boot, detail = e.method, e.n_boot, e.method_detail
    else:
        method, n_boot, detail = e.get("method"), e.get("n_boot"), e.get("method_detail") or ""
    if method not in METHOD_NAMES and detail:
        return detail
    text = translate(METHOD_NAMES[method], lang) if method in METHOD_NAMES else str(method or "")
    if n_boot is not None:
        text = translate(N_("{method}, {resamples}"), lang, method=text,
                         resamples=translate_n(int(n_boot), "{n} resample", N_("{n} resamples"), lang))
    return text


def reading_text(m: dict, name_a: str, name_b: str, lang: str) -> str:
    """The plain-language McNemar reading (``AgreementReport.reading``) in `lang`, from the stored
    numbers of an agreement result: ``m`` = AgreementReport.as_dict() (n, table.only_a_right,
    table.only_b_right, mcnemar_p), or any dict with n, b (only A right), c (only B right) and
    mcnemar_p (or p). In English it equals the stored ``reading`` of the same names."""
    table = m.get("table") or {}
    b = m["b"] if "b" in m else table["only_a_right"]
    c = m["c"] if "c" in m else table["only_b_right"]
    p = m["mcnemar_p"] if "mcnemar_p" in m else m.get("p")
    return _reading(int(m["n"]), int(b), int(c), p, name_a, name_b, lang)


def adjustment_text(n_pairs: int, lang: str) -> str:
    """The ``adjustment`` that holm_adjust_comparisons() names, for `n_pairs` comparisons, in `lang`
    (in English the stored text itself)."""
    return translate_n(n_pairs, HOLM_PAIRS, HOLM_PAIRS, lang)


def agreement(
    y_true: Sequence[str],
    pred_a: Sequence[str | None],
    pred_b: Sequence[str | None],
    *,
    seed: int = 0,
    n_boot: int = DEFAULT_N_BOOT,
    name_a: str = "A",
    name_b: str = "B",
    fast: bool | None = None,
) -> AgreementReport:
    """Compare two sets of answers on the same memes (rows aligned; None = unparseable = wrong).

    Counts the rows and calls agreement_from_counts."""
    _check_lengths(y_true=y_true, pred_a=pred_a, pred_b=pred_b)
    t_all = _label_codes(y_true, "y_true", allow_missing=True)
    keep = t_all >= 0
    a = _label_codes(pred_a, "pred_a", allow_missing=True)[keep]
    b = _label_codes(pred_b, "pred_b", allow_missing=True)[keep]
    return agreement_from_counts(_table_from_codes(t_all[keep], a, b), seed=seed, n_boot=n_boot,
                                 name_a=name_a, name_b=name_b, fast=fast)


def agreement_from_counts(
    table: np.ndarray,
    *,
    seed: int = 0,
    n_boot: int = DEFAULT_N_BOOT,
    name_a: str = "A",
    name_b: str = "B",
    fast: bool | None = None,
) -> AgreementReport:
    """agreement from ``table`` = answer_table(...) of (truth, answer A, answer B) rows, shape (2, 3, 3)."""
    table = np.asarray(table, dtype=np.int64)
    if table.shape != (2, 3, 3):
        raise ValueError(f"answer table of two prediction sets has shape (2, 3, 3), not {table.shape}")
    n = int(table.sum())
    by_label, total = _right_wrong_cells(table)

    kappa = kappa_estimate(table.sum(axis=0), rng=np.random.default_rng(seed), n_boot=n_boot, fast=fast)

    bb, cc = total["only_a_right"], total["only_b_right"]
    p = float(binomtest(bb, bb + cc, 0.5).pvalue) if bb + cc else None
    return AgreementReport(n=n, table=total, by_label=by_label, kappa=kappa, mcnemar_p=p,
                           reading=_reading(n, bb, cc, p, name_a, name_b))


def _right_wrong_cells(table: np.ndarray) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """Memes per (A right?, B right?) cell of a (truth, answer A, answer B) table: per true label and
    in total. Answer index 1 = non_toxic, 2 = toxic: an answer is right where it equals truth + 1;
    an unparseable answer (index 0) is wrong."""
    right = np.zeros((2, 3), dtype=bool)
    right[0, 1] = right[1, 2] = True
    by_label = {}
    for truth, label in ((1, TOXIC), (0, NON_TOXIC)):
        t = table[truth]
        ra, rb = right[truth][:, None], right[truth][None, :]
        by_label[label] = {"both_right": int(t[ra & rb].sum()), "only_a_right": int(t[ra & ~rb].sum()),
                           "only_b_right": int(t[~ra & rb].sum()), "both_wrong": int(t[~ra & ~rb].sum())}
    total = {k: by_label[TOXIC][k] + by_label[NON_TOXIC][k] for k in _TABLE_KEYS}
    return by_label, total


# ----------------------------------------------------------------------------- paired comparisons

@dataclass(frozen=True)
class PairedComparison:
    """Prediction set A against B on the same memes: differences A - B with 95% intervals."""
    n: int                          # memes with a true label (both answer sets aligned to them)
    n_auroc: int                    # memes with a score in both sets: what the AUROC difference uses
    accuracy_a: Estimate
    accuracy_b: Estimate
    accuracy_diff: Estimate         # accuracy A - B, Newcombe's paired score interval (method 10)
    mcnemar_p: float | None         # exact two-sided McNemar on the discordant memes; None without any
    auroc_a: Estimate | None        # on the n_auroc memes; None when no scores were given
    auroc_b: Estimate | None
    auroc_diff: Estimate | None     # AUROC A - B: MOVER from both logit-DeLong intervals, paired DeLong correlation
    auroc_p: float | None           # paired DeLong two-sided z-test p for AUROC A = AUROC B
    name_a: str = "A"
    name_b: str = "B"

    def as_dict(self) -> dict:
        def e(x):
            return None if x is None else x.as_dict()
        return {"n": self.n, "n_auroc": self.n_auroc, "name_a": self.name_a, "name_b": self.name_b,
                "accuracy_a": e(self.accuracy_a), "accuracy_b": e(self.accuracy_b),
                "accuracy_diff": e(self.accuracy_diff), "mcnemar_p": self.mcnemar_p,
                "auroc_a": e(self.auroc_a), "auroc_b": e(self.auroc_b), "auroc_diff": e(self.auroc_diff),
                "auroc_p": self.auroc_p}


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni step-down adjusted p-values, in the input order.

    The m p-values that are not None are sorted ascending, p_(i) becomes max over j <= i of
    min(1, (m - j + 1) p_(j)) (so the adjusted values are monotone in the raw ones and capped at 1);
    None passes through and does not count towards m. Rejecting where the adjusted p < alpha
    controls the family-wise error rate at alpha for any dependence between the tests.
    """
    vals = [(i, float(p)) for i, p in enumerate(pvalues) if p is not None and not _missing(p)]
    out: list[float | None] = [None] * len(pvalues)
    m = len(vals)
    running = 0.0
    for rank, (i, p) in enumerate(sorted(vals, key=lambda t: t[1])):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


_PAIRED_AUROC_METHOD = "mover_logit"  # "mover_delong" or "delong_paired" (Wald): benchmarks/coverage.py compares them
HOLM = "Holm-Bonferroni (step-down) over the pairs shown"
HOLM_PAIRS = N_("Holm-Bonferroni (step-down) over the pairs shown ({n} pairs; McNemar and AUROC each a family)")


def holm_adjust_comparisons(comparisons: Sequence[PairedComparison]) -> list[dict]:
    """as_dict() of each comparison plus ``mcnemar_p_holm`` and ``auroc_p_holm``: each p-value
    adjusted by holm() over all comparisons shown (one family per test), and ``adjustment``
    naming it. Use whenever more than one pair is shown."""
    mc = holm([c.mcnemar_p for c in comparisons])
    au = holm([c.auroc_p for c in comparisons])
    out = []
    for c, p1, p2 in zip(comparisons, mc, au):
        d = c.as_dict()
        d.update(mcnemar_p_holm=p1, auroc_p_holm=p2,
                 adjustment=adjustment_text(len(comparisons), "en"))
        out.append(d)
    return out


def _newcombe10(both_right: int, only_a: int, only_b: int, both_wrong: int) -> tuple[float, float] | None:
    """Newcombe (1998) method 10: interval for the paired difference of proportions
    (a + b) / n - (a + c) / n from the Wilson limits of both, with the phi correlation."""
    a, b, c, d = both_right, only_a, only_b, both_wrong
    n = a + b + c + d
    if n == 0:
        return None
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = (float(x) for x in _wilson_limits(a + b, n))
    l2, u2 = (float(x) for x in _wilson_limits(a + c, n))
    denom = (a + b) * (c + d) * (a + c) * (b + d)
    phi = (a * d - b * c) / math.sqrt(denom) if denom > 0 else 0.0
    diff = p1 - p2
    dl = math.sqrt(max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0.0))
    du = math.sqrt(max((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2, 0.0))
    return max(-1.0, diff - dl), min(1.0, diff + du)


def _group_components(y: np.ndarray, s: np.ndarray, w: np.ndarray):
    """DeLong components per row of (label, score, memes) rows: V10 for toxic rows, V01 for non-toxic."""
    values, inv = np.unique(s, return_inverse=True)
    kk = values.size
    neg = np.bincount(inv[y == 0], weights=w[y == 0], minlength=kk)
    pos = np.bincount(inv[y == 1], weights=w[y == 1], minlength=kk)
    m, k = pos.sum(), neg.sum()
    v10 = ((np.cumsum(neg) - 0.5 * neg) / k)[inv]
    v01 = ((m - np.cumsum(pos) + 0.5 * pos) / m)[inv]
    auc = float((pos * (np.cumsum(neg) - 0.5 * neg)).sum() / (m * k))
    return v10, v01, auc, ScoreCounts(values.astype(float), neg.astype(np.int64), pos.astype(np.int64))


def paired_auroc_from_rows(y: np.ndarray, score_a: np.ndarray, score_b: np.ndarray,
                           memes: np.ndarray | None = None) -> tuple[Estimate, Estimate, Estimate, float | None]:
    """(AUROC A, AUROC B, A - B, p) on memes with both scores: ``y`` 0/1, finite scores, ``memes``
    how many memes each row stands for (rows of a GROUP BY truth, score_a, score_b; default 1).

    DeLong, DeLong & Clarke-Pearson (1988): per-meme components V10 / V01 of both AUROCs, their
    2 x 2 covariance within each class, var(A - B) = (S10_aa + S10_bb - 2 S10_ab) / m +
    (S01_aa + S01_bb - 2 S01_ab) / k; the p-value is the two-sided z test of A - B on that
    variance. The interval (method "mover_logit") is MOVER (Zou & Donner 2008, the construction
    of Newcombe's method 10): each AUROC's logit-DeLong interval (Hanley-McNeil score at AUROC 0 /
    1), combined with the DeLong correlation r of the two estimates:
    A - B - sqrt(dA_low^2 + dB_high^2 - 2 r dA_low dB_high), and likewise upward. At 26 + 25 memes
    it covered 0.96 where the Wald interval on the difference covered 0.93 (benchmarks/coverage.py).
    Variance of A - B equal to 0 (e.g. the same ranking twice): not estimable.
    """
    y = np.asarray(y, dtype=np.int64)
    sa, sb = np.asarray(score_a, dtype=float), np.asarray(score_b, dtype=float)
    w = np.ones(y.size) if memes is None else np.asarray(memes, dtype=float)
    n = int(w.sum())
    m, k = float(w[y == 1].sum()), float(w[y == 0].sum())
    if m == 0 or k == 0:
        note = N_("undefined: both classes are needed among the memes scored by both sets")
        e = Estimate(None, None, None, n, "hm_delong", note=note)
        return e, e, Estimate(None, None, None, n, "delong_paired", note=note), None
    a10, a01, auc_a, sc_a = _group_components(y, sa, w)
    b10, b01, auc_b, sc_b = _group_components(y, sb, w)
    est_a, est_b = auroc_estimate(sc_a), auroc_estimate(sc_b)
    diff = auc_a - auc_b
    if m < 2 or k < 2:
        return est_a, est_b, Estimate(diff, None, None, n, "delong_paired",
                                      note=N_("not estimable at this n: fewer than 2 memes in a class")), None
    pos, neg = y == 1, y == 0

    def cov(u, v, sel, mean_u, mean_v, count):
        return float((w[sel] * (u[sel] - mean_u) * (v[sel] - mean_v)).sum() / (count - 1))

    var = ((cov(a10, a10, pos, auc_a, auc_a, m) + cov(b10, b10, pos, auc_b, auc_b, m)
            - 2 * cov(a10, b10, pos, auc_a, auc_b, m)) / m
           + (cov(a01, a01, neg, auc_a, auc_a, k) + cov(b01, b01, neg, auc_b, auc_b, k)
              - 2 * cov(a01, b01, neg, auc_a, auc_b, k)) / k)
    se = math.sqrt(max(var, 0.0))
    if not se > 1e-12:
        return est_a, est_b, Estimate(diff, None, None, n, "delong_paired",
                                      note=N_("not estimable at this n: the paired DeLong variance is 0 "
                                              "(e.g. both sets rank the memes alike, or both separate "
                                              "the classes perfectly)")), None
    p = float(2 * ndtr(-abs(diff) / se))
    if _PAIRED_AUROC_METHOD == "delong_paired" or est_a.low is None or est_b.low is None:
        return est_a, est_b, Estimate(diff, max(-1.0, diff - Z * se), min(1.0, diff + Z * se), n,
                                      "delong_paired"), p
    # MOVER (Zou & Donner 2008; Newcombe's method 10 for AUROCs): each AUROC's own interval,
    # combined with the DeLong correlation of the two estimates
    var_a = cov(a10, a10, pos, auc_a, auc_a, m) / m + cov(a01, a01, neg, auc_a, auc_a, k) / k
    var_b = cov(b10, b10, pos, auc_b, auc_b, m) / m + cov(b01, b01, neg, auc_b, auc_b, k) / k
    cab = cov(a10, b10, pos, auc_a, auc_b, m) / m + cov(a01, b01, neg, auc_a, auc_b, k) / k
    r = cab / math.sqrt(var_a * var_b) if var_a > 0 and var_b > 0 else 0.0
    r = min(1.0, max(-1.0, r))
    lim_a, lim_b = (est_a.low, est_a.high), (est_b.low, est_b.high)
    if _PAIRED_AUROC_METHOD == "mover_logit":               # each AUROC's logit-DeLong interval instead
        if var_a > 0 and 0 < auc_a < 1:
            lim_a = tuple(float(x) for x in _logit_limits(auc_a, math.sqrt(var_a)))
        if var_b > 0 and 0 < auc_b < 1:
            lim_b = tuple(float(x) for x in _logit_limits(auc_b, math.sqrt(var_b)))
    la, ua, lb, ub = auc_a - lim_a[0], lim_a[1] - auc_a, auc_b - lim_b[0], lim_b[1] - auc_b
    lo = diff - math.sqrt(max(la * la + ub * ub - 2 * r * la * ub, 0.0))
    hi = diff + math.sqrt(max(ua * ua + lb * lb - 2 * r * ua * lb, 0.0))
    if not hi > lo:
        return est_a, est_b, Estimate(diff, None, None, n, _PAIRED_AUROC_METHOD,
                                      note=N_("not estimable at this n: the two AUROCs move together exactly")), p
    return est_a, est_b, Estimate(diff, max(-1.0, lo), min(1.0, hi), n, _PAIRED_AUROC_METHOD), p


def paired_comparison_from_counts(table: np.ndarray, score_rows: Iterable[Sequence] | None = None, *,
                                  name_a: str = "A", name_b: str = "B") -> PairedComparison:
    """paired_comparison from counts: ``table`` = answer_table of (truth, answer A, answer B,
    memes) rows, shape (2, 3, 3); ``score_rows`` = (truth, score A, score B, memes) rows for the
    memes scored by both sets (e.g. a GROUP BY ALL), or None without scores. Rows whose truth is
    missing or whose either score is missing / not finite are dropped. ``score_rows`` may also be
    a tuple of four numpy arrays (truth 0/1, score A, score B, memes), already clean."""
    table = np.asarray(table, dtype=np.int64)
    if table.shape != (2, 3, 3):
        raise ValueError(f"answer table of two prediction sets has shape (2, 3, 3), not {table.shape}")
    n = int(table.sum())
    _, cells = _right_wrong_cells(table)
    a, b, c, d = cells["both_right"], cells["only_a_right"], cells["only_b_right"], cells["both_wrong"]
    acc_a, acc_b = proportion_estimate(a + b, n), proportion_estimate(a + c, n)
    lim = _newcombe10(a, b, c, d)
    if lim is None:
        acc_diff = Estimate(None, None, None, 0, "newcombe10", note=N_("undefined: no memes"))
    else:
        acc_diff = Estimate((b - c) / n, lim[0], lim[1], n, "newcombe10")
    mc_p = float(binomtest(b, b + c, 0.5).pvalue) if b + c else None

    auroc_a = auroc_b = auroc_diff = None
    auroc_p = None
    n_auroc = 0
    if isinstance(score_rows, tuple) and len(score_rows) == 4 and isinstance(score_rows[0], np.ndarray):
        ys, sa, sb, ws = score_rows                          # (codes, scores A, scores B, memes) arrays
        n_auroc = int(ws.sum())
        auroc_a, auroc_b, auroc_diff, auroc_p = paired_auroc_from_rows(ys, sa, sb, ws)
    elif score_rows is not None:
        rows = [tuple(r) for r in score_rows]
        ys, sa, sb, ws = [], [], [], []
        for truth, x, z, cnt in rows:
            if _missing(truth) or _missing(x) or _missing(z):
                continue
            x, z = float(x), float(z)
            if not (math.isfinite(x) and math.isfinite(z)):
                continue
            if truth not in _CODES:
                raise ValueError(f"true label {truth!r}: expected {TOXIC!r}, {NON_TOXIC!r} or None")
            ys.append(_CODES[truth])
            sa.append(x)
            sb.append(z)
            ws.append(int(cnt))
        n_auroc = int(sum(ws))
        auroc_a, auroc_b, auroc_diff, auroc_p = paired_auroc_from_rows(
            np.array(ys, dtype=np.int64), np.array(sa), np.array(sb), np.array(ws, dtype=float))
    return PairedComparison(n=n, n_auroc=n_auroc, accuracy_a=acc_a, accuracy_b=acc_b, accuracy_diff=acc_diff,
                            mcnemar_p=mc_p, auroc_a=auroc_a, auroc_b=auroc_b, auroc_diff=auroc_diff,
                            auroc_p=auroc_p, name_a=name_a, name_b=name_b)


def paired_comparison(
    y_true: Sequence[str],
    scores_a: Sequence[float | None] | None,
    scores_b: Sequence[float | None] | None,
    pred_a: Sequence[str | None],
    pred_b: Sequence[str | None],
    *,
    name_a: str = "A",
    name_b: str = "B",
) -> PairedComparison:
    """Compare prediction sets A and B on the same memes (rows aligned): accuracy A - B (Newcombe
    method 10 interval, exact McNemar p) and, when both score lists are given, AUROC A - B (paired
    DeLong interval and p) over the memes that have a score in both sets (``n_auroc``).

    A row without a true label is dropped; an unparseable answer (None) is wrong."""
    _check_lengths(y_true=y_true, pred_a=pred_a, pred_b=pred_b, scores_a=scores_a, scores_b=scores_b)
    t_all = _label_codes(y_true, "y_true", allow_missing=True)
    keep = t_all >= 0
    t = t_all[keep]
    a = _label_codes(pred_a, "pred_a", allow_missing=True)[keep]
    b = _label_codes(pred_b, "pred_b", allow_missing=True)[keep]
    table = _table_from_codes(t, a, b)
    rows = None
    if scores_a is not None and scores_b is not None:
        sa, sb = _score_array(scores_a)[keep], _score_array(scores_b)[keep]
        has = np.isfinite(sa) & np.isfinite(sb)
        rows = (t[has].astype(np.int64), sa[has], sb[has], np.ones(int(has.sum())))
    return paired_comparison_from_counts(table, rows, name_a=name_a, name_b=name_b)
