"""Where a stage's batches run: `local` (this process, the default) or `ray` (a Ray cluster, Ray Data).

An engine is an object with `batches(store, stage, plans, stop)` — an iterator of BatchResult, each a
batch of memes with every variant's results (or exceptions) — plus `describe()` and `close()`. The
runner (pipeline/runner.py) plans each stage from the cache, hands the plans to the engine, and writes
every BatchResult the same way whichever engine made it: one writer, the same rows and cache keys.
"""
from __future__ import annotations

from pipeline.engines.local import BatchResult, LocalEngine

ENGINES = ("local", "ray")


def build(name: str, options) -> object:
    if name == "local":
        return LocalEngine()
    if name == "ray":
        from pipeline.engines.ray_engine import RayEngine
        return RayEngine(options)
    raise ValueError(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}")


__all__ = ["ENGINES", "BatchResult", "LocalEngine", "build"]
