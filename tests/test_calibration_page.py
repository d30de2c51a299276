"""Calibration and possible label issues (issue 17, parts 5 and 7) on a real DuckDB cache with planted structure:
one CLIP set calibrated by construction (labels drawn as Bernoulli(score)), one miscalibrated (the same scores
pushed towards toxic), and a meme labelled non-toxic that every set calls toxic with p = 0.99.

The expectations are computed here from the rows (plain SQL, scikit-learn, numpy), not by pipeline/queries.py."""
from __future__ import annotations

import numpy as np
import pytest
from dashboard_helpers import all_text, app_opener, build_synth, goto, sql, write
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, f1_score

from pipeline import queries as q
from pipeline import summary
from pipeline.store import Store

PLANTED = "planted mislabelled meme"


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    db = build_synth(tmp_path_factory.mktemp("calibration") / "cal.duckdb", n=600, seed=11)
    memes = [r[0] for r in sql(db, "SELECT meme_id FROM memes WHERE label IS NOT NULL AND NOT retired ORDER BY meme_id")]
    clip = [r[0] for r in sql(db, "SELECT variant_id FROM variants WHERE stage = 'clip' AND "
                                  "json_extract_string(config, '$.meme_view') IS NULL ORDER BY model_id, name, variant_id")]
    assert len(clip) >= 2
    good, bad = clip[:2]
    rng = np.random.default_rng(5)
    s = rng.uniform(0.01, 0.99, len(memes))
    y = rng.random(len(memes)) < s                                  # calibrated by construction
    target = memes[0]
    s[0], y[0] = 0.99, False                                       # the planted mislabelled meme
    import duckdb
    import pandas as pd
    planted_rows = pd.DataFrame({"meme_id": memes, "label": np.where(y, "toxic", "non_toxic"), "good": s,
                                 "bad": s ** 0.3})
    con = duckdb.connect(str(db))
    try:
        con.register("planted", planted_rows)
        con.execute("UPDATE memes SET label = planted.label FROM planted WHERE memes.meme_id = planted.meme_id")
        for name, vid in (("good", good), ("bad", bad)):
            con.execute(f"""UPDATE predictions SET score = planted.{name},
                                   label = CASE WHEN planted.{name} >= 0.5 THEN 'toxic' ELSE 'non_toxic' END
                            FROM planted WHERE predictions.meme_id = planted.meme_id AND predictions.variant_id = ?""",
                        [vid])
        con.execute("UPDATE predictions SET score = 0.99, label = 'toxic' WHERE meme_id = ? AND score IS NOT NULL",
                    [target])
    finally:
        con.close()
    store = Store(db)
    run = store.start_run("precompute", {}, "/memes", {}, "cpu", None)
    assert summary.write(store, run) > 0                           # as a precompute does at its end
    return {"db": db, "good": good, "bad": bad, "target": target, "run": run}


def scores_and_labels(db, variant_id):
    rows = sql(db, """SELECT m.label = 'toxic', p.score FROM predictions p JOIN memes m USING (meme_id)
                      WHERE p.variant_id = ? AND m.label IS NOT NULL AND NOT m.retired AND isfinite(p.score)""",
               [variant_id])
    return np.array([r[0] for r in rows], dtype=int), np.array([r[1] for r in rows], dtype=float)


def stored(db):
    import duckdb
    with duckdb.connect(str(db), read_only=True) as con:
        return q.stored_calibration(con, False), q.live_calibration(con, False), q.stored_metrics(con, False)


