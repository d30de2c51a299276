"""The dashboard in Russian and English (issue 14, part 2).

Static: every text the dashboard code marks for translation (`_("…")`, `_n(n, "…", "…")`,
`N_("…")`) is a literal, is in the Russian catalog (plural keys as 3-tuples), and keeps exactly the
same {fields}. Runtime: every page opened with ?lang=ru and ?lang=en, on a filled cache (the real
pipeline's smoke cache), an empty one and a missing one, runs without an exception; the Russian runs
ask for no text the catalog lacks (pipeline.i18n.MISSING) and show no English word anywhere in the
interface (labels, help, options, captions, notices, metric labels, table headers, buttons, links)
outside a list of technical terms and the cache's own data (file names, model ids, OCR text, ...),
collected here by SQL. The language is kept in the URL across pages and the sidebar switch changes it.
"""
from __future__ import annotations

import ast
import json
import re
import string
from pathlib import Path

import pytest
from dashboard_helpers import APP, PAGES, all_text, app_opener, goto, sql

from pipeline import i18n

DASHBOARD = APP.parent
# The only places a non-literal text is translated, by design: components.shown() translates the
# N_-marked texts kept in dicts/constants (every one is an N_ literal checked below, and the Russian
# page runs check none is missing), and db.CacheUnavailable.message() the N_ literals its raise
# statements pass.
DYNAMIC_OK = {("components.py", "shown"), ("db.py", "message")}

# Latin words a Russian page may show: technical terms, notation, names of methods and products,
# file-format and unit abbreviations, and the bilingual label of the language switch itself.
TECH_TERMS = {
    "AUROC", "ROC", "CLIP", "VLM", "OCR", "CAM", "Grad-CAM", "EigenCAM", "Wilson", "BCa", "DeLong", "McNemar",
    "Holm", "MOVER", "Newcombe", "Hanley", "McNeil", "Qwen", "SigLIP", "DuckDB", "Parquet", "HTML", "JSON",
    "URL", "SHA", "GIF", "WebP", "JPEG", "PNG", "KiB", "MiB", "UTC", "VLMemes", "git", "logit",
    "Language", "English", "easyocr", "tesseract", "eigencam", "gradcam",
    "ECE", "pHash", "Cleanlab", "confident", "learning", "zero-shot", "zero",   # issue 17: method names
    "UMAP",                                                                     # issue 17: the Map page
}
WORD = re.compile(r"[A-Za-z][A-Za-z'-]*[A-Za-z]|[A-Za-z]")
_CODE_SPAN = re.compile(r"`[^`]*`")
_PATHLIKE = re.compile(r"\S*[/\\]\S*|\S+\.(?:md|py|jpg|jpeg|png|gif|webp|duckdb|sh|json|html)\b|(?<!\S)--?[A-Za-z][\w-]*|"
                       r"\b\w*_\w*\b|\bp\(toxic\)|\b[a-z]{2}-\*")


