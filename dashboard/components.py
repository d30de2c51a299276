"""Shared widgets: URL-bound filters, pagination, gallery cards, banners and notices.

URL state: every filter, the page number and the selected meme live in st.query_params, so a
copied link reproduces the view. A widget is bound to one parameter: on each run a parameter that
changed in the URL (a link was opened) overrides the widget, otherwise the widget's value is
written back to the URL. Values read from the URL are validated (options, ints, length) and
never used as paths.

Text from models and OCR is shown only with st.text / st.code / st.dataframe (plain text); the few
markdown strings here are built from fixed words (labels are mapped through LABEL_TEXT).

Every word a visitor reads goes through dashboard.lang's `_` / `_n` (English is the key; the Russian
is in pipeline/locales/ru/dashboard.py); option labels kept in dicts are marked with `N_` and
translated where shown. Model ids that are local folders are shown by their last part
(pipeline.names.public_name) with the whole id in a hover text (`model_help`).
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
from dashboard.lang import N_, _
from pipeline import metrics
from pipeline import queries as q
from pipeline.names import is_local_path, public_name

MEME_PAGE = "views/meme.py"           # relative to app.py
SEEN_KEY = "_url_seen"                # param -> the value this session last wrote to / read from the URL
REVEALED_KEY = "_revealed"            # meme ids the visitor chose to see despite the content warning
CW_KEY = "content_warning"
RETIRED_KEY = "url:retired"
SMOKE_TEXT = N_("random-weight smoke run — not results")
PAGE_SIZES = (12, 24, 48)
TEXT_LIMIT = 300
NONE = "none"                         # the 'no variant' option of pick_variant

LABEL_TEXT = {"toxic": N_("toxic"), "non_toxic": N_("non-toxic"), None: N_("no label")}
ANSWER_TEXT = {"toxic": N_("toxic"), "non_toxic": N_("non-toxic"), None: N_("unparseable")}


def shown(label: str) -> str:
    """An N_-marked text kept in a dict or constant (option labels, column headers, notices), in the
    visitor's language: the one place a non-literal text is translated (the catalog test checks the
    N_ literals; the Russian page runs check nothing passed here is missing)."""
    return _(label)  # i18n: dynamic by design, see the docstring


def label_text(label: str | None) -> str:
    """A true label in words, in the visitor's language ('?' for an unknown value)."""
    return shown(LABEL_TEXT[label]) if label in LABEL_TEXT else "?"


def answer_text(label: str | None) -> str:
    """A model's answer in words, in the visitor's language ('?' for an unknown value)."""
    return shown(ANSWER_TEXT[label]) if label in ANSWER_TEXT else "?"


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


def url_param(param: str) -> str | None:
    """The raw value of ?param= (a page that parses it itself, e.g. the Map page's box; URL parameters are
    read here only)."""
    return st.query_params.get(param)


def publish_param(param: str, value: str | None) -> None:
    """Set (or, with None, remove) ?param= for a value that no widget holds (the Map page's box)."""
    _publish(param, value)


def url_select(label: str, options: Sequence[str], param: str, *, default: str | None = None,
               format_func: Callable[[Any], str] = str, radio: bool = False, help: str | None = None,
               container: Any = None, sticky: bool = False) -> str | None:
    """A selectbox (or horizontal radio) bound to ?param=; None when there are no options. sticky: a global
    setting kept across pages (see _sync), left out of the URL while it is the default."""
    options = list(options)
    if not options:
        return None
    container = container or st
    key = _key(param, sticky)
    default = default if default in options else options[0]
    _sync(param, key, lambda raw: raw if raw in options else default, sticky=sticky)
    if st.session_state.get(key) not in options:
        st.session_state[key] = default
    labels = {o: format_func(o) for o in options}     # made now, in this run's language (AppTest calls
    format_func = labels.__getitem__                   # format_func again outside the script run)
    if radio:
        value = container.radio(label, options, key=key, format_func=format_func, horizontal=True, help=help)
    else:
        value = container.selectbox(label, options, key=key, format_func=format_func, help=help)
    _publish(param, None if sticky and value == default else value)
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


