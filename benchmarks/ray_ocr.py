"""The same OCR workload on Ray with 1 and 2 workers (and the local engine), in one run: the ratio.

    .venv/bin/python benchmarks/ray_ocr.py [--memes DIR] [--n 24] [--ocr-engine craft-tesseract] [--repeats 2]

Each measurement is a fresh cache and a full `vlmemes precompute --stages ocr` in a subprocess: local, then
`--engine ray --ray-workers 1` and `--ray-workers 2` (each starts its own local Ray cluster), interleaved
A B C A B C so that drifting load hits every setting alike. Reported: the OCR stage's seconds (runs.counts,
from the first batch handed out to the last written, the model load on the workers included) and the whole
command's wall time (Ray's start and stop included). Without --memes it draws --n synthetic memes.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dashboard_load import machine_line  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SETTINGS = {"local": [], "ray x1": ["--engine", "ray", "--ray-workers", "1"],
            "ray x2": ["--engine", "ray", "--ray-workers", "2"]}


def run(memes: Path, db: Path, engine_args: list[str], ocr_engine: str) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipeline", "precompute", "--memes", str(memes), "--db", str(db),
                    "--stages", "ocr", "--ocr-engine", ocr_engine, *engine_args], cwd=REPO, check=True,
                   env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    with duckdb.connect(str(db), read_only=True) as con:
        counts = json.loads(con.execute("SELECT counts FROM runs").fetchone()[0])
        n = con.execute("SELECT count(*) FROM ocr").fetchone()[0]
    return counts["ocr"]["seconds"], wall, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--memes", type=Path, default=None)
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--ocr-engine", default="craft-tesseract")
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    print(machine_line())
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        memes = a.memes
        if memes is None:
            from pipeline.devtools.synthetic_memes import write_meme_folder
            memes = Path(tmp) / "memes"
            write_meme_folder(memes, a.n // 2, a.n - a.n // 2, seed=4, size=(480, 360))
        results: dict[str, list[tuple[float, float]]] = {k: [] for k in SETTINGS}
        for r in range(a.repeats):
            for name, extra in SETTINGS.items():
                stage_s, wall_s, n = run(memes, Path(tmp) / f"{name.replace(' ', '')}-{r}.duckdb", extra, a.ocr_engine)
                results[name].append((stage_s, wall_s))
                print(f"  {name:7} repeat {r + 1}: {n} memes, OCR stage {stage_s:6.1f} s, command {wall_s:6.1f} s",
                      flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    print("\n| setting | OCR stage s (best) | s/meme | command s (best) | stage speed-up vs ray x1 |")
    print("|---|---|---|---|---|")
    best1 = min(s for s, _ in results["ray x1"])
    for name, runs in results.items():
        best = min(s for s, _ in runs)
        print(f"| {name} | {best:.1f} | {best / n:.2f} | {min(w for _, w in runs):.1f} | {best1 / best:.2f}x |")
    print("\nall stage seconds: " + "; ".join(f"{k}: {', '.join(f'{s:.1f}' for s, _ in v)}" for k, v in results.items()))


if __name__ == "__main__":
    main()
