"""The Map page's 2-D map of the memes (issue 17): UMAP of each image model's stored CLIP embeddings,
computed at the end of a precompute (and by `python -m pipeline.devtools synth-db`) and stored, never at
page load.

    write(store, run_id)    for every embedding variant whose embeddings changed since its stored map:
                            a 2-D layout of the non-retired memes' vectors into `map_points`, its
                            fingerprint and method into `maps` (docs/schema.md)
    layout(vectors)         (x, y, method): UMAP (cosine, 15 neighbours, min_dist 0.1, random_state 0)
                            from MIN_UMAP_MEMES memes on, else PCA to 2-D
    templates(vectors)      template cluster per meme (1 = the largest cluster, 0 = none): memes whose
                            vectors are joined by cosine >= TEMPLATE_COSINE (near_duplicates.cluster_embeddings),
                            stored with the layout (map_points.template) for the "template cluster" slice

A map is current while the fingerprint stored with it (queries.map_fingerprints: the count and a hash
sum of the non-retired memes with a vector of that variant) equals the cache's; a rerun that adds,
retires or brings back no meme computes nothing here. UMAP's random_state makes it reproducible and
single-threaded: ~4 s at 1,000 memes (plus ~20 s of numba compilation once per process) on 2 cores.
Template clusters are exact (every pair within the cosine radius is found): a blocked matrix product over all
pairs, O(n^2) (docs/benchmarks.md has its time at 100k memes).
A failure is the caller's to report (pipeline/runner.py records it and the run goes on).
"""
from __future__ import annotations

import sys
import time
import warnings

import numpy as np
import pyarrow as pa

from pipeline.queries import MAP_VERSION, map_fingerprints, map_vectors, stored_map_fingerprints

__all__ = ["MAP_VERSION", "TEMPLATE_COSINE", "layout", "pca_2d", "templates", "write"]
MIN_UMAP_MEMES = 20             # fewer memes: PCA (UMAP's 15-neighbour graph needs more points than that)
UMAP_PARAMS = dict(n_neighbors=15, min_dist=0.1, metric="cosine", random_state=0, n_components=2)
TEMPLATE_COSINE = 0.9          # CLIP image vectors this close: the same picture under another caption (a template)
DECIMALS = 3                    # coordinates are rounded (the page draws them; the layout is ~0..20 wide)


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    """The first two principal components of the rows (zeros where the rows span fewer dimensions)."""
    x = np.asarray(vectors, dtype=np.float64)
    out = np.zeros((len(x), 2))
    if len(x) < 2:
        return out
    centred = x - x.mean(axis=0)
    u, s, _vt = np.linalg.svd(centred, full_matrices=False)
    k = min(2, len(s))
    out[:, :k] = u[:, :k] * s[:k]
    return out


def layout(vectors: np.ndarray) -> tuple[np.ndarray, str]:
    """(n x 2 coordinates, "umap" | "pca") of the unit vectors `vectors` (n x dim)."""
    if len(vectors) < MIN_UMAP_MEMES:
        return pca_2d(vectors), "pca"
    import umap  # numba: ~5 s to import, ~20 s to compile on first use
    with warnings.catch_warnings():              # "n_jobs overridden by setting random_state": intended
        warnings.simplefilter("ignore", UserWarning)
        xy = umap.UMAP(**UMAP_PARAMS).fit_transform(np.asarray(vectors, dtype=np.float32))
    return np.asarray(xy, dtype=np.float64), "umap"


def templates(vectors: np.ndarray, threshold: float = TEMPLATE_COSINE) -> np.ndarray:
    """Template cluster per row: 1 for the largest cluster, 2 for the next (ties: by first row), 0 for a meme
    in no cluster of two or more (pipeline.near_duplicates.cluster_embeddings)."""
    from pipeline.near_duplicates import cluster_embeddings
    ids = cluster_embeddings(vectors, threshold) if len(vectors) else np.zeros(0, np.int64)
    out = np.zeros(len(ids), dtype=np.int64)
    if (ids >= 0).any():
        sizes = np.bincount(ids[ids >= 0])
        order = sorted(range(len(sizes)), key=lambda k: (-sizes[k], k))      # cluster ids are by first row
        rank = np.empty(len(sizes), dtype=np.int64)
        rank[order] = np.arange(1, len(sizes) + 1)
        out[ids >= 0] = rank[ids[ids >= 0]]
    return out


def write(store, run_id: int, log=print) -> int:
    """At the end of run `run_id`: recompute and store the map of every embedding variant whose
    fingerprint differs from its stored map's (and drop the maps of variants without vectors now).
    Returns the number of maps computed (0: every map current)."""
    with store.reader() as con:
        current = map_fingerprints(con)
        stored = stored_map_fingerprints(con)
    changed = [v for v, fp in current.items() if stored.get(v) != fp]
    gone = [v for v in stored if v not in current]
    if gone:
        store.save_map_points(gone, None, [])
    for variant_id in changed:
        t0 = time.perf_counter()
        with store.reader() as con:
            keys, ids, vectors = map_vectors(con, variant_id)
        t_read = time.perf_counter() - t0
        log(f"[map] {variant_id}: laying out {len(keys):,} memes "
            f"({'UMAP' if len(keys) >= MIN_UMAP_MEMES else 'PCA'}; read in {t_read:.1f} s)…")
        sys.stdout.flush()
        xy, method = layout(vectors)
        t_templates = time.perf_counter()
        template = templates(vectors)
        t_templates = time.perf_counter() - t_templates
        seconds = time.perf_counter() - t0
        xy = np.round(xy, DECIMALS)
        n = len(keys)
        points = pa.table(dict(
            variant_id=pa.array([variant_id] * n, pa.string()), meme_key=pa.array(keys, pa.int32()),
            meme_id=pa.array(ids, pa.string()), x=pa.array(xy[:, 0], pa.float32()),
            y=pa.array(xy[:, 1], pa.float32()), method=pa.array([method] * n, pa.string()),
            template=pa.array(template, pa.int32(), mask=template == 0),
            map_version=pa.array([MAP_VERSION] * n, pa.string()), run_id=pa.array([run_id] * n, pa.int32())))
        store.save_map_points([variant_id], points, [dict(
            variant_id=variant_id, fingerprint=current[variant_id], method=method, n=n, map_version=MAP_VERSION,
            run_id=run_id, seconds=round(seconds, 3))])
        log(f"[map] {variant_id}: {method.upper()} of {n:,} memes and {int(template.max(initial=0)):,} template "
            f"cluster(s) ({t_templates:.1f} s) stored in {time.perf_counter() - t0:.1f} s")
    return len(changed)
