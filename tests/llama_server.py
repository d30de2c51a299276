"""A real OpenAI-compatible server for tests: llama.cpp's `llama-server` on a tiny random Qwen2.5-VL.

    with llama_server(model_gguf, mmproj_gguf) as url:        # url = "http://127.0.0.1:PORT/v1"
        ...POST f"{url}/chat/completions"...
        kill_llama_server(url)       # SIGKILL mid-run (fault tests); requests now fail to connect
        restart_llama_server(url)    # up again on the same port, waits for /health

`LlamaServer` is the same thing as an object (`with LlamaServer(...) as srv: srv.url, srv.kill(), srv.restart()`).
`tiny_gguf(tmp_path_factory)` builds the tiny model and converts it once per test session (cached under
pytest's tmp dir); `require_llama_server()` skips a test when scripts/setup_llama_server.sh has not been run
(or fails it when VLMEMES_REQUIRE_LLAMA_SERVER=1, as CI sets after building it).
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from pipeline.devtools.gguf import Converted, build_tiny_gguf, llama_binary

_RUNNING: dict[str, LlamaServer] = {}
_TINY: dict[str, Converted] = {}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_llama_server() -> Path:
    """The llama-server binary, or skip (fail under VLMEMES_REQUIRE_LLAMA_SERVER=1) when it is not built."""
    import pytest
    try:
        return llama_binary("llama-server")
    except FileNotFoundError as e:
        if os.environ.get("VLMEMES_REQUIRE_LLAMA_SERVER") == "1":
            pytest.fail(str(e))
        pytest.skip(str(e))


def tiny_gguf(tmp_path_factory) -> Converted:
    """The tiny random Qwen2.5-VL as GGUF text model + mmproj, built once per test session."""
    if "tiny" not in _TINY:
        _TINY["tiny"] = build_tiny_gguf(tmp_path_factory.mktemp("tiny-gguf"))
    return _TINY["tiny"]


class LlamaServer:
    """One llama-server child process on 127.0.0.1:port; its output goes to `log`."""

    def __init__(self, model_gguf: str | Path, mmproj_gguf: str | Path | None, *, port: int | None = None,
                 extra_args: Sequence[str] = (), threads: int = 1, log: str | Path | None = None,
                 start_timeout: float = 120):
        self.model, self.mmproj = Path(model_gguf), (Path(mmproj_gguf) if mmproj_gguf else None)
        self.port = port or free_port()
        self.extra_args = tuple(extra_args)
        self.threads = threads
        self.log = Path(log) if log else Path(tempfile.mkdtemp(prefix="llama-server-")) / "llama-server.log"
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None
        self.start_seconds: float | None = None   # the last start: spawn -> /health 200

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/v1"

    def argv(self) -> list[str]:
        argv = [str(llama_binary("llama-server")), "-m", str(self.model), "--host", "127.0.0.1",
                "--port", str(self.port), "-t", str(self.threads), "-tb", str(self.threads),
                "-c", "4096", "--no-webui"]
        if self.mmproj:
            argv += ["--mmproj", str(self.mmproj)]
        return argv + list(self.extra_args)

    def start(self) -> LlamaServer:
        if self.running():
            return self
        self.log.parent.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        with open(self.log, "ab") as out:
            out.write(f"\n=== start: {' '.join(self.argv())}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(self.argv(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        _RUNNING[self.url] = self
        try:
            self.wait_healthy(self.start_timeout)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - start
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def health(self) -> int | None:
        """The status of GET /health (200 ready, 503 loading), None when nothing answers."""
        try:
            with urllib.request.urlopen(f"{self.base}/health", timeout=2) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            return None

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.health() == 200:
                return
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"llama-server exited ({self.proc and self.proc.returncode}):\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"llama-server not healthy after {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """SIGKILL, as a crash would (fault tests); the port is free again when this returns."""
        if self.running():
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()

    def stop(self, grace: float = 10) -> None:
        if self.running():
            self.proc.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        _RUNNING.pop(self.url, None)

    def restart(self) -> LlamaServer:
        """Stop (kill if it is still running) and start again on the same port."""
        self.kill()
        return self.start()

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@contextlib.contextmanager
def llama_server(model_gguf: str | Path, mmproj_gguf: str | Path | None, *, port: int | None = None,
                 extra_args: Sequence[str] = (), threads: int = 1, log: str | Path | None = None) -> Iterator[str]:
    """Run llama-server for the block; yields its OpenAI base URL `http://127.0.0.1:PORT/v1`."""
    server = LlamaServer(model_gguf, mmproj_gguf, port=port, extra_args=extra_args, threads=threads, log=log)
    with server:
        yield server.url


def kill_llama_server(url: str) -> None:
    _RUNNING[url].kill()


def restart_llama_server(url: str) -> None:
    _RUNNING[url].restart()


def server_of(url: str) -> LlamaServer:
    return _RUNNING[url]


def post_json(url: str, body: dict, timeout: float = 60) -> dict:
    """POST body as JSON; the parsed answer (HTTP errors raise urllib.error.HTTPError)."""
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def get_json(url: str, timeout: float = 10) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())
