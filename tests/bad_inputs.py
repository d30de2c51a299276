"""A corpus of awkward and broken inputs for the reliability tests, generated on the fly.

Nothing here is stored in the repository: every file is drawn with Pillow or written byte by byte
(crafted PNG chunks for the decompression bombs and the 16-bit RGB PNG), deterministically.

    cases = write_corpus(tmp_path / "memes")          # writes the folder, returns list[Case]
    data = BYTES["cmyk_jpeg"]()                        # one input's bytes, for direct load_rgb tests

Each `Case` says what the pipeline must do with it:
  outcome "ok"       -> one meme row (facts in `size`/`format`/`frames`, pixel checks in `pixels`,
                        given on the *upright* picture as (x fraction, y fraction, (r, g, b)));
  outcome "failure"  -> no meme, one `failures` row at `failure_path` with `error_type` and a
                        message containing `message`;
  outcome "conflict" -> one meme with label NULL and a LabelConflict failure.
"""
from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

TOXIC, NEUTRAL = "Негативно", "Нейтрально"

RED, BLUE, GREEN, WHITE = (255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 255, 255)


# ------------------------------------------------------------------------------- raw PNG writing
def png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def raw_png(width: int, height: int, bit_depth: int, colour_type: int, idat: bytes) -> bytes:
    """A PNG with the given header and an already zlib-compressed IDAT (which may not match the header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat)
            + png_chunk(b"IEND", b""))


# ------------------------------------------------------------------------------- byte makers
def _save(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _halves(size: tuple[int, int], left, right, vertical: bool = False) -> Image.Image:
    """Left/right (or top/bottom) halves in two colours."""
    w, h = size
    im = Image.new("RGB", size, left)
    box = (0, h // 2, w, h) if vertical else (w // 2, 0, w, h)
    ImageDraw.Draw(im).rectangle(box, fill=right)
    return im


def _noisy(size: tuple[int, int], seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


def zero_bytes() -> bytes:
    return b""


def truncated_jpeg() -> bytes:
    data = _save(_noisy((200, 150), 1), "JPEG", quality=90)
    return data[: int(len(data) * 0.6)]


def truncated_png() -> bytes:
    data = _save(_noisy((200, 150), 2), "PNG")
    return data[: int(len(data) * 0.6)]


def text_bytes() -> bytes:
    return "Привет! Это текстовый файл, а не картинка.\n".encode()


def png_bytes() -> bytes:
    """64x48, top half green, bottom half magenta (stored under a .jpg name in the corpus)."""
    return _save(_halves((64, 48), GREEN, (255, 0, 255), vertical=True), "PNG")


def pdf_bytes() -> bytes:
    return (b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
            b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")


def zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("meme.txt", "not an image")
    return buf.getvalue()


def bomb_header_png() -> bytes:
    """Declares 100000 x 100000 pixels (10 Gpx) with a tiny, short IDAT: refused on the header alone."""
    return raw_png(100_000, 100_000, 1, 0, zlib.compress(b"\x00" * 12_501 * 4))


def bomb_real_png() -> bytes:
    """A complete, valid 1-bit 9000 x 9000 PNG (81 Mpx) in about 10 KB."""
    row = b"\x00" + b"\x00" * (9000 // 8)
    return raw_png(9000, 9000, 1, 0, zlib.compress(row * 9000, 9))


def one_pixel_png() -> bytes:
    return _save(Image.new("RGB", (1, 1), (10, 200, 30)), "PNG")


def png16_gray() -> bytes:
    """16-bit greyscale (I;16), 64x16, black on the left to white on the right."""
    arr = np.linspace(0, 65535, 64)[None, :].repeat(16, 0).astype(np.uint16)
    return _save(Image.fromarray(arr), "PNG")


def png16_rgb() -> bytes:
    """48-bit RGB (16 bits per channel), 32x16, left half red, right half blue (crafted: Pillow cannot write it)."""
    px = [(65535, 0, 0)] * 16 + [(0, 0, 65535)] * 16
    row = b"\x00" + b"".join(struct.pack(">HHH", *p) for p in px)
    return raw_png(32, 16, 16, 2, zlib.compress(row * 16))


def cmyk_jpeg() -> bytes:
    """CMYK JPEG, 40x20, left half red, right half blue."""
    return _save(_halves((40, 20), RED, BLUE).convert("CMYK"), "JPEG", quality=95)


def palette_transparent_png() -> bytes:
    """Palette PNG, 40x40: transparent border (palette colour black), opaque red square in the middle."""
    im = Image.new("P", (40, 40), 0)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0, 0, 0] * 254)
    ImageDraw.Draw(im).rectangle((10, 10, 29, 29), fill=1)
    return _save(im, "PNG", transparency=0)


def grayscale_jpeg() -> bytes:
    """8-bit greyscale JPEG, 60x90: black top half, white bottom half."""
    return _save(_halves((60, 90), (0, 0, 0), WHITE, vertical=True).convert("L"), "JPEG", quality=95)


def animated_gif() -> bytes:
    """3 frames, 50x50: red, green, blue. Models must see the first (red)."""
    frames = [Image.new("RGB", (50, 50), c) for c in (RED, GREEN, BLUE)]
    return _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def webp_lossless() -> bytes:
    return _save(Image.new("RGB", (60, 40), (255, 128, 0)), "WEBP", lossless=True)


def exif_rotated_jpeg() -> bytes:
    """Stored 80x40, left half red / right half blue, EXIF Orientation 6 (rotate 90° clockwise to view):
    the upright picture is 40x80 with red on top and blue at the bottom."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(_halves((80, 40), RED, BLUE), "JPEG", quality=95, exif=exif.tobytes())


