"""Dashboard page times and memory on synthetic caches of 1k / 10k / 100k memes.

    .venv/bin/python benchmarks/dashboard_pages.py [--sizes 1000,10000,100000] [--dir /tmp/vlmemes-bench]
                                                   [--repeat 5] [--rebuild]

For each size: build the cache with `python -m pipeline.devtools synth-db` (reused when the file
is there, unless --rebuild), then, in a fresh process, run every page through
streamlit.testing.AppTest and time the script run:
  cold  the first visit (every query and metric computed; nothing memoised yet),
  warm  the median of --repeat further visits (memoised aggregates; galleries re-read),
  fresh the median of visits that change a filter each time (Errors: a new search word; Heatmaps,
        Runs: a new gallery page), i.e. the uncached gallery query itself.
RSS is the process's resident memory after the size's pages (psutil), and its peak (ru_maxrss).
"SQL (cold)" counts the statements a page's first visit executes (memoised ones run once).
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
PAGES = ["overview", "errors", "disagreement", "heatmaps", "meme", "runs"]
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

    dbmod.Reader.con = lambda self: Counting(original(self))
    return counter


def measure(db: Path, repeat: int) -> dict:
    """All pages of one cache, in this process."""
    import duckdb
    import psutil
    from streamlit.testing.v1 import AppTest

    os.environ["VLMEMES_DB"] = str(db)
    con = duckdb.connect(str(db), read_only=True)
    meme_id = con.execute("SELECT meme_id FROM memes ORDER BY meme_id LIMIT 1").fetchall()[0][0]
    words = [r[0] for r in con.execute(
        "SELECT DISTINCT lower(split_part(text, ' ', 1)) FROM ocr WHERE text <> '' LIMIT 50").fetchall()]
    con.close()

    t0 = time.perf_counter()
    sys.path.insert(0, str(REPO))
    import dashboard.analysis, dashboard.charts, dashboard.components  # noqa: F401,E401
    startup = time.perf_counter() - t0       # imports, so that 'cold' is the page's own work
    counter = _count_sql()
    at = AppTest.from_file(str(APP), default_timeout=600)
    rows = {}
    for page in PAGES:
        params = {"meme": meme_id} if page == "meme" else {}
        counter["sql"] = 0
        cold = _run(at) if page == "overview" else _goto(at, page, params)   # the first run lands on Overview
        n_sql = counter["sql"]
        warm = statistics.median(_goto(at, page, params) for _ in range(repeat))
        fresh = None
        if page == "errors":
            fresh = statistics.median(_goto(at, page, {"q": words[i % len(words)], "group": "fn"})
                                      for i in range(repeat))
        elif page in ("heatmaps", "runs"):
            key = "fpage" if page == "runs" else "page"
            fresh = statistics.median(_goto(at, page, {key: str(2 + i), "n": "12"}) for i in range(repeat))
        rows[page] = {"cold": cold, "warm": warm, "fresh": fresh, "sql": n_sql}
    rss = psutil.Process().memory_info().rss / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"startup": startup, "pages": rows, "rss_mb": rss, "peak_mb": peak}


def _build(size: int, directory: Path, rebuild: bool) -> tuple[Path, float | None]:
    """The synthetic cache of `size` memes, built in its own process (its memory is not the dashboard's)."""
    db = directory / f"synth-{size}.duckdb"
    if not rebuild and db.exists():
        return db, None
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipeline.devtools", "synth-db", "--n", str(size), "--db", str(db),
                    "--overwrite"], check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    return db, time.perf_counter() - t0


def _child(size: int, directory: Path, repeat: int) -> dict:
    db = directory / f"synth-{size}.duckdb"
    result = measure(db, repeat)
    result.update(size=size, file_mb=db.stat().st_size / 2**20)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1000,10000,100000")
    p.add_argument("--dir", type=Path, default=Path("/tmp/vlmemes-bench"))
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--rebuild", action="store_true", help="rebuild the synthetic caches even if present")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")

    if args.child:
        print(json.dumps(_child(args.child, args.dir, args.repeat)))
        return 0

    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        _, build_seconds = _build(size, args.dir, args.rebuild)
        cmd = [sys.executable, __file__, "--child", str(size), "--dir", str(args.dir), "--repeat", str(args.repeat)]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        if out.returncode != 0:
            print(out.stderr[-3000:], file=sys.stderr)
            return 1
        results.append(dict(json.loads(out.stdout.strip().splitlines()[-1]), build_seconds=build_seconds))

    print(f"{'memes':>8} {'page':<13} {'cold s':>7} {'warm s':>7} {'fresh s':>8} {'SQL (cold)':>10}"
          f"   (target <= {TARGET_SECONDS} s)")
    for r in results:
        for page, t in r["pages"].items():
            fresh = "" if t["fresh"] is None else f"{t['fresh']:.3f}"
            flag = "" if t["warm"] <= TARGET_SECONDS and (t["fresh"] or 0) <= TARGET_SECONDS else "  over"
            print(f"{r['size']:>8} {page:<13} {t['cold']:>7.3f} {t['warm']:>7.3f} {fresh:>8} {t['sql']:>10}{flag}")
    print()
    print(f"{'memes':>8} {'file MB':>8} {'build s':>8} {'imports s':>10} {'RSS MB':>7} {'peak MB':>8}"
          f"   (target <= {TARGET_RSS_MB} MB)")
    for r in results:
        build = "reused" if r["build_seconds"] is None else f"{r['build_seconds']:.1f}"
        print(f"{r['size']:>8} {r['file_mb']:>8.0f} {build:>8} {r['startup']:>10.2f} {r['rss_mb']:>7.0f} "
              f"{r['peak_mb']:>8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