def switch_page_keeping_query(page: Any) -> None:
    """Go to `page` with this URL's query (a redirect: the root URL to /overview keeps ?lang= and the filters)."""
    st.switch_page(page, query_params=st.query_params.to_dict())


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
    c_prev.button(_("‹ Prev"), key=f"{key}:prev", disabled=page <= 1, on_click=_step, args=(key, -1, n_pages))
    c_num.number_input(_("Page"), min_value=1, max_value=n_pages, step=1, key=key, label_visibility="collapsed")
    c_next.button(_("Next ›"), key=f"{key}:next", disabled=page >= n_pages, on_click=_step, args=(key, 1, n_pages))
    page = int(st.session_state[key])
    start = (page - 1) * page_size
    if total:
        c_info.caption(_("{first}–{last} of {total} · page {page} of {pages}", first=f"{start + 1:,}",
                         last=f"{min(total, start + page_size):,}", total=f"{total:,}", page=page, pages=n_pages))
    else:
        c_info.caption(_("nothing to show"))
    _publish(param, str(page) if page > 1 else None)
    return start, page_size


# ================================================================================= tables
COLUMN_TEXT = {                       # dataframe column (as the query / page names it) -> its header
    # overview: formats, OCR coverage, variants, metrics
    "format": N_("format"), "memes": N_("memes"), "min_width": N_("min width"), "median_width": N_("median width"),
    "max_width": N_("max width"), "min_height": N_("min height"), "median_height": N_("median height"),
    "max_height": N_("max height"), "median_kib": N_("median KiB"), "animated": N_("animated"),
    "engine": N_("engine"), "model_id": N_("model"), "memes_total": N_("memes in all"),
    "mean_chars": N_("mean characters"), "median_chars": N_("median characters"), "max_chars": N_("most characters"),
    "mean_confidence": N_("mean confidence"),
    "variant_id": N_("variant"), "stage": N_("stage"), "name": N_("prompt / method / engine"),
    "stage_version": N_("stage version"), "is_smoke": N_("smoke"), "n_rows": N_("rows"),
    "first_at": N_("first result"), "last_at": N_("last result"), "run_ids": N_("runs"),
    "model": N_("model"), "prompt": N_("prompt"), "smoke": N_("smoke"), "unparseable": N_("unparseable"),
    "accuracy": N_("accuracy"), "precision": N_("precision"), "recall": N_("recall"),
    "metric": N_("metric"), "value": N_("value"), "low": N_("low"), "high": N_("high"), "n_boot": N_("resamples"),
    "note": N_("note"), "interval method": N_("interval method"),
    # meme page
    "rel_path": N_("path"), "label": N_("label"), "last_seen_run_id": N_("last seen in run"),
    "answer": N_("answer"), "label mass": N_("label mass"), "low mass": N_("low mass"), "right": N_("right"),
    "run": N_("run"), "at": N_("at"), "text": N_("text"), "conf": N_("confidence"),
    "box (model-input px)": N_("box (model-input px)"),
    # runs and failures
    "run_id": N_("run"), "error_type": N_("error type"), "message": N_("message"), "path": N_("path"),
    "meme_id": N_("meme id"), "created_at": N_("at"), "failures": N_("failures"),
    "command": N_("command"), "status": N_("status"), "started": N_("started"), "finished": N_("finished"),
    "seconds": N_("seconds"), "device": N_("device"), "git commit": N_("git commit"),
    "memes folder": N_("memes folder"), "error": N_("error"),
    # disagreement
    "accuracy A − B": N_("accuracy A − B"), "McNemar p": N_("McNemar p"), "McNemar p (Holm)": N_("McNemar p (Holm)"),
    "AUROC p": N_("AUROC p"), "AUROC p (Holm)": N_("AUROC p (Holm)"),
}


def columns(names: Iterable[str] | None = None) -> dict:
    """column_config giving dataframe columns their headers in the visitor's language (every column of
    COLUMN_TEXT, or only `names`); a page adds its own entries (help, number formats) after these."""
    keys = COLUMN_TEXT if names is None else [n for n in names if n in COLUMN_TEXT]
    return {k: st.column_config.Column(shown(COLUMN_TEXT[k])) for k in keys}


# ================================================================================= global settings
TRUTH_FILTER = {"any": N_("any"), "toxic": N_("toxic"), "non_toxic": N_("non-toxic")}   # the 'True label' filters


def option_text(labels: dict) -> Callable[[Any], str]:
    """A format_func showing the N_-marked labels of an options dict in the visitor's language."""
    return lambda key: shown(labels[key])


def include_retired() -> bool:
    """The sidebar's 'include retired memes' setting (default off)."""
    return bool(st.session_state.get(RETIRED_KEY, False))


def content_warning_on() -> bool:
    return bool(st.session_state.get(CW_KEY, True))


ALL_MEMES = "all"                     # the slice picker's 'no slice' option


