"""Synthetic memes with KNOWN Russian captions, for tests and benchmarks (no real memes needed).

A meme here is a photo-like background (gradient + random blurred shapes + noise, all seeded) with
a caption in a bold condensed font (DejaVuSansCondensed-Bold, else DejaVuSans-Bold), drawn the way
meme generators draw it: white letters with a black outline, one to three lines, at the top and/or
bottom. `style="band"` draws the other common layout instead: black text on a white strip above
the picture. Text-free images use the same backgrounds.

    im = draw_meme("КОГДА ПРИШЁЛ НА РАБОТУ", "А ТАМ ОПЯТЬ СОВЕЩАНИЕ", seed=3)
    truth = write_meme_folder(tmp_path / "memes", n_toxic=3, n_non_toxic=3, seed=0)
    # {Path(".../Негативно/мем 00.png"): "ТЫ ПРОСТО НИКТО\nИ ЗВАТЬ ТЕБЯ НИКАК", ...}

Everything is deterministic for a given seed; images are small (400x300 by default) so a folder
of a dozen memes is written in well under a second.
"""
from __future__ import annotations

import random
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FONT_CANDIDATES = ("DejaVuSansCondensed-Bold.ttf", "DejaVuSans-Bold.ttf")
DEFAULT_SIZE = (400, 300)
TOXIC_FOLDER = "Негативно"
NON_TOXIC_FOLDER = "Нейтрально"

# Mildly rude vs. harmless captions (no obscenities: the repository must not carry any).
TOXIC_CAPTIONS = (
    ("ТЫ ПРОСТО НИКТО", "И ЗВАТЬ ТЕБЯ НИКАК"),
    ("КОГДА СОСЕД ОПЯТЬ СВЕРЛИТ", "ЧТОБ ТЕБЕ ПУСТО БЫЛО"),
    ("ЗАКРОЙ РОТ", None),
    (None, "ИДИ ОТСЮДА, НЕУДАЧНИК"),
    ("ОН ДУМАЛ, ЧТО УМНЫЙ", "А ОКАЗАЛСЯ ДУРАКОМ"),
    ("ТВОЁ МНЕНИЕ", "НИКОГО НЕ ИНТЕРЕСУЕТ"),
    (None, "ТУПОЙ КАК ПРОБКА"),
    ("ВСЕ ВОКРУГ ИДИОТЫ", "ОДИН Я ГЕНИЙ"),
    ("ПОШЁЛ ВОН", "ПРЕДАТЕЛЬ"),
    ("НЕНАВИЖУ ПОНЕДЕЛЬНИКИ", "И ТЕБЯ ТОЖЕ"),
    ("СЛАБАК", None),
    ("ЖАЛКОЕ ЗРЕЛИЩЕ", "ДУШЕРАЗДИРАЮЩЕЕ ЗРЕЛИЩЕ"),
)
NEUTRAL_CAPTIONS = (
    ("КОГДА ПРИШЁЛ НА РАБОТУ", "А ТАМ ОПЯТЬ СОВЕЩАНИЕ"),
    ("ДОБРОЕ УТРО", "ХОРОШЕГО ДНЯ"),
    (None, "КОТ ПРОСИТ ЕСТЬ В ПЯТЬ УТРА"),
    ("ПЯТНИЦА", "НАКОНЕЦ-ТО"),
    ("МАМА, Я ПОКУШАЛ", None),
    ("КОГДА СДАЛ ЭКЗАМЕН", "С ПЕРВОЙ ПОПЫТКИ"),
    ("ЛЕТО БЛИЗКО", "ГОТОВИМ ПАНАМКИ"),
    (None, "ЖЕЛАЕМ ВСЕМ ПОДПИСЧИКАМ СЧАСТЬЯ"),
    ("ЧАЙ С ЛИМОНОМ", "ЛУЧШЕЕ ЛЕКАРСТВО"),
    ("ЗДАРОВА, БАНДИТЫ", None),
    ("ВЫХОДНЫЕ ПРОЛЕТЕЛИ", "СЛИШКОМ БЫСТРО"),
    ("ТЕРПЕНИЕ И ТРУД", "ВСЁ ПЕРЕТРУТ"),
)


