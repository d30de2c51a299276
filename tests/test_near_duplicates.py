"""pipeline/near_duplicates.py: perceptual hashes, multi-index grouping vs brute force, templates."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from pipeline.devtools.synthetic_memes import draw_meme, photo_background
from pipeline.near_duplicates import cluster_embeddings, hamming, label_mixed, near_duplicate_groups, perceptual_hash


def _variants(im: Image.Image) -> list[Image.Image]:
    buf = io.BytesIO()
    im.convert("RGB").save(buf, "JPEG", quality=40)
    jpeg = Image.open(io.BytesIO(buf.getvalue()))
    return [im, im.resize((im.width // 2, im.height // 2)), im.resize((im.width * 3 // 2, im.height * 3 // 2)),
            jpeg, ImageEnhance.Brightness(im).enhance(1.1)]


def test_hash_is_signed_int64_and_copies_group_together():
    a = draw_meme("КОГДА ПОНЕДЕЛЬНИК", "ОПЯТЬ НАСТАЛ", seed=1)
    b = draw_meme("СОВСЕМ ДРУГОЙ МЕМ", None, seed=2)
    c = photo_background(seed=3)
    images = _variants(a) + [b, c]
    hashes = [perceptual_hash(im) for im in images]
    assert all(isinstance(h, int) and -(2 ** 63) <= h < 2 ** 63 for h in hashes)
    assert max(hamming(hashes[0], h) for h in hashes[1:5]) <= 4         # copies: a few bits
    assert min(hamming(hashes[0], h) for h in hashes[5:]) > 12          # other images: far
    ids = [f"m{i}" for i in range(len(images))]
    assert near_duplicate_groups(ids, hashes) == [["m0", "m1", "m2", "m3", "m4"]]


def _brute(h: np.ndarray, d: int) -> list[list[int]]:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    u = h.view(np.uint64)
    dist = np.bitwise_count(u[:, None] ^ u[None, :])
    r, c = np.nonzero(np.triu(dist <= d, 1))
    comp = connected_components(coo_matrix((np.ones(r.size), (r, c)), shape=(h.size, h.size)), directed=False)[1]
    groups = {}
    for i, k in enumerate(comp):
        groups.setdefault(k, []).append(i)
    return sorted(sorted(g) for g in groups.values() if len(g) > 1)


@pytest.mark.parametrize("d", [0, 3, 6, 10])
def test_multi_index_equals_brute_force(d):
    rng = np.random.default_rng(d)
    n = 2000
    h = rng.integers(-(2 ** 63), 2 ** 63 - 1, n, dtype=np.int64)
    u = h.view(np.uint64)
    for j in range(300):                                   # planted near copies, chains included
        src = int(rng.integers(0, n))
        v = int(u[src])
        for bit in rng.choice(64, int(rng.integers(0, 9)), replace=False):
            v ^= 1 << int(bit)
        u[n - 1 - j] = v
    expected = _brute(h, d)
    assert len(expected) > 20
    got = near_duplicate_groups(list(range(n)), [int(x) for x in h], max_distance=d)
    assert sorted(sorted(g) for g in got) == expected
    got_np = near_duplicate_groups(list(range(n)), h, max_distance=d)
    assert sorted(sorted(g) for g in got_np) == expected


def test_none_hashes_skipped_and_label_mixed():
    groups = near_duplicate_groups(["a", "b", "c", "d", "e"], [5, None, 5 ^ 3, 2 ** 62, 2 ** 62 ^ 2 ** 61], 2)
    assert groups == [["a", "c"], ["d", "e"]]
    labels = {"a": "toxic", "c": "non_toxic", "d": "toxic", "e": "toxic"}
    assert label_mixed(groups, labels) == [["a", "c"]]


def test_cluster_embeddings_planted_templates():
    rng = np.random.default_rng(0)
    n, d = 3000, 768
    X = rng.standard_normal((n, d)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    for j in range(40):                                    # 20 templates of 3 memes: rows 0..19 + copies
        noise = rng.standard_normal(d).astype(np.float32)
        X[n - 1 - j] = X[j % 20] + 0.3 * noise / np.linalg.norm(noise)     # cosine ~ 0.96
    X[n - 41] = X[0] + 0.8 * rng.standard_normal(d).astype(np.float32) / np.sqrt(d)   # cosine ~ 0.78: not
    X[n - 42] = 0                                          # zero row: singleton
    c = cluster_embeddings((X * 3).astype(np.float16))     # not normalised, float16
    assert c.max() + 1 == 20
    for t in range(20):
        members = set(np.flatnonzero(c == c[t]))
        assert members == {t, n - 1 - t, n - 21 - t}
    assert (c >= 0).sum() == 60 and c[n - 41] == -1 and c[n - 42] == -1
    assert c[0] == 0 and c[1] == 1                         # ids by first appearance


# ----------------------------------------------------------------------------- the scan and the Overview

def test_scan_stores_hashes_and_the_overview_flags_a_copy_under_both_labels(tmp_path, monkeypatch):
    """A real precompute over a folder holding one meme twice (the second a smaller JPEG copy, under the other
    label) and an unrelated meme: the scan stores a hash per image, the copies form the one near-duplicate group,
    flagged as carrying both labels; a cache whose hashes are missing (stored before the scan hashed) gets the
    same hashes back on the next scan."""
    import duckdb
    from dashboard_helpers import all_text, app_opener, sql, write

    from pipeline import queries as q
    from pipeline.cli import main
    root = tmp_path / "memes"
    (root / "Негативно").mkdir(parents=True)
    (root / "Нейтрально").mkdir()
    a = draw_meme("КОГДА ПОНЕДЕЛЬНИК", "ОПЯТЬ НАСТАЛ", seed=1)
    a.save(root / "Негативно" / "original.png")
    a.resize((a.width * 2 // 3, a.height * 2 // 3)).convert("RGB").save(root / "Нейтрально" / "copy.jpg", quality=60)
    draw_meme("СОВСЕМ ДРУГОЙ МЕМ", None, seed=2).save(root / "Нейтрально" / "other.png")
    db = tmp_path / "cache.duckdb"
    args = ["precompute", "--memes", str(root), "--db", str(db), "--stages", "ocr", "--ocr-engine", "tesseract"]
    assert main(args) == 0
    rows = {r[0].split("/")[-1]: (r[1], r[2]) for r in sql(db, "SELECT rel_path, phash, meme_id FROM memes")}
    assert all(isinstance(h, int) for h, _ in rows.values())
    assert hamming(rows["original.png"][0], rows["copy.jpg"][0]) <= 6 < hamming(rows["original.png"][0], rows["other.png"][0])
    with duckdb.connect(str(db), read_only=True) as con:
        report = q.near_duplicate_report(con, False)
    assert report["n_hashed"] == 3 and report["n_groups"] == 1 and report["n_mixed"] == 1
    assert sorted(report["groups"][0]["memes"]) == sorted([rows["original.png"][1], rows["copy.jpg"][1]])
    assert report["groups"][0]["toxic"] == 1 and report["groups"][0]["non_toxic"] == 1

    at = app_opener(monkeypatch)(db)                  # the Overview
    text = all_text(at)
    assert "1 near-duplicate groups carry both labels" in text
    assert {m.label: m.value for m in at.metric}["Groups with both labels"] == "1"
    links = {link.proto.query_string.removeprefix("meme=") for link in at.main.get("page_link")}
    assert {rows["original.png"][1], rows["copy.jpg"][1]} <= links

    before = dict(sql(db, "SELECT meme_id, phash FROM memes"))
    write(db, "UPDATE memes SET phash = NULL")        # as a cache scanned before the scan hashed
    assert main(args) == 0
    assert dict(sql(db, "SELECT meme_id, phash FROM memes")) == before
