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

Intervals (all 95%)
    * Proportions (accuracy, precision, recall, unparseable rate): Wilson score interval,
      ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``; method "wilson".
    * F1, AUROC and kappa: percentile bootstrap over memes (``n_boot`` resamples, default 2000) from
      ``numpy.random.default_rng(seed)``: the same inputs and seed give identical numbers.
      F1 and kappa depend only on the counts in the confusion / joint-answer table, and resampling
      n memes with replacement is exactly a multinomial draw of those cell counts (probabilities =
      observed cell shares), so they are drawn that way: cost O(n_boot * cells), whatever n is.
      AUROC depends on the ranking, but only through the memes per (score, true label) cell: the
      memes are laid out from those counts and resampled by index (the same distribution as a
      multinomial draw of the cells, ~3x faster at these sizes); each resample's AUROC is the
      Mann-Whitney statistic with ties counted one half.
      A resample where the statistic is undefined (a single class for AUROC; no true and no
      predicted toxic for F1; both answer columns constant and equal for kappa) is dropped;
      ``Estimate.n_boot`` reports how many resamples gave the interval. If fewer than half of
      them are usable the interval is left None.
    * Point values are the textbook formulas on the counts (F1 = 2tp / (2tp + fp + fn), AUROC =
      Mann-Whitney U / (n_pos n_neg), Cohen's kappa from the joint table); the tests check them,
      and every bootstrap statistic, against scikit-learn (f1_score, roc_auc_score,
      cohen_kappa_score, roc_curve).

Large n (the dashboard must render in well under a second at 100,000 memes)
    Only the AUROC bootstrap grows with n (O(n_boot * n)). ``fast=None`` (default) bootstraps it
    while n_scored * n_boot <= AUTO_BOOTSTRAP_CELLS (500 memes at 2000 resamples, ~15 ms on 2
    cores) and otherwise uses DeLong's asymptotic interval (O(k) on the counts of k distinct
    scores; method "delong"), which from a few hundred memes on is as good as the bootstrap (the
    tests compare the two at 1200 memes). ``fast=True`` forces DeLong,
    ``fast=False`` forces the bootstrap (seconds at 100k memes). From counts everything else is
    O(cells): a few milliseconds at any n. The row-level functions add the counting (numpy sort of
    the scores, ~10-20 ms per 100k memes). roc_points_from_counts returns one point per distinct
    score, or at most ``max_points`` of them for drawing.

Agreement (prompt/model A vs B on the same memes)
    The 2x2 table of right/wrong, its split by true label, Cohen's kappa between A's and B's
    answers (bootstrap interval), and the exact two-sided McNemar test on the discordant cells
    (b = only A right, c = only B right): ``scipy.stats.binomtest(b, b + c, 0.5).pvalue``, None
    when b + c = 0. ``reading`` says in words what that p-value does and does not show.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.stats import binom, binomtest

from pipeline.config import NON_TOXIC, TOXIC

CONFIDENCE = 0.95
Z = 1.959963984540054          # norm.ppf(0.975), for the DeLong interval
DEFAULT_N_BOOT = 2000
AUTO_BOOTSTRAP_CELLS = 1_000_000   # fast=None: bootstrap AUROC while n_scored * n_boot <= this
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


