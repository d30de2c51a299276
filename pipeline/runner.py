"""Running stages over the scanned memes: cache lookups, lazy loading, batches, progress, failures.

The flow of `precompute`:
  1. open the store (clear errors about the --db path before anything heavy), take the run lock;
  2. scan the folder (every file hashed; only bytes not yet stored are decoded), store new memes
     with thumbnails, record bad files and label conflicts;
  3. for each stage: bring its cached rows up to this code where that needs no model (VLM: stored
     answers of an older parser re-parsed, VlmStage.refresh_cached); find the (meme, variant) pairs
     not yet cached; load the model only if there
     are any; process them in batches, writing each batch (results + failures) in one transaction;
     then let the stage go, so its model is freed before the next stage loads one;
  Progress (stage, done/total) goes to `<db>.progress.json` for the dashboard (pipeline/progress.py).
  4. store the metrics summary the dashboard shows first (pipeline/summary.py) and, unless interrupted,
     the Map page's layout of the embeddings where they changed (pipeline/embedding_map.py; a failure
     there is recorded, never fails the run), print a summary and store it in `runs`.
Ctrl-C stops after the current batch; everything written so far stays.
"""
from __future__ import annotations

import contextlib
import gc
import json
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from pipeline import dataset, embedding_map, summary
from pipeline.config import PROJECT_ROOT, THUMBNAIL_MAX_SIDE, THUMBNAIL_QUALITY
from pipeline.engines.local import BatchResult, LocalEngine
from pipeline.errors import first_line
from pipeline.images import BadImage, thumbnail
from pipeline.progress import ProgressWriter
from pipeline.stages import OCR_TEXT_STAGE
from pipeline.stages.base import MemeInput, Stage, StageLoadError, Variant
from pipeline.store import Store, now

JSON_COLUMNS = ("boxes", "logits", "quoted_words")


@dataclass
class StageSummary:
    stage: str
    model: str = ""
    done: int = 0
    cached: int = 0
    failed: int = 0
    seconds: float = 0.0
    error: str | None = None
    refreshed: dict | None = None   # stages with refresh_cached (vlm): cached rows re-parsed / filled in
    no_text: int = 0                # derived-view answers not asked: memes without OCR text (StagePlan.inapplicable)

    def as_dict(self) -> dict:
        out = dict(model=self.model, done=self.done, cached=self.cached, failed=self.failed,
                   seconds=round(self.seconds, 3), error=self.error)
        if self.refreshed is not None:
            out["refreshed"] = self.refreshed
        if self.no_text:
            out["no_text"] = self.no_text
        return out


class StopFlag:
    """First Ctrl-C: finish the current batch, then stop. Second Ctrl-C: stop at once."""

    def __init__(self):
        self.stop = False
        self._previous = None

    def __enter__(self):
        def handler(signum, frame):
            if self.stop:
                raise KeyboardInterrupt
            self.stop = True
            print("\nInterrupted: finishing the current batch (Ctrl-C again to stop at once)…", file=sys.stderr)
        try:
            self._previous = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not in the main thread
            self._previous = None
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


