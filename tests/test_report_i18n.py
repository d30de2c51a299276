"""The HTML report and the statistical texts in both languages (issue 14): `vlmemes export --lang ru|en`.

* the same cache exported in Russian and in English: the same numbers in every table cell, <html lang>,
  nothing asked of the Russian catalog that it lacks (pipeline.i18n.MISSING), and no English word left
  in the Russian report's visible text once the cache's own data (model ids, prompt versions, OCR text,
  model explanations, file names: collected by SQL) is taken out, apart from technical terms;
* a static check: every literal the report and pipeline/metrics.py translate (translate / translate_n
  / N_ calls in export.py and metrics.py, `_` / `_n` / `_m` calls in the template) is in the Russian
  catalog with the same {fields}, plural entries with three forms;
* metrics.note_text / method_text / reading_text / adjustment_text in both languages, with Russian
  plural forms; the English readings stay the stored ones;
* the CLI: --lang ru works, an unknown language is refused by argparse.
"""
from __future__ import annotations

import ast
import json
import re
import string
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import jinja2
import markupsafe
import pytest
from jinja2 import nodes

from pipeline import export, i18n, metrics
from pipeline.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "pipeline" / "templates" / "report.html.j2"
SOURCES = [ROOT / "pipeline" / "export.py", ROOT / "pipeline" / "metrics.py", ROOT / "pipeline" / "calibration.py",
           ROOT / "pipeline" / "label_issues.py"]

# Technical terms and names a Russian report may write in Latin letters (compared case-insensitively).
ALLOWED = {
    "AUROC", "ROC", "CLIP", "VLM", "OCR", "CAM", "Grad-CAM", "GradCAM", "EigenCAM", "Wilson", "BCa", "DeLong",
    "McNemar", "Holm", "Newcombe", "Bonferroni", "Hanley", "McNeil", "MOVER", "Qwen", "SigLIP", "DuckDB",
    "HTML", "Markdown", "JPEG", "PNG", "GIF", "WEBP", "UTC", "VLMemes", "logit", "kappa", "CPU", "CUDA", "GPU",
    "ECE", "Cleanlab", "confident", "learning", "zero-shot", "UMAP", "PCA", "precompute",
}


# ============================================================================ helpers
class _Visible(HTMLParser):
    """The text a reader sees or hears: text nodes outside <style>, <script>, <title> and <code>
    (command-line options are code, not language) and the alt / title / aria-label attributes."""
    HIDDEN = {"style", "script", "title", "code"}
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.texts: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)
        # what assistive technology reads out (and a mouse hover shows) is text too
        self.texts += [v for k, v in attrs if k in ("alt", "title", "aria-label", "aria-roledescription") and v]

    def handle_startendtag(self, tag, attrs):
        self.texts += [v for k, v in attrs if k in ("alt", "title", "aria-label", "aria-roledescription") and v]

    def handle_endtag(self, tag):
        if tag in self.stack:
            while self.stack.pop() != tag:
                pass

    def handle_data(self, data):
        if not self.HIDDEN.intersection(self.stack):
            self.texts.append(data)


def visible_text(html: str) -> str:
    p = _Visible()
    p.feed(html)
    p.close()
    return "\n".join(p.texts)


class _Cells(HTMLParser):
    """The text of every <td> of every <table>, in document order: [[cell text, ...] per table]."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tables: list[list[str]] = []
        self.depth = 0
        self.cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "td" and self.tables:
            self.cell = []

    def handle_endtag(self, tag):
        if tag == "td" and self.cell is not None:
            self.tables[-1].append("".join(self.cell).strip())
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def table_numbers(html: str) -> list[list[list[str]]]:
    """Every number in every table cell: [[numbers of cell, ...] per table]."""
    p = _Cells()
    p.feed(html)
    p.close()
    return [[re.findall(r"-?\d+(?:\.\d+)?", cell) for cell in table] for table in p.tables]


def cache_data(db: Path) -> list[str]:
    """The cache's own data as the report may show it: never translated, so left out of the check."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        queries = ["SELECT model_id, name, variant_id, stage FROM variants", "SELECT text, engine FROM ocr",
                   "SELECT explanation, raw_answer, label FROM predictions", "SELECT rel_path, format FROM memes",
                   "SELECT stage, error_type, path, message FROM failures",
                   "SELECT device, models, status, command, git_commit FROM runs"]
        values = {str(v) for q in queries for row in con.execute(q).fetchall() for v in row if v is not None}
        for models, commit in con.execute("SELECT models, git_commit FROM runs").fetchall():
            used = json.loads(models or "{}")                # what the runs table shows: name: model
            values |= {f"{k}: {export.public_name(str(v))}" for k, v in used.items()} | {str(k) for k in used}
            values.add((commit or "")[:10])
    finally:
        con.close()
    values |= {export.public_name(v) for v in values} | {export.scrub_paths(v) for v in values}
    values.add(db.name)
    return sorted((v for v in values if v.strip()), key=len, reverse=True)