def test_reliability_ece_brier_equal_independent_computation(planted):
    st, live, metrics = stored(planted["db"])
    assert st is not None and st["run_id"] == planted["run"]
    assert st["sets"] == live                                      # stored = computed now
    for vid in (planted["good"], planted["bad"]):
        y, s = scores_and_labels(planted["db"], vid)
        cal = st["sets"][vid]
        assert cal["n"] == len(s)
        frac, mean = calibration_curve(y, s, n_bins=10, strategy="uniform")
        assert np.allclose([b["frac_toxic"] for b in cal["bins"]], frac)
        assert np.allclose([b["mean_score"] for b in cal["bins"]], mean)
        assert sum(b["n"] for b in cal["bins"]) == len(s)
        ids = np.minimum((s * 10).astype(int), 9)
        ece = np.abs(np.bincount(ids, weights=s - y, minlength=10)).sum() / len(s)
        assert cal["ece"]["value"] == pytest.approx(ece)
        assert cal["ece"]["low"] <= ece <= cal["ece"]["high"]
        assert cal["brier"]["value"] == pytest.approx(brier_score_loss(y, s))
        # the threshold curve at the 0.5 rule is what the set's answers (score >= 0.5) give on the Overview
        d = cal["threshold"]["default"]
        assert d["f1"] == pytest.approx(f1_score(y, s >= 0.5))
        assert d["f1"] == pytest.approx(metrics["sets"][vid]["classification"]["f1"]["value"])
        assert cal["threshold"]["in_sample"]["chosen_on_same_memes"] is True
        assert cal["threshold"]["cv"]["chosen_on_same_memes"] is False and cal["threshold"]["cv"]["k"] == 5
    good, bad = st["sets"][planted["good"]], st["sets"][planted["bad"]]
    assert good["ece_null"]["p_value"] > 0.01                      # within what chance gives a calibrated model
    assert bad["ece_null"]["p_value"] < 0.01 and bad["ece"]["low"] > good["ece"]["high"]
    assert bad["ece"]["value"] > 3 * good["ece_null"]["null_q95"]


def test_label_issues_rank_the_planted_meme_first_with_its_evidence(planted):
    import duckdb
    with duckdb.connect(str(planted["db"]), read_only=True) as con:
        sets = q.prediction_sets(con)
        report = q.label_issue_report(con, sets, False, 2)
    scored = [v for v in sets if sql(planted["db"], "SELECT count(score) FROM predictions WHERE variant_id = ?", [v])[0][0]]
    first = report["issues"][0]
    assert report["method"] == "confident_learning" and report["note"] is None
    assert first["meme_id"] == planted["target"] and first["label"] == "non_toxic" and first["suggested"] == "toxic"
    assert first["n_sets_against"] == len(scored) and first["quality"] == pytest.approx(0.01)
    assert {v: e["score"] for v, e in first["evidence"].items()} == {v: 0.99 for v in sets}
    assert all(e["answer"] == "toxic" for e in first["evidence"].values())
    assert all(i["n_sets_against"] >= 2 for i in report["issues"])
    # the folder label is never changed by the tool
    assert sql(planted["db"], "SELECT label FROM memes WHERE meme_id = ?", [planted["target"]])[0][0] == "non_toxic"


def test_calibration_page_shows_the_stored_numbers_and_labels_chosen_thresholds(planted, monkeypatch):
    from dashboard import charts
    drawn = {}

    def spec(name, args, language="en"):
        drawn[name] = args
        return charts.BUILDERS[name](*args).to_dict()
    monkeypatch.setattr(charts, "spec", spec)
    at = goto(app_opener(monkeypatch)(planted["db"]), "views/calibration.py")
    text = all_text(at)
    assert f"Stored by run {planted['run']}" in text
    table = next(d.value for d in at.dataframe if "ECE" in d.value.columns)
    st, _, _ = stored(planted["db"])
    assert len(table) == len(st["sets"]) - sum(1 for v in st["sets"] if v not in
                                               [r[0] for r in sql(planted["db"], "SELECT variant_id FROM variants WHERE "
                                                                  "json_extract_string(config, '$.meme_view') IS NULL")])
    names = [f"{r.stage.upper()} {r.model} · {r.prompt}" for r in table.itertuples()]
    ece = dict(zip(names, table["ECE"]))
    good_name = next(n for n in names if n.startswith("CLIP") and n.endswith(
        " · " + sql(planted["db"], "SELECT name FROM variants WHERE variant_id = ?", [planted["good"]])[0][0]))
    assert ece[good_name].startswith(f"{st['sets'][planted['good']]['ece']['value']:.3f} [")
    assert "not a held-out result" in text and "held-out folds" in text
    curve, marks = drawn["threshold_curves"]
    assert list(marks["mark"]) == ["0.5 (the default rule)", "chosen by cross-validation", "chosen on these memes"]
    assert marks["threshold"].iloc[0] == 0.5
    assert set(curve["metric"]) == {"accuracy", "precision", "recall", "f1"}
    points = drawn["reliability_diagram"][0]
    per_set = points.groupby("set")["n"].sum()
    assert len(per_set) == min(4, len(table))
    for name, n in per_set.items():                                 # every meme of a set is in one bin
        assert n == int(table["n"].iloc[names.index(name)])
    # not current any more: the same table, computed now
    write(planted["db"], "UPDATE meta SET value = 'stale' WHERE key = 'summary_fingerprint'")
    try:
        at = goto(app_opener(monkeypatch)(planted["db"]), "views/calibration.py")
        assert "Computed now" in all_text(at)
        assert next(d.value for d in at.dataframe if "ECE" in d.value.columns).equals(table)
    finally:
        store = Store(planted["db"])
        summary.write(store, planted["run"])


