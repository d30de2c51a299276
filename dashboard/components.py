"""Shared widgets: URL-bound filters, pagination, gallery cards, banners and notices.

URL state: every filter, the page number and the selected meme live in st.query_params, so a
copied link reproduces the view. A widget is bound to one parameter: on each run a parameter that
changed in the URL (a link was opened) overrides the widget, otherwise the widget's value is
written back to the URL. Values read from the URL are validated (options, ints, length) and
never used as paths.

Text from models and OCR is shown only with st.text / st.code / st.dataframe (plain text); the few
markdown strings here are built from fixed words (labels are mapped through LABEL_TEXT).
"""
from __future__ import annotations

import math
import re
import shlex
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import db, imaging
from pipeline import queries as q

MEME_PAGE = "views/meme.py"           # relative to app.py
SEEN_KEY = "_url_seen"                # param -> the value this session last wrote to / read from the URL
REVEALED_KEY = "_revealed"            # meme ids the visitor chose to see despite the content warning
CW_KEY = "content_warning"
RETIRED_KEY = "url:retired"
SMOKE_TEXT = "random-weight smoke run — not results"
PAGE_SIZES = (12, 24, 48)
TEXT_LIMIT = 300
NONE = "none"                         # the 'no variant' option of pick_variant

LABEL_TEXT = {"toxic": "toxic", "non_toxic": "non-toxic", None: "no label"}
ANSWER_TEXT = {"toxic": "toxic", "non_toxic": "non-toxic", None: "unparseable"}


# ================================================================================= URL state
PAGE_KEY = "_page"                    # the url path of the page this run shows (set by app.py)


def _key(param: str, sticky: bool = False) -> str:
    """The widget key of a URL parameter: per page, so a page never inherits another page's widget."""
    return f"url:{param}" if sticky else f"url:{st.session_state.get(PAGE_KEY, '')}:{param}"


def _sync(param: str, key: str, parse: Callable[[str | None], Any], sticky: bool = False) -> bool:
    """Before the widget `key` is created: take the URL's value if it changed. Returns True if it did.

    sticky: a missing parameter keeps the session's value (global settings that should survive
    moving between pages, which clears the URL)."""
    seen = st.session_state.setdefault(SEEN_KEY, {})
    raw = st.query_params.get(param)
    changed = raw != seen.get(param) and not (sticky and raw is None)
    if key not in st.session_state or changed:
        st.session_state[key] = parse(raw)
    return changed


def _publish(param: str, value: str | None) -> None:
    seen = st.session_state.setdefault(SEEN_KEY, {})
    if value is None:
        if param in st.query_params:
            del st.query_params[param]
    elif st.query_params.get(param) != value:
        st.query_params[param] = value
    seen[param] = value


def url_select(label: str, options: Sequence[str], param: str, *, default: str | None = None,
               format_func: Callable[[Any], str] = str, radio: bool = False, help: str | None = None,
               container: Any = None) -> str | None:
    """A selectbox (or horizontal radio) bound to ?param=; None when there are no options."""
    options = list(options)
    if not options:
        return None
    container = container or st
    key = _key(param)
    default = default if default in options else options[0]
    _sync(param, key, lambda raw: raw if raw in options else default)
    if st.session_state.get(key) not in options:
        st.session_state[key] = default
    if radio:
        value = container.radio(label, options, key=key, format_func=format_func, horizontal=True, help=help)
    else:
        value = container.selectbox(label, options, key=key, format_func=format_func, help=help)
    _publish(param, value)
    return value


def url_toggle(label: str, param: str, *, default: bool = False, sticky: bool = False, help: str | None = None,
               container: Any = None) -> bool:
    container = container or st
    key = _key(param, sticky)
    _sync(param, key, lambda raw: {"1": True, "0": False}.get(raw, default), sticky=sticky)
    value = container.toggle(label, key=key, help=help)
    _publish(param, ("1" if value else None) if sticky else ("1" if value else "0"))
    return bool(value)


def url_text(label: str, param: str, *, max_chars: int = 200, placeholder: str | None = None,
             help: str | None = None, container: Any = None) -> str:
    container = container or st
    key = _key(param)
    _sync(param, key, lambda raw: (raw or "")[:max_chars])
    value = container.text_input(label, key=key, max_chars=max_chars, placeholder=placeholder, help=help)
    value = (value or "").strip()
    _publish(param, value or None)
    return value