def huge_jpeg(width: int = 8000, height: int = 6000) -> bytes:
    """A 48 Mpx photo-sized JPEG: left half dark red, right half light blue, with a soft gradient."""
    grad = Image.linear_gradient("L").resize((width, height))
    r = Image.new("L", (width, height), 0)
    ImageDraw.Draw(r).rectangle((0, 0, width // 2, height), fill=170)
    b = Image.new("L", (width, height), 0)
    ImageDraw.Draw(b).rectangle((width // 2, 0, width, height), fill=230)
    g = grad.point(lambda v: v // 4)
    return _save(Image.merge("RGB", (r, g, b)), "JPEG", quality=80)


def small_png(colour: tuple[int, int, int], size: tuple[int, int] = (48, 32)) -> bytes:
    return _save(Image.new("RGB", size, colour), "PNG")


BYTES: dict[str, Callable[[], bytes]] = {f.__name__: f for f in (
    zero_bytes, truncated_jpeg, truncated_png, text_bytes, png_bytes, pdf_bytes, zip_bytes, bomb_header_png,
    bomb_real_png, one_pixel_png, png16_gray, png16_rgb, cmyk_jpeg, palette_transparent_png, grayscale_jpeg,
    animated_gif, webp_lossless, exif_rotated_jpeg)}


# ------------------------------------------------------------------------------- the corpus
@dataclass(frozen=True)
class Case:
    name: str
    paths: tuple[str, ...]                       # files written for it, relative to the memes root
    outcome: str                                 # ok | failure | conflict
    error_type: str | None = None
    message: str | None = None                   # a substring of the failure message (case-insensitive)
    failure_path: str | None = None              # defaults to paths[0]
    size: tuple[int, int] | None = None          # width, height as stored (before EXIF rotation)
    upright: tuple[int, int] | None = None       # size of the upright picture (defaults to size)
    format: str | None = None
    frames: int = 1
    pixels: tuple[tuple[float, float, tuple[int, int, int]], ...] = ()
    label: str | None = None                     # expected memes.label for ok cases
    note: str = ""

    @property
    def where(self) -> str:
        return self.failure_path or self.paths[0]

    @property
    def upright_size(self) -> tuple[int, int] | None:
        return self.upright or self.size


@dataclass
class Corpus:
    root: Path
    cases: list[Case] = field(default_factory=list)

    def case(self, name: str) -> Case:
        return next(c for c in self.cases if c.name == name)


def _write(root: Path, rel: str, data: bytes) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def write_corpus(root: str | Path, huge: bool = True) -> Corpus:
    """Write the bad-input memes folder under `root` and return what each file must lead to."""
    root = Path(root)
    (root / TOXIC).mkdir(parents=True, exist_ok=True)
    (root / NEUTRAL).mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []
    T, N = TOXIC, NEUTRAL

    def fail(name, rel, data, error_type, message, note=""):
        _write(root, rel, data)
        cases.append(Case(name, (rel,), "failure", error_type, message, note=note))

    def ok(name, rel, data, label, **facts):
        _write(root, rel, data)
        cases.append(Case(name, (rel,), "ok", label=label, **facts))

    fail("zero-byte file", f"{T}/пустой.jpg", zero_bytes(), "BadImage", "empty file (0 bytes)")
    fail("truncated JPEG", f"{T}/обрезанный.jpg", truncated_jpeg(), "BadImage", "truncated")
    fail("truncated PNG", f"{T}/обрезанный.png", truncated_png(), "BadImage", "not a readable image")
    fail("text file named .jpg", f"{T}/текст.jpg", text_bytes(), "BadImage", "look like a text file")
    fail("PDF named .png", f"{N}/документ.png", pdf_bytes(), "BadImage", "look like a PDF document")
    fail("ZIP named .png", f"{N}/архив.png", zip_bytes(), "BadImage", "look like a ZIP archive")
    fail("non-image file (.txt) in a label folder", f"{N}/описание.txt", text_bytes(), "BadImage",
         "look like a text file", note="every file in a label folder is tried; README/hidden files are ignored")
    fail("decompression bomb (header 100000x100000)", f"{T}/бомба.png", bomb_header_png(), "BadImage",
         "decompression bomb")
    fail("decompression bomb (valid 9000x9000 1-bit PNG, 10 KB)", f"{T}/бомба2.png", bomb_real_png(),
         "BadImage", "decompression bomb")

    ok("PNG bytes named .jpg", f"{T}/на самом деле png.jpg", png_bytes(), "toxic", size=(64, 48), format="PNG",
       pixels=((0.5, 0.2, GREEN), (0.5, 0.8, (255, 0, 255))), note="readable image: accepted, format PNG")
    ok("1x1 image", f"{T}/точка.png", one_pixel_png(), "toxic", size=(1, 1), format="PNG",
       pixels=((0.5, 0.5, (10, 200, 30)),))
    ok("16-bit greyscale PNG", f"{T}/16бит.png", png16_gray(), "toxic", size=(64, 16), format="PNG",
       pixels=((0.0, 0.5, (0, 0, 0)), (0.99, 0.5, WHITE)))
    ok("16-bit RGB PNG (48-bit)", f"{T}/16бит цвет.png", png16_rgb(), "toxic", size=(32, 16), format="PNG",
       pixels=((0.2, 0.5, RED), (0.8, 0.5, BLUE)))
    ok("CMYK JPEG", f"{N}/cmyk.jpg", cmyk_jpeg(), "non_toxic", size=(40, 20), format="JPEG",
       pixels=((0.2, 0.5, RED), (0.8, 0.5, BLUE)))
    ok("palette PNG with transparency", f"{N}/палитра.png", palette_transparent_png(), "non_toxic",
       size=(40, 40), format="PNG", pixels=((0.05, 0.05, WHITE), (0.5, 0.5, RED)),
       note="transparent pixels are composited on white")
    ok("greyscale JPEG", f"{N}/серый.jpg", grayscale_jpeg(), "non_toxic", size=(60, 90), format="JPEG",
       pixels=((0.5, 0.2, (0, 0, 0)), (0.5, 0.8, WHITE)))
    ok("animated GIF", f"{N}/анимация.gif", animated_gif(), "non_toxic", size=(50, 50), format="GIF", frames=3,
       pixels=((0.5, 0.5, RED),), note="models see the first frame")
    ok("WebP", f"{N}/картинка.webp", webp_lossless(), "non_toxic", size=(60, 40), format="WEBP",
       pixels=((0.5, 0.5, (255, 128, 0)),))
    ok("EXIF orientation 6 (rotate 90°)", f"{T}/повёрнутый.jpg", exif_rotated_jpeg(), "toxic", size=(80, 40),
       upright=(40, 80), format="JPEG", pixels=((0.5, 0.15, RED), (0.5, 0.85, BLUE)),
       note="thumbnail and model input upright; width/height stay as stored")
    if huge:
        ok("8000x6000 JPEG", f"{N}/огромное фото.jpg", huge_jpeg(), "non_toxic", size=(8000, 6000),
           format="JPEG", pixels=((0.25, 0.5, (170, None, 0)), (0.75, 0.5, (0, None, 230))),
           note="decoded at 1/2..1/8 scale by the JPEG decoder, then downscaled to 2048 px")
    ok("nested subfolders", f"{T}/а/б/в/глубоко.png", small_png((0, 128, 128)), "toxic", size=(48, 32),
       format="PNG", pixels=((0.5, 0.5, (0, 128, 128)),))
    ok("name with spaces, emoji and Cyrillic", f"{N}/мем с пробелами 😀 ёжик.png", small_png((128, 0, 128)),
       "non_toxic", size=(48, 32), format="PNG", pixels=((0.5, 0.5, (128, 0, 128)),))

    dup = small_png((200, 200, 0))
    _write(root, f"{N}/кот.png", dup)
    _write(root, f"{N}/копии/кот (копия).png", dup)
    cases.append(Case("same image twice in one label", (f"{N}/копии/кот (копия).png", f"{N}/кот.png"), "ok",
                      size=(48, 32), format="PNG", label="non_toxic", note="one meme, two meme_paths rows"))
    conflict = small_png((0, 0, 90))
    _write(root, f"{T}/спорный.png", conflict)
    _write(root, f"{N}/спорный тоже.png", conflict)
    cases.append(Case("same image in both labels", (f"{T}/спорный.png", f"{N}/спорный тоже.png"), "conflict",
                      "LabelConflict", "same image under different labels", size=(48, 32), format="PNG"))

    # Folder-level oddities.
    _write(root, "Разное/лишний.png", small_png((1, 2, 3)))
    cases.append(Case("unknown label folder", ("Разное/лишний.png",), "failure", "UnknownLabelFolder",
                      "not a label folder", failure_path="Разное/"))
    _write(root, "в корне.png", small_png((4, 5, 6)))
    cases.append(Case("file outside the label folders", ("в корне.png",), "failure", "NotInLabelFolder",
                      "not inside a label folder"))
    (root / T / "а" / "петля").symlink_to("..")      # -> Негативно itself
    cases.append(Case("symlink loop (to its own label folder)", (), "failure", "SymlinkLoop", "symlink loop",
                      failure_path=f"{T}/а/петля/"))
    (root / N / "наверх").symlink_to("..")           # -> the memes root (holds the other label folder)
    cases.append(Case("symlink loop (to the memes root)", (), "failure", "SymlinkLoop", "symlink loop",
                      failure_path=f"{N}/наверх/", note="must not rescan the other label folder as non_toxic"))
    (root / T / "пропавший.png").symlink_to("нет такого файла.png")
    cases.append(Case("dangling symlink", (), "failure", "FileNotFoundError", "cannot read file",
                      failure_path=f"{T}/пропавший.png"))
    os.mkfifo(root / N / "труба.png")
    cases.append(Case("named pipe (FIFO) named .png", (), "failure", "NotARegularFile", "not a regular file",
                      failure_path=f"{N}/труба.png", note="reading it would block forever"))
    (root / T / "README.md").write_text("ignored", encoding="utf-8")
    (root / N / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    return Corpus(root, cases)


# ------------------------------------------------------------------------------- running the CLI
REPO = Path(__file__).resolve().parent.parent
PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() else None


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a `python -m pipeline` child: offline, unbuffered, no progress bars."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", TQDM_DISABLE="1", PYTHONPATH=str(REPO))
    env.update(extra)
    return env


def precompute_argv(memes: str | Path, db: str | Path, *extra: str, stages: str = "ocr",
                    python_flags: tuple[str, ...] = ()) -> list[str]:
    """`python -m pipeline precompute` with the fast OCR-only settings the reliability tests use."""
    import sys
    return [PYTHON or sys.executable, *python_flags, "-m", "pipeline", "precompute", "--memes", str(memes),
            "--db", str(db), "--stages", stages, "--ocr-engine", "tesseract", "--device", "cpu", *extra]
