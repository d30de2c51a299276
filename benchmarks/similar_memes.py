"""The Meme page's similar memes (issue 17): pipeline.queries.similar_memes timed on a synthetic cache.

    .venv/bin/python -m pipeline.devtools synth-db --n 100000 --db /tmp/synth100k.duckdb
    .venv/bin/python benchmarks/similar_memes.py /tmp/synth100k.duckdb [--memes 20]

Opens the cache read-only as the dashboard does (pipeline.store.connect), picks --memes memes at random
(fixed seed), and times the brute-force cosine scan of their image-embedding variant (top 8, the meme itself
and retired memes left out, thumbnails of the 8 read): the first query (cold: the vectors read from the file)
and the median and maximum of the rest. Also the neighbours' answers (queries.memes_set_answers).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("db", type=Path)
    p.add_argument("--memes", type=int, default=20, help="memes whose neighbours are looked up (default 20)")
    args = p.parse_args(argv)
    from pipeline import queries as q
    from pipeline.store import connect
    con = connect(args.db, read_only=True)
    try:
        n, dim, vid = con.execute("SELECT count(*), any_value(dim), any_value(variant_id) FROM embeddings").fetchall()[0]
        ids = [r[0] for r in con.execute("SELECT meme_id FROM embeddings WHERE variant_id = ? ORDER BY hash(meme_id) "
                                         "LIMIT ?", [vid, args.memes]).fetchall()]
        times, answers = [], []
        for meme_id in ids:
            t0 = time.perf_counter()
            near = q.similar_memes(con, meme_id, vid, False)
            times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            q.memes_set_answers(con, [r["meme_id"] for r in near])
            answers.append(time.perf_counter() - t0)
    finally:
        con.close()
    rest = times[1:] or times
    print(f"{n:,} vectors of {dim} dimensions; {len(ids)} memes: first {times[0]:.3f} s, then median "
          f"{statistics.median(rest):.3f} s, max {max(rest):.3f} s; the neighbours' answers median "
          f"{statistics.median(answers):.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