@contextlib.contextmanager
def _sigint_ignored():
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:      # not in the main thread: nothing to mask
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def library_versions() -> dict[str, str]:
    from importlib import metadata
    versions = {"python": platform.python_version()}
    for dist in ("torch", "transformers", "duckdb", "pillow", "pytesseract", "easyocr", "grad-cam", "streamlit"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    try:
        out = subprocess.run(["tesseract", "--version"], capture_output=True, text=True, timeout=10)
        versions["tesseract"] = (out.stdout or out.stderr).splitlines()[0].split()[-1]
    except (OSError, IndexError, subprocess.SubprocessError):
        pass
    return versions


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def describe_device(device: str) -> str:
    """Device name without importing torch for CPU runs (a fully cached rerun must stay fast)."""
    if device != "cpu":
        import torch
        if torch.cuda.is_available():
            return f"cuda: {torch.cuda.get_device_name(0)}"
    import os
    return f"cpu: {platform.machine()}, {os.cpu_count()} cores"


# ------------------------------------------------------------------------------------------ scan
def store_scan(store: Store, scan: dataset.ScanResult, run_id: int, known: Collection[str],
               thumbnail_side: int = THUMBNAIL_MAX_SIDE, thumbnail_quality: int = THUMBNAIL_QUALITY) -> tuple[int, list[dict]]:
    """Write the scan; returns (number of new memes, failures incl. thumbnails that could not be made).
    `known`: the memes stored complete (scan.known: those the scan found in Store.known_image_infos):
    their rows are left as they are, only their paths and labels refreshed. New memes get a JPEG
    thumbnail of at most `thumbnail_side` px at `thumbnail_quality` (--thumbnail-side / -quality)."""
    failures = list(scan.failures) + dataset.conflict_failures(scan)
    new_rows, seen_rows, paths = [], [], []
    for m in tqdm(scan.sorted_memes(), desc="scan", unit="meme", leave=False):
        for rel, label in m.paths:
            paths.append(dict(meme_id=m.meme_id, rel_path=rel, label=label, last_seen_run_id=run_id))
        common = dict(meme_id=m.meme_id, label=m.label, label_conflict=m.label_conflict, rel_path=m.rel_path)
        if m.meme_id in known:
            seen_rows.append(dict(common, phash=m.info.phash))
            continue
        try:
            thumb = thumbnail(m.abs_path, thumbnail_side, thumbnail_quality)
        except (BadImage, OSError, MemoryError) as e:
            failures.append(dict(stage="scan", path=m.rel_path, meme_id=m.meme_id, error_type=type(e).__name__,
                                 message=f"thumbnail failed: {e}"))
            thumb = None
        new_rows.append(dict(common, width=m.info.width, height=m.info.height, format=m.info.format,
                             n_bytes=m.n_bytes, n_frames=m.info.frames, phash=m.info.phash, thumbnail=thumb,
                             thumbnail_mime="image/jpeg" if thumb else None, first_run_id=run_id,
                             last_seen_run_id=run_id, retired=False))
    store.save_scan(run_id, new_rows, seen_rows, paths)
    return len(new_rows), failures


# ------------------------------------------------------------------------------------------ stages
@dataclass
class StagePlan:
    variant: Variant
    todo: list[MemeInput]
    cached: int
    inapplicable: int = 0           # memes the variant has no input for (a derived view without OCR text)


def plan_stage(store: Store, stage: Stage, memes: list[MemeInput], force: bool) -> list[StagePlan]:
    plans = []
    for variant in stage.variants():
        cached_ids = set() if force else store.cached_meme_ids(stage.table_of(variant), variant.variant_id,
                                                               [m.meme_id for m in memes])
        todo = [m for m in memes if m.meme_id not in cached_ids]
        skip = stage.inapplicable(store, variant, todo) if todo else set()
        plans.append(StagePlan(variant, [m for m in todo if m.meme_id not in skip], len(memes) - len(todo), len(skip)))
    return plans


def _row(stage: Stage, variant: Variant, meme: MemeInput, result: dict, seconds: float, run_id: int) -> dict:
    row = dict(result)
    for col in JSON_COLUMNS:
        if col in row and not isinstance(row[col], (str, type(None))):
            row[col] = json.dumps(row[col], ensure_ascii=False)
    row.update(**variant.key_columns(), **stage.row_columns(variant), meme_id=meme.meme_id, run_id=run_id,
               seconds=seconds, created_at=now())
    return row


def _failure(stage: Stage, meme: MemeInput, error: BaseException) -> dict:
    message = str(error) or repr(error)
    error_type = getattr(error, "error_type", None) or type(error).__name__     # engines.ray_engine.RemoteFailure
    return dict(stage=stage.name, meme_id=meme.meme_id, path=meme.rel_path, error_type=error_type,
                message=message[:2000])


def run_stage(store: Store, stage: Stage, memes: list[MemeInput], run_id: int, force: bool,
              stop: StopFlag, progress: ProgressWriter | None = None, index: int = 0,
              engine: LocalEngine | None = None) -> StageSummary:
    engine = engine or LocalEngine()
    summary = StageSummary(stage.name)
    t_start = time.perf_counter()
    try:
        summary.model = stage.describe()
        plans = plan_stage(store, stage, memes, force)
    except StageLoadError as e:
        return _stage_failed(store, stage, summary, run_id, e, len(memes), t_start)
    summary.cached = sum(p.cached for p in plans)
    summary.no_text = sum(p.inapplicable for p in plans)
    pending = sum(len(p.todo) for p in plans)
    if summary.no_text:
        print(f"[{stage.name}] " + stage.inapplicable_note.format(n=summary.no_text))
    if progress:
        progress.stage(stage.name, index, pending, summary.cached)
    store.register_variants([p.variant.variants_row(run_id) for p in plans])
    refresh = getattr(stage, "refresh_cached", None)     # VlmStage: re-parse stored answers, no model
    if refresh is not None:
        summary.refreshed = refresh(store)
    if pending == 0:
        print(f"[{stage.name}] {summary.model}: all {summary.cached} results cached, nothing to compute")
        summary.seconds = time.perf_counter() - t_start
        return summary
    print(f"[{stage.name}] {summary.model}: {pending} to compute, {summary.cached} cached"
          + (f" ({engine.describe()})" if engine.name != "local" else ""))
    with tqdm(total=pending, desc=stage.name, unit="item") as bar:
        try:
            for result in engine.batches(store, stage, plans, stop):
                _write_batch(store, stage, result, run_id, summary, stop, progress, bar)
        except StageLoadError as e:
            return _stage_failed(store, stage, summary, run_id, e, pending - summary.done - summary.failed, t_start)
    summary.seconds = time.perf_counter() - t_start
    return summary


def _write_batch(store: Store, stage: Stage, result: BatchResult, run_id: int, summary: StageSummary,
                 stop: StopFlag, progress: ProgressWriter | None, bar: tqdm) -> None:
    """One batch's rows and failures in one transaction, whichever engine computed it (each variant's rows
    to its table: Stage.table_of)."""
    rows: dict[str, list[dict]] = {}
    failures = []
    for v in result.variants:
        for meme, r in zip(result.memes, result.by_variant[v.variant_id]):
            if isinstance(r, BaseException):
                failures.append(_failure(stage, meme, r))
            else:
                rows.setdefault(stage.table_of(v), []).append(_row(stage, v, meme, r, result.per_item_seconds, run_id))
    if stop.stop and failures:
        # Ctrl-C reaches the whole process group, child processes (tesseract) included, so
        # failures in the batch it interrupted are not trusted: not recorded, retried next run.
        bar.write(f"[{stage.name}] {len(failures)} item(s) of the interrupted batch not recorded "
                  f"as failed (will be retried), e.g. {failures[0]['path']}: {failures[0]['error_type']}")
        failures = []
    store.save_results(rows, None, run_id, failures)
    summary.done += sum(len(r) for r in rows.values())
    summary.failed += len(failures)
    if progress:
        progress.advance(sum(len(r) for r in rows.values()), len(failures))
    bar.update(len(result.memes) * len(result.variants))
    if failures:
        bar.write(f"[{stage.name}] {len(failures)} failed in this batch, e.g. {failures[0]['path']}: "
                  f"{failures[0]['error_type']}: {failures[0]['message'][:200]}")


def _stage_failed(store, stage, summary, run_id, error, count, t_start) -> StageSummary:
    message = first_line(error)
    print(f"[{stage.name}] cannot run: {message}", file=sys.stderr)
    store.record_failures(run_id, [dict(stage=stage.name, meme_id=None, path=None,
                                        error_type=type(error).__name__, message=message)])
    summary.failed += count
    summary.error = message
    summary.seconds = time.perf_counter() - t_start
    return summary


def meme_inputs(scan: dataset.ScanResult, limit: int | None) -> list[MemeInput]:
    memes = [MemeInput(m.meme_id, m.abs_path, m.rel_path, m.label) for m in scan.sorted_memes()]
    return memes[:limit] if limit else memes


def format_summary(summaries: list[StageSummary], scan_line: str) -> str:
    width = max([6, *(len(s.stage) for s in summaries)])
    lines = [scan_line, f"{'stage':<{width}} {'done':>6} {'cached':>7} {'failed':>7} {'seconds':>9}  model"]
    for s in summaries:
        lines.append(f"{s.stage:<{width}} {s.done:>6} {s.cached:>7} {s.failed:>7} {s.seconds:>9.1f}  {s.model}"
                     + (f"  [{s.error}]" if s.error else ""))
    return "\n".join(lines)


def precompute(memes_dir: Path, db: Path, stage_names: list[str], build_stage: Callable[[str], Stage],
               args: dict, limit: int | None = None, force: bool = False, device: str = "cpu",
               engine=None) -> int:
    """The whole precompute; returns the process exit code (0 only when nothing failed).
    `engine`: where the batches run (pipeline/engines: LocalEngine by default, RayEngine)."""
    engine = engine or LocalEngine()
    store = Store(db)                       # path problems are reported here, before any model loads
    with store.run_lock(), StopFlag() as stop:
        # ScanError: missing/empty folder, reported by the CLI. Stored memes are hashed, not decoded again.
        # the stored image facts of the hashed files only (asked per batch of files): never every meme's
        scan = dataset.scan(memes_dir, known=store.known_image_infos)
        store.close_abandoned_runs()
        stages = [build_stage(name) for name in stage_names]
        ocr_variant_id = _ocr_variant_id(stages, build_stage)
        for stage in stages:
            if stage.needs_ocr_text:
                stage.ocr_source = ocr_variant_id
        smoke = any(v.is_smoke for s in stages for v in _safe_variants(s))
        where = describe_device(device) if engine.name == "local" else engine.describe()
        run_id = store.start_run("precompute", args, str(scan.root), library_versions(), where,
                                 git_commit(), models={s.name: _safe_describe(s) for s in stages}, is_smoke=smoke)
        status, error = "failed", None
        summaries: list[StageSummary] = []
        progress = ProgressWriter(db, run_id, n_stages=len(stages))
        try:
            n_new, scan_failures = store_scan(store, scan, run_id, scan.known,
                                              args.get("thumbnail_side", THUMBNAIL_MAX_SIDE),
                                              args.get("thumbnail_quality", THUMBNAIL_QUALITY))
            store.record_failures(run_id, scan_failures)
            scan_line = (f"scan: {len(scan.memes)} memes ({n_new} new) from {scan.files_seen} files, "
                         f"{len(scan.conflicts)} label conflicts, {len(scan_failures)} problems")
            print(scan_line)
            for f in scan_failures:
                print(f"  [scan] {f['path']}: {f['error_type']}: {f['message']}", file=sys.stderr)
            memes = meme_inputs(scan, limit)
            while stages and not stop.stop:
                summaries.append(run_stage(store, stages.pop(0), memes, run_id, force, stop, progress,
                                           len(summaries) + 1, engine))
                release_memory()        # that stage (and its model) is no longer referenced
            failed = bool(scan_failures) or any(s.failed for s in summaries)
            status = "interrupted" if stop.stop else ("failed" if failed else "ok")
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        except Exception as e:
            error = f"{type(e).__name__}: {e}"
            raise
        finally:
            counts = {s.stage: s.as_dict() for s in summaries}
            with _sigint_ignored():     # a further Ctrl-C must not cut the run's own record short
                engine.close()
                _write_summary(store, run_id)
                if status != "interrupted":
                    _write_map(store, run_id)
                store.update_run(run_id, status=status, finished_at=now(), counts=counts, error=error)
                progress.finish(status)
        print(format_summary(summaries, scan_line))
        print(f"run {run_id}: {status}; results in {db}")
        if smoke:
            print("NOTE: random-weight models were used: this is a smoke run, not results.")
        return {"ok": 0, "interrupted": 130}.get(status, 1)


def release_memory() -> None:
    """Free what a finished stage held before the next one loads its model: Python objects now
    unreferenced, and PyTorch's cached GPU blocks (only if torch was imported and a GPU is there)."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _write_summary(store: Store, run_id: int) -> None:
    """Store the metrics the dashboard shows first (pipeline/summary.py). A failure here only costs
    the dashboard's first visit its shortcut: it is reported, and the run's record still written."""
    try:
        summary.write(store, run_id)
    except Exception as e:                  # noqa: BLE001 - never lose the run record over the summary
        print(f"note: metrics summary not stored ({type(e).__name__}: {e}); the dashboard computes it",
              file=sys.stderr)


def _write_map(store: Store, run_id: int) -> None:
    """Store the Map page's 2-D layout of the embeddings (pipeline/embedding_map.py) where they changed.
    A failure is printed and recorded in `failures` (stage `map`), and never fails the run: the page then
    shows the map stored before, or none."""
    try:
        embedding_map.write(store, run_id)
    except Exception as e:                  # noqa: BLE001 - never lose the run record over the map
        print(f"note: map of the embeddings not stored ({type(e).__name__}: {e}); the next precompute retries",
              file=sys.stderr)
        with contextlib.suppress(Exception):
            store.record_failures(run_id, [dict(stage="map", meme_id=None, path=None, error_type=type(e).__name__,
                                                message=str(e)[:500] or type(e).__name__)])


def _safe_variants(stage: Stage) -> list[Variant]:
    try:
        return stage.variants()
    except StageLoadError:
        return []


def _safe_describe(stage: Stage) -> str:
    try:
        return stage.describe()
    except StageLoadError as e:
        return f"unavailable: {e}"


def _ocr_variant_id(stages: list[Stage], build_stage: Callable[[str], Stage]) -> str | None:
    """The OCR variant whose text feeds prompts (this run's OCR engine, even when OCR is not re-run)."""
    ocr = next((s for s in stages if s.provides_ocr_text), None)
    try:
        ocr = ocr or build_stage(OCR_TEXT_STAGE)
        variants = ocr.variants()
        return variants[0].variant_id if variants else None
    except Exception:
        return None
