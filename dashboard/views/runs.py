"""Runs: the provenance of every precompute (arguments, versions, device, commit, counts) and its failures."""
from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from dashboard import components as c
from dashboard import db
from dashboard.lang import N_, _
from pipeline import queries as q

STATUS = {"running": N_("running"), "ok": N_("ok"), "failed": N_("failed"), "interrupted": N_("interrupted"),
          "abandoned": N_("abandoned")}

c.page(_("Runs"), _("Every `python -m pipeline precompute`: what it was asked, with which versions on which device, "
                    "what it computed, and what failed."), "runs", "runs")
runs = db.fetch(q.runs)
c.smoke_banner(r["is_smoke"] for r in runs)


def status(value: str | None) -> str:
    """A run's status in words (an unknown value as it is)."""
    return c.shown(STATUS[value]) if value in STATUS else str(value or "—")


def _json(value: str | None) -> object:
    try:
        return json.loads(value) if value else {}
    except (TypeError, ValueError):
        return value


st.dataframe(pd.DataFrame([{
    "run": r["run_id"], "command": r["command"], "status": status(r["status"]), "started": r["started_at"],
    "finished": r["finished_at"], "seconds": r["seconds"], "device": r["device"],
    "git commit": (r["git_commit"] or "")[:12], "smoke": r["is_smoke"], "failures": r["failures"],
    "memes folder": r["memes_root"], "error": r["error"],
} for r in runs]), hide_index=True, column_config=c.columns())

st.subheader(_("Details"))
by_id = {str(r["run_id"]): r for r in runs}


def run_label(k: str) -> str:
    started = by_id[k]["started_at"]
    if not started:
        return _("run {run}", run=k)
    return _("run {run} · {status} · {started}", run=k, status=status(by_id[k]["status"]),
             started=f"{started:%Y-%m-%d %H:%M}")


chosen = c.url_select(_("Run"), list(by_id), "run", format_func=run_label)
r = by_id[chosen]
d1, d2 = st.columns(2)
with d1:
    st.caption(_("Arguments"))
    st.json(_json(r["args"]), expanded=True)
    st.caption(_("Models / engines per stage"))
    st.json(_json(r["models"]), expanded=True)
with d2:
    st.caption(_("Counts per stage"))
    counts = _json(r["counts"])
    if isinstance(counts, dict) and counts:
        st.dataframe(pd.DataFrame([{"stage": k, **(v if isinstance(v, dict) else {"value": v})}
                                   for k, v in counts.items()]), hide_index=True, column_config=c.columns())
    else:
        st.caption(_("none recorded"))
    st.caption(_("Versions"))
    st.json(_json(r["versions"]), expanded=False)
    st.caption(_("Device and commit"))
    st.text(f"{r['device'] or '—'}\n{r['git_commit'] or '—'}")
    if r["error"]:
        st.caption(_("Error"))
        st.code(r["error"], language=None, wrap_lines=True)

st.subheader(_("Failures"))
n_failures = c.counts().get("failures") or 0
if not n_failures:
    st.success(_("No failures recorded."))
    st.stop()
st.dataframe(db.fetch(q.failure_summary), hide_index=True, column_config=c.columns())
f1, f2, f3 = st.columns([1, 1, 1])
run_options = ["all"] + [str(r["run_id"]) for r in runs]
run_filter = c.url_select(_("Run"), run_options, "frun", container=f1,
                          format_func=lambda k: _("all") if k == "all" else k)
stage_filter = c.url_select(_("Stage"), ["all"] + db.fetch(q.failure_stages), "fstage", container=f2,
                            format_func=lambda k: _("all") if k == "all" else k)
size = c.page_size_picker(container=f3)
run_id = None if run_filter == "all" else int(run_filter)
stage = None if stage_filter == "all" else stage_filter
total = db.fetch(q.failures_count, run_id, stage)
offset, limit = c.pagination(total, param="fpage", page_size=size, signature=(run_id, stage, size))
st.dataframe(db.fetch_page(q.failures_page, run_id, stage, limit, offset), hide_index=True,
             column_config={**c.columns(), "message": st.column_config.TextColumn(_("message"), width="large")})