@lru_cache(maxsize=1)
def caption_font_path() -> Path:
    """The bold condensed caption font (falls back to DejaVuSans-Bold)."""
    for name in FONT_CANDIDATES:
        if (FONT_DIR / name).exists():
            return FONT_DIR / name
    raise FileNotFoundError(f"no DejaVu bold font in {FONT_DIR}: apt-get install fonts-dejavu-core")


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(caption_font_path()), size)


def photo_background(size: tuple[int, int] = DEFAULT_SIZE, seed: int = 0) -> Image.Image:
    """A busy photo-like picture: two-colour gradient, blurred random shapes (some near-white), noise."""
    w, h = size
    rng = np.random.default_rng(seed)
    r = random.Random(seed)
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    angle = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (xx * np.cos(angle) + yy * np.sin(angle))
    t = (t - t.min()) / max(float(np.ptp(t)), 1.0)
    arr = c0[None, None, :] * (1 - t[..., None]) + c1[None, None, :] * t[..., None]
    im = Image.fromarray(arr.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(im)
    for _ in range(r.randint(6, 14)):
        x0, y0 = r.randint(-w // 4, w), r.randint(-h // 4, h)
        x1, y1 = x0 + r.randint(w // 10, w // 2), y0 + r.randint(h // 10, h // 2)
        # A quarter of the shapes are near-white/light grey: the hard case behind white captions.
        colour = (tuple(r.randint(200, 255) for _ in range(3)) if r.random() < 0.25
                  else tuple(r.randint(0, 255) for _ in range(3)))
        kind = r.choice(("ellipse", "rectangle", "polygon", "lines"))
        if kind == "ellipse":
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        elif kind == "rectangle":
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        elif kind == "polygon":
            draw.polygon([(r.randint(0, w), r.randint(0, h)) for _ in range(r.randint(3, 6))], fill=colour)
        else:
            for _ in range(r.randint(3, 8)):
                draw.line((r.randint(0, w), r.randint(0, h), r.randint(0, w), r.randint(0, h)),
                          fill=colour, width=r.randint(1, 4))
    im = im.filter(ImageFilter.GaussianBlur(r.uniform(0.8, 3.0)))
    noisy = np.asarray(im, dtype=np.float32) + rng.normal(0, r.uniform(4, 14), (h, w, 3))
    return Image.fromarray(noisy.clip(0, 255).astype(np.uint8), "RGB")


def wrap_caption(text: str, font: ImageFont.FreeTypeFont, max_width: int) -> list[str]:
    """Greedy word wrap; a single word wider than max_width stays on its own line."""
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(lines[-1] + " " + word) <= max_width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def _fit(text: str, width: int, start_size: int, max_lines: int = 3, min_size: int = 12
         ) -> tuple[ImageFont.FreeTypeFont, list[str]]:
    """The largest font size (<= start_size) at which `text` wraps into <= max_lines lines that fit."""
    size = start_size
    while True:
        font = _font(size)
        lines = wrap_caption(text, font, width)
        if size <= min_size or (len(lines) <= max_lines and all(font.getlength(li) <= width for li in lines)):
            return font, lines
        size -= 2


def _draw_block(draw: ImageDraw.ImageDraw, lines: list[str], font: ImageFont.FreeTypeFont, width: int,
                y: int, fill, stroke: int, stroke_fill) -> int:
    """Draw centred lines starting at y; returns the y below the block."""
    asc, desc = font.getmetrics()
    step = asc + desc + stroke * 2
    for line in lines:
        x = (width - font.getlength(line)) / 2
        draw.text((x, y), line, font=font, fill=fill, stroke_width=stroke, stroke_fill=stroke_fill)
        y += step
    return y


def _block_height(lines: list[str], font: ImageFont.FreeTypeFont, stroke: int) -> int:
    asc, desc = font.getmetrics()
    return len(lines) * (asc + desc + stroke * 2)


def draw_meme(top: str | None, bottom: str | None, size: tuple[int, int] = DEFAULT_SIZE, seed: int = 0,
              style: str = "outline") -> Image.Image:
    """A meme with the given captions. style="outline": white text with black outline over the
    picture (top and/or bottom); style="band": black text on a white strip above the picture
    (top and bottom captions are then stacked in that strip)."""
    w, h = size
    r = random.Random(seed + 7919)
    if style == "band":
        text = " ".join(t for t in (top, bottom) if t)
        font, lines = _fit(text, int(w * 0.9), start_size=max(14, int(h * r.uniform(0.07, 0.1))))
        band = _block_height(lines, font, 0) + font.size
        im = Image.new("RGB", (w, h), "white")
        im.paste(photo_background((w, h - band), seed), (0, band))
        _draw_block(ImageDraw.Draw(im), lines, font, w, font.size // 2, "black", 0, None)
        return im
    if style != "outline":
        raise ValueError(f"style must be 'outline' or 'band', not {style!r}")
    im = photo_background(size, seed)
    draw = ImageDraw.Draw(im)
    start = max(14, int(h * r.uniform(0.09, 0.12)))
    margin = max(4, h // 40)
    if top:
        font, lines = _fit(top, int(w * 0.92), start)
        stroke = max(2, font.size // 12)
        _draw_block(draw, lines, font, w, margin, "white", stroke, "black")
    if bottom:
        font, lines = _fit(bottom, int(w * 0.92), start)
        stroke = max(2, font.size // 12)
        y = h - margin - _block_height(lines, font, stroke) - font.getmetrics()[1] // 2
        _draw_block(draw, lines, font, w, y, "white", stroke, "black")
    return im


def expected_text(top: str | None, bottom: str | None) -> str:
    """The caption text as the OCR should read it (top, then bottom, one caption per line)."""
    return "\n".join(t for t in (top, bottom) if t)


def draw_textless(seed: int = 0, size: tuple[int, int] = DEFAULT_SIZE) -> Image.Image:
    """A photo-like picture with no text at all (for counting hallucinated characters)."""
    return photo_background(size, seed + 104729)


def caption_pairs(n: int, seed: int = 0, toxic: bool | None = None) -> list[tuple[str | None, str | None]]:
    """n (top, bottom) caption pairs, drawn with a seed from the toxic, neutral or both lists."""
    pool = list(TOXIC_CAPTIONS if toxic else NEUTRAL_CAPTIONS if toxic is False
                else TOXIC_CAPTIONS + NEUTRAL_CAPTIONS)
    r = random.Random(seed)
    out: list[tuple[str | None, str | None]] = []
    while len(out) < n:
        r.shuffle(pool)
        out.extend(pool[: n - len(out)])
    return out


def write_meme_folder(root: str | Path, n_toxic: int, n_non_toxic: int, seed: int = 0,
                      size: tuple[int, int] = DEFAULT_SIZE, n_textless: int = 0) -> dict[Path, str]:
    """Write root/Негативно and root/Нейтрально with captioned memes (PNG and JPEG, Cyrillic names
    with spaces among them) and return {path: expected caption text}. `n_textless` extra text-free
    pictures go to Нейтрально with expected text ""."""
    root = Path(root)
    truth: dict[Path, str] = {}
    for folder, n, toxic, offset in ((TOXIC_FOLDER, n_toxic, True, 0), (NON_TOXIC_FOLDER, n_non_toxic, False, 1000)):
        d = root / folder
        d.mkdir(parents=True, exist_ok=True)
        for i, (top, bottom) in enumerate(caption_pairs(n, seed + offset, toxic)):
            s = seed * 10007 + offset + i
            im = draw_meme(top, bottom, size=size, seed=s)
            name = f"мем {i:02d}.png" if i % 2 == 0 else f"meme_{i:02d}.jpg"
            path = d / name
            _save(im, path)
            truth[path] = expected_text(top, bottom)
    if n_textless:
        d = root / NON_TOXIC_FOLDER
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n_textless):
            path = d / f"без текста {i:02d}.jpg"
            _save(draw_textless(seed * 10007 + 5000 + i, size), path)
            truth[path] = ""
    return truth


def _save(im: Image.Image, path: Path) -> None:
    if path.suffix.lower() in (".jpg", ".jpeg"):
        im.save(path, "JPEG", quality=90)
    else:
        im.save(path, "PNG")
