"""The folder scan and the memes/meme_paths/failures tables it fills, on real files and a real DuckDB file."""
from __future__ import annotations

import hashlib
import io

import pytest
from PIL import Image

from pipeline import dataset
from pipeline.cli import main
from pipeline.store import Store


def _png(color=(200, 30, 30), size=(64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "memes"
    (root / "Негативно" / "вложенная папка").mkdir(parents=True)
    (root / "Нейтрально").mkdir()
    (root / "Негативно" / "злой мем 😡.png").write_bytes(_png((255, 0, 0)))
    (root / "Негативно" / "вложенная папка" / "deep.png").write_bytes(_png((0, 0, 255)))
    (root / "Нейтрально" / "кот.png").write_bytes(_png((0, 255, 0)))
    (root / "Нейтрально" / "кот копия.png").write_bytes(_png((0, 255, 0)))      # same bytes, same label
    (root / "Нейтрально" / "conflict.png").write_bytes(_png((255, 0, 0)))       # same bytes as a toxic one
    (root / "Нейтрально" / "notes.jpg").write_text("this is not an image")
    (root / "Мусор").mkdir()
    (root / "Мусор" / "x.png").write_bytes(_png((1, 2, 3)))
    (root / "README.md").write_text("ignored")
    return root


def test_scan_labels_ids_conflicts_and_bad_files(folder):
    scan = dataset.scan(folder)
    by_path = {rel: m for m in scan.memes.values() for rel, _ in m.paths}
    red = by_path["Негативно/злой мем 😡.png"]
    assert red.meme_id == hashlib.sha256((folder / "Негативно" / "злой мем 😡.png").read_bytes()).hexdigest()
    assert red.label_conflict and red.label is None
    assert red.labels == {"toxic", "non_toxic"}
    assert by_path["Негативно/вложенная папка/deep.png"].label == "toxic"
    cat = by_path["Нейтрально/кот.png"]
    assert cat is by_path["Нейтрально/кот копия.png"] and cat.label == "non_toxic" and not cat.label_conflict
    assert len(scan.memes) == 3
    kinds = {(f["path"], f["error_type"]) for f in scan.failures}
    assert ("Нейтрально/notes.jpg", "BadImage") in kinds
    assert ("Мусор/", "UnknownLabelFolder") in kinds
    assert not any("README" in f["path"] for f in scan.failures)
    assert [f["error_type"] for f in dataset.conflict_failures(scan)] == ["LabelConflict"]


def test_label_map_accepts_english_folders_and_overrides(tmp_path, monkeypatch):
    root = tmp_path / "m"
    (root / "toxic").mkdir(parents=True)
    (root / "bad").mkdir()
    (root / "toxic" / "a.png").write_bytes(_png((9, 9, 9)))
    (root / "bad" / "b.png").write_bytes(_png((8, 8, 8)))
    assert {m.label for m in dataset.scan(root).memes.values()} == {"toxic"}
    monkeypatch.setenv("VLMEMES_LABEL_MAP", "bad=non_toxic")
    assert sorted(m.label for m in dataset.scan(root).memes.values()) == ["non_toxic", "toxic"]


@pytest.mark.parametrize("make, message", [
    (lambda root: None, "does not exist"),
    (lambda root: root.mkdir(), "no label folders"),
    (lambda root: (root / "Негативно").mkdir(parents=True), "no files"),
])
def test_unusable_folder_is_a_clear_error(tmp_path, make, message):
    root = tmp_path / "memes"
    make(root)
    with pytest.raises(dataset.ScanError, match=message):
        dataset.scan(root)


def test_precompute_scan_stores_memes_thumbnails_and_failures(folder, tmp_path, capsys):
    db = tmp_path / "cache.duckdb"
    code = main(["precompute", "--memes", str(folder), "--db", str(db), "--stages", "ocr", "--ocr-engine", "tesseract"])
    assert code == 1, "bad files and the label conflict must make the exit code non-zero"
    store = Store(db)
    memes = store.query("SELECT rel_path, label, label_conflict, width, height, format, thumbnail FROM memes ORDER BY rel_path")
    assert len(memes) == 3
    for rel, label, conflict, w, h, fmt, thumb in memes:
        assert (w, h, fmt) == (64, 48, "PNG")
        im = Image.open(io.BytesIO(thumb))
        assert im.format == "JPEG" and max(im.size) <= 384
    assert {(r[0], r[1], r[2]) for r in memes} == {
        ("Негативно/вложенная папка/deep.png", "toxic", False),
        ("Негативно/злой мем 😡.png", None, True),
        ("Нейтрально/кот копия.png", "non_toxic", False)}
    assert store.query("SELECT count(*) FROM meme_paths")[0][0] == 5
    failures = {(r[0], r[1]) for r in store.query("SELECT path, error_type FROM failures WHERE stage = 'scan'")}
    assert failures == {("Нейтрально/notes.jpg", "BadImage"), ("Мусор/", "UnknownLabelFolder"),
                        ("Негативно/злой мем 😡.png", "LabelConflict")}
    out = capsys.readouterr()
    assert "1 label conflicts" in out.out and "notes.jpg" in out.err


def test_changed_file_retires_old_meme_and_keeps_its_rows(folder, tmp_path):
    db = tmp_path / "cache.duckdb"
    main(["precompute", "--memes", str(folder), "--db", str(db), "--stages", "ocr", "--ocr-engine", "tesseract"])
    target = folder / "Негативно" / "вложенная папка" / "deep.png"
    old_id = hashlib.sha256(target.read_bytes()).hexdigest()
    target.write_bytes(_png((0, 0, 254)))
    main(["precompute", "--memes", str(folder), "--db", str(db), "--stages", "ocr", "--ocr-engine", "tesseract"])
    store = Store(db)
    rows = dict(store.query("SELECT meme_id, retired FROM memes"))
    assert rows[old_id] is True
    assert rows[hashlib.sha256(target.read_bytes()).hexdigest()] is False
    assert store.query("SELECT count(*) FROM ocr WHERE meme_id = ?", [old_id])[0][0] == 1


@pytest.fixture
def decoded(monkeypatch):
    """Record the meme id (SHA-256 of the bytes) of every image Pillow really decodes from here on.

    Every decode in the pipeline (scan probe, thumbnail, stage input) opens an in-memory copy of the
    file's bytes and runs ImageFile.load with a non-empty tile list; `unknown` counts decodes whose
    bytes could not be identified (so a change in how images are opened cannot pass unnoticed)."""
    from PIL import ImageFile
    seen = {"ids": [], "unknown": 0}
    real_load = ImageFile.ImageFile.load

    def load(self):
        if self.tile:                       # pixels still to decode (not an already loaded image)
            if isinstance(self.fp, io.BytesIO):
                seen["ids"].append(hashlib.sha256(self.fp.getvalue()).hexdigest())
            else:
                seen["unknown"] += 1
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return seen


def test_rerun_decodes_only_new_files(folder, tmp_path, decoded):
    """A rerun hashes every file but decodes only bytes the store does not hold yet; new and bad files
    are still probed and recorded exactly as on a first run."""
    from bad_inputs import truncated_png
    db = tmp_path / "cache.duckdb"
    argv = ["precompute", "--memes", str(folder), "--db", str(db), "--stages", "ocr", "--ocr-engine", "tesseract"]
    assert main(argv) == 1
    store = Store(db)
    first = {r[0]: r[1:] for r in store.query("SELECT meme_id, width, height, format, n_frames, thumbnail FROM memes")}
    assert len(first) == 3 and len(set(decoded["ids"]) & set(first)) == 3, "the recorder sees the first run's decodes"

    new, broken = folder / "Нейтрально" / "новый.png", folder / "Негативно" / "broken.png"
    new.write_bytes(_png((7, 7, 7), size=(80, 60)))
    broken.write_bytes(truncated_png())          # a valid header: only decoding finds the damage
    new_id, broken_id = (hashlib.sha256(p.read_bytes()).hexdigest() for p in (new, broken))
    decoded["ids"].clear()
    assert main(argv) == 1
    assert not set(decoded["ids"]) & set(first), "a meme stored by the first run must not be decoded again"
    assert new_id in decoded["ids"] and broken_id in decoded["ids"] and decoded["unknown"] == 0
    assert decoded["ids"].count(broken_id) == 1, "a bad file is decoded once, in the scan"

    rows = {r[0]: r[1:] for r in store.query("SELECT meme_id, width, height, format, n_frames, thumbnail FROM memes")}
    assert {k: rows[k] for k in first} == first, "stored memes keep their row"
    assert rows[new_id][:4] == (80, 60, "PNG", 1) and rows[new_id][4] is not None, "the new meme is probed, with a thumbnail"
    assert broken_id not in rows
    failures = {r[0]: (r[1], r[2]) for r in store.query(
        "SELECT path, error_type, message FROM failures WHERE stage = 'scan' AND run_id = 2")}
    assert failures["Негативно/broken.png"][0] == "BadImage" and "not a readable image" in failures["Негативно/broken.png"][1]
    assert set(failures) == {"Негативно/broken.png", "Нейтрально/notes.jpg", "Мусор/", "Негативно/злой мем 😡.png"}
    assert failures["Негативно/злой мем 😡.png"][0] == "LabelConflict", "a stored meme's label conflict is still found"
    assert store.query("SELECT count(*) FROM meme_paths")[0][0] == 6

    # The scan itself: the same result with and without `known`, only fewer decodes.
    known = store.known_image_infos()
    assert set(known) == set(first) | {new_id}
    full, quick = dataset.scan(folder), dataset.scan(folder, known=known)
    assert {k: (m.paths, m.info, m.n_bytes) for k, m in quick.memes.items()} == \
        {k: (m.paths, m.info, m.n_bytes) for k, m in full.memes.items()}
    assert quick.failures == full.failures and quick.files_seen == full.files_seen == 8
    assert (full.probed, quick.probed) == (6, 2), "4 distinct images + 2 bad files; with `known` only the bad ones"

    # A meme stored without a thumbnail (its thumbnail failed) is not known: the next scan probes it again.
    with store.transaction() as con:
        con.execute("UPDATE memes SET thumbnail = NULL, thumbnail_mime = NULL WHERE meme_id = ?", [new_id])
    assert new_id not in store.known_image_infos()


def test_annotations_command(folder, tmp_path, capsys):
    out = tmp_path / "annotations.csv"
    code = main(["annotations", "--memes", str(folder), "--out", str(out)])
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "path,label"
    assert f"{folder.as_posix()}/Нейтрально/кот.png,non_toxic" in lines
    assert f"{folder.as_posix()}/Негативно/злой мем 😡.png,toxic" in lines
    assert f"{folder.as_posix()}/Нейтрально/conflict.png,non_toxic" in lines
    assert len(lines) == 1 + 5
    assert code == 1 and "notes.jpg" in capsys.readouterr().err


def test_shared_memes_scan(shared_memes):
    scan = dataset.scan(shared_memes)
    labels = [m.label for m in scan.memes.values()]
    assert (labels.count("toxic"), labels.count("non_toxic")) == (26, 25)
    assert not scan.failures and not scan.conflicts
