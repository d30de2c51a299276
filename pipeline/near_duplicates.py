"""Near-duplicate images and template clusters: pure functions, no store.

    perceptual_hash(image) -> int        imagehash.phash (64 bits) as a SIGNED int64 (DuckDB BIGINT)
    hamming(a, b) -> int                 bits that differ between two hashes
    near_duplicate_groups(meme_ids, hashes, max_distance=6) -> list[list[meme_id]]
    label_mixed(groups, labels) -> the groups whose memes carry both labels
    cluster_embeddings(embeddings, threshold=0.9) -> cluster id per row, -1 = singleton

Hashes are stored as signed 64-bit two's complement (fits BIGINT, numpy int64, Parquet); the
functions accept signed or unsigned (0 .. 2**64-1) ints alike.

Default max_distance = 6 of 64 bits: resized, JPEG-recompressed and slightly brightened copies of
a drawn meme differ by 0-4 bits (tests/test_near_duplicates.py), unrelated images by ~32.

Grouping is transitive (connected components of "distance <= max_distance"), found by multi-index
hashing: the 64 bits are split into max_distance + 1 blocks; two hashes within distance d agree
exactly on at least one block (pigeonhole), so only hashes that share a block value are compared
(numpy popcount of the XOR). Identical hashes are merged first. Cost ~ number of pairs sharing a
block: about 1 s for 100k random hashes at d = 6 on 2 cores.

cluster_embeddings: cosine >= threshold between L2-normalised rows, joined transitively. Exact:
candidate pairs come from a PCA projection (an orthogonal projection never lengthens a difference,
so every pair within the cosine radius is a candidate), then each candidate's cosine is checked on
the full vectors.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.config import NON_TOXIC, TOXIC

DEFAULT_MAX_DISTANCE = 6
_MASK = (1 << 64) - 1


# ----------------------------------------------------------------------------- hashes

def perceptual_hash(image) -> int:
    """imagehash.phash of a PIL image (8 x 8 DCT, 64 bits) as a signed int64 (DuckDB BIGINT)."""
    import imagehash
    bits = np.asarray(imagehash.phash(image.convert("RGB")).hash, dtype=bool).ravel()
    u = int("".join("1" if b else "0" for b in bits), 2)
    return u - (1 << 64) if u >= (1 << 63) else u


def _as_uint64(hashes: Sequence) -> np.ndarray:
    if isinstance(hashes, np.ndarray) and hashes.dtype in (np.int64, np.uint64):
        return hashes.view(np.uint64) if hashes.dtype == np.int64 else hashes
    return np.fromiter((int(h) & _MASK for h in hashes), dtype=np.uint64, count=len(hashes))


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two 64-bit hashes (signed or unsigned)."""
    return ((int(a) ^ int(b)) & _MASK).bit_count()


