"""Dashboard page times and memory on synthetic caches of 1k / 10k / 100k memes.

    .venv/bin/python benchmarks/dashboard_pages.py [--sizes 1000,10000,100000] [--dir /tmp/vlmemes-bench]
                                                   [--repeat 5] [--rebuild] [--slice format=PNG ...]

For each size: build the cache with `python -m pipeline.devtools synth-db` (reused when the file
is there, unless --rebuild), then, in a fresh process, run every page through
streamlit.testing.AppTest and time the script run. The process first draws every page once on a
small warm-up cache (200 memes), as a running dashboard server has done before a precompute
finishes; then it switches to the measured cache and times:
  cold  the first visit of each page on the measured cache (every query and metric computed for
        this cache state; nothing memoised for it yet). Python imports, Altair's lazy imports and
        the test harness's one-time setup were paid by the warm-up, as in a server that is running;
  warm  the median of --repeat further visits (memoised aggregates; galleries re-read),
  fresh the median of visits that change a filter each time (Errors: a new search word; Heatmaps,
        Runs: a new gallery page; Slices: another slice), i.e. the uncached gallery query itself.
"overview (live metrics)" is Overview's first visit when the metrics a precompute stored
(pipeline/summary.py) are not current (answers or labels changed since), so it counts every answer itself;
"calibration (live)" the same for the Calibration page (every bootstrap run on the page).
"<page> (<slice>)": the same page within the sidebar's slice of every page (--slice KEY=VALUE), cold and warm.
"new process" is the very first page run of the process (on the warm-up cache): what the first
visitor after `streamlit run` waits for, imports included.
Targets: <= 0.5 s per page at 100k, <= 600 MB resident.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
APP = REPO / "dashboard" / "app.py"
PAGES = ["overview", "errors", "disagreement", "calibration", "label_issues", "slices", "heatmaps", "modality",
         "faithfulness", "meme", "runs"]
TARGET_SECONDS = 0.5
TARGET_RSS_MB = 600


def _run(at, timeout: float = 600) -> float:
    t0 = time.perf_counter()
    at.run(timeout=timeout)
    dt = time.perf_counter() - t0
    if at.exception:
        raise RuntimeError(at.exception[0].value)
    return dt


def _goto(at, page: str, params: dict) -> float:
    at.query_params.clear()
    at.query_params.update(params)
    at.switch_page(f"views/{page}.py")
    return _run(at)


def _count_sql() -> dict:
    """Count the SQL statements the pages execute (a proxy around each run's read-only connection)."""
    from dashboard import db as dbmod
    counter = {"sql": 0}
    original = dbmod.Reader.con

    class Counting:
        def __init__(self, con):
            self._con = con

        def execute(self, *args, **kwargs):
            counter["sql"] += 1
            return self._con.execute(*args, **kwargs)

        def __getattr__(self, name):
            return getattr(self._con, name)

    dbmod.Reader.con = lambda self, sliced=True: Counting(original(self, sliced))
    return counter


def _first_meme(db: Path) -> str:
    import duckdb
    con = duckdb.connect(str(db), read_only=True)
    try:
        # the median id, not the smallest: zone maps skip every row group for the smallest id, not a typical one
        return con.execute("SELECT meme_id FROM memes ORDER BY meme_id LIMIT 1 OFFSET "
                           "(SELECT count(*) // 2 FROM memes)").fetchall()[0][0]
    finally:
        con.close()


def measure(db: Path, warmup_db: Path, repeat: int, slices: tuple[str, ...] = ()) -> dict:
    """All pages of one cache, in this process, after every page was drawn once on warmup_db; then again
    within each of `slices` (?slice=KEY=VALUE values)."""
    import duckdb
    import psutil
    from streamlit.testing.v1 import AppTest

    con = duckdb.connect(str(db), read_only=True)
    words = [r[0] for r in con.execute(
        "SELECT DISTINCT lower(split_part(text, ' ', 1)) FROM ocr WHERE text <> '' LIMIT 50").fetchall()]
    con.close()

    t0 = time.perf_counter()
    import dashboard.analysis  # noqa: F401
    import dashboard.charts  # noqa: F401
    import dashboard.components  # noqa: F401
    startup = time.perf_counter() - t0
    at = AppTest.from_file(str(APP), default_timeout=600)

    os.environ["VLMEMES_DB"] = str(warmup_db)                # a running server: every page drawn once
    warm_meme = _first_meme(warmup_db)
    process_first = _run(at)
    for page in PAGES[1:]:
        _goto(at, page, {"meme": warm_meme} if page == "meme" else {})

    os.environ["VLMEMES_DB"] = str(db)                       # the measured cache: a new cache state
    meme_id = _first_meme(db)
    counter = _count_sql()
    rows = {}
    for page in PAGES:
        params = {"meme": meme_id} if page == "meme" else {}
        counter["sql"] = 0
        cold = _goto(at, page, params)
        n_sql = counter["sql"]
        warm = statistics.median(_goto(at, page, params) for _ in range(repeat))
        fresh = None
        if page == "errors":
            fresh = statistics.median(_goto(at, page, {"q": words[i % len(words)], "group": "fn"})
                                      for i in range(repeat))
        elif page == "slices":
            fresh = statistics.median(_goto(at, page, {"by": k})
                                      for k in ("format", "caption_length", "near_duplicate")[:max(1, repeat)])
        elif page in ("heatmaps", "runs"):
            key = "fpage" if page == "runs" else "page"
            fresh = statistics.median(_goto(at, page, {key: str(2 + i), "n": "12"}) for i in range(repeat))
        rows[page] = {"cold": cold, "warm": warm, "fresh": fresh, "sql": n_sql}
    # the same pages within the sidebar's slice of every page (?slice=): the reader's sliced cursor
    # (pipeline.store.slice_views), every summary computed live on the slice's memes
    for key in slices:
        for page in PAGES:
            params = {"slice": key, **({"meme": meme_id} if page == "meme" else {})}
            counter["sql"] = 0
            cold = _goto(at, page, params)
            rows[f"{page} ({key})"] = {"cold": cold, "warm": statistics.median(
                _goto(at, page, params) for _ in range(repeat)), "fresh": None, "sql": counter["sql"]}
    # the same first visit when the stored metrics are not current (answers or labels changed since):
    # every memo dropped, and stored_metrics answering "not current", so the page counts live
    from dashboard import charts
    from dashboard import db as dbmod
    from pipeline import queries
    dbmod._cached.clear()
    charts.spec.clear()
    queries.QUERIES["stored_metrics"] = lambda con, *args: None
    counter["sql"] = 0
    rows["overview (live metrics)"] = {"cold": _goto(at, "overview", {}), "warm": _goto(at, "overview", {}),
                                       "fresh": None, "sql": counter["sql"]}
    queries.QUERIES["stored_calibration"] = lambda con, *args: None
    counter["sql"] = 0
    rows["calibration (live)"] = {"cold": _goto(at, "calibration", {}), "warm": _goto(at, "calibration", {}),
                                  "fresh": None, "sql": counter["sql"]}
    rss = psutil.Process().memory_info().rss / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"startup": startup, "process_first": process_first, "pages": rows, "rss_mb": rss, "peak_mb": peak}


