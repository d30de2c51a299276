"""Map: the memes laid out in 2-D by their CLIP image embeddings (issue 17).

The layout (UMAP, or PCA for a few memes) is computed by each precompute whose embeddings changed
(pipeline/embedding_map.py) and read here, never computed at page load. The points are coloured by the true
label, by whether one prediction set is right, or by where two sets disagree; a box drawn on the map (kept in
the URL as ?box=x0,x1,y0,y1) lists those memes below, 24 a page, each linked to its Meme page."""
from __future__ import annotations

import streamlit as st

from dashboard import charts, db, first_run
from dashboard import components as c
from dashboard.lang import _
from pipeline import queries as q
from pipeline.names import public_name

GALLERY_PAGE = 24
BOX_PARAM = "box"
LAST_BRUSH_KEY = "map:last_brush"

retired = c.page(_("Map"), _("The memes laid out by their CLIP image embeddings: similar-looking memes lie "
                             "close together. Colour the points by the true label or by a prediction set's "
                             "answers, and draw a box to see those memes."),
                 "memes", "memes", "clip")
maps = db.fetch(q.map_variants)
if not maps:
    if first_run.explains("clip"):
        st.stop()               # the notice under the title gives the fix; a plain refill would fail again
    st.info(_("No map is stored in this cache yet. A precompute stores it after the CLIP stage (which stores the "
              "image embeddings it is computed from):"))
    st.code(c.fill_command("clip"), language="bash")
    st.stop()
by_id = {m["variant_id"]: m for m in maps}
c.smoke_banner(m["is_smoke"] for m in maps)

sets = c.variant_rows(q.PREDICTION_STAGES)
set_ids = {s["variant_id"]: s for s in sets}
cols = st.columns([1.3, 1.2, 1.2, 1.2])
variant = c.url_select(_("Image model"), list(by_id), "model", format_func=lambda v: public_name(by_id[v]["model_id"]),
                       container=cols[0])
colourings = ["truth", "correct", "agree"] if sets else ["truth"]
colouring = c.url_select(_("Colour by"), colourings, "colour", format_func=c.option_text(charts.MAP_COLOURINGS),
                         radio=True, container=cols[1])
set_a = set_b = None
if colouring in ("correct", "agree"):
    set_a = c.pick_variant(_("Prediction set A"), sets, "a", default_id=sets[0]["variant_id"], container=cols[2])
if colouring == "agree":
    other = next((s["variant_id"] for s in sets if s["variant_id"] != (set_a or {}).get("variant_id")),
                 sets[0]["variant_id"])
    set_b = c.pick_variant(_("Prediction set B"), sets, "b", default_id=other, container=cols[3])

m = by_id[variant]
if not m["current"]:
    st.warning(_("The embeddings changed after this map was computed (run {run}): memes added or retired since are "
                 "not on it. The next precompute computes it again.", run=m["run_id"]))
points = db.fetch(q.map_points_for, variant, (set_a or {}).get("variant_id"), (set_b or {}).get("variant_id"),
                  retired)
chart_key = f"map:chart:{variant}:{colouring}"
event = charts.show_map(points, colouring, key=chart_key)
if m["method"] == "umap":
    st.caption(_("UMAP of {n} memes' image embeddings ({model}; cosine, 15 neighbours), computed by run {run}. "
                 "Nearby points are memes whose pictures the model finds similar; distances between far-apart "
                 "groups, and the axes, mean little. Draw a box (drag) to list the memes in it; double-click "
                 "to clear it.", n=f"{m['n']:,}", model=public_name(m["model_id"]), run=m["run_id"]))
else:
    st.caption(_("Fewer than {k} memes: the first two principal components of their image embeddings ({model}) "
                 "instead of UMAP, computed by run {run}. Draw a box (drag) to list the memes in it.",
                 k=20, model=public_name(m["model_id"]), run=m["run_id"]))

# ------------------------------------------------------------------------------------------- the box
brush = charts.box_of(event)
last = st.session_state.setdefault(LAST_BRUSH_KEY, {})       # chart key -> the box it last reported
if chart_key in last and brush != last[chart_key]:          # the visitor drew or cleared a box on this chart
    c.publish_param(BOX_PARAM, None if brush is None else ",".join(f"{v:.3f}" for v in brush))
last[chart_key] = brush
box = brush if brush is not None else charts.parse_box(c.url_param(BOX_PARAM))
picked = charts.in_box(points, box)

st.subheader(_("Memes in the box"))
if box is None:
    st.info(_("Draw a box on the map to list the memes in it."))
    st.stop()
if not len(picked):
    st.info(_("No meme in this box."))
    st.stop()
offset, limit = c.pagination(len(picked), page_size=GALLERY_PAGE, signature=(variant, box, retired))
rows = picked.iloc[offset:offset + limit]
cards = {r["meme_id"]: r for r in db.fetch_page(q.meme_cards, list(rows["meme_id"]))}
answers = dict(zip(rows["meme_id"], zip(rows["a"], rows["b"])))


def answer_word(code: int) -> str:
    return "—" if code == 0 else c.answer_text(q.MAP_ANSWERS[code] if code > 1 else None)


def card(meme_id: str) -> None:
    meme = cards.get(meme_id, {})
    c.meme_image(meme.get("thumbnail"), meme_id, meme.get("truth"), ctx="map")
    line = _("true label **{label}**", label=c.label_text(meme.get("truth")))
    a, b = answers.get(meme_id, (0, 0))
    if set_a:
        line += " · " + _("A: {answer}", answer=answer_word(int(a)))
    if set_b:
        line += " · " + _("B: {answer}", answer=answer_word(int(b)))
    st.markdown(line)
    c.meme_link(meme_id)


c.grid(list(rows["meme_id"]), card, columns=4)
