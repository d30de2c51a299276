"""Runs: the provenance of every precompute (arguments, versions, device, commit, counts) and its failures."""
from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from dashboard import components as c
from dashboard import db
from pipeline import queries as q

c.page("Runs", "Every `python -m pipeline precompute`: what it was asked, with which versions on which device, "
       "what it computed, and what failed.", "runs", "runs")
runs = db.fetch(q.runs)
c.smoke_banner(r["is_smoke"] for r in runs)


def _json(value: str | None) -> object:
    try:
        return json.loads(value) if value else {}
    except (TypeError, ValueError):
        return value


st.dataframe(pd.DataFrame([{
    "run": r["run_id"], "command": r["command"], "status": r["status"], "started": r["started_at"],
    "finished": r["finished_at"], "seconds": r["seconds"], "device": r["device"],
    "git commit": (r["git_commit"] or "")[:12], "smoke": r["is_smoke"], "failures": r["failures"],
    "memes folder": r["memes_root"], "error": r["error"],
} for r in runs]), hide_index=True)

st.subheader("Details")
by_id = {str(r["run_id"]): r for r in runs}
chosen = c.url_select("Run", list(by_id), "run", format_func=lambda k: f"run {k} · {by_id[k]['status']} · "
                      f"{by_id[k]['started_at']:%Y-%m-%d %H:%M}" if by_id[k]["started_at"] else f"run {k}")
r = by_id[chosen]
d1, d2 = st.columns(2)
with d1:
    st.caption("Arguments")
    st.json(_json(r["args"]), expanded=True)
    st.caption("Models / engines per stage")
    st.json(_json(r["models"]), expanded=True)
with d2:
    st.caption("Counts per stage")
    counts = _json(r["counts"])
    if isinstance(counts, dict) and counts:
        st.dataframe(pd.DataFrame([{"stage": k, **(v if isinstance(v, dict) else {"value": v})}
                                   for k, v in counts.items()]), hide_index=True)
    else:
        st.caption("none recorded")
    st.caption("Versions")
    st.json(_json(r["versions"]), expanded=False)
    st.caption("Device and commit")
    st.text(f"{r['device'] or '—'}\n{r['git_commit'] or '—'}")
    if r["error"]:
        st.caption("Error")
        st.code(r["error"], language=None, wrap_lines=True)

st.subheader("Failures")
n_failures = c.counts().get("failures") or 0
if not n_failures:
    st.success("No failures recorded.")
    st.stop()
st.dataframe(db.fetch(q.failure_summary), hide_index=True)
f1, f2, f3 = st.columns([1, 1, 1])
run_options = ["all"] + [str(r["run_id"]) for r in runs]
run_filter = c.url_select("Run", run_options, "frun", container=f1)
stage_filter = c.url_select("Stage", ["all"] + db.fetch(q.failure_stages), "fstage", container=f2)
size = c.page_size_picker(container=f3)
run_id = None if run_filter == "all" else int(run_filter)
stage = None if stage_filter == "all" else stage_filter
total = db.fetch(q.failures_count, run_id, stage)
offset, limit = c.pagination(total, param="fpage", page_size=size, signature=(run_id, stage, size))
st.dataframe(db.fetch_page(q.failures_page, run_id, stage, limit, offset), hide_index=True,
             column_config={"message": st.column_config.TextColumn(width="large")})
