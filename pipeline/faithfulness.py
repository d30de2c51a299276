"""Faithfulness measures, per meme (issue 16): does what a model says or looks at match the caption?

  cam_mass_in_boxes(cam, boxes, image_size, view=...)  share of the CAM's mass inside the OCR boxes vs their area
  normalise_words(text) / caption_quote(explanation, ocr_text)  does the explanation quote the caption?
  possible_contradiction(explanation, label)           the explanation argues against its own class line
  answer_failure_kind(raw_answer, label, prompt)       why an answer gave no class (refusal, hedge, ...)

Pure Python + numpy: no store, no models. Each rule is stated in its function's docstring and its cue
lists are module-level tuples; FAITHFULNESS_VERSION goes into any cache key of their results.

CAM grid <-> image (pipeline/stages/cam.py): a `heatmaps` row holds grid_h x grid_w uint8, row-major (row 0 =
top), 0..255 = min..max of that meme's map, over the *model input*, not necessarily over the meme:
  pad-square  (DEFAULT_VIEW; variant config "view": "pad-square", names `eigencam+pad`, `gradcam+pad`) the meme
              is centred on a square canvas of its long side (pipeline.stages.clip.pad_box, integer offsets)
              and the processor keeps that square whole: the grid covers the square, the bands beyond the
              meme's short side are padding;
  center-crop (no "view" key in the variant config; names `eigencam`, `gradcam`) CLIP's processor resizes the
              shortest edge and centre-crops a square: the grid covers only the centred min(w, h) square of
              the meme, the rest of a tall/wide meme is never seen (SigLIP-style processors squash the whole
              image instead: pass seen=(0, 0, 1, 1), or seen=pipeline.stages.cam.seen_box(processor, w, h, view)).
The mass is computed over the part of the meme the grid covers ("visible"); padding bands and cropped-away
parts count neither as mass nor as area. Each grid cell is taken as uniform over its rectangle (what the
stored grid is; the dashboard's bilinear overlay is only a drawing), and the overlap of cells and boxes is
computed exactly (coordinate compression over cell, box and visible edges), so a uniform CAM gives mass ==
area to float precision. Boxes are `ocr.boxes` in MemeInput.image pixels (pipeline/views.py docstring).
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from pipeline.config import NON_TOXIC, TOXIC
from pipeline.i18n import N_
from pipeline.stages.clip_prompts import CENTER_CROP, DEFAULT_VIEW, PAD_SQUARE
from pipeline.views import BoxLike, as_boxes

FAITHFULNESS_VERSION = "1"
FULL_IMAGE = "full-image"     # a grid over the whole meme (a processor that squashes, no crop, no padding)
GRID_VIEWS = (PAD_SQUARE, CENTER_CROP, FULL_IMAGE)


# =========================================================================== 1. CAM mass in the OCR boxes
def cam_grid(cam: bytes | np.ndarray | Sequence, grid_h: int | None = None, grid_w: int | None = None) -> np.ndarray:
    """A stored `heatmaps.cam` blob (uint8 row-major) or an array as a (grid_h, grid_w) float64 array."""
    if isinstance(cam, (bytes, bytearray, memoryview)):
        arr = np.frombuffer(bytes(cam), dtype=np.uint8)
    else:
        arr = np.asarray(cam)
    if grid_h is not None and grid_w is not None:
        if arr.ndim == 2 and arr.shape != (grid_h, grid_w):
            raise ValueError(f"CAM has shape {arr.shape}, not grid_h x grid_w = {grid_h} x {grid_w}")
        if arr.size != grid_h * grid_w:
            raise ValueError(f"CAM has {arr.size} values, not grid_h x grid_w = {grid_h} x {grid_w}")
        arr = arr.reshape(grid_h, grid_w)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"CAM must be a non-empty 2-D grid (or bytes with grid_h, grid_w), not shape {arr.shape}")
    out = arr.astype(np.float64)
    if not np.isfinite(out).all() or (out < 0).any():
        raise ValueError("CAM values must be finite and non-negative")
    return out


def grid_region(image_size: tuple[int, int], view: str = DEFAULT_VIEW,
                seen: tuple[float, float, float, float] | None = None) -> tuple[float, float, float, float]:
    """The rectangle (x0, y0, x1, y1) of the meme's pixel plane the CAM grid covers; it may reach beyond the
    meme (pad-square: the padding bands). center-crop: `seen` = the processor's kept part as fractions
    (pipeline.stages.cam.seen_box), by default CLIP's rule, the centred min(w, h) square."""
    w, h = image_size
    if view == PAD_SQUARE:
        from pipeline.stages.clip import pad_box
        left, top, side = pad_box(w, h)
        return (-float(left), -float(top), float(side - left), float(side - top))
    if view == CENTER_CROP:
        if seen is None:
            s = min(w, h)
            l, t = (w - s) / 2, (h - s) / 2
            return (l, t, l + s, t + s)
        return (seen[0] * w, seen[1] * h, seen[2] * w, seen[3] * h)
    if view == FULL_IMAGE:
        return (0.0, 0.0, float(w), float(h))
    raise ValueError(f"unknown CAM view {view!r}; known: {', '.join(GRID_VIEWS)}")