def english_words(text: str) -> list[str]:
    """Words of 3+ Latin letters that are not technical terms; path-like tokens (docs/metrics.md,
    org/model ids) and identifiers with digits are not language."""
    allowed = {a.lower() for a in ALLOWED}
    out = []
    for token in re.findall(r"[A-Za-z0-9_./:*+-]*[A-Za-z][A-Za-z0-9_./:*+-]*", text):
        if "/" in token or re.search(r"\w\.\w", token):
            continue
        for word in re.findall(r"[A-Za-z]+(?:-[A-Za-z]+)*", token):
            if len(re.sub(r"[^A-Za-z]", "", word)) >= 3 and word.lower() not in allowed \
                    and not all(part.lower() in allowed for part in word.split("-")):
                out.append(word)
    return out


def fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


# ============================================================================ fixtures
@pytest.fixture(scope="module")
def synth_cache(tmp_path_factory) -> Path:
    """A small synthetic cache: four prediction sets (two CLIP, two VLM), OCR, CAM, runs, failures."""
    from pipeline.devtools.synth_db import synth_db
    return synth_db(tmp_path_factory.mktemp("i18n") / "synth.duckdb", n=60, seed=3)


def _both(db: Path, out_dir: Path, **kw) -> dict[str, str]:
    before = set(i18n.MISSING)
    html = {lang: export.export_html(db, out_dir / f"report-{lang}.html", lang=lang, **kw).read_text(encoding="utf-8")
            for lang in ("en", "ru")}
    html["missing"] = sorted(t for lang, t in set(i18n.MISSING) - before if lang == "ru")
    return html


@pytest.fixture(scope="module")
def synth_reports(synth_cache, tmp_path_factory) -> dict:
    return dict(_both(synth_cache, tmp_path_factory.mktemp("synth-reports")), db=synth_cache)


@pytest.fixture(scope="module")
def smoke_reports(smoke_db, tmp_path_factory) -> dict:
    """The cache built by the real pipeline (smoke run: CAM, failures, an English-only CLIP model)."""
    return dict(_both(smoke_db, tmp_path_factory.mktemp("smoke-reports")), db=smoke_db)


@pytest.fixture(params=["synth", "smoke"])
def reports(request) -> dict:
    return request.getfixturevalue(f"{request.param}_reports")


# ============================================================================ the report in two languages
def test_same_numbers_in_both_languages(reports):
    en, ru = table_numbers(reports["en"]), table_numbers(reports["ru"])
    assert len(en) == len(ru) and sum(len(t) for t in en) > 50
    assert en == ru


def test_html_lang_and_nothing_missing_from_the_catalog(reports):
    assert '<html lang="ru">' in reports["ru"] and '<html lang="en">' in reports["en"]
    assert reports["missing"] == []


def test_russian_report_has_no_english_words(reports):
    text = visible_text(reports["ru"])
    for value in cache_data(reports["db"]):
        text = text.replace(value, " ")
    assert english_words(text) == []
    english = visible_text(reports["en"])
    for value in cache_data(reports["db"]):
        english = english.replace(value, " ")
    assert len(english_words(english)) > 300              # the check does see English where there is some
    assert "Отчёт VLMemes" in text and "Мак-Немара" in text and "доверительным интервалом" in text


def test_english_report_is_the_english_one(synth_reports):
    en, ru = synth_reports["en"], synth_reports["ru"]
    assert "How to read this report" in en and "How to read this report" not in ru
    assert "exact McNemar p" in en and "Holm-Bonferroni" in en
    assert "Как читать этот отчёт" in ru and "поправка Холма" in ru


def test_readings_in_the_report_are_reading_text(synth_reports):
    """The Russian report's readings are reading_text of the pair's stored numbers; the English
    ones are AgreementReport.reading itself."""
    report = export.build_report(synth_reports["db"], images=False, lang="ru")
    assert report["pairs"]
    for pr in report["pairs"]:
        assert pr["reading"] == metrics.reading_text(pr["report"].as_dict(), pr["a"].label, pr["b"].label, "ru")
        assert metrics.reading_text(pr["report"].as_dict(), pr["a"].label, pr["b"].label, "en") == pr["report"].reading
        assert str(markupsafe.escape(pr["reading"])) in synth_reports["ru"]


