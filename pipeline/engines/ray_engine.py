"""The Ray engine (`vlmemes precompute --engine ray [--ray-address auto|HOST:PORT] [--ray-workers N]`).

The driver (this process) scans, plans and writes exactly as the local engine does; only the batches
run on the cluster, with Ray Data:

- the work of a stage is cut into the same batches as locally (engines.local.work_batches), each
  batch one row of a Ray dataset (its memes — ids, paths, OCR text — and the driver's Variant objects,
  pickled, so the workers compute under exactly the driver's cache keys);
- OCR runs as CPU tasks (one CPU each; a worker process keeps its built OCR stage between tasks);
  CLIP, CAM and the VLM run in actor pools, each actor loading the model once, with one GPU per actor
  where the cluster has GPUs (a served VLM backend: light actors that each ask the server);
- results stream back to the driver as they finish and go to the one store writer in the runner,
  batch by batch, with the same cache keys: a Ray run and a local run give the same rows, and a rerun
  skips what either made. A batch whose variants write to several tables (the CLIP stage: its prediction
  sets to `predictions`, its image embeddings — plain float lists — to `embeddings`) is written to each, in
  one transaction (runner._write_batch); a CLIP batch carries every variant its memes lack, so one actor
  encodes each image once for all of them.

Faults: Ray retries a task whose worker died and restarts a dead actor (Ray Data's defaults: no
limit); a batch the driver already wrote is not written twice. If the driver dies, what it wrote
stays and the rerun computes the rest. A model that cannot be loaded on a worker ends the stage with
one failure, as locally. The memes folder must be readable at the same path on every node (one
machine, or a shared filesystem).
"""
from __future__ import annotations

import logging
import pickle
from collections.abc import Iterator
from typing import Any

from pipeline.engines.local import BatchResult, fill_ocr_text, load_stage, run_batch, work_batches
from pipeline.stages.base import MemeInput, Stage, StageLoadError

MODEL_STAGES = ("clip", "cam", "vlm")
MAX_BLOCKS = 1000


class RemoteFailure(Exception):
    """An item's exception on a worker, carried back by type name and message."""

    def __init__(self, error_type: str, message: str):
        super().__init__(message)
        self.error_type = error_type


# ----------------------------------------------------------------------------------- worker side
_BUILT: dict[tuple, Any] = {}           # per worker process: (stage name, options, ocr source) -> stage or load error


def _worker_stage(name: str, options, ocr_source: str | None) -> Stage:
    key = (name, options, ocr_source)
    if key not in _BUILT:
        from pipeline import stages
        stage = stages.build(name, options)
        stage.ocr_source = ocr_source              # part of the variant key of stages that quote OCR text
        try:
            load_stage(stage)
            _BUILT[key] = stage
        except StageLoadError as e:
            _BUILT[key] = e
    built = _BUILT[key]
    if isinstance(built, StageLoadError):
        raise built
    return built


def _run_rows(stage_name: str, options, ocr_source: str | None, payloads) -> list[bytes]:
    out = []
    try:
        stage = _worker_stage(stage_name, options, ocr_source)
    except StageLoadError as e:
        return [pickle.dumps({"load_error": str(e)}) for _ in payloads]
    for payload in payloads:
        index, memes, variants = pickle.loads(payload)       # the driver's Variant objects: the same keys
        batch = [MemeInput(m["meme_id"], m["path"], m["rel_path"], m["label"], m["ocr_text"], m.get("ocr_boxes"),
                           m.get("inputs"))
                 for m in memes]
        result = run_batch(stage, batch, variants)
        by_variant = {vid: [RemoteFailure(type(r).__name__, str(r) or repr(r)) if isinstance(r, BaseException) else r
                            for r in results] for vid, results in result.by_variant.items()}
        out.append(pickle.dumps({"index": index, "by_variant": by_variant, "per_item": result.per_item_seconds}))
    return out


def run_task(batch: dict, stage_name: str, options, ocr_source: str | None) -> dict:
    """Ray Data task (OCR): the batches of this block through the worker's OCR stage."""
    import numpy as np
    return {"result": np.array(_run_rows(stage_name, options, ocr_source, batch["payload"]), dtype=object)}


class StageActor:
    """Ray Data actor (CLIP, CAM, VLM): builds and loads its stage once, then takes batches."""

    def __init__(self, stage_name: str, options, ocr_source: str | None):
        self.stage_name, self.options, self.ocr_source = stage_name, options, ocr_source

    def __call__(self, batch: dict) -> dict:
        import numpy as np
        rows = _run_rows(self.stage_name, self.options, self.ocr_source, batch["payload"])
        return {"result": np.array(rows, dtype=object)}


