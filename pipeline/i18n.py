"""The interface languages: English (the source text in the code) and Russian (pipeline/locales/ru/).

Every string a person reads in the dashboard or the HTML report goes through `translate` (the
dashboard's `_` in dashboard/lang.py binds the visitor's language). The English text itself is the
key, so the code stays readable; placeholders are `str.format` fields, filled after translation:

    translate("{n} memes cached", "ru", n=5)            -> "закэшировано мемов: 5"
    translate_n(5, "{n} meme", "{n} memes", "ru")       -> "5 мемов"   (Russian has three plural forms)

Strings defined far from where they are shown (option labels in dicts) are marked with `N_` so the
catalog test finds them; they are translated where shown. A string missing from a catalog falls back
to English and is remembered in `MISSING` (tests assert it stays empty after rendering every page).
Model text (OCR, VLM answers) and data (file names, model ids) are never translated.
"""
from __future__ import annotations

import importlib
import pkgutil
from functools import cache

LANGS = {"en": "English", "ru": "Русский"}
DEFAULT_LANG = "en"
MISSING: set[tuple[str, str]] = set()          # (lang, English text) asked for but not in the catalog


def N_(text: str) -> str:
    """Mark a literal for translation where it is shown (no-op)."""
    return text


def normalize(raw: str | None) -> str | None:
    """'ru', 'ru-RU', 'RU_ru' -> 'ru'; unknown or empty -> None."""
    if not raw:
        return None
    code = str(raw).strip().lower().replace("_", "-").split("-")[0]
    return code if code in LANGS else None


@cache
def catalog(lang: str) -> dict[str, object]:
    """English text -> translation (a str, or a 3-tuple of Russian plural forms), merged from every
    module of pipeline/locales/<lang>/ (each holds MESSAGES). A key in two modules must agree."""
    if lang == DEFAULT_LANG:
        return {}
    package = importlib.import_module(f"pipeline.locales.{lang}")
    merged: dict[str, object] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for key, value in module.MESSAGES.items():
            if key in merged and merged[key] != value:
                raise ValueError(f"{lang} catalog: {key!r} translated differently in {info.name}")
            merged[key] = value
    return merged


def _lookup(text: str, lang: str) -> object:
    if lang == DEFAULT_LANG or lang not in LANGS:
        return text
    found = catalog(lang).get(text)
    if found is None:
        MISSING.add((lang, text))
        return text
    return found


def translate(text: str, lang: str, /, **fields: object) -> str:
    """`text` in `lang` with its {fields} filled (English when the catalog lacks it)."""
    found = _lookup(text, lang)
    if isinstance(found, tuple):            # a plural entry asked for as a plain string
        found = found[-1]
    return str(found).format(**fields) if fields else str(found)


def plural_index(n: int, lang: str) -> int:
    """CLDR plural category as an index: en 0 one / 1 other; ru 0 one, 1 few, 2 many."""
    n = abs(int(n))
    if lang == "ru":
        if n % 10 == 1 and n % 100 != 11:
            return 0
        if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
            return 1
        return 2
    return 0 if n == 1 else 1


def translate_n(n: int, one: str, many: str, lang: str, /, **fields: object) -> str:
    """The plural form for count `n` (available as {n}); the catalog keys it by `many` and holds
    the Russian (one, few, many) forms."""
    fields.setdefault("n", n)
    if lang == DEFAULT_LANG or lang not in LANGS:
        text = one if n == 1 else many
    else:
        found = _lookup(many, lang)
        if isinstance(found, tuple):
            text = found[min(plural_index(n, lang), len(found) - 1)]
        elif found is many:                 # missing: English
            text = one if n == 1 else many
        else:
            text = str(found)
    return text.format(**fields)
