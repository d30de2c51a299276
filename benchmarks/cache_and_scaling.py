"""The precompute's cache and how its cost grows: whole CLI processes, tiny random models, real memes.

    .venv/bin/python benchmarks/cache_and_scaling.py cache      # cached rerun; one new meme     (~2 min)
    .venv/bin/python benchmarks/cache_and_scaling.py scaling    # 51, 102, 204 memes              (~8 min)
    .venv/bin/python benchmarks/cache_and_scaling.py imports    # what a cached rerun imports     (~1 min)
    .venv/bin/python benchmarks/cache_and_scaling.py loads      # model loads per run             (~1 min)
    .venv/bin/python benchmarks/cache_and_scaling.py ab --baseline-ref 8dbdc39^   # cached rerun, before (lazy imports) vs now
    .venv/bin/python benchmarks/cache_and_scaling.py scan       # rerun scan of 2000 JPEGs, probe vs known (~2 min)

Every run is `python -m pipeline precompute` as a user types it (all stages, --ocr-engine tesseract, the tiny
random-weight CLIP and Qwen2.5-VL from `python -m pipeline.devtools tiny-models`, --device cpu), timed as a
whole process (wall seconds, peak RSS from wait4). The memes are copied from --memes into a temporary
folder (never into the repository); bigger folders add copies of every meme re-encoded with one pixel
changed, so their bytes, and so their meme ids, differ.

cache:   a first run, then a rerun over the unchanged folder, which must import no model library, load no
         model and finish in <= 3 s; then one new meme is added and the rerun computes that meme only
         (the "N to compute" lines are printed).
scaling: the full precompute on a fresh cache at 51, 102 and 204 memes (seconds per meme should stay flat),
         plus a cached rerun and a one-new-meme rerun at each size (they must not grow with the cache).
scan:    in-process, no models: --scan-memes synthetic 600x600 JPEG memes (default 2000) are drawn into the scratch
         folder, scanned and stored (runner.store_scan, thumbnails included) in a real DuckDB file; then the
         rerun's scan is timed, interleaved x--repeats, as it was (dataset.scan decodes every file) and as it is
         (Store.known_image_infos + dataset.scan(known=...): every file hashed, only new bytes decoded).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent

from models_cpu import DEFAULT_MEMES, footer, header, load_avg, table  # noqa: E402

CACHED_RERUN_LIMIT_S = 3.0
SMOKE_OPTIONS = ["--ocr-engine", "tesseract", "--max-new-tokens", "24", "--max-pixels", str(112 * 112),
                 "--device", "cpu"]
PROBE = ("import sys, atexit; "
         "atexit.register(lambda: print('HEAVY-MODULES:', ','.join(sorted(m for m in "
         "('torch', 'transformers', 'pytorch_grad_cam', 'cv2', 'easyocr', 'sklearn') if m in sys.modules)) or 'none', "
         "file=sys.stderr)); "
         "from pipeline.cli import main; sys.exit(main(sys.argv[1:]))")


# --------------------------------------------------------------------------- inputs
def tiny_models(work: Path) -> dict[str, Path]:
    out = work / "tiny"
    if not (out / "tiny-random-qwen25vl" / "config.json").exists():
        subprocess.run([sys.executable, "-m", "pipeline.devtools", "tiny-models", str(out)], cwd=REPO, check=True,
                       stdout=subprocess.DEVNULL)
    return {"clip": out / "tiny-random-clip", "qwen": out / "tiny-random-qwen25vl"}


def changed_copy(src: Path, dst: Path, k: int) -> None:
    """`src` re-encoded with pixel (0, 0) changed by k (new bytes -> new meme id), same format."""
    from PIL import Image
    with Image.open(src) as im:
        im = im.convert("RGB")
        r, g, b = im.getpixel((0, 0))
        im.putpixel((0, 0), ((r + 37 * k) % 256, (g + 11 * k) % 256, b))
        if src.suffix.lower() in (".jpg", ".jpeg"):
            im.save(dst, "JPEG", quality=95)
        else:
            im.save(dst, "PNG")


def meme_folder(src: Path, dst: Path, copies: int) -> int:
    """dst/<label>/... with every meme of src once as is and (copies - 1) more times changed; returns the count."""
    if dst.exists():
        shutil.rmtree(dst)
    n = 0
    for label_dir in sorted(p for p in src.iterdir() if p.is_dir()):
        out = dst / label_dir.name
        out.mkdir(parents=True)
        for f in sorted(p for p in label_dir.iterdir() if p.is_file()):
            shutil.copy2(f, out / f.name)
            n += 1
            for k in range(1, copies):
                changed_copy(f, out / f"{f.stem}__copy{k}{f.suffix}", k)
                n += 1
    return n


# --------------------------------------------------------------------------- running the CLI
CODE = {"root": REPO}     # where `python -m pipeline` runs from; a snapshot with --snapshot


def snapshot_code(work: Path) -> Path:
    """A copy of pipeline/ as it is now: the runs are immune to edits made to the tree while they go on
    (a changed stage setting changes the cache key, and a 'cached' rerun would then compute again)."""
    dst = work / "code"
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(REPO / "pipeline", dst / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def precompute(memes: Path, db: Path, models: dict[str, Path], probe: bool = False) -> dict:
    """One `python -m pipeline precompute` process: wall seconds, peak RSS (GB), exit code, output."""
    args = ["precompute", "--memes", str(memes), "--db", str(db), "--clip-model", str(models["clip"]),
            "--vlm-model", str(models["qwen"]), *SMOKE_OPTIONS]
    cmd = [sys.executable, "-c", PROBE, *args] if probe else [sys.executable, "-m", "pipeline", *args]
    env = dict(os.environ, PYTHONPATH=str(CODE["root"]))
    out_f, err_f = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=CODE["root"], env=env, stdout=out_f, stderr=err_f)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    out_f.seek(0), err_f.seek(0)
    out, err = out_f.read(), err_f.read()
    if proc.returncode != 0:
        print(out[-3000:], err[-3000:], file=sys.stderr)
        raise SystemExit(f"precompute failed with exit code {proc.returncode}")
    heavy = re.search(r"HEAVY-MODULES: (\S+)", err)
    return dict(wall=wall, rss=usage.ru_maxrss / 1024 ** 2, out=out, err=err,
                loaded_weights="Loading weights" in err, heavy=heavy.group(1) if heavy else None,
                stages=stage_seconds(out), todo=[ln for ln in out.splitlines() if "to compute" in ln])


def stage_seconds(out: str) -> dict[str, tuple[int, int, float]]:
    """From the CLI's summary table: stage -> (done, cached, seconds)."""
    rows = {}
    for ln in out.splitlines():
        m = re.match(r"^(ocr|clip|vlm|cam)\s+(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+)", ln)
        if m:
            rows[m.group(1)] = (int(m.group(2)), int(m.group(3)), float(m.group(5)))
    return rows