def _clip_boxes(boxes, rect) -> list[tuple[float, float, float, float]]:
    x0, y0, x1, y1 = rect
    out = []
    for a, b, c, d in boxes:
        a, b, c, d = max(a, x0), max(b, y0), min(c, x1), min(d, y1)
        if c > a and d > b:
            out.append((a, b, c, d))
    return out


def _union_cells(boxes, rect, x_cuts=(), y_cuts=()):
    """Coordinate compression of rect by box edges and extra cuts: (x mids, dx, y mids, dy, union mask (ny, nx))."""
    x0, y0, x1, y1 = rect
    xs = np.unique(np.clip(np.array([x0, x1, *[v for b in boxes for v in (b[0], b[2])], *x_cuts], float), x0, x1))
    ys = np.unique(np.clip(np.array([y0, y1, *[v for b in boxes for v in (b[1], b[3])], *y_cuts], float), y0, y1))
    mx, dx = (xs[:-1] + xs[1:]) / 2, np.diff(xs)
    my, dy = (ys[:-1] + ys[1:]) / 2, np.diff(ys)
    if boxes:
        bb = np.array(boxes, float)
        in_x = (bb[:, [0]] <= mx[None, :]) & (mx[None, :] < bb[:, [2]])      # (boxes, nx)
        in_y = (bb[:, [1]] <= my[None, :]) & (my[None, :] < bb[:, [3]])      # (boxes, ny)
        union = (in_y.T.astype(np.int64) @ in_x.astype(np.int64)) > 0      # (ny, nx)
    else:
        union = np.zeros((len(my), len(mx)), bool)
    return mx, dx, my, dy, union


def cam_mass_in_boxes(cam: np.ndarray | bytes, boxes: Iterable[BoxLike], image_size: tuple[int, int],
                      view: str = DEFAULT_VIEW, seen: tuple[float, float, float, float] | None = None,
                      grid_h: int | None = None, grid_w: int | None = None) -> dict[str, float | None]:
    """How much of the CAM lies on the caption, against how much of the picture the caption covers.

    cam: (grid_h, grid_w) uint8 0..255 or non-negative floats (or the stored blob with grid_h, grid_w);
    boxes: `ocr.boxes` dicts or plain [x0, y0, x1, y1] in the pixels of the meme of `image_size` (w, h);
    view: how the grid maps onto the meme (module docstring; the variant config's "view", absent = center-crop).
    Returns, all over the visible part of the meme (grid region intersected with the meme):
      mass        CAM mass inside the union of the boxes / all CAM mass (None when the visible CAM is all zero)
      area        area of the union of the boxes / visible area (0..1)
      ratio       mass / area (None when area is 0 or mass is None): > 1 = the map favours the caption
      boxes_seen  share of the boxes' union (within the meme) that is visible (None without boxes): below 1 when
                  center-crop cut part of the caption away
    """
    grid = cam_grid(cam, grid_h, grid_w)
    gh, gw = grid.shape
    w, h = image_size
    gx0, gy0, gx1, gy1 = grid_region(image_size, view, seen)
    visible = (max(0.0, gx0), max(0.0, gy0), min(float(w), gx1), min(float(h), gy1))
    if visible[2] <= visible[0] or visible[3] <= visible[1]:
        raise ValueError(f"the CAM grid region {(gx0, gy0, gx1, gy1)} does not overlap the {w}x{h} meme")
    in_meme = _clip_boxes(as_boxes(boxes), (0.0, 0.0, float(w), float(h)))
    in_view = _clip_boxes(in_meme, visible)
    cw, ch = (gx1 - gx0) / gw, (gy1 - gy0) / gh
    mx, dx, my, dy, union = _union_cells(in_view, visible, gx0 + cw * np.arange(gw + 1), gy0 + ch * np.arange(gh + 1))
    col = np.clip(np.floor((mx - gx0) / cw).astype(int), 0, gw - 1)
    row = np.clip(np.floor((my - gy0) / ch).astype(int), 0, gh - 1)
    cell_area = dy[:, None] * dx[None, :]
    weighted = grid[row[:, None], col[None, :]] * cell_area
    total = float(weighted.sum())
    area = float(cell_area[union].sum() / cell_area.sum())
    mass = float(weighted[union].sum() / total) if total > 0 else None
    ratio = mass / area if mass is not None and area > 0 else None
    boxes_seen = None
    if in_meme:
        _, dxa, _, dya, ua = _union_cells(in_meme, (0.0, 0.0, float(w), float(h)))
        all_area = float((dya[:, None] * dxa[None, :])[ua].sum())
        boxes_seen = float(cell_area[union].sum() / all_area) if all_area > 0 else None
    return dict(mass=mass, area=area, ratio=ratio, boxes_seen=boxes_seen)


