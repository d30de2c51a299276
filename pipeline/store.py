"""The prediction cache: the only code that writes the DuckDB file.

DuckDB allows one writing process *or* many reading processes on a file at a time, so every
connection here is short-lived: a writer opens, writes one batch in one transaction, and closes;
readers (the dashboard) do the same per page run. Both retry while the other holds the file.
A whole precompute additionally holds `<db>.lock` (fcntl), so two runs never interleave.

The tables and columns are the contract the dashboard reads: docs/schema.md.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Collection, Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from pipeline.errors import VlmemesError
from pipeline.images import ImageInfo

SCHEMA_VERSION = "1"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);

CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY,
    command VARCHAR,
    started_at TIMESTAMP,
    finished_at TIMESTAMP,
    status VARCHAR,            -- running | ok | failed | interrupted
    args VARCHAR,              -- JSON
    memes_root VARCHAR,        -- absolute folder scanned (NULL for non-scan commands)
    versions VARCHAR,          -- JSON: python and library versions
    device VARCHAR,
    git_commit VARCHAR,
    counts VARCHAR,            -- JSON: {stage: {done, cached, failed, seconds}}
    models VARCHAR,            -- JSON: {stage: model id / engine}
    is_smoke BOOLEAN DEFAULT FALSE,
    error VARCHAR
);

CREATE TABLE IF NOT EXISTS failures (
    run_id INTEGER,
    stage VARCHAR,             -- scan | ocr | clip | vlm | cam | <stage>:load
    meme_id VARCHAR,
    path VARCHAR,              -- relative to the memes folder
    error_type VARCHAR,
    message VARCHAR,
    created_at TIMESTAMP
);

CREATE TABLE IF NOT EXISTS memes (
    meme_id VARCHAR PRIMARY KEY,   -- SHA-256 of the file bytes
    label VARCHAR,                 -- toxic | non_toxic | NULL when label_conflict
    label_conflict BOOLEAN DEFAULT FALSE,
    rel_path VARCHAR,              -- first path seen, relative to the memes folder
    width INTEGER,
    height INTEGER,
    format VARCHAR,
    n_bytes BIGINT,
    n_frames INTEGER,
    thumbnail BLOB,                -- JPEG, longest side <= 384 px
    thumbnail_mime VARCHAR,
    first_run_id INTEGER,
    last_seen_run_id INTEGER,
    retired BOOLEAN DEFAULT FALSE  -- no file with these bytes was found by the latest scan
);

CREATE TABLE IF NOT EXISTS meme_paths (
    meme_id VARCHAR,
    rel_path VARCHAR,
    label VARCHAR,
    last_seen_run_id INTEGER,
    PRIMARY KEY (meme_id, rel_path)
);

CREATE TABLE IF NOT EXISTS variants (
    variant_id VARCHAR PRIMARY KEY, -- short hash of (stage, model_id, config_hash, stage_version)
    stage VARCHAR,                  -- ocr | clip | vlm | cam
    model_id VARCHAR,               -- model id/path, or OCR engine name
    name VARCHAR,                   -- prompt version (clip/vlm), method (cam), engine (ocr)
    config_hash VARCHAR,
    stage_version VARCHAR,
    config VARCHAR,                 -- JSON
    is_smoke BOOLEAN DEFAULT FALSE, -- random-weight model: never results
    first_run_id INTEGER
);

CREATE TABLE IF NOT EXISTS ocr (
    meme_id VARCHAR, variant_id VARCHAR, model_id VARCHAR, config_hash VARCHAR, stage_version VARCHAR,
    engine VARCHAR,                 -- the engine actually used
    engine_version VARCHAR,
    text VARCHAR,
    boxes VARCHAR,                  -- JSON list of {"box": [x0, y0, x1, y1], "text": str, "conf": 0..1}
    mean_confidence DOUBLE,
    seconds DOUBLE, run_id INTEGER, created_at TIMESTAMP,
    PRIMARY KEY (meme_id, variant_id)
);

CREATE TABLE IF NOT EXISTS predictions (
    meme_id VARCHAR, variant_id VARCHAR, model_id VARCHAR, config_hash VARCHAR, stage_version VARCHAR,
    stage VARCHAR,                  -- clip | vlm
    prompt_version VARCHAR,
    label VARCHAR,                  -- toxic | non_toxic | NULL (VLM answer stated no class)
    score DOUBLE,                   -- p(toxic)
    logits VARCHAR,                 -- JSON {class: logit}
    prompt VARCHAR,
    raw_answer VARCHAR,
    explanation VARCHAR,
    is_smoke BOOLEAN DEFAULT FALSE,
    seconds DOUBLE, run_id INTEGER, created_at TIMESTAMP,
    PRIMARY KEY (meme_id, variant_id)
);

CREATE TABLE IF NOT EXISTS heatmaps (
    meme_id VARCHAR, variant_id VARCHAR, model_id VARCHAR, config_hash VARCHAR, stage_version VARCHAR,
    method VARCHAR,                 -- eigencam | gradcam
    grid_h INTEGER, grid_w INTEGER,
    cam BLOB,                       -- uint8 row-major grid_h x grid_w, 0..255
    overlay BLOB,                   -- JPEG overlay at thumbnail size
    is_smoke BOOLEAN DEFAULT FALSE,
    seconds DOUBLE, run_id INTEGER, created_at TIMESTAMP,
    PRIMARY KEY (meme_id, variant_id)
);

CREATE TABLE IF NOT EXISTS view_images (   -- views stage: the derived images of a meme (pipeline/views.py)
    meme_id VARCHAR, variant_id VARCHAR, model_id VARCHAR, config_hash VARCHAR, stage_version VARCHAR,
    view VARCHAR,                   -- caption-removed | caption-only
    has_caption BOOLEAN,            -- FALSE: the OCR text has no letter or digit, so no derived view (no thumbnail)
    n_boxes INTEGER,                -- OCR boxes inpainted (caption-removed) / of the caption
    thumbnail BLOB, thumbnail_mime VARCHAR, width INTEGER, height INTEGER,   -- the derived image, as the models saw it
    seconds DOUBLE, run_id INTEGER, created_at TIMESTAMP, meme_key INTEGER,
    PRIMARY KEY (meme_id, variant_id)
);

CREATE TABLE IF NOT EXISTS faithfulness (  -- faithfulness stage: per meme and CAM method / VLM set (pipeline/faithfulness.py)
    meme_id VARCHAR, variant_id VARCHAR, model_id VARCHAR, config_hash VARCHAR, stage_version VARCHAR,
    source_variant VARCHAR,         -- the heatmaps (CAM method) or predictions (VLM set) variant measured
    measure VARCHAR,                -- cam | answer
    has_caption BOOLEAN,            -- the OCR text has a letter or digit (else no box, no caption word: NULLs)
    caption_mass DOUBLE,            -- cam: share of the CAM mass inside the OCR boxes (visible part of the meme)
    caption_area DOUBLE,            -- cam: share of the visible area the boxes cover
    caption_ratio DOUBLE,           -- cam: mass / area (> 1: the map favours the caption)
    boxes_seen DOUBLE,              -- cam: share of the boxes the model input shows (center-crop cuts)
    quote_overlap DOUBLE,           -- answer: share of the caption's words the explanation uses
    quotes_caption BOOLEAN,         -- answer: the explanation quotes the caption (the stated rule)
    quoted_words VARCHAR,           -- answer: JSON list of those caption words
    contradiction BOOLEAN,          -- answer: possible contradiction (explanation states the other class)
    contradiction_cue VARCHAR,      -- answer: the wording that states it
    failure_kind VARCHAR,           -- answer without a class: refusal | hedge | template echo | empty or cut off | other
    seconds DOUBLE, run_id INTEGER, created_at TIMESTAMP, meme_key INTEGER,
    PRIMARY KEY (meme_id, variant_id)
);

CREATE TABLE IF NOT EXISTS embeddings (    -- CLIP stage: each meme's image embedding per image model (issue 17)
    meme_id VARCHAR, variant_id VARCHAR, model_id VARCHAR, config_hash VARCHAR, stage_version VARCHAR,
    dim INTEGER,                    -- length of the vector (the model's image embedding size)
    embedding FLOAT[],              -- L2-normalised, rounded to float16 precision (cosine = list_cosine_similarity)
    is_smoke BOOLEAN DEFAULT FALSE,
    seconds DOUBLE, run_id INTEGER, created_at TIMESTAMP, meme_key INTEGER,
    PRIMARY KEY (meme_id, variant_id)
);

CREATE TABLE IF NOT EXISTS map_points (    -- pipeline/embedding_map.py: the Map page, a 2-D layout per embedding variant
    variant_id VARCHAR,             -- the embedding variant (image model) laid out
    meme_key INTEGER, meme_id VARCHAR,
    x FLOAT, y FLOAT,               -- the layout's coordinates (rounded to 3 decimals; no unit)
    method VARCHAR,                 -- umap | pca (fewer than embedding_map.MIN_UMAP_MEMES memes)
    template INTEGER,               -- template cluster (embedding_map.TEMPLATE_COSINE): 1 = the largest; NULL: none
    map_version VARCHAR,            -- embedding_map.MAP_VERSION
    run_id INTEGER,                 -- the run that computed it
    PRIMARY KEY (variant_id, meme_key)
);

CREATE TABLE IF NOT EXISTS maps (          -- pipeline/embedding_map.py: one row per stored map
    variant_id VARCHAR PRIMARY KEY,
    fingerprint VARCHAR,            -- queries.map_fingerprints of the embeddings it was computed from
    method VARCHAR, n INTEGER, map_version VARCHAR, run_id INTEGER,
    seconds DOUBLE                  -- reading the vectors and laying them out
);

CREATE TABLE IF NOT EXISTS summaries (  -- pipeline/summary.py: metrics per prediction set, computed by run_id
    include_retired BOOLEAN, variant_id VARCHAR, run_id INTEGER,
    classification VARCHAR,         -- JSON: pipeline.metrics ClassificationReport.as_dict()
    roc VARCHAR,                    -- JSON: [{fpr, tpr, threshold}], thinned for drawing
    PRIMARY KEY (include_retired, variant_id)
);
"""