def slice_picker(container: Any = None) -> db.Slice | None:
    """The sidebar's slice of every page, bound to ?slice=KEY=VALUE (kept across pages): every slice value
    of pipeline/slices.py found in the cache, with its memes; read through the default OCR engine and image
    model (queries.slice_sources). Returns the chosen db.Slice (None: all memes); counted over the whole cache."""
    from pipeline import slices as sl
    container = container or st
    retired = include_retired()
    sources = db.fetch_all_memes(q.slice_sources)
    dups = db.fetch_all_memes(q.near_duplicate_report, retired)
    options, labels, specs = [ALL_MEMES], {ALL_MEMES: _("all memes")}, {}
    for key, (source, group_ids) in sl.available(sources, dups).items():
        for value, n in db.fetch_all_memes(q.slice_value_counts, key, source, retired, group_ids):
            option = f"{key}={value}"
            options.append(option)
            labels[option] = f"{shown(sl.SLICES[key].name)}: {sl.value_text(value, _)} · {n:,}"
            specs[option] = db.Slice(key, value, source, group_ids)
    choice = url_select(_("Slice of every page"), options, "slice", default=ALL_MEMES, format_func=labels.get,
                        sticky=True, container=container,
                        help=_("Every page then counts only these memes (the number after the dot: memes in it). "
                               "Kept in the link and across pages."))
    st.session_state[SLICE_LABEL_KEY] = labels.get(choice, "")
    return specs.get(choice)


SLICE_LABEL_KEY = "_slice_label"


def slice_banner() -> None:
    """On every page while a slice is chosen: which memes its numbers count."""
    if db.current_slice() is not None:
        st.info(_("Slice: {slice} memes. Every number and gallery on this page counts only these memes; choose "
                  "“all memes” in the sidebar to see the whole cache.",
                  slice=st.session_state.get(SLICE_LABEL_KEY, "")), icon=":material/filter_alt:")


# ================================================================================= notices
def fill_command(stages: str | None = None) -> str:
    cmd = ["python", "-m", "pipeline", "precompute", "--db", str(db.reader().path)]
    if stages:
        cmd += ["--stages", stages]
    return shlex.join(cmd)


def no_cache_notice(path: Path) -> None:
    st.warning(_("There is no cache at this path yet:"))
    st.code(str(path), language=None)
    st.markdown(_("Fill it (scans `memes_project/memes`, then runs OCR, CLIP, the VLM and CAM) with:"))
    st.code(fill_command(), language="bash")
    st.caption(_("Or point the dashboard at another cache: `streamlit run dashboard/app.py -- --db FILE` "
                 "(or set VLMEMES_DB)."))


def counts() -> dict[str, int | None]:
    return db.fetch(q.table_counts)


EMPTY_NOTICES = {                      # require(): what a page says when its table is empty, by `what`
    "memes": N_("No memes in this cache yet. They are filled by:"),
    "predictions": N_("No predictions in this cache yet. They are filled by:"),
    "heatmaps": N_("No heatmaps in this cache yet. They are filled by:"),
    "runs": N_("No runs in this cache yet. They are filled by:"),
    "faithfulness": N_("No faithfulness measures in this cache yet. The faithfulness stage measures the stored "
                       "heatmaps and VLM answers (no model runs):"),
}


def require(table: str, what: str, stages: str | None = None) -> None:
    """Stop the page with a notice (and the command that fills it) when `table` has no rows.
    `what`: a key of EMPTY_NOTICES (the rows the page needs)."""
    n = counts().get(table)
    if n:
        return
    from dashboard import first_run
    if n is not None and first_run.explains(stages):
        st.stop()                   # the page's notice (app.py) already gives the fix; a refill would fail again
    if n is None:
        st.warning(_("This file has no `{table}` table: it is not a VLMemes cache, or an older one.", table=table))
    else:
        st.info(shown(EMPTY_NOTICES[what]) if what in EMPTY_NOTICES else
                _("Nothing of this kind ({what}) in this cache yet. It is filled by:", what=what))
    st.code(fill_command(stages), language="bash")
    st.stop()


def page(title: str, caption: str, table: str, what: str, stages: str | None = None) -> bool:
    """A page's title and caption; stops with the fill command when `table` is empty (see require).
    Returns the sidebar's include-retired setting."""
    from dashboard import first_run
    st.title(title)
    st.caption(caption)
    first_run.top_notices(st.session_state.get(PAGE_KEY, ""))  # the demo set; models that could not be loaded
    slice_banner()
    retired = include_retired()
    require(table, what, stages)
    return retired