# =========================================================================== 2. does the explanation quote the caption?
_WORD = re.compile(r"[a-zа-я]+")
MIN_WORD_LEN = 3
# Words too common to show that a caption is quoted (after normalise_words: lower case, е for ё).
STOP_WORDS = frozenset((
    "что", "это", "эта", "этот", "эти", "как", "так", "или", "для", "его", "она", "они", "оно", "там", "тут", "уже",
    "еще", "все", "вот", "при", "над", "под", "без", "про", "мне", "меня", "мой", "моя", "наш", "кто", "где", "чем",
    "если", "когда", "только", "даже", "тоже", "быть", "был", "была", "были", "есть", "нет", "его", "ему", "них",
    "the", "and", "for", "you", "are", "was", "with", "that", "this", "not", "but", "its", "when",
))
STEM_MIN = 5            # words match on a common prefix of min(STEM_MIN, shorter length - 1) letters (>= 3) ...
STEM_MAX_ENDING = 3     # ... when each word has at most this many letters beyond it (Russian inflection endings)
QUOTE_MIN_WORDS = 2     # quotes: at least this many distinct caption words are in the explanation ...
QUOTE_MIN_SHARE = 0.5   # ... or at least this share of them (a one-word caption quoted counts)


def normalise_words(text: str | None, min_len: int = MIN_WORD_LEN) -> list[str]:
    """Words of `text` in order: lower case, ё -> е, runs of Cyrillic/Latin letters (digits, punctuation and
    hyphens split words), those shorter than `min_len` letters dropped."""
    low = (text or "").lower().replace("ё", "е")
    return [w for w in _WORD.findall(low) if len(w) >= min_len]


def words_match(a: str, b: str) -> bool:
    """Two normalised words are one word in another form: equal, or their common prefix has at least
    max(3, min(STEM_MIN, len(shorter) - 1)) letters and neither goes on more than STEM_MAX_ENDING letters past it
    (дурак ~ дураком, работу ~ работа, ненавижу ~ ненависть, кот ~ кота; not кот ~ котлета, not сосед ~ сосиска)."""
    if a == b:
        return True
    p = 0
    for x, y in zip(a, b):
        if x != y:
            break
        p += 1
    need = max(3, min(STEM_MIN, min(len(a), len(b)) - 1))
    return p >= need and len(a) - p <= STEM_MAX_ENDING and len(b) - p <= STEM_MAX_ENDING


def caption_quote(explanation: str | None, ocr_text: str | None) -> dict[str, Any]:
    """Does the explanation quote the caption? Caption words = distinct normalise_words(ocr_text) minus STOP_WORDS.
      overlap       share of them that match (words_match) some word of the explanation; None without caption words
      quoted_words  those caption words, in caption order
      quotes        at least QUOTE_MIN_WORDS of them, or overlap >= QUOTE_MIN_SHARE
    """
    caption: list[str] = []
    for w in normalise_words(ocr_text):
        if w not in STOP_WORDS and w not in caption:
            caption.append(w)
    said = set(normalise_words(explanation))
    quoted = [c for c in caption if c in said or any(words_match(c, w) for w in said)]
    overlap = len(quoted) / len(caption) if caption else None
    quotes = bool(caption) and (len(quoted) >= QUOTE_MIN_WORDS or overlap >= QUOTE_MIN_SHARE)
    return dict(overlap=overlap, quoted_words=quoted, quotes=quotes)


