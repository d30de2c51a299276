"""Where the cache is, and how a script run reads it.

DuckDB allows many read-only processes *or* one writer on a file, and the precompute
(pipeline/store.py) opens the file for short write transactions. So the dashboard never holds a
connection across reruns: app.py opens a `Reader` per script run; its read-only connection is
made lazily (only when some query misses the cache) and closed when the run ends.

Query results are cached with st.cache_data keyed by (file state, query name, parameters); the
file state is (mtime, size) of the database and its .wal, so a finished precompute shows up on the
next rerun without a restart. Failures surface as `CacheUnavailable` subclasses that the app turns
into a plain message (never a lock traceback):

  CacheMissing     no file at the path: show the command that fills it
  CacheBusy        a writer kept the file locked longer than the retry window: "retrying"
  CacheUnreadable  the file is not a DuckDB database
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import streamlit as st

from pipeline import queries
from pipeline.config import DEFAULT_DB
from pipeline.i18n import N_
from pipeline.store import StoreError, connect

ENV_DB = "VLMEMES_DB"
ENV_RETRY = "VLMEMES_DB_RETRY_SECONDS"   # how long a run waits for a writer before saying "busy"
DEFAULT_RETRY_SECONDS = 5.0


def _no_forced_gc() -> None:
    """Turn off Streamlit's full gc.collect() after every script run (runner.postScriptGC, default on)
    unless the server's config sets it. With the dashboard's imports (pandas, Altair, DuckDB) that
    collection walks every live object: it was half the server's CPU time under 20 sessions
    (243 -> 65 ms per page visit without it; benchmarks/dashboard_load.py, docs/benchmarks.md).
    Python's own generational collector still runs; peak memory stayed well under the 1.5 GB target."""
    from streamlit import config as st_config
    if not st_config.is_manually_set("runner.postScriptGC"):
        st_config.set_option("runner.postScriptGC", False, "dashboard/db.py")


_no_forced_gc()


class CacheUnavailable(Exception):
    """The cache cannot be read right now. `text` (English, N_-marked where raised) and its `fields`
    make the message; `message()` gives it in the visitor's language, str() in English."""

    def __init__(self, text: str, **fields: object) -> None:
        self.text, self.fields = text, fields
        super().__init__(text.format(**fields))

    def message(self) -> str:
        from dashboard.lang import _
        return _(self.text, **self.fields)      # dynamic on purpose: the texts are the N_ literals below


class CacheMissing(CacheUnavailable):
    pass


class CacheBusy(CacheUnavailable):
    pass


class CacheUnreadable(CacheUnavailable):
    pass