# --------------------------------------------------------------------------- sections
def section_cache(a) -> None:
    work = a.work
    models = tiny_models(work)
    memes = work / "memes-cache"
    n = meme_folder(a.memes, memes, 1)
    db = work / "cache.duckdb"
    db.unlink(missing_ok=True)
    header("Cache: reruns of the whole CLI (tiny random models, all stages, tesseract)",
           f"{n} real memes copied to a temporary folder.")
    first = precompute(memes, db, models)
    reruns = [precompute(memes, db, models) for _ in range(3)]
    probe = precompute(memes, db, models, probe=True)
    extra = sorted((memes / "Негативно").iterdir())[0] if (memes / "Негативно").exists() else None
    src = extra or next(p for p in memes.rglob("*") if p.is_file())
    changed_copy(src, src.with_name("zz_new_meme.png"), 1)
    added = precompute(memes, db, models)
    after_added = precompute(memes, db, models)
    rows = [["first run (nothing cached)", f"{first['wall']:.1f}", f"{first['rss']:.2f}", "yes", "—"]]
    for i, r in enumerate(reruns, 1):
        rows.append([f"cached rerun #{i}", f"{r['wall']:.2f}", f"{r['rss']:.2f}", "yes" if r["loaded_weights"] else "no",
                     "—"])
    rows.append(["cached rerun, import probe", f"{probe['wall']:.2f}", f"{probe['rss']:.2f}",
                 "yes" if probe["loaded_weights"] else "no", probe["heavy"]])
    rows.append(["one new meme added", f"{added['wall']:.1f}", f"{added['rss']:.2f}",
                 "yes" if added["loaded_weights"] else "no", "—"])
    rows.append(["cached rerun after that", f"{after_added['wall']:.2f}", f"{after_added['rss']:.2f}",
                 "yes" if after_added["loaded_weights"] else "no", "—"])
    table(["run", "wall s (whole process)", "peak RSS GB", "model weights loaded", "heavy modules imported"], rows)
    best = min(r["wall"] for r in reruns)
    computed = [i for i, r in enumerate(reruns, 1) if r["todo"] and any("all " not in t for t in r["todo"])]
    if computed:
        verdict = f"NOT CACHED: rerun(s) {computed} computed something (did a stage setting change meanwhile?)"
    elif probe["heavy"] not in ("none", None):
        verdict = f"IMPORTS {probe['heavy']}"
    else:
        verdict = "OK" if best <= CACHED_RERUN_LIMIT_S else "TOO SLOW"
    print(f"\nCached rerun: best {best:.2f} s of 3, median {sorted(r['wall'] for r in reruns)[1]:.2f} s "
          f"(limit {CACHED_RERUN_LIMIT_S:.0f} s): {verdict}.")
    print("\nThe one-new-meme run's progress lines:\n")
    print("```")
    print("\n".join(added["todo"]) or "(none)")
    print("```")
    footer()