# =========================================================================== 3. possible contradiction
# Word stems matched at the start of a word (lower case, е for ё).
# A stem of TOXIC_CUES not negated says "toxic"; clearly negated it says "not toxic".
# The short masculine forms («токсичен», «безобиден») are stems of their own (their е breaks the -н- stem).
TOXIC_CUES = ("токсичн", "токсичен", "оскорбительн", "оскорбителен", "унизительн", "унизителен", "toxic", "offensive", "hateful", "insulting", "derogatory",
              "demeaning", "humiliating")
# These say "not toxic" only when clearly negated («нет оскорблений», «не унижает», «no insults»); plain, they
# are too often about what the meme depicts to count as a verdict.
NEGATED_TOXIC_CUES = TOXIC_CUES + ("оскорбл", "униж", "ненавист", "угроз", "травл", "insult", "hate", "threat",
                                   "humiliat", "harass")
# A stem of NON_TOXIC_CUES not negated says "not toxic"; clearly negated («не безобидный») it says "toxic".
NON_TOXIC_CUES = ("нейтральн", "нейтрален", "безобидн", "безобиден", "безвредн", "безвреден", "harmless", "neutral", "benign", "inoffensive")
# Negation words: one among the NEGATION_WINDOW words before a cue, in its clause, with none of WINDOW_STOPS
# between, negates it clearly; a negation glued to the word («нетоксичный», «non-toxic») too.
NEGATIONS = ("не", "нет", "ни", "ничего", "никаких", "никакой", "никакого", "нисколько", "ничуть", "вовсе", "без",
             "отсутствие", "отсутствует", "отсутствуют", "лишен", "лишенный", "лишена", "not", "no", "non", "never",
             "without", "nothing", "none", "neither", "nor", "free", "lacks", "lack", "isnt", "arent", "wasnt",
             "doesnt", "dont", "cannot")
NOT_NEGATING_NEXT = ("только", "просто", "лишь", "менее", "меньше", "just", "only", "merely", "less")
WINDOW_STOPS = ("и", "а", "но", "или", "однако", "and", "or", "but", "же")
NEGATION_WINDOW = 4
# A negation after the cue, within its clause, with none of WINDOW_STOPS between: «токсичности нет», «оскорблений
# в нем нет», «токсичным не является» (not «оскорбительный и в нем нет юмора»). After a cue in the nominative of an
# adjective (NOMINATIVE_ENDINGS) the copulas and «не содержит» (group `verb`) negate the subject's predicate, not the
# cue: «оскорбительный мем не является шуткой», «токсичный контент не содержит юмора» are no negations (while
# «токсичный подтекст не обнаружен» is one).
POSTPOSED_NEGATION = re.compile(
    r"^\s*(?P<gap>(?:[\w-]+\s+){0,3}?)(?:нет|отсутству\w*|не\s+(?:(?P<verb>явля\w*|был\w*|будет|содерж\w*)"
    r"|обнаружен\w*|выявлен\w*|наблюда\w*|прослежива\w*|чувству\w*|видно|найдено)|is\s+absent|are\s+absent)\b")
NOMINATIVE_ENDINGS = ("ый", "ий", "ая", "яя", "ое", "ее", "ые", "ие")
# Set phrases with a negation word that negate nothing: «без сомнения», «нет никаких сомнений», "no doubt".
NOT_A_NEGATION = re.compile(
    r"(?<!\w)(?:без|нет)\s+(?:(?:всяк|никак)\w*\s+)?сомнени\w*"
    r"|(?<!\w)(?:no|without(?:\s+(?:a|any))?)\s+(?:doubt|question)\b")
