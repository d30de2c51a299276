"""Where a decision comes from, the caption or the picture: one prediction set's answers on the three
views of each meme (pipeline/views.py: full, caption-removed, caption-only) turned into counts, shares
and paired tests (issue 16). Pure: numpy and scipy over counts; the SQL that counts is pipeline/queries.py's
(modality_counts), the page dashboard/views/modality.py, the report section pipeline/export.py.

    table = three_way_table(rows)     rows: (truth, full, caption-removed, caption-only, memes)
    drivers(table)                    of the toxic decisions on the full meme: which survive without the caption
    view_tests(table)                 the three pairs of views, paired: exact McNemar (decisions and correctness),
                                      Holm-adjusted over the three pairs, with the plain-language reading

Only memes with an answer on all three views count (a meme without OCR text has no derived views: the
caller reports how many, pipeline.queries.modality_coverage). An unparseable answer is "not toxic" in
the decision shares and wrong in the correctness tests; the tables show it as its own answer.

The rule of the shares (of the memes the set calls toxic on the full view, with a true label):
  image-driven   still toxic with the caption removed;
  text-driven    not toxic with the caption removed, toxic on the caption alone;
  needs both     toxic on neither derived view (only the combination is toxic).
Each with its Wilson 95% interval (pipeline.metrics.proportion_estimate).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from scipy.stats import binomtest

from pipeline.config import NON_TOXIC, TOXIC
from pipeline.i18n import N_, translate, translate_n
from pipeline.metrics import (
    Estimate,
    answer_table,
    holm,
    holm_adjust_comparisons,
    paired_comparison_from_counts,
    proportion_estimate,
)
from pipeline.views import CAPTION_ONLY, CAPTION_REMOVED, FULL, VIEWS

ANSWERS = (None, NON_TOXIC, TOXIC)          # answer index 0, 1, 2 of the tables (pipeline.metrics layout)
TRUTHS = (NON_TOXIC, TOXIC)                 # truth index 0, 1
PAIRS = ((FULL, CAPTION_REMOVED), (FULL, CAPTION_ONLY), (CAPTION_REMOVED, CAPTION_ONLY))
DRIVERS = ("image-driven", "text-driven", "needs both")
DRIVER_NAMES = {"image-driven": N_("image-driven"), "text-driven": N_("text-driven"), "needs both": N_("needs both")}
VIEW_NAMES = {FULL: N_("full meme"), CAPTION_REMOVED: N_("meme without its caption"), CAPTION_ONLY: N_("caption alone")}


def three_way_table(rows: Iterable[Sequence]) -> np.ndarray:
    """Memes per [truth][full][caption-removed][caption-only] (shape (2, 3, 3, 3), answer index as ANSWERS)
    from (truth, full answer, caption-removed answer, caption-only answer, memes) rows."""
    table = answer_table(rows)
    if table.shape == (2, 3):          # no rows at all: answer_table cannot know the width
        table = np.zeros((2, 3, 3, 3), dtype=np.int64)
    if table.shape != (2, 3, 3, 3):
        raise ValueError(f"three_way_table: rows must be (truth, full, removed, only, memes), got {table.shape}")
    return table


def table_rows(table: np.ndarray) -> list[dict]:
    """The non-empty cells of a three-way table, most memes first: truth, the three answers, memes."""
    out = []
    for idx in zip(*np.nonzero(table)):
        t, a, b, c = (int(i) for i in idx)
        out.append({"truth": TRUTHS[t], FULL: ANSWERS[a], CAPTION_REMOVED: ANSWERS[b], CAPTION_ONLY: ANSWERS[c],
                    "memes": int(table[t, a, b, c])})
    return sorted(out, key=lambda r: (-r["memes"], r["truth"], str(r[FULL]), str(r[CAPTION_REMOVED]),
                                      str(r[CAPTION_ONLY])))


def driver_cell(full: str | None, removed: str | None, only: str | None) -> str | None:
    """The share a meme's three answers fall into (DRIVERS), or None when the full view is not toxic."""
    if full != TOXIC:
        return None
    if removed == TOXIC:
        return "image-driven"
    return "text-driven" if only == TOXIC else "needs both"