# Columns added after schema version 1 shipped: appended to existing caches (and to new ones, so the
# column order is the same in both) when a writer opens the file. Readers of a cache no writer has
# opened since must allow for their absence.
MIGRATIONS = """
ALTER TABLE predictions ADD COLUMN IF NOT EXISTS label_mass DOUBLE;       -- VLM: p(toxic token) + p(non_toxic token)
ALTER TABLE predictions ADD COLUMN IF NOT EXISTS parser_version VARCHAR;  -- VLM: pipeline.stages.vlm_answer.PARSER_VERSION
ALTER TABLE predictions ADD COLUMN IF NOT EXISTS score_note VARCHAR;      -- served VLM: why score is NULL
ALTER TABLE runs ADD COLUMN IF NOT EXISTS origin VARCHAR;                 -- merged in: "<file>: run <id>"
ALTER TABLE failures ADD COLUMN IF NOT EXISTS origin VARCHAR;             -- merged in: "<file>: run <id>"
CREATE TABLE IF NOT EXISTS pair_summaries (    -- pipeline/summary.py: the Disagreement page's paired tests
    include_retired BOOLEAN,
    variant_ids VARCHAR,            -- JSON list: the prediction sets compared (queries.prediction_sets order)
    run_id INTEGER,
    tests VARCHAR,                  -- JSON: summary.pair_tests(), every pair of those sets, Holm-adjusted
    tables VARCHAR,                 -- JSON: {"<a> <b>": [[truth, answer a, answer b, memes], ...]} per pair
    PRIMARY KEY (include_retired, variant_ids)
);
ALTER TABLE pair_summaries ADD COLUMN IF NOT EXISTS tables VARCHAR;
CREATE TABLE IF NOT EXISTS merge_conflicts (   -- `vlmemes merge`: same key, other values; the first kept
    run_id INTEGER,                 -- the merge run
    table_name VARCHAR,
    key VARCHAR,                    -- JSON of the key columns
    origin VARCHAR,                 -- the file whose row was not taken
    kept VARCHAR,                   -- JSON: the compared columns of the row kept
    other VARCHAR                   -- JSON: the same columns of the row not taken
);
ALTER TABLE memes ADD COLUMN IF NOT EXISTS meme_key INTEGER;        -- the integer key: assigned in scan order
ALTER TABLE meme_paths ADD COLUMN IF NOT EXISTS meme_key INTEGER;   -- = memes.meme_key of meme_id
ALTER TABLE ocr ADD COLUMN IF NOT EXISTS meme_key INTEGER;
ALTER TABLE predictions ADD COLUMN IF NOT EXISTS meme_key INTEGER;
ALTER TABLE heatmaps ADD COLUMN IF NOT EXISTS meme_key INTEGER;
CREATE TABLE IF NOT EXISTS analysis_summaries (    -- pipeline/summary.py: analyses stored with the metrics
    include_retired BOOLEAN,
    kind VARCHAR,                   -- near_duplicates | label_issues
    run_id INTEGER,
    body VARCHAR,                   -- JSON: queries.live_near_duplicates() / summary.label_issues() of the default sets
    PRIMARY KEY (include_retired, kind)
);
ALTER TABLE summaries ADD COLUMN IF NOT EXISTS calibration VARCHAR;   -- JSON: summary.calibration_summary() of a scored set
ALTER TABLE memes ADD COLUMN IF NOT EXISTS phash BIGINT;                  -- perceptual hash (pipeline/near_duplicates.py)
ALTER TABLE map_points ADD COLUMN IF NOT EXISTS template INTEGER;         -- template cluster (pipeline/embedding_map.py)
"""