UNREGISTERED = {                       # registered(): the notice per `rows_of`
    "predictions": N_("The predictions in this cache belong to no registered prediction set (`variants`). "
                      "Recompute with:"),
    "heatmaps": N_("The heatmaps in this cache belong to no registered method (`variants`). Recompute with:"),
}


def registered(stage: str | tuple[str, ...], rows_of: str, kind: str, fill_stages: str) -> list[dict]:
    """variant_rows(stage); stops with a notice when the rows exist but no variant is registered."""
    rows = variant_rows(stage)
    if not rows:
        st.info(shown(UNREGISTERED[rows_of]) if rows_of in UNREGISTERED else
                _("The {rows} in this cache belong to no registered {kind} (`variants`). Recompute with:",
                  rows=rows_of, kind=kind))
        st.code(fill_command(fill_stages), language="bash")
        st.stop()
    return rows


def smoke_banner(flags: Iterable[bool]) -> None:
    """Shown whenever a prediction set / heatmap method on the page comes from a smoke run."""
    if any(bool(f) for f in flags):
        st.sidebar.error("⚠️ " + shown(SMOKE_TEXT))
        st.warning("⚠️ " + _("**{smoke}**: at least one model shown here had random weights (or the cache is "
                             "synthetic). Use these numbers to check the pipeline, never as findings.",
                             smoke=shown(SMOKE_TEXT)))


# ================================================================================= variants
def variants() -> pd.DataFrame:
    return db.fetch(q.variants_overview)


def variant_rows(stage: str | tuple[str, ...], with_rows: bool = True, derived: bool = False) -> list[dict]:
    """The variants of `stage` (with rows); the prediction sets of derived views (the caption removed, the
    caption alone: the Modality page's) only with `derived`."""
    stages = (stage,) if isinstance(stage, str) else stage
    df = variants()
    df = df[df["stage"].isin(stages)]
    if not derived and "meme_view" in df:
        df = df[df["meme_view"].isna()]
    if with_rows:
        df = df[df["n_rows"] > 0]
    return df.to_dict("records")


def set_name(v: dict) -> str:
    """A prediction set in a chart legend, table cell or answer line: "STAGE model · prompt" (set_label is
    the widget option, with the smoke flag)."""
    return f"{v['stage'].upper()} {public_name(v['model_id'])} · {v['name']}"


def set_label(v: dict) -> str:
    """A prediction set / method / engine as plain text (used as a widget option label). A model
    given as a local folder is named by its last part (model_help gives the whole id)."""
    smoke = " [" + _("smoke") + "]" if v.get("is_smoke") else ""
    model = public_name(v["model_id"])
    if v["stage"] in q.PREDICTION_STAGES:
        return _("{stage} {model} · prompt {prompt}", stage=v["stage"].upper(), model=model, prompt=v["name"]) + smoke
    if v["stage"] == "cam":                     # eigencam v2 (oriented) beside maps of the old v1 code
        version = f" v{v['stage_version']}" if str(v.get("stage_version") or "1") != "1" else ""
        return f"{v['name']}{version} · {model}{smoke}"
    return f"{v['name']}" + (f" ({model})" if v["model_id"] != v["name"] else "")


def model_help(model_ids: Iterable[str | None]) -> str | None:
    """The hover text naming the whole id of every model shown by its last folder part (None if none is)."""
    full = sorted({str(m) for m in model_ids if is_local_path(m)})
    if not full:
        return None
    return _("Models given as local folders are shown by the folder's name. Whole ids:") + "\n\n" + \
        "\n".join(f"- {md_escape(public_name(m))}: `{m.replace('`', chr(39))}`" for m in full)


def model_column(model_ids: Iterable[str | None], label: str | None = None) -> Any:
    """A dataframe column config for a column of shortened model ids, with the whole ids on hover."""
    return st.column_config.TextColumn(label or _("model"), help=model_help(model_ids))


