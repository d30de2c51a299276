"""VLMemes dashboard entry point.

    streamlit run dashboard/app.py -- --db data/vlmemes.duckdb      (or VLMEMES_DB=...; default data/vlmemes.duckdb)

Sets up the page, the sidebar (interface language, content warning, retired memes, which cache, the slice
of every page: dashboard/components.slice_picker),
the navigation (each page at its own URL path; the root URL goes to /overview), and one read-only
cache reader for this script run, closed when the run ends, so a running precompute is never
blocked by an idle dashboard. Every text is translated with dashboard.lang (?lang=ru|en).
"""
from __future__ import annotations

import os
import time
from datetime import datetime

import streamlit as st

from dashboard import components as c
from dashboard import db, lang, progress
from dashboard.lang import _

ENV_BUSY_RETRIES = "VLMEMES_BUSY_RETRIES"     # automatic reruns while a writer holds the file
BUSY_PAUSE_SECONDS = 1.0

# An emoji icon: the browser draws it from a data: URL. A ":material/...:" page icon makes the browser
# fetch the favicon from fonts.gstatic.com, a request to another host on every page load.
st.set_page_config(page_title="VLMemes", page_icon="🔬", layout="wide")

lang.selector()                  # first: the page titles below are in the chosen language (?lang=)

OVERVIEW = st.Page("views/overview.py", title=_("Overview"), icon=":material/dashboard:", url_path="overview")


def _home() -> None:
    """The app's root URL: the Overview, at its own address /overview (a default page is served only at
    "/", so the Overview itself is not the default page, or a link to /overview would say 'Page not found')."""
    c.switch_page_keeping_query(OVERVIEW)


PAGES = [
    st.Page(_home, title=_("Overview"), url_path="home", default=True, visibility="hidden"),
    OVERVIEW,
    st.Page("views/errors.py", title=_("Errors"), icon=":material/report:", url_path="errors"),
    st.Page("views/disagreement.py", title=_("Disagreement"), icon=":material/compare_arrows:",
            url_path="disagreement"),
    st.Page("views/calibration.py", title=_("Calibration"), icon=":material/straighten:", url_path="calibration"),
    st.Page("views/label_issues.py", title=_("Label issues"), icon=":material/flag:", url_path="label-issues"),
    st.Page("views/slices.py", title=_("Slices"), icon=":material/view_column:", url_path="slices"),
    st.Page("views/map.py", title=_("Map"), icon=":material/scatter_plot:", url_path="map"),
    st.Page("views/heatmaps.py", title=_("Heatmaps"), icon=":material/local_fire_department:", url_path="heatmaps"),
    st.Page("views/modality.py", title=_("Modality"), icon=":material/splitscreen:", url_path="modality"),
    st.Page("views/faithfulness.py", title=_("Faithfulness"), icon=":material/fact_check:", url_path="faithfulness"),
    st.Page("views/meme.py", title=_("Meme"), icon=":material/image:", url_path="meme"),
    st.Page("views/runs.py", title=_("Runs"), icon=":material/history:", url_path="runs"),
]
page = st.navigation(PAGES)
if page.url_path == "":                     # "/" (the hidden default page): go to /overview, keeping ?params
    _home()
st.session_state[c.PAGE_KEY] = page.url_path
path = db.resolve_db_path()

with st.sidebar:
    st.toggle(_("Content warning: blur toxic images"), value=True, key=c.CW_KEY,
              help=_("Toxic memes (and memes with conflicting labels) stay blurred until you click 'Show image'."))
    c.url_toggle(_("Include retired memes"), "retired", sticky=True,
                 help=_("Memes whose file the latest scan no longer found. Off: they are left out everywhere."))
    st.caption(_("Cache"))
    st.code(str(path), language=None)
    state = db.file_state(path)
    if state:
        st.caption(_("{size} MiB · modified {time}", size=f"{state[2] / 2**20:,.1f}",
                     time=f"{datetime.fromtimestamp(state[1] / 1e9):%Y-%m-%d %H:%M:%S}"))

progress.banner(path)           # a precompute in progress: its stage and done/total

with db.script_run(path) as reader:
    try:
        try:                    # an unusable cache: the page itself says what is wrong, below its title
            with st.sidebar:
                db.set_slice(c.slice_picker())
        except db.CacheUnavailable:
            db.set_slice(None)
        page.run()
    except db.CacheMissing:
        c.no_cache_notice(path)
    except db.CacheUnreadable as e:
        st.error(e.message())
        st.caption(_("Pass a cache written by `python -m pipeline precompute` with --db FILE (or VLMEMES_DB)."))
    except db.CacheBusy as e:
        st.info(e.message())
        tries = st.session_state.get("_busy_tries", 0)
        if tries < int(os.environ.get(ENV_BUSY_RETRIES, 30)):
            st.session_state["_busy_tries"] = tries + 1
            time.sleep(BUSY_PAUSE_SECONDS)
            st.rerun()
        st.session_state["_busy_tries"] = 0
        st.button(_("Retry now"), key="busy:retry")
    else:
        st.session_state["_busy_tries"] = 0
