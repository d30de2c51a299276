"""Slices of the memes (has text, OCR confidence, caption length, format, image size, near-duplicate group,
template cluster) and the metrics of every prediction set within each, with intervals (issue 17, part 6).

A slice is a fixed SQL expression over the meme (`m`, table memes) and, for a slice with a `source`, one row of
that source LEFT JOINed (NULL when the source has none for the meme): `o`, the OCR row of one engine
(source "ocr"), or `t`, the map row of one image model (source "map": map_points, with its template cluster).
pipeline/queries.py's slice_counts groups the answers by its value, slice_value_counts counts the memes per value
and slice_meme_keys lists the memes of one value (the dashboard's slice of every page, dashboard/db.py). Only these
whitelisted expressions ever reach the SQL text; values travel as parameters.

    SLICES            key -> Slice(name, expression, values in display order, source)
    available(sources, near_duplicates) -> {key: (source variant, group ids)} of the slices a cache can cut
    value_text(v, _)  a value in words, in the visitor's language
    slice_metrics(rows, variant_ids) -> per slice value and set: n, toxic memes, accuracy / F1 / recall with 95%
                      intervals (pipeline.metrics.classification_from_counts), and `small` when the slice has fewer
                      than SMALL_SLICE memes: too few to say anything about it (the page and report warn).
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pipeline.i18n import N_

SMALL_SLICE = 30        # fewer memes with a true label in a slice: its intervals are too wide to say anything


@dataclass(frozen=True)
class Slice:
    name: str                   # shown (translated where shown)
    expression: str             # SQL over m (memes) and o (ocr of the chosen engine, may be NULL)
    values: tuple[str, ...]     # display order; a value not listed comes after them (natural order), then `last`
    source: str | None = None   # "ocr": joins o (ocr of one engine); "map": joins t (map_points of one image model)
    help: str = ""
    last: tuple[str, ...] = ()

    @property
    def needs_ocr(self) -> bool:
        return self.source == "ocr"


# the LEFT JOIN of each source, on the variant chosen for it ($source); fixed text, never a value
SOURCE_JOINS = {
    "ocr": "LEFT JOIN ocr o ON o.meme_key = m.meme_key AND o.variant_id = $source",
    "map": "LEFT JOIN map_points t ON t.meme_key = m.meme_key AND t.variant_id = $source",
}


NOT_READ, NO_TEXT, TEXT = "not read", "no text", "text"
IN_GROUP, ALONE, NOT_HASHED = "in a near-duplicate group", "alone", "not hashed"
NO_TEMPLATE, NOT_EMBEDDED, TEMPLATE = "no template", "not embedded", "template "

SLICES: dict[str, Slice] = {
    "has_text": Slice(N_("has text"), f"""CASE WHEN o.meme_key IS NULL THEN '{NOT_READ}'
        WHEN o.text <> '' THEN '{TEXT}' ELSE '{NO_TEXT}' END""", (TEXT, NO_TEXT, NOT_READ), "ocr",
                      N_("whether the OCR engine found any text in the meme")),
    "ocr_confidence": Slice(N_("OCR confidence"), f"""CASE WHEN o.meme_key IS NULL THEN '{NOT_READ}'
        WHEN o.text = '' THEN '{NO_TEXT}' WHEN o.mean_confidence IS NULL THEN 'unknown'
        WHEN o.mean_confidence < 0.5 THEN '< 0.5' WHEN o.mean_confidence < 0.8 THEN '0.5–0.8' ELSE '≥ 0.8' END""",
                            ("< 0.5", "0.5–0.8", "≥ 0.8", NO_TEXT, NOT_READ), "ocr",
                            N_("the OCR engine's mean confidence over the words it read")),
    "caption_length": Slice(N_("caption length"), f"""CASE WHEN o.meme_key IS NULL THEN '{NOT_READ}'
        WHEN length(o.text) = 0 THEN '0' WHEN length(o.text) <= 20 THEN '1–20'
        WHEN length(o.text) <= 60 THEN '21–60' ELSE '> 60' END""", ("0", "1–20", "21–60", "> 60", NOT_READ), "ocr",
                            N_("characters of OCR text")),
    "format": Slice(N_("format"), "coalesce(m.format, 'unknown')", ("JPEG", "PNG", "WEBP", "GIF")),
    "image_size": Slice(N_("image size"), """CASE WHEN greatest(m.width, m.height) < 500 THEN '< 500 px'
        WHEN greatest(m.width, m.height) < 1000 THEN '500–999 px' ELSE '≥ 1000 px' END""",
                        ("< 500 px", "500–999 px", "≥ 1000 px"), help=N_("the longer side of the original image")),
    "near_duplicate": Slice(N_("near-duplicate group"), f"""CASE WHEN m.phash IS NULL THEN '{NOT_HASHED}'
        WHEN m.meme_id IN (SELECT unnest($group_ids)) THEN '{IN_GROUP}' ELSE '{ALONE}' END""",
                            (IN_GROUP, ALONE, NOT_HASHED),
                            help=N_("whether the meme has a near-duplicate (perceptual hash) among the memes")),
    "template": Slice(N_("template cluster"), f"""CASE WHEN t.meme_key IS NULL THEN '{NOT_EMBEDDED}'
        WHEN t.template IS NULL THEN '{NO_TEMPLATE}' ELSE '{TEMPLATE}' || t.template END""", (), "map",
                      N_("memes whose CLIP image vectors are this close (cosine ≥ 0.9, joined transitively): the "
                         "same picture under other captions; template 1 is the largest"), (NO_TEMPLATE, NOT_EMBEDDED)),
}
VALUE_NAMES = {NOT_READ: N_("not read by this engine"), NO_TEXT: N_("no text"), TEXT: N_("text"),
               IN_GROUP: N_("in a near-duplicate group"), ALONE: N_("no near-duplicate"), NOT_HASHED: N_("not hashed"),
               NO_TEMPLATE: N_("in no template cluster"), NOT_EMBEDDED: N_("no image vector (map)"),
               "unknown": N_("unknown")}


def value_text(value: str, translate) -> str:
    """A slice value in words through `translate` (dashboard.lang's or the report's `_`)."""
    if value in VALUE_NAMES:
        return translate(VALUE_NAMES[value])
    if value.startswith(TEMPLATE) and value[len(TEMPLATE):].isdigit():
        return translate(N_("template {n}"), n=value[len(TEMPLATE):])
    return value


def _natural(value: str) -> tuple:
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", value))


def available(sources: dict[str, str | None], near_duplicates: dict) -> dict[str, tuple[str | None, tuple[str, ...]]]:
    """{slice key: (its source variant, its group ids)} of the slices a cache can cut, given the default variant
    per source (queries.slice_sources) and its near-duplicate report (queries.near_duplicate_report): a slice
    whose source the cache lacks is left out, and so is the near-duplicate slice before perceptual hashes are
    stored. The group ids (the memes in a group) go to the near-duplicate slice only."""
    out = {}
    for key, spec in SLICES.items():
        source = sources.get(spec.source) if spec.source else None
        if (spec.source and source is None) or (key == "near_duplicate" and not near_duplicates["n_hashed"]):
            continue
        out[key] = (source, tuple(near_duplicates.get("in_group", ())) if key == "near_duplicate" else ())
    return out


def ordered_values(key: str, found: Iterable[str]) -> list[str]:
    """The values found, in the slice's display order (others after, sorted)."""
    found, spec = set(found), SLICES[key]
    order = [v for v in spec.values if v in found]
    last = [v for v in spec.last if v in found]
    return order + sorted(found - set(order) - set(last), key=_natural) + last


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