def drivers(table: np.ndarray, truth: str | None = None) -> dict[str, Estimate]:
    """Of the memes called toxic on the full view (of true label `truth`, or all): the share in each of
    DRIVERS, with Wilson intervals over that number of memes."""
    t = table if truth is None else table[[TRUTHS.index(truth)]]
    toxic_full = t[:, 2]                                  # [truth][removed][only]
    n = int(toxic_full.sum())
    image = int(toxic_full[:, 2, :].sum())
    text = int(toxic_full[:, :2, 2].sum())
    both = n - image - text
    return {"image-driven": proportion_estimate(image, n), "text-driven": proportion_estimate(text, n),
            "needs both": proportion_estimate(both, n)}


def _pair_table(table: np.ndarray, a: str, b: str) -> np.ndarray:
    """The (truth, answer A, answer B) table of two views (the third summed out)."""
    ia, ib = VIEWS.index(a) + 1, VIEWS.index(b) + 1
    other = ({1, 2, 3} - {ia, ib}).pop()
    t = table.sum(axis=other)
    return t if ia < ib else np.swapaxes(t, 1, 2)


def _decision_flips(pair: np.ndarray) -> tuple[int, int]:
    """(toxic on A only, toxic on B only) over a (truth, A, B) table: the discordant decisions."""
    return int(pair[:, 2, :2].sum()), int(pair[:, :2, 2].sum())


def view_tests(table: np.ndarray) -> list[dict]:
    """The three pairs of views (PAIRS), each on the memes answered on all three views:
      toxic_a, toxic_b       memes called toxic on view A / view B
      only_a, only_b         memes called toxic on A and not on B, and the reverse (discordant decisions)
      decision_p             exact two-sided McNemar on those (binomial, p = 1/2); None without any
      decision_p_holm        Holm-adjusted over the three pairs
      accuracy               pipeline.metrics.paired_comparison_from_counts(...).as_dict() with Holm over the pairs
      reading                the plain-language reading of the decision test (English; reading_text translates)"""
    out = []
    for a, b in PAIRS:
        pair = _pair_table(table, a, b)
        only_a, only_b = _decision_flips(pair)
        p = float(binomtest(only_a, only_a + only_b, 0.5).pvalue) if only_a + only_b else None
        out.append(dict(a=a, b=b, n=int(pair.sum()), toxic_a=int(pair[:, 2, :].sum()), toxic_b=int(pair[:, :, 2].sum()),
                        only_a=only_a, only_b=only_b, decision_p=p))
    for d, adj in zip(out, holm([d["decision_p"] for d in out])):
        d["decision_p_holm"] = adj
    comparisons = [paired_comparison_from_counts(_pair_table(table, a, b), name_a=a, name_b=b) for a, b in PAIRS]
    for d, acc in zip(out, holm_adjust_comparisons(comparisons)):
        d["accuracy"] = acc
        d["reading"] = reading_text(d, "en")
    return out


def reading_text(test: dict, lang: str) -> str:
    """What one decision test of view_tests does and does not show, in `lang`."""
    a, b = translate(VIEW_NAMES[test["a"]], lang), translate(VIEW_NAMES[test["b"]], lang)
    n, only_a, only_b, p = test["n"], test["only_a"], test["only_b"], test.get("decision_p_holm")
    if n == 0:
        return translate(N_("No meme has an answer on all three views: there is nothing to compare."), lang)
    if only_a + only_b == 0:
        return translate_n(n, N_("On all {n} memes the decision is the same on the {a} and the {b}: changing "
                                 "the view changed no decision here."),
                           N_("On all {n} memes the decision is the same on the {a} and the {b}: changing "
                              "the view changed no decision here."), lang, a=a, b=b)
    head = translate(N_("Toxic on the {a} but not on the {b}: {only_a}; the reverse: {only_b} (of {n} memes); "
                        "exact McNemar p = {p:.3g} (Holm over the three pairs)."), lang,
                     a=a, b=b, only_a=only_a, only_b=only_b, n=n, p=p)
    if p is not None and p < 0.05:
        return head + translate(N_(" A split this uneven would be unlikely if the view did not matter to the "
                                   "decision; it says nothing about why."), lang)
    return head + translate(N_(" p >= 0.05 does not show that the view does not matter: an effect smaller than "
                               "these memes can detect may be there."), lang)


def summary(table: np.ndarray) -> dict:
    """Everything the page and the report show of one prediction set's three-way table (JSON-ready
    except the Estimates, which have as_dict())."""
    return {"n": int(table.sum()), "cells": table_rows(table),
            "drivers": {t: drivers(table, t) for t in (None, TOXIC, NON_TOXIC)},
            "tests": view_tests(table)}