def test_untrusted_text_stays_escaped_in_russian(synth_cache, tmp_path):
    db = tmp_path / "hostile.duckdb"
    db.write_bytes(synth_cache.read_bytes())
    con = duckdb.connect(str(db))
    vid, meme = con.execute("SELECT variant_id, meme_id FROM predictions p JOIN memes m USING (meme_id) "
                            "WHERE p.label = 'toxic' AND m.label = 'non_toxic' ORDER BY p.score DESC LIMIT 1").fetchone()
    con.execute("UPDATE predictions SET explanation = '<script>alert(1)</script>{n} %s' WHERE variant_id = ? AND meme_id = ?",
                [vid, meme])
    con.close()
    html = export.export_html(db, tmp_path / "ru.html", lang="ru").read_text(encoding="utf-8")
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;{n} %s" in html


def test_language_note_matches_clip_prompts():
    """The report translates the English-only-model note from its own template: it must be the
    English text of pipeline.stages.clip_prompts.language_note word for word."""
    from pipeline.stages.clip_prompts import language_note
    model = "openai/clip-vit-base-patch32"
    english = language_note(model, "ru-v1")
    if english is None:
        pytest.skip("that model is not treated as English-only")
    assert i18n.translate(export.LANGUAGE_NOTE, "en", model=model) == english


