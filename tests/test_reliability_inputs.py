"""Reliability, input side: the bad-input corpus (tests/bad_inputs.py) through the real precompute,
huge photos under a memory bound, unusable memes folders and database paths, changed files.

Every case must be either handled (a meme with the right facts and an upright thumbnail) or recorded
in `failures` with a clear reason, while the rest of the run finishes and nothing else is lost.
The precompute runs as a real process (`python -m pipeline precompute --stages ocr --ocr-engine
tesseract`) on a real DuckDB file; docs/reliability.md lists the cases and outcomes.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import bad_inputs
import pytest
from bad_inputs import NEUTRAL, TOXIC, child_env, precompute_argv
from PIL import Image

from pipeline.config import MODEL_MAX_SIDE, THUMBNAIL_MAX_SIDE
from pipeline.stages.base import MemeInput
from pipeline.store import Store

HEAVY_MODULES = ("torch", "transformers", "easyocr", "cv2", "open_clip", "pytorch_grad_cam")


def run(argv: list[str], timeout: float = 240, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=child_env(),
                          cwd=bad_inputs.REPO, **kw)


def close_to(actual, expected, tol: int) -> bool:
    return all(e is None or abs(a - e) <= tol for a, e in zip(actual, expected))


def check_pixels(im: Image.Image, case: bad_inputs.Case, tol: int) -> list[str]:
    im = im.convert("RGB")
    problems = []
    for fx, fy, rgb in case.pixels:
        xy = (min(int(fx * im.width), im.width - 1), min(int(fy * im.height), im.height - 1))
        got = im.getpixel(xy)
        if not close_to(got, rgb, tol):
            problems.append(f"{case.name}: pixel at {xy} of {im.size} is {got}, expected {rgb}")
    return problems


def same_shape(size: tuple[int, int], upright: tuple[int, int]) -> bool:
    """Same orientation and aspect ratio (within rounding of a downscale)."""
    (w, h), (uw, uh) = size, upright
    return (w >= h) == (uw >= uh) and abs(w / h - uw / uh) <= 0.05 * (uw / uh) + 1.0 / min(w, h)


# ------------------------------------------------------------------------------- the corpus run
@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory):
    """The corpus, one real precompute over it, and what it printed."""
    base = tmp_path_factory.mktemp("bad-inputs")
    corpus = bad_inputs.write_corpus(base / "memes")
    db = base / "cache.duckdb"
    proc = run(precompute_argv(corpus.root, db))
    return corpus, db, proc


def test_corpus_run_finishes_and_reports_every_problem(corpus_run):
    corpus, db, proc = corpus_run
    assert proc.returncode == 1, f"bad files must make the exit code 1, got {proc.returncode}\n{proc.stderr[-3000:]}"
    store = Store(db, create=False)
    (status, counts, finished), = store.query("SELECT status, counts, finished_at FROM runs")
    n_memes = sum(c.outcome in ("ok", "conflict") for c in corpus.cases)
    assert status == "failed" and finished is not None
    assert json.loads(counts)["ocr"] | {"seconds": 0} == dict(model="tesseract", done=n_memes, cached=0, failed=0,
                                                              seconds=0, error=None)
    assert "done  cached  failed" in proc.stdout and "run 1: failed" in proc.stdout
    # Every accepted meme was OCR'd: one bad file never stops the others.
    assert store.query("SELECT count(*) FROM memes")[0][0] == n_memes
    assert store.query("SELECT count(*) FROM ocr")[0][0] == n_memes
    assert store.query("SELECT count(*) FROM failures WHERE stage <> 'scan'")[0][0] == 0
    # Each scan problem is also printed, one line per file.
    for case in corpus.cases:
        if case.outcome == "failure":
            assert f"[scan] {case.where}: {case.error_type}" in proc.stderr, case.name


def test_bad_files_are_failures_with_clear_reasons(corpus_run):
    corpus, db, _ = corpus_run
    store = Store(db, create=False)
    rows = store.query("SELECT path, error_type, message FROM failures WHERE stage = 'scan'")
    by_path = {}
    for path, error_type, message in rows:
        by_path.setdefault(path, []).append((error_type, message))
    expected = {c.where: c for c in corpus.cases if c.outcome in ("failure", "conflict")}
    assert set(by_path) == set(expected), "failures must be exactly the bad inputs (no spurious ones)"
    problems = []
    for where, case in expected.items():
        (error_type, message), = by_path[where]
        if error_type != case.error_type or case.message.casefold() not in message.casefold():
            problems.append(f"{case.name}: got {error_type}: {message!r}, expected {case.error_type}: …{case.message}…")
        if "<_io." in message or "object at 0x" in message:
            problems.append(f"{case.name}: message carries a Python object repr: {message!r}")
    assert not problems, "\n".join(problems)
    # Nothing of a failed file reached the memes: its path is in no meme_paths row.
    stored_paths = {r[0] for r in store.query("SELECT rel_path FROM meme_paths")}
    assert not stored_paths & {c.where for c in corpus.cases if c.outcome == "failure"}


def test_readable_odd_images_are_memes_with_upright_thumbnails(corpus_run):
    corpus, db, _ = corpus_run
    store = Store(db, create=False)
    memes = {r[0]: r[1:] for r in store.query(
        "SELECT p.rel_path, m.label, m.label_conflict, m.width, m.height, m.format, m.n_frames, m.thumbnail, o.text "
        "FROM meme_paths p JOIN memes m USING (meme_id) LEFT JOIN ocr o USING (meme_id)")}
    problems = []
    for case in corpus.cases:
        if case.outcome not in ("ok", "conflict"):
            continue
        label, conflict, w, h, fmt, frames, thumb, text = memes[case.paths[0]]
        if (w, h, fmt, frames) != (*case.size, case.format, case.frames):
            problems.append(f"{case.name}: stored {(w, h, fmt, frames)}, expected {(*case.size, case.format, case.frames)}")
        if case.outcome == "ok" and (label, conflict) != (case.label, False):
            problems.append(f"{case.name}: label {(label, conflict)}, expected {(case.label, False)}")
        if text is None:
            problems.append(f"{case.name}: no OCR row")
        im = Image.open(io.BytesIO(thumb))
        if im.format != "JPEG" or max(im.size) > THUMBNAIL_MAX_SIDE or not same_shape(im.size, case.upright_size):
            problems.append(f"{case.name}: thumbnail {im.format} {im.size}, upright original is {case.upright_size}")
        problems += check_pixels(im, case, tol=48)
    assert not problems, "\n".join(problems)


def test_model_input_is_upright_rgb_and_bounded(corpus_run):
    """MemeInput.image, what every stage sees: RGB, upright (pixels checked), long side <= MODEL_MAX_SIDE."""
    corpus, _, _ = corpus_run
    problems = []
    for case in corpus.cases:
        if case.outcome != "ok":
            continue
        im = MemeInput("x", corpus.root / case.paths[0], case.paths[0], case.label).image
        uw, uh = case.upright_size
        expected = (uw, uh) if max(uw, uh) <= MODEL_MAX_SIDE else None
        if im.mode != "RGB" or (expected and im.size != expected) or max(im.size) > MODEL_MAX_SIDE \
                or not same_shape(im.size, (uw, uh)):
            problems.append(f"{case.name}: model input {im.mode} {im.size}, upright original {(uw, uh)}")
        problems += check_pixels(im, case, tol=40 if case.format == "JPEG" else 2)
    assert not problems, "\n".join(problems)
    huge = MemeInput("x", corpus.root / corpus.case("8000x6000 JPEG").paths[0], "", None).image
    assert huge.size == (MODEL_MAX_SIDE, MODEL_MAX_SIDE * 3 // 4)


def test_duplicates_conflicts_and_odd_names_keep_every_path(corpus_run):
    corpus, db, _ = corpus_run
    store = Store(db, create=False)
    paths = dict(store.query("SELECT rel_path, meme_id FROM meme_paths"))
    expected_paths = {p for c in corpus.cases if c.outcome in ("ok", "conflict") for p in c.paths}
    assert set(paths) == expected_paths, "exactly the readable files, each once (no path seen through a symlink loop)"
    for rel in expected_paths:   # ids are the SHA-256 of the bytes, names with emoji/Cyrillic/spaces intact
        assert paths[rel] == hashlib.sha256((corpus.root / rel).read_bytes()).hexdigest(), rel

    dup = corpus.case("same image twice in one label")
    assert paths[dup.paths[0]] == paths[dup.paths[1]]
    (label, conflict, rel), = store.query("SELECT label, label_conflict, rel_path FROM memes WHERE meme_id = ?",
                                          [paths[dup.paths[0]]])
    assert (label, conflict, rel) == ("non_toxic", False, sorted(dup.paths)[0])

    both = corpus.case("same image in both labels")
    assert paths[both.paths[0]] == paths[both.paths[1]]
    labels = store.query("SELECT label FROM meme_paths WHERE meme_id = ? ORDER BY label", [paths[both.paths[0]]])
    assert labels == [("non_toxic",), ("toxic",)]
    assert store.query("SELECT label, label_conflict FROM memes WHERE meme_id = ?",
                       [paths[both.paths[0]]]) == [(None, True)]


# ------------------------------------------------------------------------------- memory bound
RSS_SCRIPT = """
import json, sys
from pipeline import dataset, images
if sys.argv[2] == "full-decode":      # the control: what decoding without the JPEG draft would cost
    images._reduce_for_decode = lambda im, side: None
