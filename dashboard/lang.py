"""The visitor's interface language: chosen in the sidebar, kept in the URL (?lang=ru|en), by
default the browser's language (st.context.locale), else English. `_` and `_n` translate with it
(pipeline/i18n.py holds the catalogs and the rules)."""
from __future__ import annotations

import streamlit as st

from pipeline import i18n
from pipeline.i18n import N_  # noqa: F401  (re-exported: pages mark option labels with it)

PARAM = "lang"
KEY = "url:lang"            # sticky: the same widget key on every page


def browser_lang() -> str:
    """The browser's preferred language if we have it, else English."""
    try:
        locale = st.context.locale
    except Exception:       # noqa: BLE001 - no browser context (bare script runs, older Streamlit)
        locale = None
    return i18n.normalize(locale) or i18n.DEFAULT_LANG


def current() -> str:
    """The language of this script run (set by `selector`; before it: the URL's, else the browser's)."""
    value = st.session_state.get(KEY)
    if value in i18n.LANGS:
        return value
    return i18n.normalize(st.query_params.get(PARAM)) or browser_lang()


def _(text: str, /, **fields: object) -> str:
    return i18n.translate(text, current(), **fields)


def _n(n: int, one: str, many: str, /, **fields: object) -> str:
    return i18n.translate_n(n, one, many, current(), **fields)


def selector(container=None) -> str:
    """The sidebar's language switch, bound to ?lang= (an opened link wins; the choice survives
    moving between pages; the URL always says which language is shown)."""
    container = container or st.sidebar
    raw = i18n.normalize(st.query_params.get(PARAM))
    seen = st.session_state.setdefault("_url_seen", {})
    if KEY not in st.session_state or (raw is not None and raw != seen.get(PARAM)):
        st.session_state[KEY] = raw or browser_lang()
    value = container.radio("Язык · Language", list(i18n.LANGS), key=KEY, format_func=i18n.LANGS.get,
                            horizontal=True)
    if st.query_params.get(PARAM) != value:
        st.query_params[PARAM] = value
    seen[PARAM] = value
    return value
