"""Notices for a first run: the cache holds the demo set; a model could not be loaded (with the fix).

`top_notices(page)` runs under every page's title (components.page; the Meme page calls it itself).
The demo notice says the memes are the built-in demo set (pipeline/demo.py) and how to run on one's own. The missing-model notice names each
model stage the page needs whose model could not be loaded in the latest run that tried it (and that
has no results since), quotes the stored reason as plain text, and gives the commands that fix it:
download the checkpoint where the hub is reachable, copy the folder, rerun with --clip-model /
--vlm-model pointing at it. `explains(stages)` tells components.require not to offer a plain
refill command that would fail again.
"""
from __future__ import annotations

import json
import shlex
from pathlib import PurePosixPath

import streamlit as st

from dashboard import db
from dashboard.lang import _
from pipeline import queries as q
from pipeline.config import DEFAULT_MEMES_DIR
from pipeline.demo import N_PER_LABEL
from pipeline.names import is_local_path

# The model stages each page shows results of.
PAGE_NEEDS = {"overview": ("clip", "vlm", "cam"), "errors": ("clip", "vlm"),
              "disagreement": ("clip", "vlm"), "calibration": ("clip", "vlm"), "label-issues": ("clip", "vlm"),
              "slices": ("clip", "vlm"), "map": ("clip",), "heatmaps": ("cam",), "modality": ("clip", "vlm"),
              "faithfulness": ("cam", "vlm"), "meme": ("clip", "vlm", "cam")}
MODEL_OPTION = {"clip": "clip_model", "cam": "clip_model", "vlm": "vlm_model"}
FLAG = {"clip_model": "--clip-model", "vlm_model": "--vlm-model"}
STAGE_NAME = {"ocr": "OCR", "clip": "CLIP", "vlm": "VLM", "cam": "CAM"}


def missing(stages: tuple[str, ...] | list[str] | str | None = None) -> list[dict]:
    """Missing-model records (queries.missing_models) of `stages` (a tuple or 'clip,vlm'; None: all)."""
    if isinstance(stages, str):
        stages = tuple(s.strip() for s in stages.split(","))
    rows = db.fetch(q.missing_models)
    return [r for r in rows if stages is None or r["stage"] in stages]


def explains(stages: tuple[str, ...] | list[str] | str | None) -> bool:
    return bool(stages) and bool(missing(stages))


def local_folder(model: str) -> str:
    return str(PurePosixPath("models") / PurePosixPath(model).name)


def fix_commands(records: list[dict]) -> str:
    """The shell lines that fix the missing models of `records` (hub ids: download, copy, rerun)."""
    models: dict[str, str] = {}
    served = False
    for r in records:
        args = json.loads(r.get("args") or "{}")
        option = MODEL_OPTION.get(r["stage"])
        if option == "vlm_model" and args.get("vlm_backend") == "openai":
            served = True
            continue
        if option and args.get(option):
            models[option] = str(args[option])
    lines = []
    hub = {opt: m for opt, m in models.items() if not is_local_path(m)}
    if hub:
        lines.append("# " + _("on a machine that can reach huggingface.co:"))
        lines += [f"hf download {shlex.quote(m)} --local-dir {shlex.quote(local_folder(m))}" for m in hub.values()]
        lines.append("# " + _("copy the models/ folder into the project folder here, then:"))
    elif models:
        lines.append("# " + _("make the model folder exist (or point at another one), then:"))
    rerun = ["scripts/main.sh"]
    for opt, m in models.items():
        rerun += [FLAG[opt], local_folder(m) if opt in hub else m]
    if served:
        lines.append("# " + _("start the VLM server (see docs/served_vlm.md) and check --vlm-url, then:"))
    if len(rerun) > 1 or served:
        lines.append(shlex.join(rerun))
    return "\n".join(lines)


def missing_models_notice(records: list[dict]) -> None:
    if not records:
        return
    names = ", ".join(STAGE_NAME.get(r["stage"], r["stage"]) for r in records)
    with st.container(border=True):
        st.warning(_("Not computed because a model could not be loaded: {names}. The pages show what the "
                     "other stages stored.", names=names), icon=":material/cloud_off:")
        for r in records:
            st.caption(_("{stage}, run {run}, the reason as recorded:", stage=STAGE_NAME.get(r["stage"], r["stage"]),
                         run=r["run_id"]))
            st.text(r["message"])          # the stored message (with a user-given model id): plain text
        commands = fix_commands(records)
        if commands:
            st.caption(_("The fix:"))
            st.code(commands, language="bash")


def demo_notice() -> None:
    own = DEFAULT_MEMES_DIR
    st.info(_("This is the demo: {n} synthetic memes with Russian captions drawn by VLMemes, not research data. "
              "To study your own memes, put them into {toxic} (toxic) and {neutral} (neutral) and run "
              "`scripts/main.sh` again.", n=2 * N_PER_LABEL, toxic=f"`{own}/Негативно/`",
              neutral=f"`{own}/Нейтрально/`"), icon=":material/science:")


def top_notices(page_path: str) -> None:
    """The first-run notices for the page at url path `page_path` (nothing when the cache has neither;
    a missing or unreadable cache is the page's own notice, app.py)."""
    try:
        counts = db.fetch(q.table_counts)
    except db.CacheUnavailable:
        return
    if not counts.get("runs"):
        return
    if db.fetch(q.demo_runs):
        demo_notice()
    missing_models_notice(missing(PAGE_NEEDS.get(page_path, ())))