# A cue in a clause or sentence with one of these before it is not a verdict: hypotheticals, concessions,
# appearances, disguises, negated opinion frames (their double negations are left alone), comparisons.
NOT_A_VERDICT_BEFORE = (
    "может показаться", "можно принять", "можно подумать", "на первый взгляд", "казалось бы", "кажется", "казаться",
    "выглядит", "выглядят", "хотя", "несмотря", "если бы", "мог бы", "могла бы", "могло бы", "было бы", "был бы",
    "под видом", "под маской", "маскиру", "завуалирован", "видимость", "не думаю", "не считаю", "не скажу",
    "нельзя сказать", "нельзя назвать", "сложно назвать", "трудно назвать", "вряд ли", "менее", "чем",
    "could", "might", "may seem", "seems", "seem", "looks", "appears", "at first glance", "although", "though",
    "despite", "would", "if", "disguised", "guise", "veiled", "don't think", "do not think", "wouldn't call",
    "hard to call", "less", "than",
)
# A cue followed in its sentence by one of these is conceded, not concluded («выглядит безобидно, но ...») ...
CONTRAST_AFTER = ("но", "однако", "зато", "а", "but", "however", "yet", "though")
# ... except these after a clearly negated cue: «не X, а Y» corrects X («не оскорбительный мем, а шутка»,
# «токсичности нет, а есть ирония»).
CORRECTION_AFTER_NEGATION = ("а",)
# Non-toxic cues next to one of these describe the picture, not the meme («на нейтральном фоне»).
PICTURE_WORDS = ("фон", "изображен", "картинк", "фотограф", "фото", "лиц", "выражени", "цвет", "тон",
                 "background", "image", "picture", "photo", "face", "expression", "colour", "color", "tone", "pose")

_GLUED = r"не-?|non-?"
_CLAUSE_BREAK = re.compile(r"[,;:.!?()\[\]{}\n—–]|\s-\s")
_SENTENCE_BREAK = re.compile(r"[.!?\n]")
_TOKEN = re.compile(r"[\w']+")
_QUOTED = re.compile(r"«[^«»]*»|“[^“”]*”|„[^„“”]*[“”]|\"[^\"]*\"")


def _stem_re(stems: Sequence[str]) -> str:
    return "|".join(re.escape(s) for s in sorted(stems, key=len, reverse=True))


def _phrase_in(text: str, phrases: Sequence[str]) -> bool:
    """A phrase of `phrases` starts a word of `text`; one shorter than 5 characters must end one too («а», «чем», «if»)."""
    return any(re.search(rf"(?<!\w){re.escape(p)}" + ("" if len(p) >= 5 else r"(?!\w)"), text) for p in phrases)


def _preposed_negation(before: str) -> tuple[bool, int | None]:
    """(clearly negated, start of the negation word in `before`): a NEGATIONS word among the last NEGATION_WINDOW
    words, none of WINDOW_STOPS after it, not followed by NOT_NEGATING_NEXT."""
    tokens = list(_TOKEN.finditer(before))[-NEGATION_WINDOW:]
    for k in range(len(tokens) - 1, -1, -1):
        word = tokens[k].group().replace("'", "")
        if word in WINDOW_STOPS:
            return False, None
        if word in NEGATIONS or (word.endswith("nt") and tokens[k].group().endswith("n't")):
            nxt = tokens[k + 1].group() if k + 1 < len(tokens) else ""
            return (nxt not in NOT_NEGATING_NEXT), tokens[k].start()
    return False, None


def _any_negation(before: str) -> bool:
    return any(t.replace("'", "") in NEGATIONS or t.endswith("n't") for t in _TOKEN.findall(before))