def url_slider(label: str, param: str, *, min_value: int, max_value: int, default: int, step: int = 1,
               help: str | None = None, container: Any = None) -> int:
    container = container or st
    key = _key(param)

    def parse(raw: str | None) -> int:
        try:
            return min(max(min_value, int(raw)), max_value) if raw is not None else default
        except ValueError:
            return default

    _sync(param, key, parse)
    value = container.slider(label, min_value=min_value, max_value=max_value, step=step, key=key, help=help)
    _publish(param, str(int(value)))
    return int(value)


def _step(key: str, delta: int, n_pages: int) -> None:
    st.session_state[key] = min(max(1, int(st.session_state.get(key, 1)) + delta), n_pages)


def pagination(total: int, *, param: str = "page", page_size: int = 24, signature: tuple = (),
               container: Any = None) -> tuple[int, int]:
    """Prev / page number / Next bound to ?param=; back to page 1 when `signature` (the filters)
    changes. Returns (offset, limit)."""
    container = container or st
    key = _key(param)
    sig_key = f"sig:{key}"
    n_pages = max(1, math.ceil(total / page_size))

    def parse(raw: str | None) -> int:
        try:
            return max(1, int(raw or 1))
        except ValueError:
            return 1

    url_changed = _sync(param, key, parse)
    if sig_key in st.session_state and st.session_state[sig_key] != signature and not url_changed:
        st.session_state[key] = 1
    st.session_state[sig_key] = signature
    st.session_state[key] = min(max(1, int(st.session_state[key])), n_pages)
    page = st.session_state[key]
    c_prev, c_num, c_next, c_info = container.columns([1, 1.2, 1, 5], vertical_alignment="center")
    c_prev.button("‹ Prev", key=f"{key}:prev", disabled=page <= 1, on_click=_step, args=(key, -1, n_pages))
    c_num.number_input("Page", min_value=1, max_value=n_pages, step=1, key=key, label_visibility="collapsed")
    c_next.button("Next ›", key=f"{key}:next", disabled=page >= n_pages, on_click=_step, args=(key, 1, n_pages))
    page = int(st.session_state[key])
    start = (page - 1) * page_size
    if total:
        c_info.caption(f"{start + 1:,}–{min(total, start + page_size):,} of {total:,} · page {page} of {n_pages}")
    else:
        c_info.caption("nothing to show")
    _publish(param, str(page) if page > 1 else None)
    return start, page_size


# ================================================================================= global settings
TRUTH_FILTER = {"any": "any", "toxic": "toxic", "non_toxic": "non-toxic"}   # options of the 'True label' filters


def include_retired() -> bool:
    """The sidebar's 'include retired memes' setting (default off)."""
    return bool(st.session_state.get(RETIRED_KEY, False))


def content_warning_on() -> bool:
    return bool(st.session_state.get(CW_KEY, True))


# ================================================================================= notices
def fill_command(stages: str | None = None) -> str:
    cmd = ["python", "-m", "pipeline", "precompute", "--db", str(db.reader().path)]
    if stages:
        cmd += ["--stages", stages]
    return shlex.join(cmd)


def no_cache_notice(path: Path) -> None:
    st.warning("There is no cache at this path yet:")
    st.code(str(path), language=None)
    st.markdown("Fill it (scans `memes_project/memes`, then runs OCR, CLIP, the VLM and CAM) with:")
    st.code(fill_command(), language="bash")
    st.caption("Or point the dashboard at another cache: `streamlit run dashboard/app.py -- --db FILE` "
               "(or set VLMEMES_DB).")


def counts() -> dict[str, int | None]:
    return db.fetch(q.table_counts)


def require(table: str, what: str, stages: str | None = None) -> None:
    """Stop the page with a notice (and the command that fills it) when `table` has no rows."""
    n = counts().get(table)
    if n:
        return
    if n is None:
        st.warning(f"This file has no `{table}` table: it is not a VLMemes cache, or an older one.")
    else:
        st.info(f"No {what} in this cache yet. They are filled by:")
    st.code(fill_command(stages), language="bash")
    st.stop()


def page(title: str, caption: str, table: str, what: str, stages: str | None = None) -> bool:
    """A page's title and caption; stops with the fill command when `table` is empty (see require).
    Returns the sidebar's include-retired setting."""
    st.title(title)
    st.caption(caption)
    retired = include_retired()
    require(table, what, stages)
    return retired


