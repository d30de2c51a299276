"""VLMemes dashboard entry point.

    streamlit run dashboard/app.py -- --db data/vlmemes.duckdb      (or VLMEMES_DB=...; default data/vlmemes.duckdb)

Sets up the page, the sidebar (content warning, retired memes, which cache), the navigation
(each page at its own URL path), and one read-only cache reader for this script run, closed when
the run ends, so a running precompute is never blocked by an idle dashboard.
"""
from __future__ import annotations

import os
import time
from datetime import datetime

import streamlit as st

from dashboard import components as c
from dashboard import db

ENV_BUSY_RETRIES = "VLMEMES_BUSY_RETRIES"     # automatic reruns while a writer holds the file
BUSY_PAUSE_SECONDS = 1.0

# An emoji icon: the browser draws it from a data: URL. A ":material/...:" page icon makes the browser
# fetch the favicon from fonts.gstatic.com, a request to another host on every page load.
st.set_page_config(page_title="VLMemes", page_icon="🔬", layout="wide")

PAGES = [
    st.Page("views/overview.py", title="Overview", icon=":material/dashboard:", url_path="overview", default=True),
    st.Page("views/errors.py", title="Errors", icon=":material/report:", url_path="errors"),
    st.Page("views/disagreement.py", title="Disagreement", icon=":material/compare_arrows:", url_path="disagreement"),
    st.Page("views/heatmaps.py", title="Heatmaps", icon=":material/local_fire_department:", url_path="heatmaps"),
    st.Page("views/meme.py", title="Meme", icon=":material/image:", url_path="meme"),
    st.Page("views/runs.py", title="Runs", icon=":material/history:", url_path="runs"),
]
page = st.navigation(PAGES)
st.session_state[c.PAGE_KEY] = page.url_path
path = db.resolve_db_path()

with st.sidebar:
    st.toggle("Content warning: blur toxic images", value=True, key=c.CW_KEY,
              help="Toxic memes (and memes with conflicting labels) stay blurred until you click 'Show image'.")
    c.url_toggle("Include retired memes", "retired", sticky=True,
                 help="Memes whose file the latest scan no longer found. Off: they are left out everywhere.")
    st.caption("Cache")
    st.code(str(path), language=None)
    state = db.file_state(path)
    if state:
        st.caption(f"{state[2] / 2**20:,.1f} MiB · modified {datetime.fromtimestamp(state[1] / 1e9):%Y-%m-%d %H:%M:%S}")

with db.script_run(path) as reader:
    try:
        page.run()
    except db.CacheMissing:
        c.no_cache_notice(path)
    except db.CacheUnreadable as e:
        st.error(str(e))
        st.caption("Pass a cache written by `python -m pipeline precompute` with --db FILE (or VLMEMES_DB).")
    except db.CacheBusy as e:
        st.info(str(e))
        tries = st.session_state.get("_busy_tries", 0)
        if tries < int(os.environ.get(ENV_BUSY_RETRIES, 30)):
            st.session_state["_busy_tries"] = tries + 1
            time.sleep(BUSY_PAUSE_SECONDS)
            st.rerun()
        st.session_state["_busy_tries"] = 0
        st.button("Retry now", key="busy:retry")
    else:
        st.session_state["_busy_tries"] = 0