# ----------------------------------------------------------------------------------- driver side
class RayEngine:
    name = "ray"

    def __init__(self, options):
        self.options = options
        self.address = getattr(options, "ray_address", None)
        self.workers = int(getattr(options, "ray_workers", 0) or 0)
        self._ray = None

    def _init(self):
        if self._ray is None:
            try:
                import ray
            except ImportError:
                raise StageLoadError("--engine ray needs Ray: pip install 'ray[data]' (requirements-dev.txt pins "
                                     "the tested version)") from None
            if not ray.is_initialized():
                ray.init(address=self.address or None, include_dashboard=False, logging_level="ERROR",
                         configure_logging=True, log_to_driver=True)
            from ray.data import DataContext
            logging.getLogger("ray.data").setLevel(logging.ERROR)   # per-dataset INFO lines; the runner reports
            ctx = DataContext.get_current()
            ctx.enable_progress_bars = False            # the runner draws one bar per stage
            ctx.print_on_execution_start = False
            self._ray = ray
        return self._ray

    def resources(self) -> dict[str, float]:
        return dict(self._init().cluster_resources())

    def describe(self) -> str:
        ray = self._init()
        res = self.resources()
        nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        where = self.address or "a local cluster"
        return (f"ray {ray.__version__} at {where}: {nodes} node(s), {res.get('CPU', 0):g} CPU, "
                f"{res.get('GPU', 0):g} GPU, {res.get('memory', 0) / 2**30:.1f} GiB memory")

    def _map_args(self, stage: Stage) -> dict:
        from ray.data import ActorPoolStrategy, TaskPoolStrategy
        res = self.resources()
        gpus, cpus = res.get("GPU", 0), res.get("CPU", 1)
        served = stage.name == "vlm" and getattr(self.options, "vlm_backend", "transformers") != "transformers"
        stage_args = dict(stage_name=stage.name, options=self.options, ocr_source=stage.ocr_source)
        if stage.name not in MODEL_STAGES:
            return dict(fn=run_task, fn_kwargs=stage_args, num_cpus=1,
                        compute=TaskPoolStrategy(size=self.workers or max(1, int(cpus))))
        actor = dict(fn=StageActor, fn_constructor_kwargs=stage_args)
        if served:
            return dict(actor, num_cpus=0.25, compute=ActorPoolStrategy(size=self.workers or max(1, int(cpus))))
        if gpus >= 1 and self.options.device != "cpu":
            return dict(actor, num_gpus=1, compute=ActorPoolStrategy(size=self.workers or int(gpus)))
        n = self.workers or 1                          # a CPU model per actor: one copy of the weights each
        return dict(actor, num_cpus=max(1, int(cpus // n)), compute=ActorPoolStrategy(size=n))

    def batches(self, store, stage: Stage, plans: list, stop) -> Iterator[BatchResult]:
        ray = self._init()
        work, items = {}, []
        for index, (batch, variants) in enumerate(work_batches(stage, plans)):
            fill_ocr_text(store, stage, batch)
            stage.fill_inputs(store, batch, variants)
            work[index] = (batch, variants)
            memes = [dict(meme_id=m.meme_id, path=m.path, rel_path=m.rel_path, label=m.label, ocr_text=m.ocr_text,
                          ocr_boxes=m.ocr_boxes, inputs=m.inputs)
                     for m in batch]
            items.append({"payload": pickle.dumps((index, memes, variants))})
        if not items:
            return
        args = self._map_args(stage)
        fn = args.pop("fn")
        ds = ray.data.from_items(items, override_num_blocks=min(len(items), MAX_BLOCKS))
        ds = ds.map_batches(fn, batch_size=1, batch_format="numpy", **args)
        for row in ds.iter_rows():
            out = pickle.loads(row["result"])
            if "load_error" in out:
                raise StageLoadError(out["load_error"])
            if out["index"] not in work:                # a retried task's repeat of a batch already written
                continue
            batch, variants = work.pop(out["index"])
            yield BatchResult(batch, variants, out["by_variant"], out["per_item"])
            if stop.stop:
                return

    def close(self) -> None:
        if self._ray is not None and self._ray.is_initialized():
            self._ray.shutdown()
        self._ray = None