def registered(stage: str | tuple[str, ...], rows_of: str, kind: str, fill_stages: str) -> list[dict]:
    """variant_rows(stage); stops with a notice when the rows exist but no variant is registered."""
    rows = variant_rows(stage)
    if not rows:
        st.info(f"The {rows_of} in this cache belong to no registered {kind} (`variants`). Recompute with:")
        st.code(fill_command(fill_stages), language="bash")
        st.stop()
    return rows


def smoke_banner(flags: Iterable[bool]) -> None:
    """Shown whenever a prediction set / heatmap method on the page comes from a smoke run."""
    if any(bool(f) for f in flags):
        st.sidebar.error(f"⚠️ {SMOKE_TEXT}")
        st.warning(f"⚠️ **{SMOKE_TEXT}**: at least one model shown here had random weights (or the cache is "
                   "synthetic). Use these numbers to check the pipeline, never as findings.")


# ================================================================================= variants
def variants() -> pd.DataFrame:
    return db.fetch(q.variants_overview)


def variant_rows(stage: str | tuple[str, ...], with_rows: bool = True) -> list[dict]:
    stages = (stage,) if isinstance(stage, str) else stage
    df = variants()
    df = df[df["stage"].isin(stages)]
    if with_rows:
        df = df[df["n_rows"] > 0]
    return df.to_dict("records")


def set_label(v: dict) -> str:
    """A prediction set / method / engine as plain text (used as a widget option label)."""
    smoke = " [smoke]" if v.get("is_smoke") else ""
    if v["stage"] in q.PREDICTION_STAGES:
        return f"{v['stage'].upper()} {v['model_id']} · prompt {v['name']}{smoke}"
    if v["stage"] == "cam":                     # eigencam v2 (oriented) beside maps of the old v1 code
        version = f" v{v['stage_version']}" if str(v.get("stage_version") or "1") != "1" else ""
        return f"{v['name']}{version} · {v['model_id']}{smoke}"
    return f"{v['name']}" + (f" ({v['model_id']})" if v["model_id"] != v["name"] else "")


def pick_variant(label: str, rows: list[dict], param: str, *, default_id: str | None = None,
                 container: Any = None, allow_none: str | None = None) -> dict | None:
    """Choose a variant (by variant_id in the URL); allow_none adds a 'none' option with that label."""
    by_id = {r["variant_id"]: r for r in rows}
    options = ([NONE] if allow_none else []) + list(by_id)
    chosen = url_select(label, options, param, default=default_id,
                        format_func=lambda vid: allow_none if vid == NONE else set_label(by_id[vid]),
                        container=container)
    return by_id.get(chosen) if chosen else None


def default_ocr(rows: list[dict]) -> str | None:
    """The OCR engine with the most rows (ties: first by name)."""
    if not rows:
        return None
    return max(rows, key=lambda r: (r["n_rows"], -rows.index(r)))["variant_id"]


# ================================================================================= cards
def revealed() -> set:
    return st.session_state.setdefault(REVEALED_KEY, set())


def _reveal(meme_id: str) -> None:
    revealed().add(meme_id)


def needs_warning(truth: str | None) -> bool:
    """Toxic memes, and memes without a label (a conflict: some copy says toxic)."""
    return truth != "non_toxic"


def meme_image(data: bytes | None, meme_id: str, truth: str | None, *, ctx: str, width: Any = "stretch",
               caption: str | None = None) -> None:
    """An image that stays blurred behind the content warning until the visitor clicks 'Show image'."""
    if not data:
        st.caption("no image stored")
        return
    if content_warning_on() and needs_warning(truth) and meme_id not in revealed():
        st.image(imaging.blurred(data), width=width, caption="content warning: blurred")
        st.button("Show image", key=f"reveal:{ctx}:{meme_id}", on_click=_reveal, args=(meme_id,),
                  help="This meme is labelled toxic (or has conflicting labels). Turn the content "
                       "warning off in the sidebar to show all images.")
    else:
        st.image(data, width=width, caption=caption)


def meme_link(meme_id: str, label: str = "Open meme") -> None:
    st.page_link(MEME_PAGE, label=label, icon=":material/open_in_new:", query_params={"meme": meme_id})


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~:$=])")
_AUTOLINK = re.compile(r"(?i)(?<=:)(?=//)|(?<=www)(?=\\\.)|(?=@)")   # where GFM would start a bare link
_WORD_JOINER = "\u2060"                                                 # invisible, breaks the autolink