# ============================================================================ static: the catalog
def _marked_calls() -> list[tuple[str, int, str, ast.Call]]:
    """(file relative to dashboard/, line, enclosing function, call) of every _ / _n / N_ call."""
    out = []
    for path in sorted(DASHBOARD.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        parents: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                parents[child] = node
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("_", "_n", "N_"):
                up = node
                while up in parents and not isinstance(up, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    up = parents[up]
                func = up.name if isinstance(up, (ast.FunctionDef, ast.AsyncFunctionDef)) else "<module>"
                out.append((str(path.relative_to(DASHBOARD)), node.lineno, func, node))
    return out


def _texts(call: ast.Call) -> list[ast.expr]:
    """The text arguments of a marked call: the first of _ / N_, the two forms of _n."""
    return list(call.args[1:3]) if call.func.id == "_n" else list(call.args[:1])


def _is_literal(arg: ast.expr) -> bool:
    return isinstance(arg, ast.Constant) and isinstance(arg.value, str)


def _fields(text: str) -> set[str]:
    return {name for _lit, name, _spec, _conv in string.Formatter().parse(text) if name}


def test_marked_texts_are_literals():
    """No f-string or variable as a text to translate (it could not be a catalog key), outside DYNAMIC_OK."""
    calls = _marked_calls()
    assert len(calls) > 200, "the scan found the dashboard's texts"
    bad = [f"{f}:{line} {ast.unparse(call)[:90]}" for f, line, func, call in calls
           if not all(_is_literal(a) for a in _texts(call)) and (Path(f).name, func) not in DYNAMIC_OK]
    assert not bad, "texts to translate must be literals:\n" + "\n".join(bad)
    used = {(Path(f).name, func) for f, line, func, call in calls if not all(_is_literal(a) for a in _texts(call))}
    assert used == DYNAMIC_OK, "the allow-list names exactly the dynamic places"


def test_every_marked_text_is_in_the_russian_catalog_with_the_same_fields():
    catalog = i18n.catalog("ru")
    problems = []
    for f, line, _func, call in _marked_calls():
        texts = _texts(call)
        if not all(_is_literal(a) for a in texts):
            continue
        where = f"{f}:{line}"
        if call.func.id == "_n":
            one, many = (a.value for a in texts)
            found = catalog.get(many)
            if not (isinstance(found, tuple) and len(found) == 3):
                problems.append(f"{where}: plural {many!r} needs a (one, few, many) entry, has {found!r}")
                continue
            for form in found:
                if _fields(form) - {"n"} != _fields(many) - {"n"}:
                    problems.append(f"{where}: {form!r} has other fields than {many!r}")
            if _fields(one) != _fields(many):
                problems.append(f"{where}: the English forms {one!r} / {many!r} differ in fields")
        else:
            text = texts[0].value
            found = catalog.get(text)
            if not isinstance(found, str):
                problems.append(f"{where}: {text!r} is not in the Russian catalog" if found is None else
                                f"{where}: {text!r} is a plural entry, asked for as a plain text")
            elif _fields(found) != _fields(text):
                problems.append(f"{where}: {found!r} has fields {_fields(found)}, the English {_fields(text)}")
    assert not problems, "\n".join(problems)


def test_dashboard_catalog_has_no_stale_entries():
    """Every entry of pipeline/locales/ru/dashboard.py is still asked for by some dashboard text."""
    from pipeline.locales.ru import dashboard as ru
    used = set()
    for _f, _line, _func, call in _marked_calls():
        texts = _texts(call)
        if all(_is_literal(a) for a in texts):
            used.add(texts[-1].value)
    stale = sorted(set(ru.MESSAGES) - used)
    assert not stale, stale


# ============================================================================ runtime: pages in both languages
def _texts_of(node) -> list[tuple[str, str]]:
    """(element kind, text) of every interface text of an AppTest node and its children (not code
    blocks, JSON, charts)."""
    out: list[tuple[str, str]] = []
    kind = getattr(node, "type", "")
    proto = getattr(node, "proto", None)
    if proto is not None and hasattr(proto, "DESCRIPTOR") and kind not in ("code", "json", "arrow_vega_lite_chart"):
        names = set(proto.DESCRIPTOR.fields_by_name)
        for name in names & {"label", "help", "placeholder", "body", "caption", "options", "display_values"}:
            value = getattr(proto, name)
            if isinstance(value, str):
                out.append((kind, value))
            elif not hasattr(value, "ListFields"):              # a repeated field (of strings here)
                out.extend((kind, v) for v in value if isinstance(v, str))
        if kind == "arrow_data_frame":
            config = json.loads(proto.columns or "{}")
            for col in node.value.columns:
                entry = config.get(str(col)) or {}
                out.append((kind, entry.get("label") or str(col)))
                out.append((kind, entry.get("help") or ""))
            if not node.value.index.equals(node.value.index.__class__(range(len(node.value)))):
                out.extend((kind, str(i)) for i in node.value.index)
    if isinstance(getattr(node, "children", None), dict) and isinstance(getattr(node, "label", None), str):
        out.append(("block", node.label))                      # expander and tab labels
    for child in getattr(node, "children", {}).values():
        out.extend(_texts_of(child))
    return out


def _english_words(texts: list[tuple[str, str]], allowed: set[str], in_plain_text: set[str] = frozenset()
                   ) -> dict[str, str]:
    """English words (Latin, outside `allowed`, case-insensitive; in st.text blocks also outside
    `in_plain_text`) -> the text they were found in."""
    names = {a.lower() for a in allowed}
    free = names | {a.lower() for a in in_plain_text}
    found = {}
    for kind, text in texts:
        allowed = free if kind == "text" else names
        plain = _PATHLIKE.sub(" ", _CODE_SPAN.sub(" ", text or ""))
        for word in WORD.findall(plain):
            if sum(ch.isalpha() for ch in word) >= 3 and word.lower() not in allowed \
                    and not any(part.lower() in allowed for part in re.split(r"[-']", word)):
                found.setdefault(word, text[:160])
    return found


# The cache's own data, shown as it is in both languages: names and ids (in option labels, expander and
# tab labels, table headers never) and free text (model answers, OCR text: only in plain st.text blocks).
NAME_COLUMNS = {
    "memes": ["rel_path", "format"], "meme_paths": ["rel_path"], "variants": ["model_id", "name"],
    "ocr": ["engine", "engine_version", "model_id"], "predictions": ["model_id", "prompt_version"],
    "heatmaps": ["method", "model_id"], "runs": ["command", "device", "memes_root", "git_commit"],
    "failures": ["stage", "error_type", "path"],
}
FREE_TEXT_COLUMNS = {
    "ocr": ["text", "boxes"], "predictions": ["raw_answer", "explanation", "prompt", "score_note"],
    "runs": ["error"], "failures": ["message"],
}


def data_words(db: Path | None, columns: dict[str, list[str]]) -> set[str]:
    """Every Latin word in these columns of the cache (and each part of a word such as explain-first-v1)."""
    if db is None or not db.exists():
        return set()
    words = set()
    present = {r[0] for r in sql(db, "SELECT table_name FROM duckdb_tables()")}
    for table, cols in columns.items():
        if table not in present:
            continue
        have = {r[0] for r in sql(db, "SELECT column_name FROM duckdb_columns() WHERE table_name = ?", [table])}
        for col in (c for c in cols if c in have):
            for (value,) in sql(db, f"SELECT DISTINCT CAST({col} AS VARCHAR) FROM {table} WHERE {col} IS NOT NULL"):
                words.update(WORD.findall(value))
                words.update(re.findall("[A-Za-z]+", value))
    return words


def page_runs(db: Path) -> list[tuple[str, dict]]:
    """(page, params) for every page; the Meme page both without and with an id (one with answers)."""
    runs = [(page, {}) for page, *_ in PAGES]
    if db.exists():
        ids = sql(db, "SELECT meme_id FROM memes WHERE meme_id IN (SELECT meme_id FROM predictions) "
                      "ORDER BY meme_id LIMIT 1") if "memes" in {r[0] for r in sql(db, "SELECT table_name FROM "
                                                                                         "duckdb_tables()")} else []
        if ids:
            runs.append(("views/meme.py", {"meme": ids[0][0]}))
            runs.append(("views/meme.py", {"file": "."}))            # the file-name search, with results
    return runs


@pytest.fixture(params=["filled", "empty", "missing"])
def cache(request, tmp_path) -> Path:
    if request.param == "filled":
        return request.getfixturevalue("smoke_db")
    if request.param == "empty":
        return request.getfixturevalue("empty_db")
    return tmp_path / "nothing-here.duckdb"


def test_pages_in_russian_show_no_english_and_miss_no_translation(cache, monkeypatch):
    i18n.MISSING.clear()
    at = app_opener(monkeypatch)(cache) if cache.exists() else _open_missing(cache, monkeypatch)
    allowed, free_text = TECH_TERMS | data_words(cache, NAME_COLUMNS), data_words(cache, FREE_TEXT_COLUMNS)
    for page, params in page_runs(cache):
        goto(at, page, lang="ru", **params)
        assert at.query_params.get("lang") == "ru"
        english = _english_words(_texts_of(at._tree), allowed, free_text)
        assert not english, (page, params, english)
    missing = sorted(text for lang, text in i18n.MISSING if lang == "ru")
    assert not missing, missing


def test_pages_in_english_render(cache, monkeypatch):
    at = app_opener(monkeypatch)(cache) if cache.exists() else _open_missing(cache, monkeypatch)
    for page, params in page_runs(cache):
        goto(at, page, lang="en", **params)
        text = all_text(at)
        assert not re.search("[А-Яа-яЁё]{4,}", "\n".join(e.value for e in at.title)), (page, "title not English")
        assert text
        assert _english_words(_texts_of(at._tree), TECH_TERMS), "the scan sees the interface's words"


def _open_missing(path: Path, monkeypatch):
    from streamlit.testing.v1 import AppTest
    monkeypatch.setenv("VLMEMES_DB", str(path))
    at = AppTest.from_file(str(APP), default_timeout=90)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_missing_cache_notice_in_russian(tmp_path, monkeypatch):
    at = _open_missing(tmp_path / "none.duckdb", monkeypatch)
    goto(at, "views/errors.py", lang="ru")
    assert "По этому пути кэша пока нет:" in all_text(at)


# ============================================================================ the switch and the URL
def test_default_is_english_and_the_sidebar_switch_changes_the_language(empty_db, monkeypatch):
    at = app_opener(monkeypatch)(empty_db)
    assert at.title[0].value == "Overview", "no ?lang= and no browser locale: English"
    switch = at.sidebar.radio(key="url:lang")
    assert switch.options == ["English", "Русский"]
    switch.set_value("ru").run()
    assert not at.exception
    assert at.title[0].value == "Обзор"
    assert at.query_params["lang"] == "ru"
    assert at.sidebar.toggle[0].label == "Предупреждение о содержимом: размывать токсичные картинки"


def test_the_language_stays_in_the_url_when_moving_between_pages(empty_db, monkeypatch):
    at = app_opener(monkeypatch)(empty_db)
    goto(at, "views/errors.py", lang="ru")
    assert at.title[0].value == "Ошибки"
    goto(at, "views/runs.py")                         # a page change clears the URL, as a nav click does
    assert at.title[0].value == "Запуски"
    assert at.query_params["lang"] == "ru", "the chosen language is written back into the URL"
    goto(at, "views/heatmaps.py", lang="en")          # an opened link wins over the session's choice
    assert at.title[0].value == "Heatmaps"
    assert at.query_params["lang"] == "en"


def test_browser_language_is_the_default(monkeypatch):
    from dashboard import lang
    monkeypatch.setattr(lang.st, "context", type("C", (), {"locale": "ru-RU"})())
    assert lang.browser_lang() == "ru"
    monkeypatch.setattr(lang.st, "context", type("C", (), {"locale": "de-DE"})())
    assert lang.browser_lang() == "en"


def test_charts_are_titled_in_the_chosen_language(empty_db, monkeypatch):
    """Chart specs are memoised per language: Russian axis titles in ru, English in en."""
    import pandas as pd

    from dashboard import charts
    monkeypatch.setattr("dashboard.lang.current", lambda: "ru")
    ru = json.dumps(charts.BUILDERS["roc_curves"](pd.DataFrame({"set": ["x"], "fpr": [0.0], "tpr": [1.0],
                                                                "threshold": [0.5]})).to_dict(), ensure_ascii=False)
    assert "доля ложноположительных" in ru and "false positive rate" not in ru
    monkeypatch.setattr("dashboard.lang.current", lambda: "en")
    en = json.dumps(charts.BUILDERS["label_bars"]({"toxic": 1}).to_dict(), ensure_ascii=False)
    assert "no label (conflict)" in en