# The integer surrogate key. meme_id (the SHA-256 of the file) stays the public id of a meme; every
# table that holds meme rows also holds memes.meme_key, which Store assigns (memes, in scan order) and
# fills (the others, from memes) on every insert, so the read layer joins and looks up on a 4-byte
# integer instead of a 64-character string (5-10x faster joins at 1M memes: docs/benchmarks.md).
# Caches from before the key get it when a writer opens them (Store.__init__: fill_meme_keys); a
# reader of a cache no writer has opened since sees `meme_id AS meme_key` (connect: _keyless_views).
KEYED_TABLES = ("meme_paths", "ocr", "predictions", "heatmaps", "view_images", "faithfulness", "embeddings")

# `vlmemes merge`: per table, the key and the columns that must agree for two rows to be the same
# result (the rest may differ between machines: run ids, timings, first paths seen).
MERGE_TABLES = (
    ("variants", ("variant_id",), ("stage", "model_id", "name", "config_hash", "stage_version")),
    ("memes", ("meme_id",), ("label", "label_conflict")),
    ("meme_paths", ("meme_id", "rel_path"), ("label",)),
    ("ocr", ("meme_id", "variant_id"), ("text",)),
    ("predictions", ("meme_id", "variant_id"), ("label", "score", "raw_answer")),
    ("heatmaps", ("meme_id", "variant_id"), ("grid_h", "grid_w", "md5(cam)")),
    ("view_images", ("meme_id", "variant_id"), ("has_caption", "md5(thumbnail)")),
    ("faithfulness", ("meme_id", "variant_id"), ("has_caption", "quotes_caption", "contradiction", "failure_kind")),
    ("embeddings", ("meme_id", "variant_id"), ("dim", "embedding")),
)
RUN_ID_COLUMNS = ("run_id", "first_run_id", "last_seen_run_id")
SCORE_TOLERANCE = 1e-6              # |score A - score B| up to this is the same score (float printing)
# Two stored embeddings of one key are the same result at cosine >= 1 - this (float16 rounding and another
# device's arithmetic leave them at cosine > 0.9999; another model, view or meme is far below)
EMBEDDING_TOLERANCE = 1e-3

STAGE_TABLES = ("ocr", "predictions", "heatmaps", "view_images", "faithfulness", "embeddings")
APPEND_ONLY_TABLES = ("failures",)  # no primary key: rows are only ever added
LOCK_RETRY_SECONDS = 60.0


class StoreError(VlmemesError):
    """A problem with the database file itself, explained in one line."""


def now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def short_hash(*parts: Any, n: int = 12) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:n]


def _is_lock_error(e: Exception) -> bool:
    msg = str(e).lower()
    return "lock" in msg and ("conflicting" in msg or "could not set" in msg or "resource temporarily" in msg)


def connect(path: str | Path, read_only: bool, retry_seconds: float = LOCK_RETRY_SECONDS) -> duckdb.DuckDBPyConnection:
    """Open the file, waiting while another process holds a conflicting lock. A read-only connection to
    a cache from before the integer key sees it as `meme_id` (_keyless_views)."""
    deadline = time.monotonic() + retry_seconds
    delay = 0.02
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            if read_only:
                _keyless_views(con)
            return con
        except (duckdb.IOException, duckdb.Error) as e:
            if _is_lock_error(e) and time.monotonic() < deadline:
                time.sleep(delay)
                delay = min(delay * 1.5, 0.5)
                continue
            if _is_lock_error(e):
                raise StoreError(f"{path} stayed locked by another process for {retry_seconds:.0f} s") from None
            raise StoreError(f"{path} could not be opened as a DuckDB database: {e}") from None


# tables added after the first caches shipped (stage tables; the Map page's)
LATER_TABLES = ("view_images", "faithfulness", "embeddings", "map_points", "maps")