def md_escape(text: Any) -> str:
    """Text made inert for the few places Streamlit renders markdown (expander/tab labels).

    Backslash-escaping stops markup, but GitHub-flavoured markdown still turns bare URLs
    (`http://…`, `www.…`) and e-mail addresses into links, so an invisible word joiner is put
    into `://`, `www.` and before `@`."""
    escaped = _MD_SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ")
    return _AUTOLINK.sub(_WORD_JOINER, escaped)


def fmt_score(score: float | None) -> str:
    return "—" if score is None or (isinstance(score, float) and math.isnan(score)) else f"{score:.3f}"


def truth_line(truth: str | None, pred: str | None = None, score: float | None = None, *,
               show_pred: bool = True) -> str:
    """'true **toxic** · answer **non-toxic** · p(toxic) 0.123' from fixed words only."""
    parts = [f"true **{LABEL_TEXT.get(truth, '?')}**"]
    if show_pred:
        parts.append(f"answer **{ANSWER_TEXT.get(pred, '?')}**")
        parts.append(f"p(toxic) {fmt_score(score)}")
    return " · ".join(parts)


def text_block(title: str, text: str | None, limit: int = TEXT_LIMIT) -> None:
    """A caption (fixed words) and the text itself as plain text, shortened to `limit` characters."""
    if text is None or not str(text).strip():
        return
    text = str(text).strip()
    st.caption(title)
    st.text(text if len(text) <= limit else shorten(text, limit))


def shorten(text: str, limit: int) -> str:
    """Whitespace collapsed and cut to at most `limit` characters, at a space in the second half of
    the cut if there is one, else mid-word (textwrap.shorten drops a word longer than the
    limit whole, which left a card showing only "…" for a long unbroken line)."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit - 2]
    space = cut.rfind(" ")
    return (cut[:space] if space >= limit // 2 else cut).rstrip() + " …"


def grid(items: Sequence[dict], render: Callable[[dict], None], columns: int = 4) -> None:
    for start in range(0, len(items), columns):
        cols = st.columns(columns)
        for col, item in zip(cols, items[start:start + columns]):
            with col, st.container(border=True):
                render(item)


def page_size_picker(param: str = "n", container: Any = None) -> int:
    value = url_select("Per page", [str(s) for s in PAGE_SIZES], param, default="24", container=container)
    return int(value)


def fmt_estimate(e: dict | None, digits: int = 3) -> str:
    """'0.812 [0.790, 0.833]' from an Estimate dict; '—' when undefined. An interval that cannot be
    estimated is said so in words ('1.000 [not estimable at this n: ...]'), never drawn as [x, x]."""
    if not e or e.get("value") is None:
        return "—"
    s = f"{e['value']:.{digits}f}"
    if e.get("low") is not None and e.get("high") is not None:
        s += f" [{e['low']:.{digits}f}, {e['high']:.{digits}f}]"
    else:
        s += f" [{e.get('note') or 'no interval'}]"
    return s


def method_text(e: dict | None) -> str:
    """How an Estimate's interval was made, with the resamples where it resamples."""
    return (e or {}).get("method_detail", "")


def language_notes(sets: list[dict]) -> list[str]:
    """One line per English-only image-text model that was given Russian prompts (pipeline.stages.clip_prompts)."""
    from pipeline.stages.clip_prompts import language_note
    notes = (language_note(s["model_id"], s["name"]) for s in sets if s["stage"] == "clip")
    return list(dict.fromkeys(n for n in notes if n))


def low_mass_flag(mass: float | None) -> str | None:
    """The warning shown beside a VLM score whose two label words got little probability (fixed words)."""
    from pipeline.stages.vlm_answer import LOW_LABEL_MASS, is_low_label_mass
    if not is_low_label_mass(mass):
        return None
    return (f"Low label-token mass {mass:.2f} (< {LOW_LABEL_MASS}): at the scoring step the model gave only this "
            "much probability to «токсичный» and «нейтральный» together, so it was not really choosing between "
            "the two words and p(toxic) says little.")


def show_low_mass_flag(mass: float | None) -> None:
    flag = low_mass_flag(mass)
    if flag:
        st.warning(flag, icon=":material/warning:")
