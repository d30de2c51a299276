"""`vlmemes <command>` (or `python -m pipeline <command>`): precompute, status, annotations, export, dashboard.

Every option has a default, so `python -m pipeline precompute` runs the whole study on
memes_project/memes into data/vlmemes.duckdb.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

from pipeline import dataset, demo, stages
from pipeline.config import DEFAULT_DB, DEFAULT_MEMES_DIR, MODEL_MAX_SIDE, THUMBNAIL_MIN_SIDE
from pipeline.errors import VlmemesError
from pipeline.options import DEFAULTS, Options
from pipeline.stages.base import Stage


def _stages(value: str) -> list[str]:
    names = [s.strip() for s in value.split(",") if s.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"no stage given; choose from {','.join(stages.STAGE_ORDER)}")
    try:
        return stages.ordered(names)                # always in dependency order
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _thumbnail_side(value: str) -> int:
    side = int(value)
    if not THUMBNAIL_MIN_SIDE <= side <= MODEL_MAX_SIDE:
        raise argparse.ArgumentTypeError(f"{side} px: give {THUMBNAIL_MIN_SIDE} to {MODEL_MAX_SIDE}")
    return side


def _jpeg_quality(value: str) -> int:
    quality = int(value)
    if not 1 <= quality <= 95:
        raise argparse.ArgumentTypeError(f"{quality}: give 1 to 95 (JPEG quality)")
    return quality


def _views(value: str) -> list[str]:
    from pipeline.views import selected_views
    try:
        return selected_views(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _csv(value: str) -> list[str]:
    return [s.strip() for s in value.split(",") if s.strip()]


def default_db() -> Path:
    """The cache when --db is not given: $VLMEMES_DB, else data/vlmemes.duckdb."""
    return Path(os.environ.get("VLMEMES_DB", DEFAULT_DB))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vlmemes", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    pre = sub.add_parser("precompute", help="scan memes, run OCR/CLIP/VLM/CAM, store everything in the cache")
    pre.add_argument("--db", type=Path, default=default_db())
    add_precompute_options(pre)

    go = sub.add_parser("start", help="the main job: precompute, then open the dashboard; with no memes of "
                                      "your own in memes_project/memes, on the built-in demo set")
    go.add_argument("--db", type=Path, default=None,
                    help=f"the cache (default: $VLMEMES_DB, else {DEFAULT_DB}; the demo: {demo.DEMO_DB})")
    add_precompute_options(go)
    add_dashboard_options(go)
    go.add_argument("--no-dashboard", action="store_true", help="stop after the precompute")

    st = sub.add_parser("status", help="what is cached, per stage and model")
    st.add_argument("--db", type=Path, default=default_db())

    an = sub.add_parser("annotations", help="write the annotations CSV (path,label) from the label folders")
    an.add_argument("--memes", type=Path, default=DEFAULT_MEMES_DIR)
    an.add_argument("--out", type=Path, required=True)

    ex = sub.add_parser("export", help="a one-file HTML report, or the raw tables as Parquet")
    ex.add_argument("--db", type=Path, default=default_db())
    ex.add_argument("--out", type=Path, default=None, help="report.html")
    ex.add_argument("--parquet", type=Path, default=None, help="folder for one Parquet file per table")
    ex.add_argument("--models", type=_csv, default=None, help="only these prediction sets (model ids or prompt versions)")
    ex.add_argument("--no-images", action="store_true", help="leave thumbnails and heatmaps out")
    ex.add_argument("--lang", choices=("en", "ru"), default="en", help="language of the HTML report's texts")

    me = sub.add_parser("merge", help="unite caches computed elsewhere into one (conflicts reported, never overwritten)")
    me.add_argument("sources", type=Path, nargs="+", help="the caches to merge in (DuckDB files)")
    me.add_argument("--db", type=Path, required=True, help="the cache to merge into (created if new)")

    da = sub.add_parser("dashboard", help="open the Streamlit dashboard on a cache (read-only)")
    da.add_argument("--db", type=Path, default=default_db())
    add_dashboard_options(da)
    return p


def add_dashboard_options(da: argparse.ArgumentParser) -> None:
    da.add_argument("--port", type=int, default=8501)
    da.add_argument("--address", default="localhost", help="bind address (localhost: only this machine)")
    da.add_argument("--headless", action="store_true", help="do not open a browser")


def add_precompute_options(pre: argparse.ArgumentParser) -> None:
    pre.add_argument("--memes", type=Path, default=DEFAULT_MEMES_DIR, help="folder with Негативно/ and Нейтрально/")
    pre.add_argument("--stages", type=_stages, default=list(DEFAULTS.stages), help="comma list of " + ",".join(stages.STAGE_ORDER))
    pre.add_argument("--limit", type=int, default=None, help="only the first N memes (sorted by path)")
    pre.add_argument("--force", action="store_true", help="recompute even what is cached")
    pre.add_argument("--thumbnail-side", type=_thumbnail_side, default=DEFAULTS.thumbnail_side,
                     help="longest side in px of the thumbnails stored for new memes and of new CAM overlays "
                          "(default %(default)s; they are most of the cache's size: docs/benchmarks.md)")
    pre.add_argument("--thumbnail-quality", type=_jpeg_quality, default=DEFAULTS.thumbnail_quality,
                     help="JPEG quality 1-95 of those thumbnails and overlays (default %(default)s)")
    pre.add_argument("--ocr-engine", default=DEFAULTS.ocr_engine, choices=["auto", "easyocr", "tesseract", "craft-tesseract"])
    pre.add_argument("--views", type=_views, default=list(DEFAULTS.views),
                     help="views of each meme CLIP and the VLM judge: full, caption-removed, caption-only or all "
                          "(default full; all: the Modality page)")
    pre.add_argument("--clip-model", default=DEFAULTS.clip_model, help="HF id or local folder (CLIP, SigLIP, SigLIP2)")
    pre.add_argument("--clip-prompts", type=_csv, default=None,
                     help="CLIP prompt set versions (default: the four pad-to-square '+pad' sets; 'all' adds the "
                          "centre-crop view of each; CAM shows the views of the sets chosen)")
    pre.add_argument("--vlm-model", default=DEFAULTS.vlm_model, help="HF id or local folder (Qwen2/2.5-VL, ...)")
    pre.add_argument("--vlm-prompts", type=_csv, default=None, help="VLM prompt versions (default: label-first-v1,explain-first-v1; also label-first-ocr-v1)")
    pre.add_argument("--device", default=DEFAULTS.device, choices=["auto", "cpu", "cuda"])
    pre.add_argument("--precision", default=DEFAULTS.precision, choices=["auto", "fp32", "bf16", "fp16"])
    pre.add_argument("--quantize", default=DEFAULTS.quantize, choices=["none", "8bit", "4bit"], help="VLM only, needs bitsandbytes + CUDA")
    pre.add_argument("--max-pixels", type=int, default=DEFAULTS.max_pixels, help="VLM image pixel budget (bounds visual tokens)")
    pre.add_argument("--max-new-tokens", type=int, default=DEFAULTS.max_new_tokens, help="VLM generation bound")
    pre.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size, help="CLIP/CAM images per batch")
    pre.add_argument("--vlm-batch-size", type=int, default=DEFAULTS.vlm_batch_size,
                     help="VLM (transformers) memes per generate call, left-padded and grouped by visual-token "
                          "count; 0 (default): 8 on a GPU, 1 on CPU (where the prompts of a meme share its prefix)")
    eng = pre.add_argument_group("engine (where the batches run: docs/scaling.md)")
    eng.add_argument("--engine", default=DEFAULTS.engine, choices=["local", "ray"],
                     help="local: in this process; ray: on a Ray cluster (Ray Data), results written here")
    eng.add_argument("--ray-address", default=None,
                     help="ray: 'auto' or HOST:PORT of a running cluster (default: start a local one)")
    eng.add_argument("--ray-workers", type=int, default=DEFAULTS.ray_workers,
                     help="ray: tasks/actors at once (0: one OCR task per CPU; one model actor per GPU, or 1)")
    served = pre.add_argument_group("served VLM (--vlm-backend openai: an OpenAI-compatible server, docs/served_vlm.md)")
    served.add_argument("--vlm-backend", default=DEFAULTS.vlm_backend, choices=["transformers", "openai"],
                        help="transformers: the model runs in this process; openai: ask a server (vLLM, SGLang, "
                             "llama.cpp, Ollama, a hosted API); then --vlm-model is the server's model name")
    served.add_argument("--vlm-url", default=None, help="the server's base URL, e.g. http://localhost:8000/v1")
    served.add_argument("--vlm-api-key-env", default=DEFAULTS.vlm_api_key_env,
                        help="environment variable holding the API key (read, never stored; unset: no key sent)")
    served.add_argument("--vlm-concurrency", type=int, default=DEFAULTS.vlm_concurrency, help="requests in flight at once")
    served.add_argument("--vlm-timeout", type=float, default=DEFAULTS.vlm_timeout, help="seconds to wait for one answer")
    served.add_argument("--vlm-retries", type=int, default=DEFAULTS.vlm_retries,
                        help="retries per request on connection errors, timeouts, 429 and 5xx (exponential backoff)")
    served.add_argument("--vlm-prefill", default=DEFAULTS.vlm_prefill, choices=["none", "continue"],
                        help="continue: when the answer holds no readable class line, ask once more with the "
                             "assistant message 'Класс:' to be continued (vLLM, SGLang, llama.cpp); none: score missing")
    served.add_argument("--vlm-top-logprobs", type=int, default=DEFAULTS.vlm_top_logprobs,
                        help="log-probability alternatives asked per token (the OpenAI API allows 20; vLLM and "
                             "llama.cpp more): both label words must be among them for a score")
    served.add_argument("--vlm-random-weights", action="store_true",
                        help="the served model has random weights (tests, benchmarks): its rows are a smoke run")


def stage_factory(options: Options):
    """name -> the stage built from `options` by the registry (construction is cheap: models load only when needed)."""
    def build(name: str) -> Stage:
        return stages.build(name, options)
    return build


def cmd_precompute(a: argparse.Namespace) -> int:
    from pipeline.runner import precompute
    options = Options.from_args(a)
    device = options.device
    if device == "auto":
        device = "cuda" if _cuda_available() else "cpu"
    from pipeline import engines
    return precompute(options.memes, options.db, list(options.stages), stage_factory(options), options.as_record(),
                      limit=options.limit, force=options.force, device=device,
                      engine=engines.build(options.engine, options))


def _cuda_available() -> bool:
    from pipeline.hf import pick_device
    return pick_device("auto") == "cuda"     # imports torch only where a GPU driver is present


def cmd_start(a: argparse.Namespace) -> int:
    """Precompute, then become the dashboard on that cache. With the default memes folder holding no
    image, both run on the demo set (pipeline/demo.py), said so before and after."""
    a.demo = a.memes == DEFAULT_MEMES_DIR and demo.count_images(a.memes) == 0
    if a.demo:
        a.memes = demo.write_demo(demo.DEMO_DIR)
        a.db = a.db or demo.DEMO_DB
        print(demo.intro(DEFAULT_MEMES_DIR, demo.DEMO_DIR, a.db), flush=True)
    a.db = a.db or default_db()
    a.db.parent.mkdir(parents=True, exist_ok=True)
    status = cmd_precompute(a)
    if status != 0:
        print(f"precompute finished with exit code {status} (see the summary above and the Runs page); "
              "the dashboard shows what is cached.", flush=True)
    if a.demo:
        print(demo.intro(DEFAULT_MEMES_DIR, demo.DEMO_DIR, a.db), flush=True)
    if a.no_dashboard:
        return status
    return cmd_dashboard(a)


def cmd_merge(a: argparse.Namespace) -> int:
    from pipeline.merge import merge
    return merge(a.sources, a.db)


def cmd_status(a: argparse.Namespace) -> int:
    from pipeline.status import status_report
    print(status_report(a.db))
    return 0


def cmd_annotations(a: argparse.Namespace) -> int:
    scan = dataset.scan(a.memes)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    rows = sorted((Path(a.memes, rel).as_posix(), label) for m in scan.memes.values() for rel, label in m.paths)
    with open(a.out, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label"])
        writer.writerows(rows)
    print(f"wrote {len(rows)} rows to {a.out}")
    problems = scan.failures + dataset.conflict_failures(scan)
    for f in problems:
        print(f"  skipped {f['path']}: {f['error_type']}: {f['message']}", file=sys.stderr)
    return 1 if problems else 0


def cmd_export(a: argparse.Namespace) -> int:
    from pipeline import export
    if not a.out and not a.parquet:
        raise SystemExit("export needs --out report.html and/or --parquet DIR")
    if a.parquet:
        export.export_parquet(a.db, a.parquet)
    if a.out:
        export.export_html(a.db, a.out, models=a.models, images=not a.no_images, lang=a.lang)
    return 0


def dashboard_command(a: argparse.Namespace) -> list[str]:
    """The `streamlit run` command line that serves the dashboard on cache `a.db`."""
    import dashboard
    app = Path(dashboard.__file__).resolve().parent / "app.py"
    return [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(a.port),
            "--server.address", a.address, "--server.headless", "true" if a.headless else "false",
            "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none", "--", "--db", str(a.db)]


def cmd_dashboard(a: argparse.Namespace) -> int:
    """Become the Streamlit server (exec, no child process): a SIGTERM or Ctrl-C then reaches the server
    itself, and stopping `vlmemes dashboard` never leaves an orphan streamlit holding the port."""
    argv = dashboard_command(a)
    os.execv(argv[0], argv)
    return 0        # not reached


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    handler = {"precompute": cmd_precompute, "start": cmd_start, "merge": cmd_merge, "status": cmd_status, "annotations": cmd_annotations,
               "export": cmd_export, "dashboard": cmd_dashboard}[a.command]
    try:
        code = handler(a)
        if code == 130:
            print("stopped.", file=sys.stderr)
        return code
    except VlmemesError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stopped.", file=sys.stderr)
        return 130