def _auroc_from_counts(neg: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUROC (ties 1/2) from memes per score group, groups in ascending score order.

    Works on (..., k) arrays: 2U = sum over groups of pos * (2 * negatives up to and including the
    group - negatives in it); NaN where a class is absent.
    """
    twice_u = (pos * (2 * np.cumsum(neg, axis=-1) - neg)).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return twice_u / (2.0 * pos.sum(axis=-1) * neg.sum(axis=-1))


def _auroc_bootstrap(sc: ScoreCounts, rng: np.random.Generator, n_boot: int) -> np.ndarray:
    """AUROC of n_boot resamples of the memes by index (in chunks that bound memory).

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


def _delong_estimate(sc: ScoreCounts, value: float) -> Estimate:
    """DeLong's asymptotic 95% interval for AUROC (normal approximation, clipped to [0, 1])."""
    m, k = sc.n_pos, sc.n_neg
    if m < 2 or k < 2:
        return Estimate(_f(value), None, None, sc.n, "delong")
    v10 = (np.cumsum(sc.neg) - 0.5 * sc.neg) / k              # per toxic meme of a group: share of non-toxic below
    v01 = (m - np.cumsum(sc.pos) + 0.5 * sc.pos) / m          # per non-toxic meme: share of toxic above
    var10 = (sc.pos * (v10 - value) ** 2).sum() / (m - 1)     # the groups' means are the AUROC itself
    var01 = (sc.neg * (v01 - value) ** 2).sum() / (k - 1)
    se = math.sqrt(var10 / m + var01 / k)
    return Estimate(_f(value), max(0.0, value - Z * se), min(1.0, value + Z * se), sc.n, "delong")


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

    # F1 of the toxic class; an unparseable answer reads as "not predicted toxic".
    if n and (tp + fp + fn + u_tox) > 0:
        f1_value = _f1_from_counts(tp, fp, fn + u_tox)
        cells = np.array([tp, fp, fn + u_tox, tn + u_non])
        c = _multinomial_counts(cells, np.random.default_rng(seq_f1), n_boot)
        f1 = _bootstrap_estimate(f1_value, _f1_from_counts(c[:, 0], c[:, 1], c[:, 2]), n)
    else:
        f1 = Estimate(None, None, None, n, "bootstrap", 0)

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


def auroc_estimate(sc: ScoreCounts, *, rng: np.random.Generator, n_boot: int, fast: bool | None) -> Estimate:
    """AUROC of memes counted per (score, true label) with a bootstrap or DeLong interval."""
    n = sc.n
    use_delong = fast if fast is not None else n * n_boot > AUTO_BOOTSTRAP_CELLS
    method = "delong" if use_delong else "bootstrap"
    if sc.n_pos == 0 or sc.n_neg == 0:                       # one class (or none): undefined
        return Estimate(None, None, None, n, method, None if use_delong else 0)
    value = float(_auroc_from_counts(sc.neg, sc.pos))
    if use_delong:
        return _delong_estimate(sc, value)
    return _bootstrap_estimate(value, _auroc_bootstrap(sc, rng, n_boot), n)


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
    """Compare two sets of answers on the same memes (rows aligned; None = unparseable = wrong).

    Counts the rows and calls agreement_from_counts."""
    _check_lengths(y_true=y_true, pred_a=pred_a, pred_b=pred_b)
    t_all = _label_codes(y_true, "y_true", allow_missing=True)
    keep = t_all >= 0
    a = _label_codes(pred_a, "pred_a", allow_missing=True)[keep]
    b = _label_codes(pred_b, "pred_b", allow_missing=True)[keep]
    return agreement_from_counts(_table_from_codes(t_all[keep], a, b), seed=seed, n_boot=n_boot,
                                 name_a=name_a, name_b=name_b)


def agreement_from_counts(
    table: np.ndarray,
    *,
    seed: int = 0,
    n_boot: int = DEFAULT_N_BOOT,
    name_a: str = "A",
    name_b: str = "B",
) -> AgreementReport:
    """agreement from ``table`` = answer_table(...) of (truth, answer A, answer B) rows, shape (2, 3, 3)."""
    table = np.asarray(table, dtype=np.int64)
    if table.shape != (2, 3, 3):
        raise ValueError(f"answer table of two prediction sets has shape (2, 3, 3), not {table.shape}")
    n = int(table.sum())
    # answer index 1 = non_toxic, 2 = toxic: right where it equals truth + 1
    right = np.zeros((2, 3), dtype=bool)
    right[0, 1] = right[1, 2] = True
    by_label = {}
    for truth, label in ((1, TOXIC), (0, NON_TOXIC)):
        t = table[truth]
        ra, rb = right[truth][:, None], right[truth][None, :]
        by_label[label] = {"both_right": int(t[ra & rb].sum()), "only_a_right": int(t[ra & ~rb].sum()),
                           "only_b_right": int(t[~ra & rb].sum()), "both_wrong": int(t[~ra & ~rb].sum())}
    total = {k: by_label[TOXIC][k] + by_label[NON_TOXIC][k] for k in _TABLE_KEYS}

    if n:
        joint = table.sum(axis=0)                     # A's answer x B's answer, unparseable a third answer
        counts = _multinomial_counts(joint.ravel(), np.random.default_rng(seed), n_boot)
        kappa = _bootstrap_estimate(_kappa_from_tables(joint), _kappa_from_tables(counts.reshape(-1, 3, 3)), n)
    else:
        kappa = Estimate(None, None, None, 0, "bootstrap", 0)

    bb, cc = total["only_a_right"], total["only_b_right"]
    p = float(binomtest(bb, bb + cc, 0.5).pvalue) if bb + cc else None
    return AgreementReport(n=n, table=total, by_label=by_label, kappa=kappa, mcnemar_p=p,
                           reading=_reading(n, bb, cc, p, name_a, name_b))
