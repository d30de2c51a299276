"""Scale: the dashboard and a cached rerun on synthetic caches of 100k and 1M memes, and the cache's size.

    .venv/bin/python benchmarks/dashboard_scale.py [--sizes 100000,1000000] [--rerun-sizes 10000,1000000]
                                                   [--dir /tmp/vlmemes-scale] [--repeat 3] [--rebuild]
                                                   [--skip pages,rerun,thumbnails]

Prints four tables, with the machine line and the load average:

  build      the synthetic caches (`python -m pipeline.devtools synth-db`, reused when present unless
             --rebuild): seconds, peak memory of the build, file size, bytes per meme;
  storage    bytes per meme by table and column (pipeline.queries.storage_by_column: the storage blocks
             each column's segments use; "other" = indexes, catalog, free blocks);
  pages      every dashboard page on each cache (benchmarks/dashboard_pages.py's measure(), in a fresh
             process per size: every page drawn once on a 200-meme cache first, as a running server
             has; then "first" = the first visit on the measured cache, nothing memoised for it, and
             "warm" = the median of --repeat repeat visits), the process's RSS after all pages and its
             peak; target <= 1 s per first visit, <= 1 GB resident;
  rerun      a fully cached `vlmemes precompute --stages ocr --ocr-engine tesseract --memes <12
             synthetic memes>` on a copy of each cache (the first run there adds the 12 memes and
             retires the others, once; the second is measured): the precompute's own seconds (imports
             excluded) and the parts that could grow with the cache (the scan's lookup of stored
             memes, close_abandoned_runs, store_scan, the cached-ids lookup of each variant, the
             metrics summary with its fingerprint);
  thumbnails bytes per stored thumbnail at --thumbnail-side 384 / 256 / 160 (quality 85), on synthetic
             memes drawn by pipeline.devtools.synthetic_memes (400x300 .. 800x600 px) and on the
             shared real memes when present.

Synthetic thumbnails are 128 px JPEGs (quality 65, ~3.3 KB) shared by template with a few unique
bytes each, smaller than a real cache's (384 px, quality 85): see the thumbnails table for those.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dashboard_load import load_avg, machine_line  # noqa: E402

TARGET_FIRST_S = 1.0
TARGET_RSS_MB = 1024
WARMUP_SIZE = 200
THUMB_SIDES = (384, 256, 160)
SHARED_MEMES = REPO.parent / "shared" / "memes"


def _cache(directory: Path, n: int) -> Path:
    return directory / f"synth-{n}.duckdb"


def build(directory: Path, n: int, rebuild: bool) -> dict:
    """The synthetic cache of n memes (its own process); seconds and peak MB, None when reused."""
    db = _cache(directory, n)
    if db.exists() and not rebuild:
        return {"n": n, "seconds": None, "peak_mb": None, "file_mb": db.stat().st_size / 2**20}
    code = ("import resource, sys, time; from pipeline.devtools.synth_db import synth_db; t = time.perf_counter(); "
            f"synth_db({str(db)!r}, {n}, overwrite=True); "
            "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    out = subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, capture_output=True, text=True)
    seconds, peak = (float(x) for x in out.stdout.split()[-2:])       # after synth-db's own lines
    return {"n": n, "seconds": seconds, "peak_mb": peak, "file_mb": db.stat().st_size / 2**20}


def storage(db: Path) -> dict:
    import duckdb

    from pipeline import queries
    con = duckdb.connect(str(db), read_only=True)
    try:
        n = con.execute("SELECT count(*) FROM memes").fetchall()[0][0]
        s = queries.storage_by_column(con)
    finally:
        con.close()
    return {"n": n, "file": db.stat().st_size, **s}


# ----------------------------------------------------------------------------------------- pages
def pages_child(db: Path, directory: Path, repeat: int) -> dict:
    import dashboard_pages
    result = dashboard_pages.measure(db, _cache(directory, WARMUP_SIZE), repeat)
    return result


# ----------------------------------------------------------------------------------------- rerun
TIMED = (("pipeline.store", "Store.known_image_infos"), ("pipeline.dataset", "scan"),
         ("pipeline.store", "Store.close_abandoned_runs"), ("pipeline.store", "Store.start_run"),
         ("pipeline.runner", "store_scan"), ("pipeline.store", "Store.cached_meme_ids"),
         ("pipeline.store", "Store.register_variants"), ("pipeline.summary", "write"),
         ("pipeline.store", "Store.update_run"))


def rerun_child(db: Path, memes: Path) -> dict:
    """One precompute in this process with the parts of TIMED timed (seconds summed over calls)."""
    import importlib

    times: dict[str, float] = {}
    for module_name, attr in TIMED:
        module = importlib.import_module(module_name)
        owner, _, name = attr.rpartition(".")
        target = getattr(module, owner) if owner else module
        original = getattr(target, name)

        def timed(*a, _original=original, _key=attr, **k):
            t0 = time.perf_counter()
            try:
                return _original(*a, **k)
            finally:
                times[_key] = times.get(_key, 0.0) + time.perf_counter() - t0
        setattr(target, name, timed)
    from pipeline import runner
    runner.library_versions = lambda: {"python": "benchmark"}     # subprocess calls, not the cache's cost
    from pipeline.cli import main
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        code = main(["precompute", "--memes", str(memes), "--db", str(db), "--stages", "ocr",
                     "--ocr-engine", "tesseract"])
    total = time.perf_counter() - t0
    return {"code": code, "total": total, "parts": times,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def rerun(directory: Path, n: int, memes: Path) -> dict:
    """First run (adds the memes, retires the rest), then the measured fully cached rerun, on a copy."""
    copy = directory / f"rerun-{n}.duckdb"
    shutil.copyfile(_cache(directory, n), copy)
    try:
        out = {}
        for key in ("first", "cached"):
            proc = subprocess.run([sys.executable, __file__, "--rerun-child", str(copy), "--memes", str(memes)],
                                  cwd=REPO, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr[-3000:])
            out[key] = json.loads(proc.stdout.strip().splitlines()[-1])
        return out
    finally:
        for p in (copy, copy.with_name(copy.name + ".wal"), copy.with_name(copy.name + ".lock"),
                  copy.with_name(copy.name + ".progress.json")):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


# ----------------------------------------------------------------------------------------- thumbnails
def thumbnail_sizes(folders: dict[str, Path]) -> dict[str, dict[int, float]]:
    """Mean bytes of the thumbnail pipeline.images.thumbnail makes, per folder and side."""
    from pipeline.config import IMAGE_EXTENSIONS
    from pipeline.images import BadImage, thumbnail
    out = {}
    for name, folder in folders.items():
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        sizes = {}
        for side in THUMB_SIDES:
            got = []
            for f in files:
                with contextlib.suppress(BadImage, OSError):
                    got.append(len(thumbnail(f, side)))
            sizes[side] = statistics.fmean(got) if got else float("nan")
        out[f"{name} ({len(files)} files)"] = sizes
    return out


def rerun_folder(root: Path) -> Path:
    """The 12 synthetic memes of the test suite (400x300)."""
    from pipeline.devtools.synthetic_memes import write_meme_folder
    write_meme_folder(root, n_toxic=6, n_non_toxic=6, seed=0)
    return root


def synthetic_folder(root: Path) -> Path:
    """40 synthetic memes at four sizes (400x300 to 800x600)."""
    from pipeline.devtools.synthetic_memes import draw_meme
    rerun_folder(root)
    sizes = ((400, 300), (640, 480), (600, 800), (800, 600))
    for k in range(28):
        draw_meme("КОГДА ПРИШЁЛ НА РАБОТУ", "А ТАМ ОПЯТЬ СОВЕЩАНИЕ" if k % 2 else None, size=sizes[k % 4],
                  seed=100 + k).save(root / "Нейтрально" / f"big {k:02d}.jpg", quality=90)
    return root


# ----------------------------------------------------------------------------------------- report
def _mb(x: float | None) -> str:
    return "reused" if x is None else f"{x:.0f}"


def print_build(rows: list[dict]) -> None:
    print(f"\n{'memes':>9} {'build s':>8} {'build peak MB':>14} {'file MB':>8} {'bytes/meme':>11}")
    for r in rows:
        secs = "reused" if r["seconds"] is None else f"{r['seconds']:.0f}"
        print(f"{r['n']:>9,} {secs:>8} {_mb(r['peak_mb']):>14} {r['file_mb']:>8.0f} "
              f"{r['file_mb'] * 2**20 / r['n']:>11,.0f}")


def print_storage(s: dict, top: int = 14) -> None:
    n, cols = s["n"], s["columns"]
    total = s["used_blocks"] * s["block_size"]
    print(f"\nstorage of {n:,} memes: file {s['file'] / 2**20:,.0f} MiB, used blocks {total / 2**20:,.0f} MiB "
          f"= {total / n:,.0f} bytes/meme")
    per_table: dict[str, int] = {}
    for t, _c, b in cols:
        per_table[t] = per_table.get(t, 0) + b
    other = total - sum(per_table.values())
    print(f"  {'table':<14} {'bytes/meme':>11} {'share':>6}")
    for t, b in sorted(per_table.items(), key=lambda kv: -kv[1]) + [("other", other)]:
        print(f"  {t:<14} {b / n:>11,.0f} {b / total:>6.1%}")
    print(f"  {'table.column':<24} {'bytes/meme':>11} {'share':>6}")
    for t, c, b in cols[:top]:
        print(f"  {t + '.' + c:<24} {b / n:>11,.0f} {b / total:>6.1%}")


def print_pages(results: dict[int, dict]) -> None:
    print(f"\n{'memes':>9} {'page':<24} {'first s':>8} {'warm s':>7} {'SQL':>5}   (target: first <= {TARGET_FIRST_S} s)")
    for n, r in results.items():
        for page, t in r["pages"].items():
            flag = "" if t["cold"] <= TARGET_FIRST_S else "  over"
            print(f"{n:>9,} {page:<24} {t['cold']:>8.2f} {t['warm']:>7.2f} {t['sql']:>5}{flag}")
    print(f"\n{'memes':>9} {'new process s':>14} {'RSS MB':>7} {'peak MB':>8}   (target <= {TARGET_RSS_MB} MB)")
    for n, r in results.items():
        print(f"{n:>9,} {r['process_first']:>14.2f} {r['rss_mb']:>7.0f} {r['peak_mb']:>8.0f}")


def print_rerun(results: dict[int, dict]) -> None:
    keys = [attr for _, attr in TIMED]
    short = {k: k.split(".")[-1] for k in keys}
    print("\nfully cached rerun (12 memes, OCR cached) on a cache of N memes: seconds")
    print(f"  {'part':<22}" + "".join(f"{n:>12,}" for n in results))
    for k in keys:
        print(f"  {short[k]:<22}" + "".join(f"{r['cached']['parts'].get(k, 0.0):>12.3f}" for r in results.values()))
    print(f"  {'precompute() total':<22}" + "".join(f"{r['cached']['total']:>12.3f}" for r in results.values()))
    print(f"  {'peak MB':<22}" + "".join(f"{r['cached']['peak_mb']:>12.0f}" for r in results.values()))
    print(f"  {'(first run there, s)':<22}" + "".join(f"{r['first']['total']:>12.1f}" for r in results.values()))


def print_thumbnails(sizes: dict[str, dict[int, float]]) -> None:
    print("\nstored thumbnail, bytes (JPEG quality 85)")
    print(f"  {'memes':<40}" + "".join(f"{side:>8} px" for side in THUMB_SIDES))
    for name, by_side in sizes.items():
        print(f"  {name:<40}" + "".join(f"{by_side[s]:>11,.0f}" for s in THUMB_SIDES))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="100000,1000000")
    p.add_argument("--rerun-sizes", default="10000,1000000")
    p.add_argument("--dir", type=Path, default=Path("/tmp/vlmemes-scale"))
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--rebuild", action="store_true")
    p.add_argument("--skip", default="", help="comma list of: pages, rerun, thumbnails")
    p.add_argument("--pages-child", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--rerun-child", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--memes", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    os.environ.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")
    if args.pages_child:
        print(json.dumps(pages_child(args.pages_child, args.dir, args.repeat)))
        return 0
    if args.rerun_child:
        print(json.dumps(rerun_child(args.rerun_child, args.memes)))
        return 0

    skip = set(filter(None, args.skip.split(",")))
    sizes = [int(s) for s in args.sizes.split(",") if s]
    rerun_sizes = [int(s) for s in args.rerun_sizes.split(",") if s] if "rerun" not in skip else []
    args.dir.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine_line()}")
    print(f"load average {load_avg()} at start")
    built = [build(args.dir, n, args.rebuild) for n in sorted({WARMUP_SIZE, *sizes, *rerun_sizes})]
    print_build([b for b in built if b["n"] != WARMUP_SIZE])
    print_storage(storage(_cache(args.dir, max(sizes + rerun_sizes))))

    if "pages" not in skip:
        results = {}
        for n in sizes:
            proc = subprocess.run([sys.executable, __file__, "--pages-child", str(_cache(args.dir, n)), "--dir",
                                   str(args.dir), "--repeat", str(args.repeat)], cwd=REPO, capture_output=True, text=True)
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                return 1
            results[n] = json.loads(proc.stdout.strip().splitlines()[-1])
        print_pages(results)

    with tempfile.TemporaryDirectory() as tmp:
        if rerun_sizes:
            memes = rerun_folder(Path(tmp) / "rerun")
            print_rerun({n: rerun(args.dir, n, memes) for n in rerun_sizes})
        if "thumbnails" not in skip:
            folders = {"synthetic (pipeline.devtools.synthetic_memes)": synthetic_folder(Path(tmp) / "thumbs")}
            if SHARED_MEMES.is_dir():
                folders["shared real memes"] = SHARED_MEMES
            print_thumbnails(thumbnail_sizes(folders))
    print(f"\nload average {load_avg()} at end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
