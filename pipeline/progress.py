"""A running precompute's progress, for the dashboard: `<db>.progress.json` beside the cache.

The precompute (pipeline/runner.py) rewrites this small file atomically when the run starts, when
each stage starts and after every batch, and once more when the run ends. It is not the cache: the
dashboard polls it every few seconds without opening the DuckDB file, so polling never delays a
batch's write. A file saying "running" whose process is gone (killed; same host) reads as
abandoned, which is also what the next precompute records in `runs`.

    {"run_id": 7, "status": "running", "pid": 4242, "host": "lab1", "started_at": "...",
     "updated_at": "...", "stage": "vlm", "stage_index": 3, "n_stages": 4,
     "done": 12, "failed": 0, "total": 51, "cached": 0, "finished_at": null}
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline.store import now


def progress_path(db: str | Path) -> Path:
    db = Path(db)
    return db.with_name(db.name + ".progress.json")


@dataclass
class Progress:
    run_id: int
    status: str = "running"            # running | ok | failed | interrupted
    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)
    started_at: str = field(default_factory=lambda: now().isoformat(timespec="seconds"))
    updated_at: str = ""
    stage: str = "scan"
    stage_index: int = 0               # 1-based among the run's stages; 0: the scan
    n_stages: int = 0
    done: int = 0
    failed: int = 0
    total: int = 0
    cached: int = 0
    finished_at: str | None = None


class ProgressWriter:
    """Used by the runner: one instance per run; every call rewrites the file (never raises)."""

    def __init__(self, db: str | Path, run_id: int, n_stages: int):
        self.path = progress_path(db)
        self.state = Progress(run_id=run_id, n_stages=n_stages)
        self.write()

    def stage(self, name: str, index: int, total: int, cached: int) -> None:
        self.state.stage, self.state.stage_index = name, index
        self.state.total, self.state.cached, self.state.done, self.state.failed = total, cached, 0, 0
        self.write()

    def advance(self, done: int, failed: int) -> None:
        self.state.done += done
        self.state.failed += failed
        self.write()

    def finish(self, status: str) -> None:
        self.state.status = status
        self.state.finished_at = now().isoformat(timespec="seconds")
        self.write()

    def write(self) -> None:
        self.state.updated_at = now().isoformat(timespec="seconds")
        tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(asdict(self.state)), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:                 # progress is a convenience: never fail a run over it
            with contextlib.suppress(OSError):
                tmp.unlink()


def read(db: str | Path) -> Progress | None:
    """The last progress written for this cache, or None (no file, unreadable, other shape).
    A 'running' record whose process is gone on this host is returned with status 'abandoned'."""
    try:
        data = json.loads(progress_path(db).read_text(encoding="utf-8"))
        state = Progress(**{k: v for k, v in data.items() if k in Progress.__dataclass_fields__})
    except (OSError, ValueError, TypeError):
        return None
    if state.status == "running" and state.host == socket.gethostname() and not _alive(state.pid):
        state.status = "abandoned"
    return state


def _alive(pid: int) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError, OverflowError):
        return True                     # exists but not ours / unknown: do not call it dead
    return True