def resolve_db_path(argv: list[str] | None = None, environ: dict | None = None) -> Path:
    """`--db` after `--` on the streamlit command line, else $VLMEMES_DB, else data/vlmemes.duckdb."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--db")
    args, _rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    environ = os.environ if environ is None else environ
    return Path(args.db or environ.get(ENV_DB) or DEFAULT_DB)


def fill_command(path: Path) -> str:
    return f"python -m pipeline precompute --memes memes_project/memes --db {path}"


def file_state(path: Path) -> tuple | None:
    """(path, mtime_ns, size) of the database and its WAL; None when there is no file."""
    try:
        st_db = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        st_wal = path.with_name(path.name + ".wal").stat()
        wal = (st_wal.st_mtime_ns, st_wal.st_size)
    except FileNotFoundError:
        wal = None
    return (str(path.resolve()), st_db.st_mtime_ns, st_db.st_size, wal)


@dataclass(frozen=True)
class Slice:
    """The slice of every page (the sidebar's ?slice=): the memes whose value of pipeline.slices.SLICES[key] is
    `value`, read through `source` (the OCR engine or image model of the slice, None when it needs none);
    `group_ids`: the memes in a near-duplicate group, for the near_duplicate slice."""
    key: str
    value: str
    source: str | None = None
    group_ids: tuple[str, ...] = ()

    def cache_key(self) -> tuple:
        """What the memoised queries are keyed by (the group's ids hashed: thousands of ids need not be hashed
        again by every query)."""
        return (self.key, self.value, self.source, len(self.group_ids), hash(self.group_ids))


@dataclass
class Reader:
    """One script run's access to the cache: a lazily opened read-only connection, and with a `slice` a cursor
    of it whose temporary views keep only the slice's memes (pipeline.store.slice_views): every query of
    `fetch` reads the slice, `fetch_all_memes` the whole cache."""
    path: Path
    retry_seconds: float = DEFAULT_RETRY_SECONDS
    connections_opened: int = 0
    queries_run: int = 0                       # SQL executions this run (cache misses)
    slice: Slice | None = None
    _con: duckdb.DuckDBPyConnection | None = field(default=None, repr=False)
    _sliced: duckdb.DuckDBPyConnection | None = field(default=None, repr=False)

    def state(self) -> tuple:
        """The file's state; CacheMissing/CacheUnreadable when unusable."""
        if self.path.is_dir():
            raise CacheUnreadable(N_("{path} is a directory, not a cache file; pass --db FILE"), path=self.path)
        state = file_state(self.path)
        if state is None:
            raise CacheMissing(N_("There is no cache at {path} yet."), path=self.path)
        return state

    def key(self, sliced: bool = True) -> tuple:
        """The cache key of every query: the file's state and the slice it reads (None: all memes)."""
        return (*self.state(), self.slice.cache_key() if sliced and self.slice is not None else None)

    def con(self, sliced: bool = True) -> duckdb.DuckDBPyConnection:
        base = self._base()
        if not sliced or self.slice is None:
            return base
        if self._sliced is None:
            from pipeline.store import slice_views
            s = self.slice
            keys = queries.slice_meme_keys(base, s.key, s.value, s.source, s.group_ids)
            cursor = base.cursor()
            slice_views(cursor, keys)
            self._sliced = cursor
        return self._sliced

    def _base(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            self.state()
            try:
                self._con = connect(self.path, read_only=True, retry_seconds=self.retry_seconds)
            except StoreError as e:
                msg = str(e)
                if "locked" in msg:
                    raise CacheBusy(N_("The cache is being written by a precompute; retrying…")) from None
                raise CacheUnreadable(N_("{path} is not a readable VLMemes cache ({error})."), path=self.path,
                                      error=msg) from None
            self.connections_opened += 1
        self.queries_run += 1
        return self._con

    def drop_sliced(self) -> None:
        """Close the slice's cursor (a new slice, or the end of the run); the next sliced query opens another."""
        if self._sliced is not None:
            with contextlib.suppress(Exception):
                self._sliced.close()
            self._sliced = None

    def close(self) -> None:
        self.drop_sliced()
        if self._con is not None:
            with contextlib.suppress(Exception):
                self._con.close()
            self._con = None


_local = threading.local()


@contextlib.contextmanager
def script_run(path: Path) -> Iterator[Reader]:
    """Make a Reader current for this script run (thread) and close its connection at the end."""
    retry = float(os.environ.get(ENV_RETRY, DEFAULT_RETRY_SECONDS))
    reader = Reader(path, retry_seconds=retry)
    previous = getattr(_local, "reader", None)
    _local.reader = reader
    try:
        yield reader
    finally:
        reader.close()
        _local.reader = previous


def reader() -> Reader:
    r = getattr(_local, "reader", None)
    if r is None:
        raise RuntimeError("dashboard pages run inside dashboard/app.py (streamlit run dashboard/app.py)")
    return r


def _query_function(name: str) -> Callable[..., Any]:
    if name not in queries.QUERIES:
        raise KeyError(f"unknown query {name!r}")
    return queries.QUERIES[name]


@st.cache_data(max_entries=256, show_spinner=False)
def _cached(_reader: Reader, key: tuple, name: str, args: tuple) -> Any:
    return _query_function(name)(_reader.con(sliced=key[-1] is not None), *args)


@st.cache_data(max_entries=24, show_spinner=False)
def _cached_page(_reader: Reader, key: tuple, name: str, args: tuple) -> Any:
    return _query_function(name)(_reader.con(sliced=key[-1] is not None), *args)


def fetch(query: Callable[..., Any], *args: Any) -> Any:
    """queries.<query>(con, *args) for this run's cache and slice, memoised per (file state, slice, query,
    args)."""
    r = reader()
    return _cached(r, r.key(), query.__name__, args)


def fetch_all_memes(query: Callable[..., Any], *args: Any) -> Any:
    """Like fetch, over the whole cache whatever the slice (the slice's own choices; a meme outside it)."""
    r = reader()
    return _cached(r, r.key(sliced=False), query.__name__, args)


def fetch_page(query: Callable[..., Any], *args: Any) -> Any:
    """Like fetch, for gallery pages (thumbnails): a small memo, so memory stays bounded."""
    r = reader()
    return _cached_page(r, r.key(), query.__name__, args)


def set_slice(s: Slice | None) -> None:
    """The slice this run's pages read (app.py, from the sidebar), before any page query."""
    r = reader()
    if r.slice != s:
        r.drop_sliced()
        r.slice = s


def current_slice() -> Slice | None:
    return reader().slice


def state_key() -> tuple:
    """The current file state and slice, for callers that memoise derived results themselves."""
    return reader().key()
