"""Scanning the labelled meme folder: ids, labels, image facts, conflicts and bad files.

    memes/<label folder>/[any/nested/folders/]<file>

The top-level folder names map to labels (pipeline.config.label_map). A meme's id is the
SHA-256 of its bytes, so the same picture under two names is one meme with two paths, and
under two labels a *label conflict* (recorded, label left NULL, never silently resolved).
Anything that cannot be used is returned as a failure with a reason, and the scan goes on.

Every file is read and hashed on every scan (that is how changed bytes are noticed), but only
files whose hash is not in `known` are decoded: `known` (meme_id -> ImageInfo, from
Store.known_image_infos) holds the memes an earlier run already probed and stored, so a rerun
over a cached folder decodes only what is new. `known` may also be a lookup function
(Store.known_image_infos itself): it is then asked, once per KNOWN_LOOKUP_FILES files hashed, for
the ids of those files only, so a scan of a small folder costs as much on a cache of a million
memes as on an empty one (the infos of every stored meme are never loaded).
"""
from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from pipeline.config import label_map
from pipeline.errors import VlmemesError
from pipeline.images import BadImage, ImageInfo, phash_of, probe

KNOWN_LOOKUP_FILES = 512               # files hashed per lookup of their ids (known = a function)
KNOWN_LOOKUP_BYTES = 128 * 2**20         # ... or fewer, when their bytes (kept until then) reach this
IGNORED_NAMES = {"readme.md", "readme.txt", "readme", ".gitkeep", "thumbs.db", "desktop.ini"}


class ScanError(VlmemesError):
    """The folder itself is unusable (missing, empty, no label folders)."""


@dataclass
class ScannedMeme:
    meme_id: str
    paths: list[tuple[str, str]]           # (relative path, folder label), sorted
    info: ImageInfo
    n_bytes: int
    abs_path: Path                          # first path, for reading the bytes again

    @property
    def labels(self) -> set[str]:
        return {label for _, label in self.paths}

    @property
    def label_conflict(self) -> bool:
        return len(self.labels) > 1

    @property
    def label(self) -> str | None:
        return None if self.label_conflict else next(iter(self.labels))

    @property
    def rel_path(self) -> str:
        return self.paths[0][0]


@dataclass
class ScanResult:
    root: Path
    memes: dict[str, ScannedMeme] = field(default_factory=dict)
    failures: list[dict] = field(default_factory=list)   # {stage, path, meme_id, error_type, message}
    files_seen: int = 0
    probed: int = 0                         # files decoded (bytes not in `known`), bad ones included
    known: dict[str, ImageInfo] = field(default_factory=dict)   # memes of this scan found in `known`

    @property
    def conflicts(self) -> list[ScannedMeme]:
        return [m for m in self.memes.values() if m.label_conflict]

    def sorted_memes(self) -> list[ScannedMeme]:
        return sorted(self.memes.values(), key=lambda m: m.rel_path)


def _failure(rel: str, error_type: str, message: str, meme_id: str | None = None) -> dict:
    return dict(stage="scan", path=rel, meme_id=meme_id, error_type=error_type, message=message)


def _walk_files(top: Path):
    """Yield files under `top`, following directory symlinks but never entering a directory twice,
    nor one that leads back to a folder above (a symlink to the memes root would otherwise
    rescan the other label folder under this label)."""
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
        st = os.stat(dirpath)
        key = (st.st_dev, st.st_ino)
        if key in seen:
            dirnames[:] = []
            yield Path(dirpath), None   # signals a loop / repeated directory
            continue
        seen.add(key)
        here = os.path.realpath(dirpath)
        keep = []
        for d in sorted(d for d in dirnames if not d.startswith(".")):
            full = os.path.join(dirpath, d)
            target = os.path.realpath(full)
            if os.path.islink(full) and (here == target or here.startswith(target.rstrip(os.sep) + os.sep)):
                yield Path(full), None  # a symlink to this folder or one above it: a loop
            else:
                keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            yield Path(dirpath) / name, name


Known = Mapping[str, ImageInfo] | Callable[[list[str]], Mapping[str, ImageInfo]]


