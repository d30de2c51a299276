"""Slices (issue 17, part 6): per slice of the memes, every set's metrics with intervals, on a real synthetic cache.
The expected counts are computed here in Python from plain SQL rows, not by pipeline/queries.py."""
from __future__ import annotations

from collections import Counter

import duckdb
import pytest
from dashboard_helpers import all_text, app_opener, build_synth, goto, sql

from pipeline import queries as q
from pipeline import slices as sl


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return build_synth(tmp_path_factory.mktemp("slices") / "s.duckdb", n=600, seed=8)


def expected(db, variant_id, key_of):
    """{slice value: (memes, right)} of one set from the meme-level rows."""
    rows = sql(db, """SELECT m.meme_id, m.format, greatest(m.width, m.height), o.text, m.label, p.label
                      FROM predictions p JOIN memes m USING (meme_id)
                      LEFT JOIN ocr o ON o.meme_id = m.meme_id AND o.variant_id = (
                          SELECT variant_id FROM variants WHERE stage = 'ocr' ORDER BY name LIMIT 1)
                      WHERE p.variant_id = ? AND m.label IS NOT NULL AND NOT m.retired""", [variant_id])
    n, right = Counter(), Counter()
    for meme_id, fmt, side, text, truth, answer in rows:
        k = key_of(meme_id=meme_id, fmt=fmt, side=side, text=text)
        n[k] += 1
        right[k] += answer == truth
    return n, right


def metrics_for(db, key, ocr=None, group_ids=()):
    sets = [r[0] for r in sql(db, "SELECT variant_id FROM variants WHERE stage IN ('clip', 'vlm') AND "
                                  "json_extract_string(config, '$.meme_view') IS NULL ORDER BY variant_id")]
    with duckdb.connect(str(db), read_only=True) as con:
        rows = q.slice_counts(con, key, ocr, sets, False, group_ids)
    return sets, sl.slice_metrics(rows, sets)


def test_format_and_size_slices_equal_counts_from_the_rows(synth):
    sets, per = metrics_for(synth, "format")
    for v in sets:
        n, right = expected(synth, v, lambda fmt, **_: fmt)
        assert {val: m["n"] for (val, vid), m in per.items() if vid == v} == dict(n)
        for val in n:
            assert per[(val, v)]["accuracy"]["value"] == pytest.approx(right[val] / n[val])
            assert per[(val, v)]["small"] is (n[val] < sl.SMALL_SLICE)
    assert any(m["small"] for m in per.values()) and not all(m["small"] for m in per.values())
    _, per = metrics_for(synth, "image_size")
    n, _ = expected(synth, sets[0], lambda side, **_: "< 500 px" if side < 500 else
                    "500–999 px" if side < 1000 else "≥ 1000 px")
    assert {val: m["n"] for (val, vid), m in per.items() if vid == sets[0]} == dict(n)


def test_text_slices_follow_the_chosen_ocr_engine(synth):
    ocr = sql(synth, "SELECT variant_id FROM variants WHERE stage = 'ocr' ORDER BY name LIMIT 1")[0][0]
    sets, per = metrics_for(synth, "has_text", ocr)
    n, right = expected(synth, sets[0], lambda text, **_: "not read" if text is None else "text" if text else "no text")
    assert {val: m["n"] for (val, vid), m in per.items() if vid == sets[0]} == dict(n)
    _, per = metrics_for(synth, "caption_length", ocr)
    n, _ = expected(synth, sets[0], lambda text, **_: "not read" if text is None else "0" if not text else
                    "1–20" if len(text) <= 20 else "21–60" if len(text) <= 60 else "> 60")
    assert {val: m["n"] for (val, vid), m in per.items() if vid == sets[0]} == dict(n)


def test_near_duplicate_slice_is_the_overviews_groups(synth):
    with duckdb.connect(str(synth), read_only=True) as con:
        dups = q.near_duplicate_report(con, False)
    assert dups["n_groups"] > 0
    sets, per = metrics_for(synth, "near_duplicate", group_ids=dups["in_group"])
    members = set(dups["in_group"])
    n, _ = expected(synth, sets[0], lambda meme_id, **_: sl.IN_GROUP if meme_id in members else sl.ALONE)
    assert {val: m["n"] for (val, vid), m in per.items() if vid == sets[0]} == dict(n)


def test_only_whitelisted_slices_reach_the_sql(synth):
    with duckdb.connect(str(synth), read_only=True) as con, pytest.raises(KeyError):
        q.slice_counts(con, "format; DROP TABLE memes", None, ["x"], False)


def test_slices_page_flags_small_slices(synth, monkeypatch):
    at = goto(app_opener(monkeypatch)(synth), "views/slices.py", by="format")
    table = at.dataframe[0].value
    sets, per = metrics_for(synth, "format")
    assert len(table) == sum(1 for (_, vid) in per if vid in sets[:4])
    small = sl.ordered_values("format", {val for (val, vid), m in per.items() if m["small"] and vid in sets[:4]})
    assert small and f"fewer than {sl.SMALL_SLICE}): {', '.join(small)}." in all_text(at)
    assert set(table.loc[table["too small"], "slice"]) == set(small)