def _table_ddl(table: str) -> str:
    """The CREATE TABLE statement of `table` in SCHEMA (with its comments)."""
    start = SCHEMA.index(f"CREATE TABLE IF NOT EXISTS {table} (")
    return SCHEMA[start:SCHEMA.index("\n);", start) + 3]


def _keyless_views(con: duckdb.DuckDBPyConnection) -> None:
    """On a read-only connection to a cache no writer has opened since meme_key exists: temporary views
    of its tables that lack the column, with `meme_id AS meme_key` (the same joins, on the text id), so
    the read layer has one form of every query. A cache with the key is left as it is. A cache from
    before a table of LATER_TABLES gets it empty, as a temporary table."""
    lacking = [r[0] for r in con.execute(
        "SELECT t.table_name FROM duckdb_tables() t WHERE t.database_name = current_database() "
        "AND t.schema_name = 'main' AND t.table_name IN (SELECT unnest($tables)) AND NOT EXISTS ("
        "SELECT 1 FROM duckdb_columns() c WHERE c.database_name = t.database_name AND c.schema_name = 'main' "
        "AND c.table_name = t.table_name AND c.column_name = 'meme_key')",
        {"tables": ["memes", *KEYED_TABLES]}).fetchall()]
    have = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = "
                                      "current_database() AND schema_name = 'main'").fetchall()}
    for table in LATER_TABLES:      # a cache from before a stage's table: an empty temporary one of its columns
        if table not in have:
            con.execute(_table_ddl(table).replace("CREATE TABLE IF NOT EXISTS", "CREATE TEMP TABLE", 1))
    if lacking:
        db = con.execute("SELECT current_database()").fetchall()[0][0]
        for table in lacking:      # names from the fixed list above; the database name quoted
            quoted = '"' + db.replace('"', '""') + '"'
            con.execute(f"CREATE TEMP VIEW {table} AS SELECT rowid AS rowid, *, meme_id AS meme_key "
                        f"FROM {quoted}.main.{table}")      # rowid kept: the overlay lookup reads by it


SLICED_TABLES = ("memes", *KEYED_TABLES, "map_points")      # the tables of meme rows a slice restricts


def slice_views(con: duckdb.DuckDBPyConnection, meme_keys: pa.Table) -> None:
    """On a read-only connection (a cursor the dashboard keeps for one slice, dashboard/db.py): temporary views of
    memes and every table of meme rows (SLICED_TABLES) that keep only the memes `meme_keys` (an Arrow table with
    one column meme_key), so every query on this connection reads the slice without knowing it. The views shadow
    the file's tables (and _keyless_views' views of a cache from before the key, built the same way); the file
    is never written."""
    _keyless_views(con)
    db = con.execute("SELECT current_database()").fetchall()[0][0]
    quoted = '"' + db.replace('"', '""') + '"'
    con.register("_slice_keys", meme_keys)
    try:
        con.execute("CREATE OR REPLACE TEMP TABLE slice_keys AS SELECT DISTINCT meme_key FROM _slice_keys")
    finally:
        con.unregister("_slice_keys")
    in_file = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = "
                                         "current_database() AND schema_name = 'main'").fetchall()}
    keyed = {r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_columns() WHERE database_name = current_database() AND schema_name = 'main' "
        "AND column_name = 'meme_key'").fetchall()}
    for table in SLICED_TABLES:     # names from the fixed list; a table the file lacks is _keyless_views' empty one
        if table not in in_file:
            continue
        key = "meme_key" if table in keyed else "meme_id"
        extra = "" if table in keyed else ", meme_id AS meme_key"
        con.execute(f"CREATE OR REPLACE TEMP VIEW {table} AS SELECT rowid AS rowid, *{extra} FROM {quoted}.main.{table} "
                    f"WHERE {key} IN (SELECT meme_key FROM temp.main.slice_keys)")


