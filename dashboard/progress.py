"""The running precompute, shown on every page: run, stage, done/total, start; results refresh when it ends.

`banner(db_path)` is a fragment that rereads `<db>.progress.json` (pipeline/progress.py, a small
file the precompute rewrites after every batch; the cache itself is not opened) every
POLL_RUNNING_S seconds while a run is in progress and every POLL_IDLE_S otherwise. When a run this
session saw running has ended, the whole app reruns once, so every page shows the new results
(the dashboard's query memo is keyed by the cache file's state, so the rerun reads them afresh).
"""
from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import streamlit as st

from dashboard.lang import _
from pipeline import progress as run_progress

POLL_RUNNING_S = 2.0
POLL_IDLE_S = float(os.environ.get("VLMEMES_PROGRESS_POLL_S", 10.0))   # how soon a new run is noticed
SEEN_KEY = "_progress_seen_running"       # run id this session last saw running


def _elapsed(started: str) -> str:
    try:
        seconds = max(0, int((datetime.now(timezone.utc).replace(tzinfo=None) - datetime.fromisoformat(started)).total_seconds()))
    except ValueError:
        return "?"
    minutes, s = divmod(seconds, 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}:{m:02d}:{s:02d}" if hours else f"{m}:{s:02d}"


def describe(p: run_progress.Progress) -> str:
    """One line (fixed words and numbers only) for a running precompute."""
    if p.stage_index == 0:
        where = _("scanning the memes folder")
    else:
        where = _("stage {stage} ({i} of {n})", stage=p.stage, i=p.stage_index, n=p.n_stages)
    return _("Precompute run {run} in progress: {where} · {done} of {total} done, {failed} failed, "
             "{cached} cached · started {started} UTC ({elapsed} ago)",
             run=p.run_id, where=where, done=f"{p.done:,}", total=f"{p.total:,}", failed=f"{p.failed:,}",
             cached=f"{p.cached:,}", started=p.started_at.replace("T", " "), elapsed=_elapsed(p.started_at))


def _show(db_path: Path, polling_fast: bool) -> None:
    p = run_progress.read(db_path)
    seen = st.session_state.get(SEEN_KEY)
    if p is not None and p.status == "running":
        st.session_state[SEEN_KEY] = p.run_id
        if not polling_fast:                 # a run started since this page was drawn: poll faster
            st.rerun(scope="app")
        with st.container(border=True):
            st.markdown(":material/sync: " + describe(p))
            st.progress(min(1.0, p.done / p.total) if p.total else 0.0)
            st.caption(_("This page shows what is cached so far; it refreshes by itself when the run ends."))
        return
    if seen is not None:
        st.session_state.pop(SEEN_KEY, None)
        if p is not None and p.run_id == seen:
            st.session_state["_progress_finished"] = (p.run_id, p.status, p.finished_at)
        st.rerun(scope="app")
    if p is not None and p.status == "abandoned":
        st.caption(_("Precompute run {run} stopped without finishing (its process is gone); what it wrote is "
                     "kept, and the next precompute completes the rest.", run=p.run_id))


def banner(db_path: Path) -> None:
    """Call once per script run, before the page."""
    finished = st.session_state.pop("_progress_finished", None)
    if finished:
        run_id, status, at = finished
        st.toast(_("Precompute run {run} ended ({status}) at {at} UTC: the page shows its results.",
                   run=run_id, status=status, at=(at or "").replace("T", " ")), icon=":material/done_all:")
    p = run_progress.read(db_path)
    fast = p is not None and p.status == "running"
    st.fragment(run_every=POLL_RUNNING_S if fast else POLL_IDLE_S)(_show)(db_path, fast)