def section_scaling(a) -> None:
    work = a.work
    models = tiny_models(work)
    sizes = [int(s) for s in a.copies.split(",")]
    header("Scaling: the full precompute on a fresh cache (tiny random models, all stages, tesseract)",
           "Memes = the real ones plus re-encoded copies with one pixel changed.")
    rows = []
    for copies in sizes:
        memes = work / f"memes-x{copies}"
        n = meme_folder(a.memes, memes, copies)
        db = work / f"scale-x{copies}.duckdb"
        db.unlink(missing_ok=True)
        full = precompute(memes, db, models)
        rerun = precompute(memes, db, models)
        new = sorted(p for p in memes.rglob("*") if p.is_file())[0]
        changed_copy(new, new.with_name("zz_new_meme.png"), 99)
        one = precompute(memes, db, models)
        st = full["stages"]
        rows.append([n, f"{full['wall']:.1f}", f"{full['wall'] / n:.3f}",
                     *(f"{st[s][2] / n:.3f}" if s in st else "—" for s in ("ocr", "clip", "vlm", "cam")),
                     f"{full['rss']:.2f}", f"{rerun['wall']:.2f}", f"{one['wall']:.1f}",
                     f"{db.stat().st_size / 1e6:.1f}", load_avg().split("/")[0]])
        print("  " + " | ".join(str(x) for x in rows[-1]), file=sys.stderr, flush=True)
    table(["memes", "full run s", "s/meme", "ocr s/meme", "clip s/meme", "vlm s/meme", "cam s/meme", "peak RSS GB",
           "cached rerun s", "+1 meme rerun s", "DB MB", "load (1 min) after"], rows)
    footer()


def section_imports(a) -> None:
    """What a fully cached rerun pays for at import: `python -X importtime`, the top cumulative entries."""
    work = a.work
    models = tiny_models(work)
    memes = work / "memes-imports"
    meme_folder(a.memes, memes, 1)
    db = work / "imports.duckdb"
    db.unlink(missing_ok=True)
    precompute(memes, db, models)
    args = ["precompute", "--memes", str(memes), "--db", str(db), "--clip-model", str(models["clip"]),
            "--vlm-model", str(models["qwen"]), *SMOKE_OPTIONS]
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "pipeline", *args], cwd=CODE["root"],
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(CODE["root"])))
    entries = []
    for ln in r.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", ln)
        if m and len(m.group(3)) <= 2:
            entries.append((int(m.group(2)) / 1e6, m.group(4)))
    header("Imports of a fully cached rerun (python -X importtime, top-level modules)")
    table(["module", "cumulative import s"], [[name, f"{s:.3f}"] for s, name in sorted(entries, reverse=True)[:12]])
    footer()


def section_ab(a) -> None:
    """Cached rerun: this tree's code vs the same code with --baseline-files taken from --baseline-ref, interleaved."""
    if not a.baseline_ref:
        sys.exit("ab needs --baseline-ref (e.g. HEAD) and --baseline-files (the files whose old version to time)")
    work = a.work
    models = tiny_models(work)
    new_root = CODE["root"]
    old_root = work / "code-baseline"
    if old_root.exists():
        shutil.rmtree(old_root)
    shutil.copytree(new_root, old_root)
    for rel in a.baseline_files.split(","):
        old = subprocess.run(["git", "-C", str(REPO), "show", f"{a.baseline_ref}:{rel}"], capture_output=True,
                             text=True, check=True).stdout
        (old_root / rel).write_text(old)
    memes = work / "memes-ab"
    n = meme_folder(a.memes, memes, 1)
    db = work / "ab.duckdb"
    db.unlink(missing_ok=True)
    header(f"Cached rerun, before/after: {a.baseline_files} at {a.baseline_ref} vs now",
           f"{n} memes; tiny random models; whole CLI processes, interleaved old/new x{a.repeats}.")
    precompute(memes, db, models)
    walls: dict[str, list[float]] = {"before": [], "after": []}
    rss: dict[str, float] = {}
    heavy: dict[str, str] = {}
    for _ in range(a.repeats):
        for label, root in (("before", old_root), ("after", new_root)):
            CODE["root"] = root
            r = precompute(memes, db, models, probe=True)
            if any("all " not in t for t in r["todo"]):
                sys.exit(f"{label}: the rerun computed something ({r['todo']}): the two versions' cache keys differ")
            walls[label].append(r["wall"])
            rss[label], heavy[label] = r["rss"], r["heavy"]
    CODE["root"] = new_root
    rows = [[label, " / ".join(f"{w:.2f}" for w in walls[label]), f"{min(walls[label]):.2f}", f"{rss[label]:.2f}",
             heavy[label]] for label in ("before", "after")]
    table(["code", "wall s per rerun (interleaved)", "best", "peak RSS GB", "heavy modules imported"], rows)
    print(f"\nbefore / after (best): {min(walls['before']) / min(walls['after']):.1f}x")
    footer()