def _blocks(d: int) -> list[tuple[int, int]]:
    """(shift, width) of d + 1 blocks covering 64 bits, widths as equal as possible."""
    k = d + 1
    widths = [64 // k + (1 if i < 64 % k else 0) for i in range(k)]
    out, shift = [], 0
    for w in widths:
        out.append((shift, w))
        shift += w
    return out


def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from scipy.sparse import coo_matrix  # scipy: ~0.5 s to import, only when grouping
    from scipy.sparse.csgraph import connected_components
    g = coo_matrix((np.ones(a.size, dtype=np.int8), (a, b)), shape=(n, n)).tocsr()
    return connected_components(g, directed=False)[1]


def _group_lists(meme_ids: list, keep: np.ndarray, comp: np.ndarray) -> list[list]:
    """Components of size >= 2 as lists of meme ids (input order), biggest group first."""
    order = np.argsort(comp, kind="stable")
    c = comp[order]
    starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
    ends = np.r_[starts[1:], c.size]
    groups = [[meme_ids[keep[i]] for i in order[s:e]] for s, e in zip(starts, ends) if e - s >= 2]
    groups.sort(key=lambda g: -len(g))                    # stable: ties keep first-appearance order
    return groups


def near_duplicate_groups(meme_ids: Sequence, hashes: Sequence, max_distance: int = DEFAULT_MAX_DISTANCE
                          ) -> list[list]:
    """Groups (size >= 2) of memes whose hashes are within ``max_distance`` bits, transitively.
    A hash of None is skipped. Members keep the input order; the biggest group comes first."""
    if len(meme_ids) != len(hashes):
        raise ValueError("meme_ids and hashes differ in length")
    if not 0 <= max_distance < 64:
        raise ValueError("max_distance must be in 0..63")
    ids = list(meme_ids)
    keep = np.array([i for i, h in enumerate(hashes) if h is not None], dtype=np.int64)
    if keep.size < 2:
        return []
    h_all = _as_uint64(hashes if keep.size == len(hashes) else [hashes[i] for i in keep])
    uniq, inv = np.unique(h_all, return_inverse=True)       # identical hashes -> one node
    m = uniq.size
    ea, eb = [], []
    if max_distance > 0 and m > 1:
        for shift, width in _blocks(max_distance):
            key = (uniq >> np.uint64(shift)) & np.uint64((1 << width) - 1)
            order = np.argsort(key, kind="stable")
            ks = key[order]
            starts = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
            run_len = np.diff(np.r_[starts, ks.size])
            pos = np.arange(ks.size) - np.repeat(starts, run_len)
            left = np.repeat(run_len, run_len) - pos - 1       # later members of the same bucket
            active = np.flatnonzero(left > 0)
            step = 1
            while active.size:
                a, b = order[active], order[active + step]
                close = np.bitwise_count(uniq[a] ^ uniq[b]) <= max_distance
                if close.any():
                    ea.append(a[close])
                    eb.append(b[close])
                step += 1
                active = active[left[active] >= step]
    a = np.concatenate(ea) if ea else np.zeros(0, np.int64)
    b = np.concatenate(eb) if eb else np.zeros(0, np.int64)
    comp_u = _components(m, a, b)
    return _group_lists(ids, keep, comp_u[inv])


def label_mixed(groups: Sequence[Sequence], labels: dict | Sequence) -> list[list]:
    """The groups whose memes carry both labels (label noise, or the same image in both classes).
    ``labels``: {meme_id: label} (or a callable-free sequence indexed by meme id); memes without
    a label are ignored."""
    get = labels.get if isinstance(labels, dict) else (lambda i: labels[i])
    out = []
    for g in groups:
        seen = {get(m) for m in g}
        if TOXIC in seen and NON_TOXIC in seen:
            out.append(list(g))
    return out


# ----------------------------------------------------------------------------- embeddings

def cluster_embeddings(embeddings: np.ndarray, threshold: float = 0.9, *, proj_dim: int = 128,
                       chunk: int = 1024, min_cluster_size: int = 2) -> np.ndarray:
    """Cluster id per row (0, 1, ... by first appearance), -1 for rows in no cluster: connected
    components of cosine(a, b) >= threshold (rows L2-normalised here; a zero row is a singleton);
    clusters smaller than min_cluster_size are -1 too.

    Candidates: rows projected on the top ``proj_dim`` principal axes, pairs with projected squared
    distance <= 2 - 2 threshold (a projection only shortens differences: no pair is missed), found
    by blocked matrix products over the upper triangle; each candidate's cosine is then computed
    on the full vectors. float16 input is computed in float32."""
    X = np.asarray(embeddings, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError("embeddings must be an n x d array")
    n, d = X.shape
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    norms = np.linalg.norm(X, axis=1)
    ok = norms > 0
    X = np.where(ok[:, None], X / np.where(ok, norms, 1)[:, None], 0).astype(np.float32)
    radius2 = 2.0 - 2.0 * float(threshold)
    if d > proj_dim:
        mu = X[ok].mean(axis=0) if ok.any() else np.zeros(d, np.float32)
        Xc = X - mu
        cov = (Xc.T @ Xc).astype(np.float64)
        w, V = np.linalg.eigh(cov)
        Y = (Xc @ V[:, ::-1][:, :proj_dim].astype(np.float32)).astype(np.float32)
    else:
        Y = X
    Y = np.ascontiguousarray(Y, dtype=np.float32)
    sq = (Y * Y).sum(axis=1)
    slack = 1e-4 + 1e-5 * float(sq.max(initial=0.0))
    ea, eb = [], []
    cols = max(chunk, 8 * chunk)
    G = np.empty((chunk, cols), dtype=np.float32)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        for cs in range(s, n, cols):                         # upper triangle: columns from s on
            ce = min(n, cs + cols)
            g = G[: e - s, : ce - cs]
            np.matmul(Y[s:e], Y[cs:ce].T, out=g)
            # D = sq_r + sq_c - 2G <= radius2  needs  G >= (sq_r + min sq_c - radius2) / 2 (cheap
            # filter, one comparison), then the exact projected test, then the full cosine
            bound = (sq[s:e] + sq[cs:ce].min() - radius2 - slack) / 2
            r, c = np.nonzero(g >= bound[:, None])
            if not r.size:
                continue
            r, c = r + s, c + cs
            keep = (c > r) & (sq[r] + sq[c] - 2 * G[r - s, c - cs] <= radius2 + slack)
            r, c = r[keep], c[keep]
            if r.size:
                cos = np.einsum("ij,ij->i", X[r], X[c])
                good = (cos >= threshold) & ok[r] & ok[c]
                ea.append(r[good])
                eb.append(c[good])
    a = np.concatenate(ea) if ea else np.zeros(0, np.int64)
    b = np.concatenate(eb) if eb else np.zeros(0, np.int64)
    comp = _components(n, a, b)
    sizes = np.bincount(comp)
    big = sizes[comp] >= max(2, min_cluster_size)
    out = np.full(n, -1, dtype=np.int64)
    if big.any():
        _, first = np.unique(comp[big], return_index=True)
        roots = comp[big][np.sort(first)]
        remap = np.full(comp.max() + 1, -1, dtype=np.int64)
        remap[roots] = np.arange(roots.size)
        out[big] = remap[comp[big]]
    return out