def scan(root: str | Path, mapping: dict[str, str] | None = None, known: Known | None = None) -> ScanResult:
    """Scan the labelled folder. `known`: image facts of memes already stored (meme_id -> ImageInfo),
    or a function giving them for a list of ids; files with those bytes are hashed but not decoded
    again (they are in result.known). None or {}: every file is probed."""
    root = Path(root)
    mapping = mapping or label_map()
    lookup = known if callable(known) else None
    infos: Mapping[str, ImageInfo] = {} if lookup is not None else (known or {})
    if not root.exists():
        raise ScanError(f"memes folder {root} does not exist; put your memes in {root}/Негативно and {root}/Нейтрально")
    if not root.is_dir():
        raise ScanError(f"memes folder {root} is not a directory")
    result = ScanResult(root=root.resolve())
    label_dirs = []
    for entry in sorted(root.iterdir()):
        rel = entry.name
        if entry.name.startswith(".") or entry.name.casefold() in IGNORED_NAMES:
            continue
        if entry.is_dir():
            label = mapping.get(entry.name.casefold())
            if label is None:
                result.failures.append(_failure(rel + "/", "UnknownLabelFolder",
                    f"folder {rel!r} is not a label folder (known: {', '.join(sorted(set(mapping)))}); skipped"))
            else:
                label_dirs.append((entry, label))
        else:
            result.failures.append(_failure(rel, "NotInLabelFolder", "file is not inside a label folder; skipped"))
    if not label_dirs:
        raise ScanError(f"memes folder {root} has no label folders: expected Негативно/ and Нейтрально/ (or toxic/ and non_toxic/)")

    pending: list[tuple] = []               # (path, rel, label, bytes or a failure, meme_id), in walk order
    pending_bytes = 0
    for folder, label in label_dirs:
        for path, name in _walk_files(folder):
            rel = path.relative_to(root).as_posix()
            if name is None:
                pending.append((path, rel, label, _failure(rel + "/", "SymlinkLoop",
                                "directory already visited (symlink loop); skipped"), None))
                continue
            if name.startswith(".") or name.casefold() in IGNORED_NAMES:
                continue
            result.files_seen += 1
            data = _read_file(path, rel)
            meme_id = hashlib.sha256(data).hexdigest() if isinstance(data, bytes) else None
            pending.append((path, rel, label, data, meme_id))
            pending_bytes += len(data) if isinstance(data, bytes) else 0
            if lookup is None or len(pending) >= KNOWN_LOOKUP_FILES or pending_bytes >= KNOWN_LOOKUP_BYTES:
                _add_files(result, pending, infos, lookup)
                pending, pending_bytes = [], 0
    _add_files(result, pending, infos, lookup)
    if result.files_seen == 0:
        raise ScanError(f"no files found under the label folders of {root}")
    return result


def _read_file(path: Path, rel: str) -> bytes | dict:
    """The file's bytes, or the failure (a dict) saying why they cannot be read."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):   # reading a FIFO would block forever
            return _failure(rel, "NotARegularFile", "not a regular file (a pipe, socket or device); skipped")
        return path.read_bytes()
    except OSError as e:
        return _failure(rel, type(e).__name__, f"cannot read file: {e.strerror or e}")


def _add_files(result: ScanResult, pending: list[tuple], infos: Mapping[str, ImageInfo],
               lookup: Callable[[list[str]], Mapping[str, ImageInfo]] | None) -> None:
    """Add the files read (in walk order); with `lookup`, first ask it for their ids not seen yet."""
    if lookup is not None:
        ask = sorted({m for *_, m in pending if m is not None and m not in result.memes})
        infos = lookup(ask) if ask else {}
    for path, rel, label, data, meme_id in pending:
        if isinstance(data, dict):
            result.failures.append(data)
        else:
            _add_file(result, path, rel, label, data, meme_id, infos)


def _add_file(result: ScanResult, path: Path, rel: str, label: str, data: bytes, meme_id: str,
              known: Mapping[str, ImageInfo]) -> None:
    seen = result.memes.get(meme_id)
    if seen is not None:                    # the same bytes again in this scan: one more path
        seen.paths.append((rel, label))
        seen.paths.sort()
        return
    info = known.get(meme_id)               # stored by an earlier run: these exact bytes probed fine
    if info is not None:
        if info.phash is None:              # stored before the scan hashed images: hashed once now
            try:
                info = replace(info, phash=phash_of(data))
            except Exception:               # noqa: BLE001 - it decoded fine before; keep it, unhashed
                pass
        result.known[meme_id] = info
    else:
        result.probed += 1
        try:
            info = probe(data)              # new bytes: header + full first-frame decode
        except BadImage as e:
            result.failures.append(_failure(rel, "BadImage", str(e), meme_id))
            return
    result.memes[meme_id] = ScannedMeme(meme_id, [(rel, label)], info, len(data), path)


def conflict_failures(result: ScanResult) -> list[dict]:
    return [_failure(m.rel_path, "LabelConflict",
                     "same image under different labels: " + "; ".join(f"{p} ({l})" for p, l in m.paths)
                     + " — label left empty, fix the folders", m.meme_id)
            for m in result.conflicts]