def _statements(text: str) -> list[tuple[str, str]]:
    """(class stated, cue text) of each verdict-like cue in `text`, in order (rules: possible_contradiction)."""
    low = text.lower().replace("ё", "е").replace("’", "'")
    low = _QUOTED.sub(lambda m: " " * len(m.group()), low)          # quoted caption text is not the model's verdict
    low = NOT_A_NEGATION.sub(lambda m: " " * len(m.group()), low)    # «без сомнения», "no doubt"
    breaks = [m.end() for m in _CLAUSE_BREAK.finditer(low)]
    sentence_breaks = [m.end() for m in _SENTENCE_BREAK.finditer(low)]
    pattern = re.compile(rf"(?<!\w)(?P<neg>{_GLUED})?(?:(?P<t>{_stem_re(NEGATED_TOXIC_CUES)})|(?P<n>{_stem_re(NON_TOXIC_CUES)}))\w*")
    out = []
    for m in pattern.finditer(low):
        start, end = m.start(), m.end()
        clause_start = max([b for b in breaks if b <= start], default=0)
        clause_end = min([b - 1 for b in breaks if b - 1 >= end], default=len(low))
        sent_start = max([b for b in sentence_breaks if b <= start], default=0)
        sent_end = min([b for b in sentence_breaks if b - 1 >= end], default=len(low))
        before_clause, before_sentence = low[clause_start:start], low[sent_start:start]
        after_clause, after_sentence = low[end:clause_end], low[end:sent_end]
        if low[sent_end - 1:sent_end] == "?" or re.match(r"\s+ли\b", low[end:end + 4]):
            continue                                                         # a question
        if _phrase_in(before_sentence, NOT_A_VERDICT_BEFORE):
            continue
        is_toxic_stem = m.group("t") is not None
        stem = m.group("t") or m.group("n")
        if is_toxic_stem and not any(stem.startswith(s) for s in TOXIC_CUES):
            strong = False                                                   # only its negation counts
        else:
            strong = True
        glued = m.group("neg") is not None
        pre, neg_at = _preposed_negation(before_clause)
        post = POSTPOSED_NEGATION.match(after_clause)
        if post and (any(t in WINDOW_STOPS for t in _TOKEN.findall(post.group("gap")))
                     or (post.group("verb") and m.group().endswith(NOMINATIVE_ENDINGS))):
            post = None
        contrast = CONTRAST_AFTER
        if glued or pre or post:
            contrast = tuple(c for c in CONTRAST_AFTER if c not in CORRECTION_AFTER_NEGATION)
        if _phrase_in(after_sentence, contrast):
            continue                                                         # conceded
        if glued or pre or post:
            says = NON_TOXIC if is_toxic_stem else TOXIC
            if glued:
                cue = m.group()
            elif pre:
                cue = low[clause_start + neg_at:end]
            else:
                cue = low[start:end + post.end()]
            out.append((says, " ".join(cue.split())))
            continue
        if not strong or _any_negation(before_clause):
            continue                                                         # unclear: no verdict
        if not is_toxic_stem:
            near = _TOKEN.findall(before_clause)[-1:] + _TOKEN.findall(after_clause)[:1]
            if any(w.startswith(PICTURE_WORDS) for w in near):
                continue
        out.append((TOXIC if is_toxic_stem else NON_TOXIC, m.group()))
    return out


def possible_contradiction(explanation: str | None, label: str | None) -> dict[str, Any]:
    """flag: the explanation states the other class than `label` somewhere; cue: the first such wording.

    The rule (precision over recall: it is shown as a *possible* contradiction):
      * cues are word stems (TOXIC_CUES, NEGATED_TOXIC_CUES, NON_TOXIC_CUES) at the start of a word, in the
        explanation lower-cased with е for ё, quoted text («...», "...") removed (the caption, not the verdict);
      * a cue clearly negated (a negation glued to it, «нетоксичный», «non-toxic»; a NEGATIONS word among the
        NEGATION_WINDOW words before it in its clause with no WINDOW_STOPS between; or POSTPOSED_NEGATION after
        it in its clause, with no WINDOW_STOPS between, «токсичности нет») states the opposite of the cue;
        NOT_NEGATING_NEXT words cancel a negation («не только оскорбительный»), and NOT_A_NEGATION phrases are
        none («без сомнения», "no doubt");
      * a cue not negated states its own class, except NEGATED_TOXIC_CUES-only stems (оскорбл-, униж-, ...) and cues
        with a negation elsewhere earlier in the clause (unclear), and non-toxic cues next to PICTURE_WORDS;
      * not a verdict: a cue in a question, after NOT_A_VERDICT_BEFORE in its sentence (hypotheticals, concessions,
        appearances, negated opinion frames, comparisons) or before CONTRAST_AFTER in its sentence (but «не X, а Y»,
        CORRECTION_AFTER_NEGATION after a clearly negated cue, states "not X");
      * label toxic: flag on a statement of non_toxic; label non_toxic: on a statement of toxic; label None: never.
    """
    if label not in (TOXIC, NON_TOXIC) or not explanation or not explanation.strip():
        return dict(flag=False, cue=None)
    for says, cue in _statements(explanation):
        if says != label:
            return dict(flag=True, cue=cue)
    return dict(flag=False, cue=None)


# =========================================================================== 4. why an answer has no class
FAILURE_KINDS = ("refusal", "hedge", "template echo", "empty or cut off", "other")
REFUSAL, HEDGE, TEMPLATE_ECHO, EMPTY_OR_CUT_OFF, OTHER = FAILURE_KINDS
FAILURE_KIND_NAMES = {REFUSAL: N_("refusal"), HEDGE: N_("hedge"), TEMPLATE_ECHO: N_("template echo"),
                      EMPTY_OR_CUT_OFF: N_("empty or cut off"), OTHER: N_("other")}     # shown, translated
