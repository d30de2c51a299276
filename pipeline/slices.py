"""Slices of the memes (has text, OCR confidence, caption length, format, image size, near-duplicate group) and
the metrics of every prediction set within each, with intervals (issue 17, part 6).

A slice is a fixed SQL expression over the meme (`m`, table memes) and its OCR row of one engine (`o`, LEFT
JOINed: NULL when that engine has not read the meme); pipeline/queries.py's slice_counts groups the answers by
its value. Only these whitelisted expressions ever reach the SQL text; values travel as parameters.

    SLICES            key -> Slice(name, expression, values in display order, needs_ocr)
    slice_metrics(rows, variant_ids) -> per slice value and set: n, toxic memes, accuracy / F1 / recall with 95%
                      intervals (pipeline.metrics.classification_from_counts), and `small` when the slice has fewer
                      than SMALL_SLICE memes: too few to say anything about it (the page and report warn).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pipeline.i18n import N_

SMALL_SLICE = 30        # fewer memes with a true label in a slice: its intervals are too wide to say anything


@dataclass(frozen=True)
class Slice:
    name: str                   # shown (translated where shown)
    expression: str             # SQL over m (memes) and o (ocr of the chosen engine, may be NULL)
    values: tuple[str, ...]     # display order; a value not listed comes after them
    needs_ocr: bool = False
    help: str = ""


NOT_READ, NO_TEXT, TEXT = "not read", "no text", "text"
IN_GROUP, ALONE, NOT_HASHED = "in a near-duplicate group", "alone", "not hashed"

SLICES: dict[str, Slice] = {
    "has_text": Slice(N_("has text"), f"""CASE WHEN o.meme_key IS NULL THEN '{NOT_READ}'
        WHEN o.text <> '' THEN '{TEXT}' ELSE '{NO_TEXT}' END""", (TEXT, NO_TEXT, NOT_READ), True,
                      N_("whether the OCR engine found any text in the meme")),
    "ocr_confidence": Slice(N_("OCR confidence"), f"""CASE WHEN o.meme_key IS NULL THEN '{NOT_READ}'
        WHEN o.text = '' THEN '{NO_TEXT}' WHEN o.mean_confidence IS NULL THEN 'unknown'
        WHEN o.mean_confidence < 0.5 THEN '< 0.5' WHEN o.mean_confidence < 0.8 THEN '0.5–0.8' ELSE '≥ 0.8' END""",
                            ("< 0.5", "0.5–0.8", "≥ 0.8", NO_TEXT, NOT_READ), True,
                            N_("the OCR engine's mean confidence over the words it read")),
    "caption_length": Slice(N_("caption length"), f"""CASE WHEN o.meme_key IS NULL THEN '{NOT_READ}'
        WHEN length(o.text) = 0 THEN '0' WHEN length(o.text) <= 20 THEN '1–20'
        WHEN length(o.text) <= 60 THEN '21–60' ELSE '> 60' END""", ("0", "1–20", "21–60", "> 60", NOT_READ), True,
                            N_("characters of OCR text")),
    "format": Slice(N_("format"), "coalesce(m.format, 'unknown')", ("JPEG", "PNG", "WEBP", "GIF")),
    "image_size": Slice(N_("image size"), """CASE WHEN greatest(m.width, m.height) < 500 THEN '< 500 px'
        WHEN greatest(m.width, m.height) < 1000 THEN '500–999 px' ELSE '≥ 1000 px' END""",
                        ("< 500 px", "500–999 px", "≥ 1000 px"), help=N_("the longer side of the original image")),
    "near_duplicate": Slice(N_("near-duplicate group"), f"""CASE WHEN m.phash IS NULL THEN '{NOT_HASHED}'
        WHEN m.meme_id IN (SELECT unnest($group_ids)) THEN '{IN_GROUP}' ELSE '{ALONE}' END""",
                            (IN_GROUP, ALONE, NOT_HASHED),
                            help=N_("whether the meme has a near-duplicate (perceptual hash) among the memes")),
}
VALUE_NAMES = {NOT_READ: N_("not read by this engine"), NO_TEXT: N_("no text"), TEXT: N_("text"),
               IN_GROUP: N_("in a near-duplicate group"), ALONE: N_("no near-duplicate"), NOT_HASHED: N_("not hashed"),
               "unknown": N_("unknown")}


def ordered_values(key: str, found: Iterable[str]) -> list[str]:
    """The values found, in the slice's display order (others after, sorted)."""
    found = set(found)
    order = [v for v in SLICES[key].values if v in found]
    return order + sorted(found - set(order))


def slice_metrics(rows: Sequence[Sequence], variant_ids: Sequence[str]) -> dict[tuple[str, str], dict]:
    """{(slice value, variant_id): {"n", "n_toxic", "small", "accuracy", "f1", "recall", "precision"
    (Estimate dicts)}} from slice_counts rows (value, variant_id, truth, answer, memes). Intervals as on the
    Overview (pipeline.metrics.classification_from_counts, without scores)."""
    from pipeline.metrics import answer_table, classification_from_counts
    cells: dict[tuple[str, str], list] = {}
    for value, vid, truth, answer, n in rows:
        if vid in variant_ids:
            cells.setdefault((value, vid), []).append((truth, answer, n))
    out = {}
    for key, cell_rows in cells.items():
        rep = classification_from_counts(answer_table(cell_rows)).as_dict()
        n_toxic = sum(n for truth, _, n in cell_rows if truth == "toxic")
        out[key] = {"n": rep["n"], "n_toxic": n_toxic, "small": rep["n"] < SMALL_SLICE,
                    **{m: rep[m] for m in ("accuracy", "f1", "recall", "precision")}}
    return out