def synthetic_jpeg_folder(dst: Path, n: int, side: int = 600) -> int:
    """dst/Негативно and dst/Нейтрально with n distinct side x side JPEG memes (photo-like, captioned):
    a few drawn memes as bases, each copy with its number stamped on it, so every file's bytes differ."""
    from PIL import ImageDraw

    from pipeline.devtools.synthetic_memes import caption_pairs, draw_meme
    if dst.exists():
        shutil.rmtree(dst)
    bases = [draw_meme(top, bottom, size=(side, side), seed=k) for k, (top, bottom) in enumerate(caption_pairs(16))]
    folders = [dst / "Негативно", dst / "Нейтрально"]
    for d in folders:
        d.mkdir(parents=True)
    for i in range(n):
        im = bases[i % len(bases)].copy()
        draw = ImageDraw.Draw(im)
        draw.rectangle((8, 8, 120, 34), fill=(i * 37 % 256, i * 91 % 256, i * 13 % 256))
        draw.text((12, 14), f"#{i:05d}", fill="white")
        im.save(folders[i % 2] / f"meme {i:05d}.jpg", "JPEG", quality=90)
    return n


def section_scan(a) -> None:
    """A rerun's scan over an unchanged, fully stored folder: every file decoded (before) vs hashed only (after)."""
    from pipeline import dataset, runner
    from pipeline.store import Store
    work = a.work
    memes = work / "memes-scan"
    t0 = time.perf_counter()
    n = synthetic_jpeg_folder(memes, a.scan_memes)
    mb = sum(p.stat().st_size for p in memes.rglob("*.jpg")) / 1e6
    drawn = time.perf_counter() - t0
    db = work / "scan.duckdb"
    db.unlink(missing_ok=True)
    store = Store(db)
    t0 = time.perf_counter()
    first = dataset.scan(memes)
    first_scan = time.perf_counter() - t0
    run_id = store.start_run("precompute", {}, str(first.root), {}, "cpu", None)
    t0 = time.perf_counter()
    n_new, problems = runner.store_scan(store, first, run_id, store.known_image_infos())
    stored = time.perf_counter() - t0
    if n_new != n or problems:
        sys.exit(f"the first scan stored {n_new} of {n} memes, problems: {problems[:3]}")
    header(f"Rerun scan: {n} synthetic 600x600 JPEG memes ({mb:.0f} MB), all stored already",
           f"In-process; the files are in the page cache (read by the first scan). Drawing them took {drawn:.0f} s, "
           f"the first scan {first_scan:.1f} s, storing them with thumbnails {stored:.1f} s.")
    times: dict[str, list[float]] = {"before": [], "known": [], "after": []}
    results = {}
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        results["before"] = dataset.scan(memes)                       # as before: every file decoded
        times["before"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        known = store.known_image_infos()                             # now: one query ...
        times["known"].append(time.perf_counter() - t0)
        results["after"] = dataset.scan(memes, known=known)           # ... and hashing only
        times["after"].append(time.perf_counter() - t0)
    before, after = results["before"], results["after"]
    same = ({k: (m.paths, m.info) for k, m in before.memes.items()} == {k: (m.paths, m.info) for k, m in after.memes.items()}
            and before.failures == after.failures)
    rows = [["before: dataset.scan(root)", before.probed, " / ".join(f"{t:.2f}" for t in times["before"]),
             f"{min(times['before']):.2f}", f"{min(times['before']) / n * 1e3:.2f}"],
            ["after: known_image_infos() + dataset.scan(root, known=...)", after.probed,
             " / ".join(f"{t:.2f}" for t in times["after"]), f"{min(times['after']):.2f}",
             f"{min(times['after']) / n * 1e3:.2f}"]]
    table(["rerun scan", "files decoded", "s per run (interleaved)", "best s", "ms per meme (best)"], rows)
    print(f"\nof which Store.known_image_infos(): best {min(times['known']):.3f} s. "
          f"before / after (best): {min(times['before']) / min(times['after']):.1f}x. "
          f"Same memes, paths, image facts and failures: {'yes' if same else 'NO'}.")
    footer()


LOAD_PROBE = """
import sys, collections
import transformers
calls = collections.Counter()
def counting(cls_name, original):
    def wrapper(source, *args, **kwargs):
        calls[(cls_name, str(kwargs.get("dtype")).removeprefix("torch."))] += 1
        return original(source, *args, **kwargs)
    return wrapper
for name in ("AutoModel", "AutoModelForImageTextToText"):
    cls = getattr(transformers, name)
    cls.from_pretrained = counting(name, cls.from_pretrained)
from pipeline.cli import main
code = main(sys.argv[1:])
print("MODEL-LOADS:", dict(calls), file=sys.stderr)
sys.exit(code)
"""


def section_loads(a) -> None:
    """How many times a run loads model weights (from_pretrained calls), with the default precision and fp32."""
    work = a.work
    models = tiny_models(work)
    memes = work / "memes-loads"
    meme_folder(a.memes, memes, 1)
    header("Model loads per run (from_pretrained calls; tiny random models, all stages, fresh cache)")
    rows = []
    for precision in ("auto", "fp32"):
        db = work / f"loads-{precision}.duckdb"
        db.unlink(missing_ok=True)
        args = ["precompute", "--memes", str(memes), "--db", str(db), "--clip-model", str(models["clip"]),
                "--vlm-model", str(models["qwen"]), *SMOKE_OPTIONS, "--precision", precision, "--limit", "3"]
        r = subprocess.run([sys.executable, "-c", LOAD_PROBE, *args], cwd=CODE["root"], capture_output=True, text=True,
                           env=dict(os.environ, PYTHONPATH=str(CODE["root"])))
        found = re.search(r"MODEL-LOADS: (.*)", r.stderr)
        rows.append([f"--precision {precision}", found.group(1) if found else f"probe failed: {r.stderr[-300:]}"])
    table(["run", "from_pretrained calls (class, dtype) -> count"], rows)
    print("\nCLIP and CAM share `load_clip` (lru_cache keyed by model, device, dtype): one CLIP load when their "
          "precisions agree; CAM always runs fp32 (gradients), so a bf16 CLIP stage means a second, fp32 load.")
    footer()


SECTIONS = {"cache": section_cache, "scaling": section_scaling, "imports": section_imports, "loads": section_loads,
            "ab": section_ab, "scan": section_scan}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sections", nargs="+", choices=[*SECTIONS, "all"])
    p.add_argument("--memes", type=Path, default=DEFAULT_MEMES, help="labelled meme folder (default ../shared/memes)")
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: a new temporary one)")
    p.add_argument("--copies", default="1,2,4", help="folder sizes for `scaling`, as multiples of --memes")
    p.add_argument("--baseline-ref", default=None, help="`ab`: git ref of the baseline (e.g. HEAD)")
    p.add_argument("--baseline-files", default="pipeline/stages/clip.py,pipeline/stages/cam.py,pipeline/hf.py,pipeline/stages/vlm.py,"
                   "pipeline/cli.py", help="`ab`: files taken from --baseline-ref")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--scan-memes", type=int, default=2000, help="`scan`: how many synthetic JPEG memes")
    p.add_argument("--no-snapshot", action="store_true",
                   help="run the tree's pipeline/ directly (default: a copy taken at start, immune to edits meanwhile)")
    a = p.parse_args(argv)
    if set(a.sections) != {"scan"} and not a.memes.is_dir():     # `scan` draws its own memes
        sys.exit(f"no meme folder at {a.memes}: pass --memes (a folder with label subfolders)")
    tmp = None
    if a.work is None:
        tmp = tempfile.TemporaryDirectory(prefix="vlmemes-cache-bench-")
        a.work = Path(tmp.name)
    a.work.mkdir(parents=True, exist_ok=True)
    if not a.no_snapshot:
        CODE["root"] = snapshot_code(a.work)
    try:
        for name in (list(SECTIONS) if "all" in a.sections else a.sections):
            SECTIONS[name](a)
    finally:
        if tmp is not None:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
