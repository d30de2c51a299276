"""The Slices section of the one-file HTML report (issue 17, part 8): per slice of the memes (pipeline/slices.py)
and shown prediction set, memes, toxic share, accuracy / F1 / recall with 95% intervals, small slices flagged.

The numbers expected are computed here straight from the DuckDB file (SQL over the schema, sklearn for the
metrics, scipy's Wilson interval), not through pipeline/queries.py or pipeline/slices.py; the rows shown are
read back from the rendered HTML (the <tr data-value data-variant-id data-small> of each slice table).
"""
from __future__ import annotations

import re
import shutil
from collections import defaultdict
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pytest
from scipy.stats import binomtest
from sklearn.metrics import accuracy_score, f1_score, recall_score

from pipeline import export, i18n
from pipeline.devtools.synth_db import synth_db

N_SYNTH, SEED, SMALL = 200, 7, 30


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    """One synthetic cache with the Map page's layout and template clusters (numba compiles UMAP once: ~25 s)."""
    return synth_db(tmp_path_factory.mktemp("slices-report") / "synth.duckdb", N_SYNTH, seed=SEED, with_map=True)


@pytest.fixture(scope="module")
def reports(synth, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("slices-html")
    before = set(i18n.MISSING)
    html = {lang: export.export_html(synth, out / f"report-{lang}.html", images=False, lang=lang)
            .read_text(encoding="utf-8") for lang in ("en", "ru")}
    html["missing"] = sorted(t for lang, t in set(i18n.MISSING) - before if lang == "ru")
    return html


# ============================================================================ reading the report back
class _SliceTables(HTMLParser):
    """{slice key: [{"value", "variant_id", "small", "cells": [td text, ...]}, ...]} of every slice table."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[dict]] = {}
        self.current: str | None = None
        self.row: dict | None = None
        self.cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and "slice-table" in (a.get("class") or ""):
            self.current = a["data-slice"]
            self.tables[self.current] = []
        elif tag == "tr" and self.current and "data-value" in a:
            self.row = dict(value=a["data-value"], variant_id=a["data-variant-id"], small=a["data-small"], cells=[])
            self.tables[self.current].append(self.row)
        elif tag == "td" and self.row is not None:
            self.cell = []

    def handle_endtag(self, tag):
        if tag == "td" and self.cell is not None:
            self.row["cells"].append("".join(self.cell).strip())
            self.cell = None
        elif tag == "tr":
            self.row = None
        elif tag == "table":
            self.current = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def slice_tables(html: str) -> dict[str, list[dict]]:
    p = _SliceTables()
    p.feed(html)
    p.close()
    return p.tables


def section(html: str, anchor: str) -> str:
    """The text of a top-level section: up to the next top-level one."""
    start = html.index(f'<section id="{anchor}">')
    return html[start:html.index('\n<section id="', start + 1)]


# ============================================================================ the expected numbers, from the file
def sql(db: Path, query: str, params=None) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(query, params or []).fetchall()
    finally:
        con.close()


def shown_sets(db: Path) -> list[str]:
    """The full-view CLIP / VLM prediction sets (a derived view's config names a meme_view)."""
    return [v for v, in sql(db, "SELECT variant_id FROM variants WHERE stage IN ('clip', 'vlm') "
                                "AND json_extract_string(config, '$.meme_view') IS NULL ORDER BY 1")]


def answers(db: Path, value_sql: str, join: str = "", params=None) -> dict[tuple[str, str], list[tuple]]:
    """{(slice value, set): [(truth, answer), ...]} of the shown sets on the memes with a label in the folder."""
    rows = sql(db, f"""SELECT {value_sql} AS value, p.variant_id, m.label, p.label
                       FROM predictions p JOIN memes m ON m.meme_id = p.meme_id {join}
                       WHERE m.label IS NOT NULL AND NOT m.retired AND p.variant_id IN (SELECT unnest(?))""",
               [*(params or []), shown_sets(db)])            # the join's parameters come first in the text
    out: dict[tuple[str, str], list[tuple]] = defaultdict(list)
    for value, vid, truth, answer in rows:
        out[(value, vid)].append((truth, answer))
    return out


def expected_cells(pairs: list[tuple]) -> dict:
    """memes, toxic share, accuracy [Wilson], F1, recall, as the report prints them (3 decimals; share 2)."""
    truth = [t for t, _ in pairs]
    said = [a if a is not None else "unparsed" for _, a in pairs]          # unparseable: wrong, never toxic
    n, right = len(pairs), sum(t == a for t, a in zip(truth, said))
    ci = binomtest(right, n).proportion_ci(method="wilson")
    out = dict(n=str(n), share=f"{truth.count('toxic') / n:.2f}", acc=f"{accuracy_score(truth, said):.3f}",
               acc_ci=f"[{ci.low:.3f}, {ci.high:.3f}]", small="yes" if n < SMALL else "no")
    if "toxic" in truth:                                        # else recall (and F1 without a toxic answer) is
        out["recall"] = f"{recall_score(truth, said, labels=['toxic'], average=None)[0]:.3f}"      # undefined
    if "toxic" in truth or "toxic" in said:
        out["f1"] = f"{f1_score(truth, said, labels=['toxic'], average=None, zero_division=0)[0]:.3f}"
    return out


def shown_cells(row: dict) -> dict:
    # cells: value, set, memes, toxic share, accuracy, its interval, F1, interval, recall, interval, too small
    c = row["cells"]
    return dict(n=c[2], share=c[3], acc=c[4], acc_ci=c[5], f1=c[6], recall=c[8], small=row["small"])


def check_slice(tables: dict, key: str, expected: dict[tuple[str, str], list[tuple]]) -> list[dict]:
    rows = tables[key]
    assert {(r["value"], r["variant_id"]) for r in rows} == set(expected)
    for r in rows:
        want, got = expected_cells(expected[(r["value"], r["variant_id"])]), shown_cells(r)
        assert {k: got[k] for k in want} == want, (key, r["value"], r["variant_id"])
    return rows


# ============================================================================ tests
def test_the_section_is_there_after_label_issues_with_every_slice_the_cache_has(synth, reports):
    html = reports["en"]
    assert '<li><a href="#slices">Slices</a></li>' in html
    assert html.index('<section id="label-issues">') < html.index('<section id="slices">') \
        < html.index('<section id="errors">')
    tables = slice_tables(html)
    # the synthetic cache has OCR, perceptual hashes and a map with template clusters: every slice is shown
    assert sql(synth, "SELECT count(phash) FROM memes")[0][0] > 0
    assert list(tables) == ["has_text", "ocr_confidence", "caption_length", "format", "image_size",
                            "near_duplicate", "template"]
    assert {r["variant_id"] for rows in tables.values() for r in rows} == set(shown_sets(synth))
    part = section(html, "slices")
    assert "not corrected for multiple comparisons" in part
    assert "smoke run with random-weight models" in part          # synthetic sets are smoke: said next to the table


def test_format_slice_numbers_equal_an_independent_count(synth, reports):
    expected = answers(synth, "coalesce(m.format, 'unknown')")
    rows = check_slice(slice_tables(reports["en"]), "format", expected)
    assert len(rows) >= 4 * len(shown_sets(synth)) - 4


def test_has_text_slice_numbers_equal_an_independent_count(synth, reports):
    (engine, name), = sql(synth, "SELECT o.variant_id, v.name FROM ocr o JOIN variants v USING (variant_id) "
                                 "GROUP BY ALL ORDER BY count(*) DESC, 1 LIMIT 1")
    expected = answers(synth, "CASE WHEN o.meme_id IS NULL THEN 'not read' WHEN o.text <> '' THEN 'text' "
                              "ELSE 'no text' END",
                       "LEFT JOIN ocr o ON o.meme_id = m.meme_id AND o.variant_id = ?", [engine])
    check_slice(slice_tables(reports["en"]), "has_text", expected)
    part = section(reports["en"], "slices")
    assert f"Read by the OCR engine {name} (" in part


def test_slices_under_30_memes_are_flagged_and_named_in_the_warning(synth, reports):
    tables = slice_tables(reports["en"])
    expected = answers(synth, "coalesce(m.format, 'unknown')")
    small = {v for (v, _), pairs in expected.items() if len(pairs) < SMALL}
    large = {v for (v, _), pairs in expected.items() if len(pairs) >= SMALL}
    assert small and large                                          # the cache has both kinds
    for r in tables["format"]:
        assert (r["small"] == "yes") == (len(expected[(r["value"], r["variant_id"])]) < SMALL)
        assert ("too small" in r["cells"][-1]) == (r["small"] == "yes")
    part = section(reports["en"], "slices")
    fmt = part[part.index('id="slice-format"'):part.index('id="slice-image_size"')]
    warning = fmt[fmt.index("Too few memes to say anything (fewer than 30): "):]
    warning = warning[:warning.index(". Their numbers")]
    assert set(warning.split(": ", 1)[1].split(", ")) == small


def test_template_slice_lists_the_ten_largest_clusters_and_counts_the_rest(synth, reports):
    vids = shown_sets(synth)
    (map_variant,), = sql(synth, "SELECT variant_id FROM maps")
    sizes = dict(sql(synth, """
        SELECT value, max(n) FROM (
            SELECT 'template ' || t.template AS value, p.variant_id, count(*) AS n
            FROM predictions p JOIN memes m ON m.meme_id = p.meme_id
            JOIN map_points t ON t.meme_id = m.meme_id AND t.variant_id = ?
            WHERE t.template IS NOT NULL AND m.label IS NOT NULL AND NOT m.retired
              AND p.variant_id IN (SELECT unnest(?))
            GROUP BY ALL) GROUP BY 1""", [map_variant, vids]))
    assert len(sizes) > 10                                          # the synthetic cache plants many templates
    rows = slice_tables(reports["en"])["template"]
    listed = {r["value"] for r in rows if r["value"].startswith("template ")}
    assert len(listed) == 10
    assert min(sizes[v] for v in listed) >= max(sizes[v] for v in set(sizes) - listed)
    assert {r["value"] for r in rows} - listed <= {"no template", "not embedded"}
    hidden = len(sizes) - 10
    assert f'data-hidden="{hidden}"' in reports["en"]
    assert f"The 10 largest template clusters are listed; {hidden} more cluster" in reports["en"]
    # the numbers of a listed cluster, as for any slice
    expected = answers(synth, "CASE WHEN t.meme_id IS NULL THEN 'not embedded' WHEN t.template IS NULL "
                              "THEN 'no template' ELSE 'template ' || t.template END",
                       "LEFT JOIN map_points t ON t.meme_id = m.meme_id AND t.variant_id = ?", [map_variant])
    check_slice({"template": rows}, "template", {k: v for k, v in expected.items() if k[0] in listed or
                                                 not k[0].startswith("template ")})


def test_russian_report_has_the_section_translated(reports):
    ru, en = reports["ru"], reports["en"]
    assert reports["missing"] == []
    assert '<li><a href="#slices">Срезы</a></li>' in ru and "<h2>Срезы</h2>" in ru
    part = section(ru, "slices")
    for text in ("доля токсичных", "слишком мал", "Поправки на множественные сравнения нет", "есть текст",
                 "Слишком мало мемов, чтобы что-то утверждать (меньше 30)", "шаблон ", "Показаны самые крупные"):
        assert text in part, text
    for text in ("toxic share", "too small", "multiple comparisons", "template 1<"):
        assert text not in part, text
    # the same rows and numbers in both languages (only words are translated: value names, notes)

    def numbers(html):
        return [(r["value"], r["variant_id"], r["small"], [re.findall(r"-?\d+(?:\.\d+)?", c) for c in r["cells"][2:]])
                for rows in slice_tables(html).values() for r in rows]
    assert numbers(en) == numbers(ru) and len(numbers(en)) > 50


def test_a_cache_without_ocr_or_map_shows_only_the_slices_it_can(synth, tmp_path):
    db = tmp_path / "bare.duckdb"
    shutil.copy(synth, db)
    con = duckdb.connect(str(db))
    con.execute("DELETE FROM map_points")
    con.execute("DELETE FROM maps")
    con.execute("DELETE FROM ocr")
    con.close()
    report = export.build_report(db, images=False)
    assert [s["key"] for s in report["slices"]["slices"]] == ["format", "image_size", "near_duplicate"]
    html, _ = export.render_html(report)
    assert list(slice_tables(html)) == ["format", "image_size", "near_duplicate"]