# Patterns (lower case, е for ё) searched in the first REFUSAL_SPAN characters of the answer.
REFUSAL_CUES = (
    r"\bне\s+могу\b(?!\s+(?:однозначно|точно|с\s+уверенностью|сказать\s+однозначно))", r"\bне\s+буду\b",
    r"\bне\s+стану\b", r"\bизвин", r"\bк\s+сожалению\b", r"\bне\s+(?:имею\s+возможности|в\s+состоянии)\b",
    r"\bкак\s+(?:ии|ai|искусственный\s+интеллект|языковая\s+модель|ассистент)\b", r"\bотказыва",
    r"\bне\s+(?:могу|буду)\s+(?:помочь|оценивать|классифицировать)\b",
    r"\bi\s*(?:can't|cannot|can\s+not|won't|am\s+unable|'m\s+unable|am\s+not\s+able|'m\s+not\s+able)\b"
    r"(?!\s+(?:say|tell|determine|judge)\s+(?:for\s+(?:sure|certain)|with\s+(?:certainty|confidence)|definitively"
    r"|definitely|unambiguously))",
    r"\bsorry\b", r"\bas\s+an\s+ai\b", r"\bunable\s+to\b", r"\bnot\s+able\s+to\b",
)
REFUSAL_SPAN = 300
# The prompt's template / placeholders (pipeline.stages.vlm_prompts) given back instead of an answer.
TEMPLATE_ECHO_CUES = (
    r"<[^<>\n]{0,40}(?:toxic|токсич|класс|class|label)[^<>\n]{0,40}>", r"\{[a-z_]+\}",
    r"токсичный\s*[|/]\s*нейтральный", r"нейтральный\s*[|/]\s*токсичный",
    r"класс:\s*[«\"]?\s*токсичный\s*[»\"]?\s*(?:или|либо|/|\|)\s*[«\"]?\s*(?:класс:\s*)?нейтральный",
    r"объяснение:\s*(?:\.\.\.|…|<|\[)", r"одно-два\s+предложения", r"ответь\s+ровно\s+двумя\s+строками",
)
ECHO_MIN_NGRAMS = 4       # with the prompt given: at least this many word trigrams in the answer ...
ECHO_MIN_SHARE = 0.5      # ... and at least this share of them found in the prompt
HEDGE_CUES = (
    r"\bможет\s+быть\b", r"\bсложно\s+(?:сказать|определить|однозначно)", r"\bтрудно\s+(?:сказать|определить|однозначно)",
    r"\bзатрудняюсь\b", r"\bоднозначно\b", r"\bс\s+уверенностью\b", r"\bне\s+могу\s+точно\b", r"\bзависит\b", r"\bнеоднозначн", r"\bспорн",
    r"\bdepends\b", r"\bhard\s+to\s+(?:say|tell)\b", r"\bdifficult\s+to\s+(?:say|tell)\b", r"\bambiguous\b",
    r"\bit\s+could\s+be\b", r"\bmaybe\b", r"\bperhaps\b", r"\bfor\s+(?:sure|certain)\b",
    r"\bwith\s+(?:certainty|confidence)\b", r"\bdefinitively\b", r"\bunambiguously\b",
)
_TOXIC_CLASS_WORD = re.compile(r"\b(?:токсич(?:н|ен)|toxic|оскорбител(?:ьн|ен)|offensive)")
_NEUTRAL_CLASS_WORD = re.compile(r"\b(?:нейтрал(?:ьн|ен)|neutral|безоби(?:дн|ден)|harmless)")
# An answer whose last character is none of these stopped mid-sentence (the token limit, or the model).
SENTENCE_END_CHARS = ".!?…»\"')]}*"


def _trigrams(text: str) -> list[tuple[str, ...]]:
    words = normalise_words(text, min_len=1)
    return [tuple(words[i:i + 3]) for i in range(len(words) - 2)]