def pick_variant(label: str, rows: list[dict], param: str, *, default_id: str | None = None,
                 container: Any = None, allow_none: str | None = None) -> dict | None:
    """Choose a variant (by variant_id in the URL); allow_none adds a 'none' option with that label."""
    by_id = {r["variant_id"]: r for r in rows}
    options = ([NONE] if allow_none else []) + list(by_id)
    chosen = url_select(label, options, param, default=default_id,
                        format_func=lambda vid: allow_none if vid == NONE else set_label(by_id[vid]),
                        help=model_help(r["model_id"] for r in rows), container=container)
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
        st.caption(_("no image stored"))
        return
    if content_warning_on() and needs_warning(truth) and meme_id not in revealed():
        st.image(imaging.blurred(data), width=width, caption=_("content warning: blurred"))
        st.button(_("Show image"), key=f"reveal:{ctx}:{meme_id}", on_click=_reveal, args=(meme_id,),
                  help=_("This meme is labelled toxic (or has conflicting labels). Turn the content "
                         "warning off in the sidebar to show all images."))
    else:
        st.image(data, width=width, caption=caption)


def meme_link(meme_id: str, label: str | None = None) -> None:
    st.page_link(MEME_PAGE, label=label or _("Open meme"), icon=":material/open_in_new:",
                 query_params={"meme": meme_id})


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
    parts = [_("true **{label}**", label=label_text(truth))]
    if show_pred:
        parts.append(_("answer **{answer}**", answer=answer_text(pred)))
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
    value = url_select(_("Per page"), [str(s) for s in PAGE_SIZES], param, default="24", container=container)
    return int(value)


def fmt_p(p: float | None) -> str:
    """A p-value: 3 significant digits, '< 0.001' below that, '—' when there is none."""
    return "—" if p is None else (f"{p:.3g}" if p >= 0.001 else "< 0.001")


def fmt_num(x: float | None, digits: int = 3) -> str:
    """A number with `digits` decimals, '—' when there is none."""
    return "—" if x is None else f"{x:.{digits}f}"


def fmt_estimate(e: dict | None, digits: int = 3) -> str:
    """'0.812 [0.790, 0.833]' from an Estimate dict; '—' when undefined. An interval that cannot be
    estimated is said so in words ('1.000 [not estimable at this n: ...]'), never drawn as [x, x]."""
    if not e or e.get("value") is None:
        return "—"
    s = f"{e['value']:.{digits}f}"
    if e.get("low") is not None and e.get("high") is not None:
        s += f" [{e['low']:.{digits}f}, {e['high']:.{digits}f}]"
    else:
        s += f" [{note_text(e.get('note')) if e.get('note') else _('no interval')}]"
    return s


def _lang() -> str:
    from dashboard.lang import current
    return current()


# The statistics keep English in what they store; pipeline.metrics gives their texts in a language.
def note_text(note: str | None) -> str:
    """An Estimate's note (stored in English) in the visitor's language."""
    return metrics.note_text(note, _lang())


def method_text(e: dict | None) -> str:
    """How an Estimate's interval was made, with the resamples where it resamples (in the visitor's language)."""
    return metrics.method_text(e, _lang()) if e else ""


def reading_text(report: dict, name_a: str = "A", name_b: str = "B") -> str:
    """The plain-language reading of an agreement report's McNemar test in the visitor's language."""
    return metrics.reading_text(report, name_a, name_b, _lang())


def adjustment_text(n_pairs: int) -> str:
    """The name of the Holm adjustment over `n_pairs` comparisons in the visitor's language."""
    return metrics.adjustment_text(n_pairs, _lang())


def language_notes(sets: list[dict]) -> list[str]:
    """One line per English-only image-text model that was given Russian prompts (pipeline.stages.clip_prompts)."""
    from pipeline.stages.clip_prompts import language_note
    notes = (_("{model} was trained on English text only: Russian prompts (ru-*) are outside its training "
               "data, so its ru-* scores understate what image-text matching can do; compare en-*, or use a "
               "multilingual model such as {suggested}", model=public_name(s["model_id"]),
               suggested="google/siglip2-base-patch16-224")
             for s in sets if s["stage"] == "clip" and language_note(s["model_id"], s["name"]))
    return list(dict.fromkeys(notes))


def low_mass_flag(mass: float | None) -> str | None:
    """The warning shown beside a VLM score whose two label words got little probability (fixed words)."""
    from pipeline.stages.vlm_answer import LOW_LABEL_MASS, is_low_label_mass
    if not is_low_label_mass(mass):
        return None
    return _("Low label-token mass {mass} (< {threshold}): at the scoring step the model gave only this much "
             "probability to «токсичный» and «нейтральный» together, so it was not really choosing between the "
             "two words and p(toxic) says little.", mass=f"{mass:.2f}", threshold=LOW_LABEL_MASS)


def show_low_mass_flag(mass: float | None) -> None:
    flag = low_mass_flag(mass)
    if flag:
        st.warning(flag, icon=":material/warning:")