def peak_mib():   # VmHWM, not ru_maxrss: the latter keeps the parent's peak across fork + exec
    line = next(ln for ln in open("/proc/self/status") if ln.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024
base = peak_mib()
scan = dataset.scan(sys.argv[1])                                 # probe: header + first-frame decode
meme = next(iter(scan.memes.values()))
thumb = images.encode_jpeg(images.load_rgb(meme.abs_path, max_side=768))   # the thumbnail, as store_scan does
model = images.load_rgb(meme.abs_path)                           # MemeInput.image, what the stages get
print(json.dumps(dict(base=base, peak=peak_mib(), model=model.size, thumb=len(thumb))))
"""
PEAK_RSS_BOUND_MIB = 250   # one full-resolution RGB decode of 8000x6000 is 137 MiB; decode + a copy is 275


def test_huge_photo_is_downscaled_within_a_memory_bound(corpus_run, tmp_path):
    corpus, _, _ = corpus_run
    folder = tmp_path / "memes" / NEUTRAL
    folder.mkdir(parents=True)
    shutil.copy(corpus.root / corpus.case("8000x6000 JPEG").paths[0], folder / "огромное фото.jpg")
    measured = {}
    for mode in ("draft", "full-decode"):
        proc = run([bad_inputs.PYTHON or "python", "-c", RSS_SCRIPT, str(tmp_path / "memes"), mode], timeout=120)
        assert proc.returncode == 0, proc.stderr
        measured[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    used = measured["draft"]["peak"] - measured["draft"]["base"]
    control = measured["full-decode"]["peak"] - measured["full-decode"]["base"]
    print(f"peak RSS over baseline: {used:.0f} MiB with the JPEG draft, {control:.0f} MiB with full decoding")
    assert measured["draft"]["model"] == [2048, 1536]
    assert used < PEAK_RSS_BOUND_MIB, f"scan + thumbnail + model input of an 8000x6000 JPEG used {used:.0f} MiB"
    assert control > PEAK_RSS_BOUND_MIB, "the bound must be one that full-resolution decoding would break"


# ------------------------------------------------------------------------------- unusable folders
@pytest.mark.parametrize("make, message", [
    (lambda root: None, "does not exist"),
    (lambda root: root.mkdir(), "has no label folders"),
    (lambda root: (root / "Разное").mkdir(parents=True), "has no label folders"),
    (lambda root: [(root / d).mkdir(parents=True) for d in (TOXIC, NEUTRAL)], "no files found"),
], ids=["missing", "empty", "only-unknown-folders", "empty-label-folders"])
def test_unusable_memes_folder_is_a_clear_error(tmp_path, make, message):
    root = tmp_path / "memes"
    make(root)
    proc = run(precompute_argv(root, tmp_path / "cache.duckdb"), timeout=120)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last and str(root) in last, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert Store(tmp_path / "cache.duckdb", create=False).query("SELECT count(*) FROM runs") == [(0,)]


# ------------------------------------------------------------------------------- unusable --db
def _unprivileged() -> list[str]:
    """A command prefix that runs the child as `nobody` when the tests run as root (root may write
    anywhere, so a read-only directory would not be read-only for it)."""
    if os.getuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv (util-linux): cannot drop privileges for this check")
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.fixture
def open_dir():
    """A temporary directory the unprivileged child can reach (pytest's tmp_path is root-only)."""
    d = Path(tempfile.mkdtemp(prefix="vlmemes-rel-"))
    d.chmod(0o755)
    yield d
    for p in (d, *d.rglob("*")):
        if not p.is_symlink():
            p.chmod(0o755 if p.is_dir() else 0o644)
    shutil.rmtree(d)


def _db_missing_dir(d: Path) -> Path:
    return d / "no such dir" / "cache.duckdb"


def _db_readonly_dir(d: Path) -> Path:
    (d / "ro").mkdir()
    (d / "ro").chmod(0o555)
    return d / "ro" / "cache.duckdb"


def _db_readonly_file(d: Path) -> Path:
    Store(d / "cache.duckdb")
    (d / "cache.duckdb").chmod(0o444)
    return d / "cache.duckdb"


def _db_sqlite_file(d: Path) -> Path:
    import sqlite3
    with sqlite3.connect(d / "cache.duckdb") as con:
        con.execute("CREATE TABLE notes (x)")
    con.close()
    return d / "cache.duckdb"


def _db_text_file(d: Path) -> Path:
    (d / "cache.duckdb").write_text("meme_id,label\n", encoding="utf-8")
    return d / "cache.duckdb"


def _db_empty_file(d: Path) -> Path:
    (d / "cache.duckdb").touch()
    return d / "cache.duckdb"


def _db_is_dir(d: Path) -> Path:
    (d / "cache.duckdb").mkdir()
    return d / "cache.duckdb"


@pytest.mark.parametrize("make, message, unprivileged", [
    (_db_missing_dir, "does not exist; create it or choose another --db", False),
    (_db_readonly_dir, "is not writable; choose another --db", True),
    (_db_readonly_file, "is read-only; choose another --db", True),
    (_db_sqlite_file, "is not a DuckDB database file (it is a SQLite database)", False),
    (_db_text_file, "is not a DuckDB database file (it starts with", False),
    (_db_empty_file, "is not a DuckDB database file (it is empty)", False),
    (_db_is_dir, "is a directory; give a file path", False),
], ids=["missing-dir", "read-only-dir", "read-only-file", "sqlite-file", "text-file", "empty-file", "directory"])
def test_unusable_db_is_refused_before_any_model_loads(open_dir, make, message, unprivileged):
    db = make(open_dir)
    before = db.read_bytes() if db.is_file() else None
    argv = precompute_argv(open_dir / "memes", db, stages="ocr,clip,vlm,cam", python_flags=("-X", "importtime"))
    proc = run((_unprivileged() if unprivileged else []) + argv, timeout=120)
    messages = [ln for ln in proc.stderr.splitlines() if not ln.startswith("import time:")]
    imported = {ln.split("|")[-1].strip() for ln in proc.stderr.splitlines() if ln.startswith("import time:")}
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert messages == [messages[0]] and messages[0].startswith("error: ") and message in messages[0], messages
    assert "duckdb" in imported, "the import log must be read correctly"
    heavy = sorted(m for m in imported if m.split(".")[0] in HEAVY_MODULES)
    assert not heavy, f"refusing a bad --db must not import model libraries: {heavy[:5]}"
    if before is not None:
        assert db.read_bytes() == before, "the file must be left exactly as it was"
    assert not db.with_name(db.name + ".wal").exists()


# ------------------------------------------------------------------------------- changed files
def test_changed_file_between_runs_end_to_end(tmp_path):
    """Run 1; change one file and delete another; run 2; restore both; run 3 (all real processes)."""
    root = tmp_path / "memes"
    a, b, c = root / TOXIC / "a.png", root / NEUTRAL / "b.png", root / NEUTRAL / "c.png"
    for path, colour in ((a, (200, 0, 0)), (b, (0, 200, 0)), (c, (0, 0, 200))):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bad_inputs.small_png(colour, (120, 80)))
    db = tmp_path / "cache.duckdb"
    sha = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    assert run(precompute_argv(root, db)).returncode == 0
    old_a, old_a_bytes, old_b_bytes, id_b, id_c = sha(a), a.read_bytes(), b.read_bytes(), sha(b), sha(c)

    a.write_bytes(bad_inputs.small_png((201, 0, 0), (120, 80)))   # edited in place: new bytes, new id
    b.unlink()
    second = run(precompute_argv(root, db))
    assert second.returncode == 0, second.stderr
    store = Store(db, create=False)
    memes = {r[0]: r[1:] for r in store.query("SELECT meme_id, retired, last_seen_run_id, thumbnail IS NOT NULL FROM memes")}
    assert memes[old_a] == (True, 1, True), "the old version is kept, retired, with its thumbnail"
    assert memes[id_b] == (True, 1, True), "a deleted file's meme is kept, retired"
    assert memes[sha(a)] == (False, 2, True) and memes[id_c] == (False, 2, True)
    assert dict(store.query("SELECT rel_path, meme_id FROM meme_paths")) == {
        f"{TOXIC}/a.png": sha(a), f"{NEUTRAL}/c.png": id_c}
    ocr_runs = dict(store.query("SELECT meme_id, run_id FROM ocr"))
    assert ocr_runs == {old_a: 1, id_b: 1, id_c: 1, sha(a): 2}, "old results kept; only the new version computed"
    assert json.loads(store.query("SELECT counts FROM runs WHERE run_id = 2")[0][0])["ocr"]["cached"] == 1

    new_a = sha(a)
    a.write_bytes(old_a_bytes)                                   # both changes undone
    b.write_bytes(old_b_bytes)
    third = run(precompute_argv(root, db))
    assert third.returncode == 0 and "all 3 results cached, nothing to compute" in third.stdout
    assert dict(store.query("SELECT meme_id, retired FROM memes")) == {
        old_a: False, id_b: False, id_c: False, new_a: True}, "restored files come back without recomputing"
    assert store.query("SELECT count(*) FROM ocr") == [(4,)]