def _build(size: int, directory: Path, rebuild: bool) -> tuple[Path, float | None]:
    """The synthetic cache of `size` memes, built in its own process (its memory is not the dashboard's)."""
    db = directory / f"synth-{size}.duckdb"
    if not rebuild and db.exists():
        return db, None
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipeline.devtools", "synth-db", "--n", str(size), "--db", str(db),
                    "--overwrite"], check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    return db, time.perf_counter() - t0


WARMUP_SIZE = 200


def _child(size: int, directory: Path, repeat: int, slices: tuple[str, ...]) -> dict:
    db = directory / f"synth-{size}.duckdb"
    result = measure(db, directory / f"synth-{WARMUP_SIZE}.duckdb", repeat, slices)
    result.update(size=size, file_mb=db.stat().st_size / 2**20)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1000,10000,100000")
    p.add_argument("--dir", type=Path, default=Path("/tmp/vlmemes-bench"))
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--rebuild", action="store_true", help="rebuild the synthetic caches even if present")
    p.add_argument("--slice", action="append", default=[], metavar="KEY=VALUE",
                   help="also time every page within this slice of every page (repeatable), e.g. format=PNG")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")

    if args.child:
        print(json.dumps(_child(args.child, args.dir, args.repeat, tuple(args.slice))))
        return 0

    results = []
    _build(WARMUP_SIZE, args.dir, args.rebuild)
    for size in (int(s) for s in args.sizes.split(",")):
        _, build_seconds = _build(size, args.dir, args.rebuild)
        cmd = [sys.executable, __file__, "--child", str(size), "--dir", str(args.dir), "--repeat", str(args.repeat),
               *(f"--slice={k}" for k in args.slice)]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        if out.returncode != 0:
            print(out.stderr[-3000:], file=sys.stderr)
            return 1
        results.append(dict(json.loads(out.stdout.strip().splitlines()[-1]), build_seconds=build_seconds))

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from dashboard_load import machine_line
    print(machine_line())
    print(f"{'memes':>8} {'page':<34} {'cold s':>7} {'warm s':>7} {'fresh s':>8} {'SQL (cold)':>10}"
          f"   (target <= {TARGET_SECONDS} s)")
    for r in results:
        for page, t in r["pages"].items():
            fresh = "" if t["fresh"] is None else f"{t['fresh']:.3f}"
            flag = "" if max(t["cold"], t["warm"], t["fresh"] or 0) <= TARGET_SECONDS else "  over"
            print(f"{r['size']:>8} {page:<34} {t['cold']:>7.3f} {t['warm']:>7.3f} {fresh:>8} {t['sql']:>10}{flag}")
    print()
    print(f"{'memes':>8} {'file MB':>8} {'build s':>8} {'imports s':>10} {'new process s':>14} {'RSS MB':>7} "
          f"{'peak MB':>8}   (target <= {TARGET_RSS_MB} MB)")
    for r in results:
        build = "reused" if r["build_seconds"] is None else f"{r['build_seconds']:.1f}"
        print(f"{r['size']:>8} {r['file_mb']:>8.0f} {build:>8} {r['startup']:>10.2f} {r['process_first']:>14.2f} "
              f"{r['rss_mb']:>7.0f} {r['peak_mb']:>8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