def test_label_issues_page_lists_the_planted_meme_with_a_link(planted, monkeypatch):
    at = goto(app_opener(monkeypatch)(planted["db"]), "views/label_issues.py")
    links = [link.proto.query_string.removeprefix("meme=") for link in at.main.get("page_link")]
    assert links and links[0] == planted["target"]
    assert "confident learning (Cleanlab)" in all_text(at)
    evidence = at.dataframe[0].value
    assert list(evidence["p(toxic)"]) == ["0.990"] * len(evidence)


def test_report_carries_calibration_and_label_issue_sections(planted, tmp_path):
    import re

    from pipeline.export import export_html
    out = tmp_path / "r.html"
    export_html(planted["db"], out)
    html = out.read_text(encoding="utf-8")
    st, _, _ = stored(planted["db"])
    section = html[html.index('<section id="calibration">'):html.index('<section id="label-issues">')]
    for vid in (planted["good"], planted["bad"]):
        cal = st["sets"][vid]
        row = re.search(rf'<tr data-variant-id="{vid}">(.*?)</tr>', section).group(1)
        assert f'data-cell="n">{cal["n"]}<' in row
        assert f'<td class="num">{cal["ece"]["value"]:.3f}</td><td class="ci">[{cal["ece"]["low"]:.3f}, ' in row
        assert f'<td class="num">{cal["brier"]["value"]:.3f}</td>' in row
        th = re.search(rf'<section class="threshold" id="threshold-{vid}".*?</section>', section, re.S).group(0)
        assert f'<td class="num">{cal["threshold"]["default"]["f1"]:.3f}</td>' in th
        assert "chosen on the same memes it is evaluated on: its F1 is optimistic" in th
        assert "threshold chosen by cross-validation" in th
    assert '<figure class="chart"><svg role="img" aria-label="Reliability diagram"' in section
    issues = html[html.index('<section id="label-issues">'):html.index('<section id="errors">')]
    first = re.search(r'<div class="label-issue" data-meme-id="([0-9a-f]+)" data-sets-against="(\d+)">', issues)
    assert first.group(1) == planted["target"] and int(first.group(2)) >= 2
    assert f'<article class="card" data-meme-id="{planted["target"]}">' in issues


def test_precompute_stores_the_default_label_issues_and_near_duplicates(planted):
    """What the Label issues page and the Overview show by default is stored at the end of a run (table
    analysis_summaries) and equals what they would compute now; a change of the data makes it stale."""
    import duckdb
    with duckdb.connect(str(planted["db"]), read_only=True) as con:
        sets = [v for v in q.prediction_sets(con) if v in q.stored_calibration(con, False)["sets"]]
        stored = q.stored_analysis(con, "label_issues", False)
        assert stored["variant_ids"] == sets
        assert {k: v for k, v in stored.items() if k != "variant_ids"} == summary.label_issues(con, sets, False, 2)
        assert q.stored_analysis(con, "near_duplicates", False) == q.live_near_duplicates(con, False)
        assert q.near_duplicate_report(con, True) == q.live_near_duplicates(con, True)
    write(planted["db"], "UPDATE memes SET phash = NULL WHERE meme_id = ?", [planted["target"]])
    try:
        with duckdb.connect(str(planted["db"]), read_only=True) as con:
            assert q.stored_analysis(con, "near_duplicates", False) is None     # a hash filled in later: stale
    finally:
        summary.write(Store(planted["db"]), planted["run"])
