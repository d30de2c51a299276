"""OCR quality on the real labelled memes (../shared/memes) against tests/data/ocr_transcriptions.json.

    nice -n 10 .venv/bin/python benchmarks/ocr_real.py                          # v2 settings and today's
    nice -n 10 .venv/bin/python benchmarks/ocr_real.py --engine craft-tesseract --show-errors
    nice -n 10 .venv/bin/python benchmarks/ocr_real.py --engine craft-tesseract --set min_line_conf=0.3

Engines: craft-tesseract (today's settings), craft-tesseract-v2 / -v1 (what OcrStage versions 2 / 1
did, pipeline.stages.ocr.PAST_VERSIONS, for a before/after in one run), tesseract. `--set k=v` overrides
a TESSERACT_PARAMS entry for the craft-tesseract engines (experiments). Prints, per engine, a
Markdown row: CER toxic / neutral / corpus (captioned memes, total edits / total reference chars
after pipeline.stages.ocr.normalize_text), memes read exactly, obscene-word and other-word recall,
hallucinated characters on the caption-free memes, wall and CPU seconds per picture; and the CPU.
Skips (exit 0) when ../shared/memes is missing. Never commit what it reads (--show-errors, --dump):
only the transcription is test data.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pipeline.images import load_rgb  # noqa: E402
from pipeline.stages.ocr import PAST_VERSIONS, OcrStage, normalize_text, past_version_stage  # noqa: E402
from pipeline.stages.ocr_quality import REAL_MEMES, changed_files, load_transcriptions, score  # noqa: E402


def cpu_info() -> str:
    model, flags = "?", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "?":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    shown = [f for f in ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "amx_tile") if f in flags]
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    return (f"{model}, {os.cpu_count()} logical CPUs, flags: {' '.join(shown) or '?'}; "
            f"load average {' '.join(f'{x:.1f}' for x in load)}")


def make_stage(engine: str, overrides: dict) -> OcrStage:
    if engine.startswith("craft-tesseract-v"):  # an earlier OcrStage version (PAST_VERSIONS)
        return past_version_stage(engine.rsplit("-v", 1)[1], overrides, device="cpu")
    if engine == "craft-tesseract":
        return OcrStage(engine=engine, device="cpu", tesseract_params=overrides)
    return OcrStage(engine=engine, device="cpu")


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def run_engine(stage: OcrStage, folder: Path, keys: list[str]) -> tuple[dict[str, str], float, float]:
    stage.load()
    readings = {}
    t0, c0 = time.perf_counter(), _cpu_seconds()
    for k in keys:
        readings[k] = stage.read(load_rgb(folder / k))["text"]
    n = max(1, len(keys))
    return readings, (time.perf_counter() - t0) / n, (_cpu_seconds() - c0) / n


def _parse_value(v: str):
    try:
        return json.loads(v)
    except json.JSONDecodeError:
        return v


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", action="append",
                    help=f"craft-tesseract | {' | '.join(f'craft-tesseract-v{v}' for v in sorted(PAST_VERSIONS))} | tesseract "
                         "(repeatable); default: craft-tesseract-v2 and craft-tesseract")
    ap.add_argument("--folder", type=Path, default=REAL_MEMES)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a TESSERACT_PARAMS entry")
    ap.add_argument("--only", help="comma-separated relative paths (a subset)")
    ap.add_argument("--show-errors", action="store_true", help="print each misread meme (never commit this output)")
    ap.add_argument("--dump", type=Path, help="write the readings as JSON here (outside the repository)")
    args = ap.parse_args(argv)
    if not args.folder.is_dir():
        print(f"skipped: no real meme folder at {args.folder}")
        return 0
    refs = load_transcriptions()
    changed = changed_files(args.folder, refs)
    if changed:
        print(f"warning: {len(changed)} transcribed pictures missing or changed (not scored): {', '.join(changed[:5])}")
    keys = [k for k in refs if k not in changed]
    if args.only:
        keys = [k for k in args.only.split(",") if k in keys]
    overrides = dict(kv.split("=", 1) for kv in args.set)
    overrides = {k: _parse_value(v) for k, v in overrides.items()}
    engines = args.engine or ["craft-tesseract-v2", "craft-tesseract"]
    n_cap = sum(1 for k in keys if refs[k]["text"])
    print(f"{len(keys)} real memes ({n_cap} captioned, {len(keys) - n_cap} caption-free) in {args.folder}")
    print(f"CPU: {cpu_info()}\n")
    print("| engine | CER toxic | CER neutral | CER corpus | exact | obscene recall | other recall | halluc. chars | s / img | CPU s / img |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    dump = {}
    for engine in engines:
        stage = make_stage(engine, overrides)
        readings, sec, cpu = run_engine(stage, args.folder, keys)
        dump[engine] = readings
        s = score(readings, refs, keys)
        name = engine + (f" {overrides}" if overrides and engine != "tesseract" else "")
        print(f"| {name} (v{stage.version}) | {s['cer_toxic']:.3f} | {s['cer_neutral']:.3f} | {s['cer']:.3f} | "
              f"{s['exact']}/{s['captioned']} | {s['obscene_recall']:.2f} ({s['obscene_words']}) | "
              f"{s['other_recall']:.2f} ({s['other_words']}) | {s['hallucinated']} on {s['caption_free']} | "
              f"{sec:.2f} | {cpu:.2f} |", flush=True)
        if args.show_errors:
            for k, m in s["per_meme"].items():
                if m["edits"]:
                    print(f"    {k}: {m['edits']} edits / {m['chars']}\n      read {normalize_text(readings[k])!r}"
                          f"\n      true {normalize_text(refs[k]['text'])!r}")
    if args.dump:
        args.dump.write_text(json.dumps(dump, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