def answer_failure_kind(raw_answer: str | None, label: str | None, prompt: str | None = None) -> str | None:
    """Why an answer stated no class (one of FAILURE_KINDS); None when it did (label not None).

    The first rule that holds, in this order (the answer lower-cased, е for ё):
      "empty or cut off"  empty or whitespace only;
      "template echo"     a TEMPLATE_ECHO_CUES pattern (placeholders such as <toxic|non_toxic>, {ocr_text}, the
                          «Класс: токсичный» или «Класс: нейтральный» choice given back), or, with `prompt`, at least
                          ECHO_MIN_NGRAMS word trigrams of which >= ECHO_MIN_SHARE occur in the prompt;
      "refusal"           a REFUSAL_CUES pattern in the first REFUSAL_SPAN characters;
      "empty or cut off"  the answer stops mid-sentence: its last character is none of SENTENCE_END_CHARS
                          (a generation stopped at max_new_tokens ends so);
      "hedge"             a HEDGE_CUES pattern, or both a toxic and a neutral class word;
      "other"             anything else.
    """
    if label is not None:
        return None
    text = (raw_answer or "").strip()
    if not text:
        return EMPTY_OR_CUT_OFF
    low = text.lower().replace("ё", "е").replace("’", "'")
    if any(re.search(p, low) for p in TEMPLATE_ECHO_CUES):
        return TEMPLATE_ECHO
    if prompt:
        grams = _trigrams(low)
        if len(grams) >= ECHO_MIN_NGRAMS:
            in_prompt = set(_trigrams(prompt))
            if sum(g in in_prompt for g in grams) / len(grams) >= ECHO_MIN_SHARE:
                return TEMPLATE_ECHO
    if any(re.search(p, low[:REFUSAL_SPAN]) for p in REFUSAL_CUES):
        return REFUSAL
    if text[-1] not in SENTENCE_END_CHARS:
        return EMPTY_OR_CUT_OFF
    if any(re.search(p, low) for p in HEDGE_CUES) or (_TOXIC_CLASS_WORD.search(low) and _NEUTRAL_CLASS_WORD.search(low)):
        return HEDGE
    return OTHER


def failure_kinds(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Counts of answer_failure_kind over rows with raw_answer, label and (optionally) prompt; every kind listed."""
    counts = dict.fromkeys(FAILURE_KINDS, 0)
    for r in rows:
        kind = answer_failure_kind(r.get("raw_answer"), r.get("label"), r.get("prompt"))
        if kind is not None:
            counts[kind] += 1
    return counts


# =========================================================================== 5. over the memes (the pages, the report)
GROUPS = ("all", TOXIC, NON_TOXIC, "correct", "wrong")   # all memes, by true label, by the answer's correctness


def cam_summary(groups: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """pipeline.queries.cam_caption_mass's groups, in GROUPS order, each with `above_share`: the share of memes
    whose CAM mass on the caption exceeds the caption's share of the area (Wilson 95%), and `sign_p`: the exact
    two-sided sign test of "mass > area" against 1/2 (the map neither favours nor avoids the caption)."""
    from scipy.stats import binomtest

    from pipeline.metrics import proportion_estimate
    out = []
    for name in GROUPS:
        g = groups.get(name)
        if not g or not g["n"]:
            continue
        n, above = int(g["n"]), int(g["above"])
        out.append(dict(group=name, n=n, above=above, above_share=proportion_estimate(above, n),
                        sign_p=float(binomtest(above, n, 0.5).pvalue), mass=g["mass"], area=g["area"],
                        ratio=g["ratio"], bins=dict(g.get("bins") or {})))
    return out


def answer_summary(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """pipeline.queries.answer_faithfulness's rows (per truth x correct) summed into GROUPS, each with
    `quote_share` (explanations quoting the caption, of the measured answers on memes with a caption) and
    `contradiction_share` (possible contradictions, of the measured answers stating a class), Wilson 95%."""
    from pipeline.metrics import proportion_estimate
    rows = list(rows)
    keys = ("n", "measured", "with_caption", "quotes", "with_class", "contradictions")
    out = []
    for name in GROUPS:
        pick = [r for r in rows if name == "all" or r["truth"] == name
                or (name == "correct" and r["correct"]) or (name == "wrong" and not r["correct"])]
        if not pick:
            continue
        s = {k: sum(int(r[k]) for r in pick) for k in keys}
        out.append(dict(group=name, **s, quote_share=proportion_estimate(s["quotes"], s["with_caption"]),
                        contradiction_share=proportion_estimate(s["contradictions"], s["with_class"])))
    return out