class Store:
    """Writes and reads the prediction cache at `path` (created on first use)."""

    def __init__(self, path: str | Path, create: bool = True):
        self.path = Path(path)
        self._check_path(create)
        if create:
            with self.transaction() as con:
                con.execute(SCHEMA)
                con.execute(MIGRATIONS)
                self.fill_meme_keys(con)
                con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [SCHEMA_VERSION])

    @staticmethod
    def fill_meme_keys(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
        """Give memes without a meme_key one (after the largest, in first-run then file order) and copy
        it into the rows of KEYED_TABLES that lack it: the migration of caches from before the key (and a
        repair of rows some other writer added without it). Returns the rows filled per table; a cache
        whose keys are all set costs one count per table."""
        filled: dict[str, int] = {}
        for table in ("memes", *KEYED_TABLES):
            missing = con.execute(f"SELECT count(*) FROM {table} WHERE meme_key IS NULL").fetchall()[0][0]
            if not missing:
                continue
            if table == "memes":
                con.execute("""
                    UPDATE memes SET meme_key = k.meme_key FROM (
                        SELECT meme_id, (SELECT coalesce(max(meme_key), 0) FROM memes)
                               + row_number() OVER (ORDER BY first_run_id NULLS LAST, rowid) AS meme_key
                        FROM memes WHERE meme_key IS NULL) k
                    WHERE memes.meme_id = k.meme_id""")
            else:
                con.execute(f"UPDATE {table} SET meme_key = m.meme_key FROM memes m "
                            f"WHERE {table}.meme_key IS NULL AND {table}.meme_id = m.meme_id")
            filled[table] = int(missing)
        return filled

    def _check_path(self, create: bool) -> None:
        parent = self.path.resolve().parent
        if self.path.is_dir():
            raise StoreError(f"--db {self.path} is a directory; give a file path such as {self.path / 'vlmemes.duckdb'}")
        if not self.path.exists():
            if not create:
                raise StoreError(f"no database at {self.path}; run `python -m pipeline precompute --db {self.path}` first")
            if not parent.is_dir():
                raise StoreError(f"the directory {parent} does not exist; create it or choose another --db")
            if not os.access(parent, os.W_OK):
                raise StoreError(f"the directory {parent} is not writable; choose another --db")
        elif create and not os.access(self.path, os.W_OK):
            raise StoreError(f"{self.path} is read-only; choose another --db or fix its permissions")
        elif create and not os.access(parent, os.W_OK):
            # DuckDB writes a .wal file beside the database
            raise StoreError(f"the directory {parent} is not writable (DuckDB needs a .wal file beside the database)")
        if self.path.is_file():
            self._check_header()

    def _check_header(self) -> None:
        """Refuse files that are not DuckDB databases before DuckDB sees them: DuckDB would otherwise
        try to download an extension to open (and then write into) e.g. a SQLite file."""
        with open(self.path, "rb") as fh:
            head = fh.read(16)
        if head[8:12] == b"DUCK":
            return
        what = ("it is empty" if not head else "it is a SQLite database" if head.startswith(b"SQLite format 3")
                else f"it starts with {head[:8].hex(' ')}")
        raise StoreError(f"{self.path} is not a DuckDB database file ({what}); choose another --db "
                         f"or delete it to start a new cache")

    # ---------------------------------------------------------------- connections
    @contextlib.contextmanager
    def transaction(self, attach: Path | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """One short write transaction; the file is released when the block ends. `attach`: another
        cache opened read-only beside it as `src` (the merge)."""
        con = connect(self.path, read_only=False)
        try:
            if attach is not None:
                con.execute("ATTACH ? AS src (READ_ONLY)", [str(attach)])
            con.execute("BEGIN")
            yield con
            con.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):
                con.execute("ROLLBACK")
            raise
        finally:
            con.close()

    @contextlib.contextmanager
    def reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        con = connect(self.path, read_only=True)
        try:
            yield con
        finally:
            con.close()

    @contextlib.contextmanager
    def run_lock(self) -> Iterator[None]:
        """Held for a whole precompute: a second one on the same file refuses at once."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        fh = open(lock_path, "a+")
        held = False
        try:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip() or "another process"
                raise StoreError(f"another precompute ({holder}) is writing to {self.path}; wait for it to finish or use another --db") from None
            held = True
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()}")
            fh.flush()
            yield
        finally:
            if held:   # a refused run must not erase the holder's pid
                with contextlib.suppress(Exception):
                    fh.seek(0)
                    fh.truncate()
            fh.close()

    # ---------------------------------------------------------------- writes
    @staticmethod
    def insert_rows(con: duckdb.DuckDBPyConnection, table: str, rows: list[dict]) -> None:
        """INSERT OR REPLACE rows (dicts of column -> value) by column name."""
        if not rows:
            return
        cols = [c for c in rows[0] if c != "meme_key"]
        data = pa.Table.from_pylist([{c: r[c] for c in cols} for r in rows])
        data = data.append_column("_ord", pa.array(range(len(rows)), pa.int64()))
        con.register("_rows", data)
        try:
            col_list = ", ".join(cols)
            verb = "INSERT" if table in APPEND_ONLY_TABLES else "INSERT OR REPLACE"
            picked = ", ".join(f"r.{c}" for c in cols)
            if table == "memes":      # a stored meme keeps its key; new ones get the next keys, in row order
                con.execute(f"{verb} INTO memes ({col_list}, meme_key) SELECT {picked}, coalesce(old.meme_key, "
                            f"(SELECT coalesce(max(meme_key), 0) FROM memes) + row_number() OVER (ORDER BY r._ord)) "
                            f"FROM _rows r LEFT JOIN memes old ON old.meme_id = r.meme_id ORDER BY r._ord")
            elif table in KEYED_TABLES:
                con.execute(f"{verb} INTO {table} ({col_list}, meme_key) SELECT {picked}, m.meme_key "
                            f"FROM _rows r LEFT JOIN memes m ON m.meme_id = r.meme_id ORDER BY r._ord")
            else:
                con.execute(f"{verb} INTO {table} ({col_list}) SELECT {col_list} FROM _rows ORDER BY _ord")
        finally:
            with contextlib.suppress(duckdb.Error):
                con.unregister("_rows")

    @staticmethod
    def append_table(con: duckdb.DuckDBPyConnection, table: str, data: pa.Table) -> None:
        """Plain INSERT of an Arrow table by column name: bulk writes of rows whose keys cannot be
        there yet (a new cache: pipeline/devtools/synth_db.py); a key already present raises."""
        if not data.num_rows:
            return
        con.register("_rows", data)
        try:
            col_list = ", ".join(data.column_names)
            con.execute(f"INSERT INTO {table} ({col_list}) SELECT {col_list} FROM _rows")
        finally:
            with contextlib.suppress(duckdb.Error):
                con.unregister("_rows")

    def write_rows(self, table: str, rows: list[dict]) -> None:
        with self.transaction() as con:
            self.insert_rows(con, table, rows)

    def start_run(self, command: str, args: dict, memes_root: str | None, versions: dict, device: str,
                  git_commit: str | None, models: dict | None = None, is_smoke: bool = False) -> int:
        with self.transaction() as con:
            run_id = con.execute("SELECT coalesce(max(run_id), 0) + 1 FROM runs").fetchall()[0][0]
            self.insert_rows(con, "runs", [dict(
                run_id=run_id, command=command, started_at=now(), finished_at=None, status="running",
                args=json.dumps(args, default=str, ensure_ascii=False), memes_root=memes_root,
                versions=json.dumps(versions), device=device, git_commit=git_commit, counts="{}",
                models=json.dumps(models or {}, ensure_ascii=False), is_smoke=is_smoke, error=None)])
        return run_id

    def close_abandoned_runs(self) -> int:
        """Runs still `running` while we hold the run lock were killed: mark them `abandoned`."""
        with self.transaction() as con:
            n = con.execute("UPDATE runs SET status = 'abandoned', error = 'the process ended without finishing "
                            "(killed or crashed); its finished batches are kept' WHERE status = 'running'").fetchall()
        return int(n[0][0]) if n else 0

    def update_run(self, run_id: int, **fields: Any) -> None:
        for k in ("counts", "models", "args"):
            if k in fields and not isinstance(fields[k], str):
                fields[k] = json.dumps(fields[k], default=str, ensure_ascii=False)
        if not fields:
            return
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.transaction() as con:
            con.execute(f"UPDATE runs SET {sets} WHERE run_id = ?", [*fields.values(), run_id])

    def record_failures(self, run_id: int, failures: Iterable[dict]) -> None:
        rows = [dict(run_id=run_id, stage=f["stage"], meme_id=f.get("meme_id"), path=f.get("path"),
                     error_type=f.get("error_type"), message=f.get("message"), created_at=now())
                for f in failures]
        if rows:
            self.write_rows("failures", rows)

    # ---------------------------------------------------------------- reads used by the pipeline
    def query(self, sql: str, params: list | None = None) -> list[tuple]:
        with self.reader() as con:
            return con.execute(sql, params or []).fetchall()

    def cached_meme_ids(self, table: str, variant_id: str, meme_ids: Collection[str] | None = None) -> set[str]:
        """The memes with a row of `variant_id` in `table`; with `meme_ids`, only those of them that are
        (the scanned memes: a rerun then reads as many ids as the folder has, not as the cache)."""
        if table not in STAGE_TABLES:
            raise ValueError(table)
        if meme_ids is None:
            return {r[0] for r in self.query(f"SELECT meme_id FROM {table} WHERE variant_id = ?", [variant_id])}
        if not meme_ids:
            return set()
        return {r[0] for r in self.query(
            f"SELECT meme_id FROM {table} SEMI JOIN (SELECT unnest(?) AS meme_id) ids USING (meme_id) "
            "WHERE variant_id = ?", [list(meme_ids), variant_id])}

    # ---------------------------------------------------------------- pipeline-specific writes
    def known_image_infos(self, meme_ids: Collection[str] | None = None) -> dict[str, ImageInfo]:
        """meme_id -> ImageInfo of the memes stored complete (a thumbnail and every probe column), for
        dataset.scan(known=...) and runner.store_scan: files with these bytes were probed by an earlier
        run and are neither decoded nor stored again. Memes without a thumbnail are left out, so they are
        handled as new. Tested on thumbnail_mime (set with the thumbnail): `thumbnail IS NOT NULL`
        would read every blob. `meme_ids`: only these (dataset.scan(known=store.known_image_infos)
        asks for the ids of each batch of files it hashed), else every stored meme."""
        complete = ("thumbnail_mime IS NOT NULL AND width IS NOT NULL AND height IS NOT NULL "
                    "AND format IS NOT NULL AND n_frames IS NOT NULL")
        if meme_ids is None:
            rows = self.query(f"SELECT meme_id, width, height, format, n_frames, phash FROM memes WHERE {complete}")
        elif not meme_ids:
            rows = []
        else:
            rows = self.query(f"SELECT meme_id, width, height, format, n_frames, phash FROM memes SEMI JOIN "
                              f"(SELECT unnest(?) AS meme_id) ids USING (meme_id) WHERE {complete}", [list(meme_ids)])
        return {meme_id: ImageInfo(width, height, fmt, frames, phash) for meme_id, width, height, fmt, frames, phash in rows}

    def save_scan(self, run_id: int, new_memes: list[dict], seen: list[dict], paths: list[dict]) -> int:
        """Store a folder scan in one transaction; returns how many earlier memes were retired.

        new_memes: full `memes` rows (with thumbnail); seen: {meme_id, label, label_conflict, rel_path, phash}
        for memes already stored (phash: hashed now for a meme stored before the scan hashed, else kept);
        paths: the current `meme_paths` (replaces the previous mapping).
        Memes not seen by this scan stay, with retired = TRUE (their results are kept).
        """
        with self.transaction() as con:
            self.insert_rows(con, "memes", new_memes)
            for row in seen:
                con.execute("UPDATE memes SET label = ?, label_conflict = ?, rel_path = ?, last_seen_run_id = ?, "
                            "retired = FALSE, phash = coalesce(?, phash) WHERE meme_id = ?",
                            [row["label"], row["label_conflict"], row["rel_path"], run_id, row.get("phash"),
                             row["meme_id"]])
            retired = con.execute("UPDATE memes SET retired = TRUE WHERE last_seen_run_id IS DISTINCT FROM ? "
                                  "AND NOT retired", [run_id]).fetchall()
            con.execute("DELETE FROM meme_paths")
            self.insert_rows(con, "meme_paths", paths)
        return int(retired[0][0]) if retired else 0

    def register_variants(self, rows: list[dict]) -> None:
        """Add prediction sets / methods / engines to `variants`, keeping the run that first made each."""
        with self.transaction() as con:
            for row in rows:
                exists = con.execute("SELECT 1 FROM variants WHERE variant_id = ?", [row["variant_id"]]).fetchall()
                if not exists:
                    self.insert_rows(con, "variants", [row])

    def save_results(self, table: str | dict[str, list[dict]], rows: list[dict] | None, run_id: int,
                     failures: list[dict]) -> None:
        """One batch of stage results and its failures, in one transaction (a crash loses at most this batch).
        `table`: the stage table of `rows`, or {table: rows} for a batch whose variants write to several
        tables (the CLIP stage: predictions and embeddings; `rows` is then None)."""
        by_table = table if isinstance(table, dict) else {table: rows or []}
        for name in by_table:
            if name not in STAGE_TABLES:
                raise ValueError(name)
        with self.transaction() as con:
            for name, table_rows in by_table.items():
                self.insert_rows(con, name, table_rows)
            self.insert_rows(con, "failures", [dict(run_id=run_id, created_at=now(), **f) for f in failures])

    def save_summaries(self, rows: list[dict], fingerprint: str, pair_rows: list[dict] | None = None,
                       analysis_rows: list[dict] | None = None) -> None:
        """Replace the stored summary (pipeline/summary.py) with `rows` (metrics per set), `pair_rows`
        (paired tests) and the fingerprint of the data they describe (meta key summary_fingerprint),
        in one transaction."""
        with self.transaction() as con:
            con.execute("DELETE FROM summaries")
            self.insert_rows(con, "summaries", rows)
            con.execute("DELETE FROM pair_summaries")
            self.insert_rows(con, "pair_summaries", pair_rows or [])
            con.execute("DELETE FROM analysis_summaries")
            self.insert_rows(con, "analysis_summaries", analysis_rows or [])
            con.execute("INSERT OR REPLACE INTO meta VALUES ('summary_fingerprint', ?)", [fingerprint])

    def save_map_points(self, variant_ids: list[str], points: pa.Table | None, maps: list[dict]) -> None:
        """Replace the stored maps of `variant_ids` (pipeline/embedding_map.py) with `points` (map_points
        rows, None: none) and `maps` (their `maps` rows), in one transaction."""
        with self.transaction() as con:
            con.execute("DELETE FROM map_points WHERE variant_id IN (SELECT unnest(?))", [list(variant_ids)])
            con.execute("DELETE FROM maps WHERE variant_id IN (SELECT unnest(?))", [list(variant_ids)])
            if points is not None:
                self.append_table(con, "map_points", points)
            self.insert_rows(con, "maps", maps)

    def merge_from(self, source: Path, origin: str, merge_run_id: int) -> dict[str, Any]:
        """Unite the cache `source` into this one in one transaction (`vlmemes merge`, pipeline/merge.py).

        Rows are keyed as in MERGE_TABLES. A key absent here is copied; a key present with the same
        compared values is the same result (skipped); one with other values is a conflict: the row here
        is kept and both versions go to `merge_conflicts`. Runs are copied with new ids (after this
        cache's) and `origin`; a run already here (same start time, command, folder and arguments: the
        same file merged twice) maps to its existing id, so merging is idempotent. Failures come with
        their run. Returns {table: {"added", "same", "conflicts"}}."""
        report: dict[str, Any] = {}
        with self.transaction(attach=source) as con:
            report["runs"] = self._merge_runs(con, origin)
            for table, keys, compared in MERGE_TABLES:
                report[table] = self._merge_table(con, table, keys, compared, origin, merge_run_id)
            self.fill_meme_keys(con)    # the copied memes get keys after this cache's; their rows, those keys
        return report

    @staticmethod
    def _columns(con: duckdb.DuckDBPyConnection, database: str, table: str) -> list[str]:
        return [r[0] for r in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE database_name = ? AND schema_name = 'main' "
            "AND table_name = ? ORDER BY column_index", [database, table]).fetchall()]

    def _merge_runs(self, con: duckdb.DuckDBPyConnection, origin: str) -> dict[str, int]:
        offset = con.execute("SELECT coalesce(max(run_id), 0) FROM main.runs").fetchall()[0][0]
        con.execute("""CREATE OR REPLACE TEMP TABLE _runmap AS
            SELECT s.run_id AS old_id,
                   coalesce(m.run_id, ? + row_number() OVER (ORDER BY s.run_id)) AS new_id,
                   m.run_id IS NULL AS is_new
            FROM src.runs s LEFT JOIN main.runs m
              ON m.started_at IS NOT DISTINCT FROM s.started_at AND m.command IS NOT DISTINCT FROM s.command
             AND m.memes_root IS NOT DISTINCT FROM s.memes_root AND m.args IS NOT DISTINCT FROM s.args""", [offset])
        # row_number over all source runs (new ones and known ones alike) leaves gaps, never collisions
        for table in ("runs", "failures"):          # the new runs and their failures, with new ids and origin
            src_cols, shared = self._shared_columns(con, table)
            cols = [c for c in shared if c not in ("run_id", "origin")]
            origin_sql = "coalesce(s.origin, ? || ': run ' || s.run_id)" if "origin" in src_cols \
                else "? || ': run ' || s.run_id"
            con.execute(f"INSERT INTO main.{table} (run_id, origin, {', '.join(cols)}) "
                        f"SELECT r.new_id, {origin_sql}, {', '.join('s.' + c for c in cols)} "
                        f"FROM src.{table} s JOIN _runmap r ON r.old_id = s.run_id WHERE r.is_new", [origin])
        added = con.execute("SELECT count(*) FILTER (is_new), count(*) FILTER (NOT is_new) FROM _runmap").fetchall()[0]
        return {"added": int(added[0]), "same": int(added[1]), "conflicts": 0}

    def _shared_columns(self, con: duckdb.DuckDBPyConnection, table: str) -> tuple[list[str], list[str]]:
        """(the source's columns of `table`, those of them this cache's `table` has too)."""
        here = con.execute("SELECT current_database()").fetchall()[0][0]
        src_cols = self._columns(con, "src", table)
        mine = set(self._columns(con, here, table))
        return src_cols, [c for c in src_cols if c in mine]

    def _merge_table(self, con, table: str, keys: tuple[str, ...], compared: tuple[str, ...], origin: str,
                     merge_run_id: int) -> dict[str, int]:
        src_cols, cols = self._shared_columns(con, table)
        cols = [c for c in cols if c != "meme_key"]     # keys are this cache's: fill_meme_keys after the copy
        if not src_cols:
            return {"added": 0, "same": 0, "conflicts": 0}
        on = " AND ".join(f"m.{k} = s.{k}" for k in keys)
        # compared: plain columns, or one function of a column ("md5(cam)": blobs compared by digest)
        compared = tuple(c for c in compared if c.partition("(")[2].rstrip(")") in src_cols or c in src_cols)

        def value(alias: str, col: str) -> str:
            name, paren, arg = col.partition("(")
            return f"{name}({alias}.{arg}" if paren else f"{alias}.{col}"

        def equal(c: str) -> str:
            if c == "score":
                return f"(m.score IS NOT DISTINCT FROM s.score OR abs(m.score - s.score) <= {SCORE_TOLERANCE})"
            if c == "embedding":     # the same vector up to float16 rounding on other hardware
                return (f"(m.embedding IS NOT DISTINCT FROM s.embedding OR coalesce("
                        f"list_cosine_similarity(m.embedding, s.embedding) >= {1 - EMBEDDING_TOLERANCE}, FALSE))")
            return f"{value('m', c)} IS NOT DISTINCT FROM {value('s', c)}"

        def shown(alias: str, c: str) -> str:     # a vector is listed by its digest, not its 768 numbers
            return f"md5(CAST({alias}.embedding AS VARCHAR))" if c == "embedding" else value(alias, c)

        same = " AND ".join(equal(c) for c in compared) or "TRUE"
        key_json = "to_json({" + ", ".join(f"'{k}': s.{k}" for k in keys) + "})"
        kept = "to_json({" + ", ".join(f"'{c}': {shown('m', c)}" for c in compared) + "})"
        other = "to_json({" + ", ".join(f"'{c}': {shown('s', c)}" for c in compared) + "})"
        n_conflicts = con.execute(
            f"INSERT INTO main.merge_conflicts SELECT ?, ?, {key_json}, ?, {kept}, {other} "
            f"FROM src.{table} s JOIN main.{table} m ON {on} WHERE NOT ({same})",
            [merge_run_id, table, origin]).fetchall()[0][0]
        n_same = con.execute(f"SELECT count(*) FROM src.{table} s JOIN main.{table} m ON {on} WHERE {same}").fetchall()[0][0]
        select = []
        for c in cols:
            if c in RUN_ID_COLUMNS:
                select.append(f"(SELECT new_id FROM _runmap WHERE old_id = s.{c})")
            else:
                select.append(f"s.{c}")
        n_added = con.execute(
            f"INSERT INTO main.{table} ({', '.join(cols)}) SELECT {', '.join(select)} FROM src.{table} s "
            f"WHERE NOT EXISTS (SELECT 1 FROM main.{table} m WHERE {on})").fetchall()[0][0]
        return {"added": int(n_added), "same": int(n_same), "conflicts": int(n_conflicts)}

    def vlm_rows_to_refresh(self, parser_version: str) -> list[tuple]:
        """VLM rows whose label / explanation were read by another parser version, or without a
        label_mass while their logits are stored: (meme_id, variant_id, prompt_version, raw_answer,
        label, explanation, logits, label_mass, parser_version)."""
        return self.query(
            "SELECT meme_id, variant_id, prompt_version, raw_answer, label, explanation, logits, label_mass, "
            "parser_version FROM predictions WHERE stage = 'vlm' AND (parser_version IS DISTINCT FROM ? "
            "OR (label_mass IS NULL AND logits IS NOT NULL)) ORDER BY variant_id, meme_id", [parser_version])

    def update_vlm_parsed(self, rows: list[dict]) -> None:
        """Set label, explanation, label_mass and parser_version of existing VLM rows (dicts with
        meme_id, variant_id and those four), in one transaction; nothing else in the rows changes."""
        if not rows:
            return
        data = pa.Table.from_pylist(rows, schema=pa.schema([
            ("meme_id", pa.string()), ("variant_id", pa.string()), ("label", pa.string()),
            ("explanation", pa.string()), ("label_mass", pa.float64()), ("parser_version", pa.string())]))
        with self.transaction() as con:
            con.register("_parsed", data)
            try:
                con.execute("UPDATE predictions SET label = r.label, explanation = r.explanation, "
                            "label_mass = r.label_mass, parser_version = r.parser_version FROM _parsed r "
                            "WHERE predictions.meme_id = r.meme_id AND predictions.variant_id = r.variant_id "
                            "AND predictions.stage = 'vlm'")
            finally:
                with contextlib.suppress(duckdb.Error):
                    con.unregister("_parsed")

    def ocr_texts(self, meme_ids: list[str], preferred_variant: str | None) -> dict[str, str]:
        """OCR text per meme: the preferred OCR variant's row if present, else the newest OCR row."""
        return {m: text for m, (text, _) in self.ocr_rows(meme_ids, preferred_variant).items()}

    def faithfulness_inputs(self, measure: str, source_variant: str, meme_ids: list[str]) -> dict[str, dict]:
        """What the faithfulness stage measures, per meme: the heatmap of a CAM method (measure "cam": cam,
        grid_h, grid_w) or the answer of a VLM set ("answer": label, raw_answer, explanation, prompt)."""
        columns = ("cam", "grid_h", "grid_w") if measure == "cam" else ("label", "raw_answer", "explanation", "prompt")
        table = "heatmaps" if measure == "cam" else "predictions"
        rows = self.query(f"SELECT meme_id, {', '.join(columns)} FROM {table} WHERE variant_id = ? "
                          "AND meme_id IN (SELECT unnest(?))", [source_variant, meme_ids])
        return {r[0]: dict(zip(columns, r[1:])) for r in rows}

    def ocr_rows(self, meme_ids: list[str], preferred_variant: str | None) -> dict[str, tuple[str, list]]:
        """(text, boxes) per meme from one OCR row, chosen as ocr_texts chooses it (boxes: the parsed JSON list)."""
        rows = self.query(
            "SELECT meme_id, text, boxes FROM ocr WHERE meme_id IN (SELECT unnest(?)) "
            "ORDER BY meme_id, (variant_id = ?) DESC, created_at DESC", [meme_ids, preferred_variant or ""])
        out: dict[str, tuple[str, list]] = {}
        for meme_id, text, boxes in rows:
            if meme_id not in out:
                out[meme_id] = (text or "", json.loads(boxes) if boxes else [])
        return out