# ============================================================================ the catalog covers every literal
def _python_literals(path: Path) -> list[tuple[str, str, str | None, int]]:
    """(kind, English text, English singular, line) of every translate / translate_n / N_ call with
    literals; kind "plain" (translate: a string entry), "plural" (translate_n: keyed by the plural) or
    "marked" (N_: either)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
        args = node.args

        def lit(i):
            return args[i].value if len(args) > i and isinstance(args[i], ast.Constant) and isinstance(args[i].value, str) else None
        if name == "N_" and lit(0) is not None:              # marked: shown by translate or translate_n
            out.append(("marked", lit(0), None, node.lineno))
        elif name in ("translate", "_", "_m") and lit(0) is not None:
            out.append(("plain", lit(0), None, node.lineno))
        elif name in ("translate_n", "_n") and lit(2) is not None:
            out.append(("plural", lit(2), lit(1), node.lineno))
    return out


def _template_literals(path: Path) -> list[tuple[str, str, str | None, int]]:
    """The same for the template's _("..."), _m("...") and _n(n, "...", "...") calls (Jinja's own parser)."""
    tree = jinja2.Environment().parse(path.read_text(encoding="utf-8"))
    out = []
    for call in tree.find_all(nodes.Call):
        if not isinstance(call.node, nodes.Name):
            continue
        a = call.args
        if call.node.name in ("_", "_m", "gettext") and a and isinstance(a[0], nodes.Const):
            out.append(("plain", a[0].value, None, call.lineno))
        elif call.node.name in ("_n", "ngettext") and len(a) >= 3 and isinstance(a[2], nodes.Const):
            out.append(("plural", a[2].value, a[1].value if isinstance(a[1], nodes.Const) else None, call.lineno))
    return out


def _all_literals():
    found = [(str(p.name), *x) for p in SOURCES for x in _python_literals(p)]
    return found + [(TEMPLATE.name, *x) for x in _template_literals(TEMPLATE)]


def test_every_literal_is_in_the_russian_catalog_with_the_same_fields():
    catalog = i18n.catalog("ru")
    literals = _all_literals()
    assert len(literals) > 150
    problems = []
    for where, kind, text, one, line in literals:
        if text not in catalog:
            problems.append(f"{where}:{line}: not in the ru catalog: {text!r}")
            continue
        value = catalog[text]
        forms = list(value) if isinstance(value, tuple) else [value]
        if isinstance(value, tuple) and len(value) != 3:
            problems.append(f"{where}:{line}: a plural entry needs (one, few, many): {text!r}")
        for form in forms:
            if fields(form) != fields(text):
                problems.append(f"{where}:{line}: fields {sorted(fields(form))} in {form!r}, "
                                f"English has {sorted(fields(text))}")
        if kind == "plural" and one is not None and not fields(one) <= fields(text) | {"n"}:
            problems.append(f"{where}:{line}: the singular {one!r} has fields the plural lacks")
        if kind == "plain" and isinstance(value, tuple):
            problems.append(f"{where}:{line}: a plural entry used as a plain string: {text!r}")
    assert problems == []


def test_every_markup_translation_keeps_its_tags():
    """_m strings hold our own markup: the Russian must carry the same tags."""
    catalog = i18n.catalog("ru")
    for _, kind, text, _, _ in _all_literals():
        if "<" in text and ">" in text and re.search(r"</?[a-z]+", text):
            assert re.findall(r"</?[a-z]+[^>]*>", catalog[text]) == re.findall(r"</?[a-z]+[^>]*>", text), text


def test_every_metric_note_and_method_is_translated():
    catalog = i18n.catalog("ru")
    notes = [t for _, _, t, _, _ in (("m", *x) for x in _python_literals(SOURCES[1]))
             if t.startswith(("undefined", "not estimable"))]
    assert len(notes) >= 12
    for note in notes:
        assert metrics.note_text(note, "ru") == catalog[note] != note
        assert metrics.note_text(note, "en") == note
    for method in metrics.METHOD_NAMES.values():
        assert method in catalog


# ============================================================================ metrics: texts in a language
def test_note_text():
    import numpy as np
    e = metrics.auroc_estimate(metrics.ScoreCounts(np.array([0.5]), np.array([3]), np.array([4])))
    assert e.note == "not estimable at this n: all scores tied (one distinct score)"
    assert metrics.note_text(e.note, "en") == e.note
    assert metrics.note_text(e.note, "ru") == "не поддаётся оценке при таком n: все оценки токсичности совпадают " \
                                              "(одно уникальное значение)"
    assert metrics.note_text(None, "ru") == "" and metrics.note_text("", "en") == ""
    assert metrics.note_text("a note from older code", "ru") == "a note from older code"      # English fallback


def test_method_text():
    import numpy as np
    sc = metrics.ScoreCounts(np.array([0.1, 0.4, 0.6, 0.9]), np.array([3, 2, 1, 0]), np.array([0, 1, 2, 3]))
    boot = metrics.auroc_estimate(sc, fast=False, n_boot=2000)
    assert metrics.method_text(boot, "en") == boot.method_detail == "stratified BCa bootstrap, 2000 resamples"
    assert metrics.method_text(boot.as_dict(), "ru") == "стратифицированный бутстрэп BCa, 2000 бутстрэп-выборок"
    for n, form in ((1, "1 бутстрэп-выборка"), (2, "2 бутстрэп-выборки"), (5, "5 бутстрэп-выборок"),
                    (21, "21 бутстрэп-выборка"), (12, "12 бутстрэп-выборок")):
        assert metrics.method_text({"method": "bca", "n_boot": n}, "ru").endswith(", " + form)
    assert metrics.method_text({"method": "bca", "n_boot": 1}, "en") == "stratified BCa bootstrap, 1 resample"
    wilson = metrics.proportion_estimate(3, 10)
    assert metrics.method_text(wilson, "en") == "Wilson score" and metrics.method_text(wilson, "ru") == "интервал Уилсона"
    assert metrics.method_text(None, "ru") == ""
    for key, name in metrics.METHOD_NAMES.items():
        e = metrics.Estimate(0.5, 0.1, 0.9, 10, key)
        assert metrics.method_text(e, "en") == e.method_detail == name
        assert metrics.method_text(e.as_dict(), "ru") == i18n.catalog("ru")[name]
    assert metrics.method_text({"method": "custom", "method_detail": "my method"}, "ru") == "my method"


def _agreement(only_a: int, only_b: int, both_right: int, both_wrong: int = 0, names=("A1", "B1")):
    y, a, b = [], [], []
    for count, ra, rb in ((both_right, True, True), (only_a, True, False), (only_b, False, True), (both_wrong, False, False)):
        for _ in range(count):
            y.append("toxic")
            a.append("toxic" if ra else "non_toxic")
            b.append("toxic" if rb else "non_toxic")
    return metrics.agreement(y, a, b, name_a=names[0], name_b=names[1])


@pytest.mark.parametrize("only_a, only_b, both_right", [(0, 0, 1), (0, 0, 2), (0, 0, 5), (0, 0, 21), (10, 1, 30),
                                                          (4, 3, 44), (1, 1, 3), (1, 0, 0), (9, 2, 0)])
def test_reading_text_is_the_stored_reading_in_english(only_a, only_b, both_right):
    rep = _agreement(only_a, only_b, both_right, names=("ru-v1 (clip)", "v2 {x} <b>"))
    d = rep.as_dict()
    assert metrics.reading_text(d, "ru-v1 (clip)", "v2 {x} <b>", "en") == rep.reading == d["reading"]
    ru = metrics.reading_text(d, "ru-v1 (clip)", "v2 {x} <b>", "ru")
    assert ru != rep.reading and "ru-v1 (clip)" in ru and "v2 {x} <b>" in ru
    assert english_words(ru.replace("ru-v1 (clip)", "").replace("v2 {x} <b>", "")) == []
    # the same from plain numbers: n, b, c, p
    flat = dict(n=d["n"], b=d["table"]["only_a_right"], c=d["table"]["only_b_right"], mcnemar_p=d["mcnemar_p"])
    assert metrics.reading_text(flat, "ru-v1 (clip)", "v2 {x} <b>", "ru") == ru


def test_russian_reading_plural_forms():
    def ru(a, b, right):
        return metrics.reading_text(_agreement(a, b, right).as_dict(), "A1", "B1", "ru")
    assert "(всего 1 мем)" in ru(0, 0, 1)
    assert "(всего 2 мема)" in ru(0, 0, 2)
    assert "(всего 5 мемов)" in ru(0, 0, 5)
    assert "(всего 21 мем)" in ru(0, 0, 21) and "(всего 11 мемов)" in ru(0, 0, 11)
    one = ru(1, 0, 0)                   # one discordant meme among one
    assert "на 1 меме" in one and "на выборке из 1 мема" in one and "при всего 1 меме" in one
    five = ru(4, 1, 0)
    assert "на 4 мемах" in five and "на выборке из 5 мемов" in five and "при всего 5 мемах" in five
    many = ru(10, 1, 30)
    assert "p = 0.0117" in many and "маловероятным (p < 0.05)" in many
    assert metrics.reading_text({"n": 0, "b": 0, "c": 0, "mcnemar_p": None}, "A", "B", "ru") == \
        "Нет мемов с истинной меткой: сравнивать нечего."


def test_report_plural_forms():
    assert [i18n.translate_n(n, "{n} meme", "{n} memes", "ru") for n in (1, 2, 5, 21, 22, 25, 111)] == \
        ["1 мем", "2 мема", "5 мемов", "21 мем", "22 мема", "25 мемов", "111 мемов"]
    assert [i18n.translate_n(n, "{n} meme", "{n} memes", "en") for n in (1, 2)] == ["1 meme", "2 memes"]


def test_adjustment_text():
    import numpy as np
    y = ["toxic", "non_toxic"] * 10
    comps = [metrics.paired_comparison(y, None, None, list(np.roll(y, k)), y) for k in range(3)]
    stored = metrics.holm_adjust_comparisons(comps)[0]["adjustment"]
    assert stored == "Holm-Bonferroni (step-down) over the pairs shown (3 pairs; McNemar and AUROC each a family)"
    assert metrics.adjustment_text(3, "en") == stored
    assert metrics.adjustment_text(3, "ru").startswith("поправка Холма — Бонферрони")
    assert "(3 пары;" in metrics.adjustment_text(3, "ru") and "(5 пар;" in metrics.adjustment_text(5, "ru")


# ============================================================================ the command line
def test_cli_lang_option(synth_cache, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["export", "--db", str(synth_cache), "--out", str(out), "--lang", "ru", "--no-images"]) == 0
    html = out.read_text(encoding="utf-8")
    assert '<html lang="ru">' in html and "Как читать этот отчёт" in html
    assert "записан" in capsys.readouterr().out
    assert build_parser().parse_args(["export", "--out", "x.html"]).lang == "en"
    with pytest.raises(SystemExit) as err:
        build_parser().parse_args(["export", "--out", "x.html", "--lang", "de"])
    assert err.value.code == 2
    assert "invalid choice: 'de'" in capsys.readouterr().err
    with pytest.raises(export.ExportError, match="не подходит ни к одному набору предсказаний"):
        export.export_html(synth_cache, tmp_path / "none.html", models=["no-such-model"], lang="ru")
    assert main(["export", "--db", str(synth_cache), "--out", str(tmp_path / "d"), "--lang", "ru",
                 "--models", "no-such-model"]) == 2
    assert "--models no-such-model не подходит" in capsys.readouterr().err
    with pytest.raises(export.ExportError, match="--lang de"):
        export.export_html(synth_cache, tmp_path / "de.html", lang="de")
