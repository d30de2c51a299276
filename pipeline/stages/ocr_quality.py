"""OCR quality: the measures (normalize_text, edit_distance, char_error_rate) and the scoring of readings of
the real labelled memes against the committed transcription.

tests/data/ocr_transcriptions.json holds, per picture of ../shared/memes (key: path relative to
that folder), its SHA-256, label (toxic | neutral), the caption `text` ('' = caption-free) and the
`obscene` words of the caption (see its "_about" for the transcription rules). Only the text is
committed, never the pictures. Used by benchmarks/ocr_real.py and tests/test_ocr.py.

All measures are on `normalize_text` output (case-folded, ё->е, whitespace collapsed):
  CER              total Levenshtein edits / total reference characters, over captioned memes
                   (per label and for the corpus), punctuation counted;
  exact            captioned memes read exactly;
  word recall      reference words (runs of \\w) found among the read words, as multisets;
                   obscene words and all other words separately;
  hallucinated     non-space characters read from caption-free memes.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pipeline.config import PROJECT_ROOT

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



REPO = PROJECT_ROOT
TRANSCRIPTIONS = REPO / "tests" / "data" / "ocr_transcriptions.json"
REAL_MEMES = REPO.parent / "shared" / "memes"
LABELS = ("toxic", "neutral")

_WORD = re.compile(r"\w+", re.UNICODE)


def load_transcriptions(path: Path = TRANSCRIPTIONS) -> dict[str, dict[str, Any]]:
    """{relative path: {sha256, label, text, obscene, [note]}}."""
    return json.loads(path.read_text(encoding="utf-8"))["memes"]


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def changed_files(folder: Path, refs: dict[str, dict[str, Any]]) -> list[str]:
    """Transcribed pictures that are missing from `folder` or whose bytes changed."""
    return [rel for rel, r in refs.items() if not (folder / rel).is_file() or sha256_of(folder / rel) != r["sha256"]]


def words(text: str) -> list[str]:
    return _WORD.findall(normalize_text(text))


def score(readings: dict[str, str], refs: dict[str, dict[str, Any]], keys: Iterable[str] | None = None) -> dict[str, Any]:
    """Measures of `readings` ({relative path: OCR text}) against `refs` over `keys` (default: all readings)."""
    keys = list(readings if keys is None else keys)
    edits = Counter()
    chars = Counter()
    exact = captioned = halluc = caption_free = 0
    obscene_hit = obscene_all = other_hit = other_all = 0
    per_meme = {}
    for k in keys:
        ref, got = refs[k], readings[k]
        r, p = normalize_text(ref["text"]), normalize_text(got)
        if not r:
            caption_free += 1
            n = len("".join(p.split()))
            halluc += n
            per_meme[k] = dict(edits=n, chars=0)
            continue
        d = edit_distance(p, r)
        edits[ref["label"]] += d
        chars[ref["label"]] += len(r)
        captioned += 1
        exact += d == 0
        read = Counter(words(got))
        obscene = Counter(normalize_text(w) for w in ref["obscene"])
        others = Counter(words(ref["text"])) - obscene
        obscene_all += sum(obscene.values())
        obscene_hit += sum((obscene & read).values())
        other_all += sum(others.values())
        other_hit += sum((others & (read - obscene)).values())
        per_meme[k] = dict(edits=d, chars=len(r))
    cer = {lab: edits[lab] / chars[lab] if chars[lab] else float("nan") for lab in LABELS}
    return dict(
        cer_toxic=cer["toxic"], cer_neutral=cer["neutral"],
        cer=sum(edits.values()) / max(1, sum(chars.values())),
        exact=exact, captioned=captioned,
        obscene_recall=obscene_hit / obscene_all if obscene_all else float("nan"), obscene_words=obscene_all,
        other_recall=other_hit / other_all if other_all else float("nan"), other_words=other_all,
        hallucinated=halluc, caption_free=caption_free, per_meme=per_meme)
