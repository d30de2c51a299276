"""Possible label errors, found by confident learning on the zero-shot scores: pure functions.

The zero-shot prediction sets (CLIP, SigLIP, ... p(toxic) per meme) never saw the labels, so their
scores are out-of-sample predicted probabilities, which is what confident learning (Northcutt,
Jiang & Chuang 2021; the ``cleanlab`` package) needs. Nothing here changes a label: it ranks memes
for a person to look at.

    label_issue_report(meme_ids, labels, score_sets, ...)  -> dict: issues + counts + method + note
    rank_label_issues(meme_ids, labels, score_sets, ...)   -> its "issues" list only

How
    * pred_probs per meme = [1 - p, p] with p the mean of the sets' p(toxic) that the meme has (a set
      without a score for it does not count); a meme with no score in any set is left out (counted
      as n_no_score), a meme without a label too (n_no_label).
    * cleanlab.filter.find_label_issues(labels, pred_probs, return_indices_ranked_by=
      "self_confidence") flags the candidates, ranked worst first; quality =
      cleanlab.rank.get_label_quality_scores (self-confidence: the mean probability of the given
      label, 0 = the sets are sure it is the other label).
    * Each set votes separately: set j "confidently disagrees" with a meme labelled c when its
      probability of the other class reaches that class's per-class threshold (cleanlab's:
      t_j[class] = mean probability of the class over the memes labelled with it that j scored) and
      beats the meme's own class if both reach theirs (the confident-joint rule). n_sets_against
      counts those sets; only memes with n_sets_against >= min_sets_against are listed (default 2,
      or the number of sets when fewer are given).
    * Fallback (method "self_confidence"): when cleanlab fails or warns that it cannot estimate
      (too few memes of a class; one class only), memes whose mean probability favours the other
      label (self-confidence < 0.5) are the candidates, ranked by self-confidence, with a note.
      With one class only, the other class's per-class threshold is undefined and 0.5 is used.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from pipeline.config import NON_TOXIC, TOXIC
from pipeline.i18n import N_
from pipeline.metrics import _check_lengths, _label_codes, _score_array

NOTE_FALLBACK = N_("too few memes for confident learning: ranked by self-confidence alone "
                   "(candidates are the memes whose mean score favours the other label)")
NOTE_ONE_CLASS = N_("all labelled memes with a score have one label: the other label's confident "
                    "threshold is undefined, 0.5 is used")
NOTE_NO_MEMES = N_("undefined: no labelled memes with a score")

_NAMES = (NON_TOXIC, TOXIC)          # class index 0, 1


def _set_thresholds(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """cleanlab's per-class thresholds for one set: (mean P(non_toxic) among non_toxic-labelled,
    mean P(toxic) among toxic-labelled) over the memes that set scored; 0.5 where undefined."""
    has = ~np.isnan(p)
    neg, pos = has & (y == 0), has & (y == 1)
    t0 = float(np.mean(1 - p[neg])) if neg.any() else 0.5
    t1 = float(np.mean(p[pos])) if pos.any() else 0.5
    return t0, t1


def _confident_class(p: np.ndarray, t0: float, t1: float) -> np.ndarray:
    """Confident-joint class per meme: among the classes whose probability reaches its threshold,
    the likelier one; -1 where neither does or the score is missing."""
    q0, q1 = 1 - p, p
    a0, a1 = q0 >= t0, q1 >= t1
    out = np.full(p.shape, -1, dtype=np.int64)
    out[a0 & ~a1] = 0
    out[a1 & ~a0] = 1
    both = a0 & a1
    out[both] = (q1[both] > q0[both]).astype(np.int64)
    out[np.isnan(p)] = -1
    return out


def label_issue_report(meme_ids: Sequence, labels: Sequence, score_sets: Mapping[str, Sequence],
                       *, min_sets_against: int = 2) -> dict:
    """Rank possible label errors (see the module docstring).

    ``score_sets``: {set name: p(toxic) per meme, aligned with meme_ids, None/NaN where missing}.
    Returns {"issues": [dict(meme_id, label, suggested, quality, n_sets_against, n_sets_scored,
    evidence={set: score or None})] worst first, "n_used", "n_no_label", "n_no_score", "n_sets",
    "min_sets_against", "n_flagged_by_method" (candidates before the vote filter), "method"
    ("confident_learning" or "self_confidence"), "thresholds" {set: {"non_toxic": t0, "toxic": t1}},
    "note" (None or a fixed text)}."""
    names = list(score_sets)
    if not names:
        raise ValueError("score_sets is empty: give at least one prediction set's scores")
    _check_lengths(meme_ids=meme_ids, labels=labels, **{f"score_sets[{k!r}]": v for k, v in score_sets.items()})
    ids = list(meme_ids)
    y_all = _label_codes(labels, "labels", allow_missing=True)
    S_all = np.column_stack([_score_array(score_sets[k]) for k in names]) if ids else np.zeros((0, len(names)))
    if np.isinf(S_all).any() or (S_all[~np.isnan(S_all)] < 0).any() or (S_all[~np.isnan(S_all)] > 1).any():
        raise ValueError("scores must be p(toxic) in [0, 1] or None")
    has_label = y_all >= 0
    has_score = (~np.isnan(S_all)).any(axis=1) if ids else np.zeros(0, bool)
    keep = np.flatnonzero(has_label & has_score)
    need = max(1, min(int(min_sets_against), len(names)))
    out = {"issues": [], "n_used": int(keep.size), "n_no_label": int((~has_label).sum()),
           "n_no_score": int((has_label & ~has_score).sum()), "n_sets": len(names),
           "min_sets_against": need, "n_flagged_by_method": 0, "method": "confident_learning",
           "thresholds": {}, "note": None}
    if keep.size == 0:
        out["note"] = NOTE_NO_MEMES
        return out
    y, S = y_all[keep].astype(np.int64), S_all[keep]
    p = np.nanmean(S, axis=1)
    pred_probs = np.column_stack([1 - p, p])

    against = np.zeros(y.size, dtype=np.int64)
    for j, name in enumerate(names):
        t0, t1 = _set_thresholds(y, S[:, j])
        out["thresholds"][name] = {NON_TOXIC: t0, TOXIC: t1}
        conf = _confident_class(S[:, j], t0, t1)
        against += (conf >= 0) & (conf != y)

    quality = pred_probs[np.arange(y.size), y]            # self-confidence, = get_label_quality_scores
    ranked = None
    one_class = np.unique(y).size < 2
    if not one_class:
        from cleanlab.filter import find_label_issues  # a requirement: missing = an error, not a fallback
        from cleanlab.rank import get_label_quality_scores
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")           # a cleanlab warning means it could not estimate
                ranked = np.asarray(find_label_issues(y, pred_probs, return_indices_ranked_by="self_confidence",
                                                      n_jobs=1), dtype=np.int64)
                quality = np.asarray(get_label_quality_scores(y, pred_probs, method="self_confidence"), dtype=float)
        except Exception:                               # noqa: BLE001 - any cleanlab failure -> fallback
            ranked = None
    if ranked is None:
        out["method"] = "self_confidence"
        out["note"] = NOTE_ONE_CLASS if one_class else NOTE_FALLBACK
        cand = np.flatnonzero(quality < 0.5)
        ranked = cand[np.lexsort((cand, quality[cand]))]
    out["n_flagged_by_method"] = int(ranked.size)

    suggested = (p >= 0.5).astype(np.int64)
    for i in ranked:
        if against[i] < need:
            continue
        row = keep[i]
        out["issues"].append({
            "meme_id": ids[row], "label": _NAMES[y[i]], "suggested": _NAMES[suggested[i]],
            "quality": float(quality[i]), "n_sets_against": int(against[i]),
            "n_sets_scored": int((~np.isnan(S[i])).sum()),
            "evidence": {name: (None if np.isnan(S[i, j]) else float(S[i, j])) for j, name in enumerate(names)},
        })
    return out


def rank_label_issues(meme_ids: Sequence, labels: Sequence, score_sets: Mapping[str, Sequence],
                      *, min_sets_against: int = 2) -> list[dict]:
    """The ``issues`` of label_issue_report: memes whose label the sets confidently contradict,
    worst first (meme_id, label, suggested, quality, n_sets_against, n_sets_scored, evidence)."""
    return label_issue_report(meme_ids, labels, score_sets, min_sets_against=min_sets_against)["issues"]
