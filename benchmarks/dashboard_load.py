"""Many concurrent dashboard sessions on one server: page times, errors and the server's memory.

    .venv/bin/python benchmarks/dashboard_load.py [--sessions 20] [--rounds 3] [--n-memes 100000]
                                                  [--db FILE] [--port P] [--think 0.5,2] [--seed 0]

Builds (or reuses) a synthetic cache (`python -m pipeline.devtools synth-db`, default
/tmp/vlmemes-bench/synth-<n>.duckdb), starts the dashboard the way a lab serves it
(`vlmemes dashboard --db FILE --port P --address 127.0.0.1 --headless`, a fresh process), then runs
--sessions clients at once. Each client is what a browser tab is to the server: one websocket on
/_stcore/stream speaking Streamlit's own protocol (BackMsg / ForwardMsg protobufs from
streamlit.proto). A page visit sends `rerun_script` with the page (its url path on the first visit, as
a browser opening the URL does; afterwards the page_script_hash the server announced in its
`navigation` message, as a click in the sidebar does) and the query string, and is timed from that
message to the server's `script_finished`. What a browser does after that (drawing, charts, images)
is not in the time.

Each round, each client visits in its own random order: the six pages' default views, Errors page 2
(?page=2), Errors with a filter changed (?group=fn&truth=toxic), and the Meme page of a meme drawn
from 50 (as the gallery's 'Open meme' link does), then waits --think seconds (uniform in the range;
"0" for none: a stress run) before the next visit.

Reported: per page and overall p50 / p95 / max, split into cold (the first request for that page and
query string since the server started, and any that started before that first one finished: nothing
shared in st.cache_data for it yet) and warm; errors (an exception element, an error notice, a
script_finished status other than success, a page that ran another page, a dropped connection or a
visit over 120 s); the peak resident memory of the streamlit process and its children (psutil, every
0.2 s) and at the end. Targets: p95 <= 2 s, peak <= 1.5 GB, no error.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import random
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAGES = ["overview", "errors", "disagreement", "heatmaps", "modality", "faithfulness", "meme", "runs"]
TARGET_P95_S = 2.0
TARGET_RSS_GB = 1.5
VISIT_TIMEOUT_S = 120.0
N_MEME_IDS = 50


# =========================================================================== machine
def machine_line() -> str:
    """CPU model, cores, the CPU flags that matter here, RAM, Python and library versions, load average."""
    from importlib import metadata
    model, flags = platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == platform.machine():
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    shown = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    mem = "?"
    with contextlib.suppress(OSError, StopIteration):
        kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal:"))
        mem = f"{kb / 2**20:.1f} GB"
    versions = []
    for dist in ("streamlit", "duckdb", "websockets"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions.append(f"{dist} {metadata.version(dist)}")
    return (f"{model}, {os.cpu_count()} cores, flags {' '.join(shown) or 'none of avx2/avx512'}, RAM {mem}, "
            f"Python {platform.python_version()}, {', '.join(versions)}")


def load_avg() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


# =========================================================================== cache and server
def build_cache(db: Path, n: int) -> float | None:
    """The synthetic cache of n memes at db, built in its own process; seconds taken, None when reused."""
    if db.exists():
        return None
    db.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipeline.devtools", "synth-db", "--n", str(n), "--db", str(db)],
                   check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def meme_sample(db: Path, k: int = N_MEME_IDS, seed: int = 0) -> list[str]:
    import duckdb
    con = duckdb.connect(str(db), read_only=True)
    try:
        ids = [r[0] for r in con.execute("SELECT meme_id FROM memes WHERE NOT retired ORDER BY meme_id").fetchall()]
    finally:
        con.close()
    return random.Random(seed).sample(ids, min(k, len(ids)))


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def dashboard(db: Path, port: int, log: Path, address: str = "127.0.0.1", timeout: float = 90):
    """`vlmemes dashboard --db db --port port --address address --headless` until the block ends; yields
    (url, Popen). The process is the streamlit server itself (the command execs it)."""
    vlmemes = Path(sys.executable).with_name("vlmemes")
    cmd = ([str(vlmemes)] if vlmemes.exists() else [sys.executable, "-m", "pipeline"])
    cmd += ["dashboard", "--db", str(db), "--port", str(port), "--address", address, "--headless"]
    # No file watcher, as docs/access.md recommends for a shared server: with one, a source file changed
    # while serving (a `git pull`) makes the next runs unload and re-import modules that other sessions'
    # runs are using at that moment (KeyError / ImportError in those sessions).
    env = dict(os.environ, STREAMLIT_BROWSER_GATHER_USAGE_STATS="false", STREAMLIT_SERVER_FILE_WATCHER_TYPE="none")
    env.pop("VLMEMES_DB", None)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the dashboard did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class MemorySampler:
    """Resident memory of a process and its children (psutil), sampled every `interval` s in a thread."""

    def __init__(self, pid: int, interval: float = 0.2):
        import psutil
        self._proc = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self.last = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        import psutil
        total = 0
        for p in [self._proc, *self._proc.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                self.last = self.rss()
                self.peak = max(self.peak, self.last)
                self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


# =========================================================================== the websocket client
@dataclass
class Visit:
    session: int
    page: str            # url path of the page ("overview", ...)
    label: str           # what is reported: "errors p.2", "errors filter", ...
    query: str           # query string without "?"
    started: float = 0.0
    finished: float = 0.0
    seconds: float = 0.0
    ok: bool = False
    error: str = ""
    cold: bool = False
    bytes: int = 0
    messages: int = 0

    @property
    def key(self) -> tuple[str, str]:
        return self.page, self.query


@dataclass
class Result:
    visits: list[Visit] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    peak_rss: int = 0
    end_rss: int = 0
    rss_samples: int = 0
    server_cpu_s: float = 0.0     # CPU time of the dashboard process during the clients' run
    client_cpu_s: float = 0.0     # CPU time of this process (the clients) during it


def plan(meme_ids: list[str], rng: random.Random) -> list[tuple[str, str, str]]:
    """One round of one client: (page, label, query string) in a random order."""
    visits = [(p, p, "") for p in PAGES if p != "meme"]
    visits += [("errors", "errors p.2", "page=2"), ("errors", "errors filter", "group=fn&truth=toxic"),
               ("meme", "meme", f"meme={rng.choice(meme_ids)}")]
    rng.shuffle(visits)
    return visits


def _problems(msg) -> list[str]:
    """Error elements in one ForwardMsg: an exception box anywhere, or an st.error notice in the main
    area (the sidebar's error notice is the designed smoke-run banner: every synthetic cache shows it)."""
    if msg.WhichOneof("type") != "delta" or msg.delta.WhichOneof("type") != "new_element":
        return []
    el = msg.delta.new_element
    kind = el.WhichOneof("type")
    if kind == "exception":
        return [f"exception {el.exception.type}: {el.exception.message[:200]}"]
    if kind == "alert":
        from streamlit.proto.Alert_pb2 import Alert
        from streamlit.proto.RootContainer_pb2 import RootContainer
        in_sidebar = bool(msg.metadata.delta_path) and msg.metadata.delta_path[0] == RootContainer.SIDEBAR
        if el.alert.format == Alert.ERROR and not in_sidebar:
            return [f"error notice: {el.alert.body[:200]}"]
    return []


async def _client(url: str, session: int, visits: list[tuple[str, str, str]], think: tuple[float, float],
                  rng: random.Random, first_done: dict, out: list[Visit]) -> None:
    import websockets
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ClientState_pb2 import ClientState
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    ws_url = url.replace("http://", "ws://", 1) + "/_stcore/stream"
    hashes: dict[str, str] = {}          # url path -> page_script_hash, from the server's navigation message
    pending = [Visit(session, page, label, query) for page, label, query in visits]
    try:
        async with websockets.connect(ws_url, subprotocols=["streamlit"], max_size=None, open_timeout=60,
                                      ping_interval=None) as ws:
            for i, v in enumerate(pending):
                if i and think[1] > 0:
                    await asyncio.sleep(rng.uniform(*think))
                state = ClientState(query_string=v.query)
                path = v.page                                    # each page's url path is its name
                if path in hashes:
                    state.page_script_hash = hashes[path]        # a click in the sidebar
                else:
                    state.page_name = path                       # opening the page's URL
                v.started = time.perf_counter()
                await ws.send(BackMsg(rerun_script=state).SerializeToString())
                problems, ran = [], None
                while True:
                    left = VISIT_TIMEOUT_S - (time.perf_counter() - v.started)
                    if left <= 0:
                        raise TimeoutError(f"no script_finished within {VISIT_TIMEOUT_S:.0f} s")
                    data = await asyncio.wait_for(ws.recv(), timeout=left)
                    v.bytes += len(data)
                    v.messages += 1
                    msg = ForwardMsg()
                    msg.ParseFromString(data)
                    kind = msg.WhichOneof("type")
                    if kind == "navigation":                     # st.navigation ran: the pages, and which one runs
                        for p in msg.navigation.app_pages:
                            hashes[p.url_pathname] = p.page_script_hash
                        ran = msg.navigation.page_script_hash
                    elif kind == "page_not_found":
                        problems.append(f"page not found: {msg.page_not_found.page_name}")
                    elif kind == "script_finished":
                        status = msg.script_finished
                        if status == ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                            continue                             # st.rerun(): the visit goes on
                        if status != ForwardMsg.FINISHED_SUCCESSFULLY:
                            problems.append(f"script_finished status {ForwardMsg.ScriptFinishedStatus.Name(status)}")
                        break
                    problems += _problems(msg)
                v.finished = time.perf_counter()
                v.seconds = v.finished - v.started
                if ran is None:
                    problems.append("no navigation message: st.navigation did not run")
                elif ran != hashes.get(path):
                    problems.append(f"ran page {ran}, not {v.page}")
                v.ok = not problems
                v.error = "; ".join(problems)
                if v.ok:
                    first_done.setdefault(v.key, v.finished)
                out.append(v)
    except Exception as e:                                  # a dropped connection, a time-out
        done = {id(v) for v in out}
        for v in pending:
            if id(v) not in done:
                v.error = v.error or f"{type(e).__name__}: {e}"
                out.append(v)
                break


def run_clients(url: str, sessions: int, rounds: int, meme_ids: list[str], think: tuple[float, float],
                seed: int = 0) -> list[Visit]:
    """`sessions` concurrent websocket clients, each `rounds` rounds of every page; every visit made."""
    first_done: dict = {}
    out: list[Visit] = []

    async def main() -> None:
        tasks = []
        for s in range(sessions):
            rng = random.Random(seed * 1000 + s)
            visits = [v for _ in range(rounds) for v in plan(meme_ids, rng)]
            tasks.append(_client(url, s, visits, think, rng, first_done, out))
        await asyncio.gather(*tasks)

    asyncio.run(main())
    for v in out:             # cold: started before the first request for the same page + query had finished
        v.cold = v.started < first_done.get(v.key, float("inf"))
    return out


def _cpu(pid: int) -> float:
    import psutil
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def measure(db: Path, sessions: int, rounds: int, *, port: int | None = None, think: tuple[float, float] = (0.5, 2.0),
            seed: int = 0, log: Path | None = None) -> Result:
    """Start the dashboard on db, run the clients, stop it: every visit, the errors and the memory."""
    port = port or free_port()
    log = log or Path(f"/tmp/vlmemes-load-{port}.log")
    meme_ids = meme_sample(db, seed=seed)
    res = Result()
    with dashboard(db, port, log) as (url, proc), MemorySampler(proc.pid) as mem:
        t0, cpu0, server0 = time.perf_counter(), time.process_time(), _cpu(proc.pid)
        res.visits = run_clients(url, sessions, rounds, meme_ids, think, seed)
        res.wall_s = time.perf_counter() - t0
        res.client_cpu_s, res.server_cpu_s = time.process_time() - cpu0, _cpu(proc.pid) - server0
        time.sleep(0.3)
        res.end_rss = mem.rss()
        if proc.poll() is not None:
            res.errors.append(f"the dashboard process exited with {proc.returncode}")
    res.peak_rss, res.rss_samples = max(mem.peak, res.end_rss), mem.samples
    res.errors += [f"session {v.session} {v.label}: {v.error}" for v in res.visits if v.error]
    expected = sessions * rounds * (len(PAGES) + 2)
    if len(res.visits) < expected:
        res.errors.append(f"{expected - len(res.visits)} of {expected} visits not made (a client stopped early)")
    return res


# =========================================================================== report
def pct(xs: list[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation; nan for no values."""
    if not xs:
        return float("nan")
    xs = sorted(xs)
    pos = (len(xs) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _cell(xs: list[float]) -> str:
    if not xs:
        return "– | – | –"
    return f"{pct(xs, .5):.2f} | {pct(xs, .95):.2f} | {max(xs):.2f}"


def table(res: Result) -> str:
    labels = PAGES[:2] + ["errors p.2", "errors filter"] + PAGES[2:]
    lines = ["| page | visits | all p50 / p95 / max s | cold n | cold p50 / p95 / max s | warm p50 / p95 / max s |",
             "|---|---:|---|---:|---|---|"]
    ok = [v for v in res.visits if v.ok]
    for label in [*labels, "all"]:
        vs = ok if label == "all" else [v for v in ok if v.label == label]
        cold = [v.seconds for v in vs if v.cold]
        warm = [v.seconds for v in vs if not v.cold]
        name = "**all**" if label == "all" else label
        lines.append(f"| {name} | {len(vs)} | {_cell([v.seconds for v in vs]).replace(' | ', ' / ')} | {len(cold)} "
                     f"| {_cell(cold).replace(' | ', ' / ')} | {_cell(warm).replace(' | ', ' / ')} |")
    return "\n".join(lines)


def summary(res: Result) -> dict:
    ok = [v.seconds for v in res.visits if v.ok]
    return {"visits": len(res.visits), "ok": len(ok), "errors": len(res.errors), "p50": pct(ok, .5),
            "p95": pct(ok, .95), "max": max(ok, default=float("nan")), "peak_rss_gb": res.peak_rss / 2**30,
            "end_rss_gb": res.end_rss / 2**30, "wall_s": res.wall_s,
            "mb_received": sum(v.bytes for v in res.visits) / 2**20, "server_cpu_s": res.server_cpu_s,
            "client_cpu_s": res.client_cpu_s}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sessions", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--n-memes", type=int, default=100_000)
    p.add_argument("--db", type=Path, help="the cache (default /tmp/vlmemes-bench/synth-<n>.duckdb, built if missing)")
    p.add_argument("--port", type=int, help="default: a free port")
    p.add_argument("--think", default="0.5,2", help="seconds between a client's visits: 'LO,HI' (uniform) or '0'")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    lo, _, hi = args.think.partition(",")
    think = (float(lo), float(hi or lo))
    db = args.db or Path("/tmp/vlmemes-bench") / f"synth-{args.n_memes}.duckdb"
    build_s = build_cache(db, args.n_memes)

    print(f"machine: {machine_line()}")
    print(f"cache: {db} ({db.stat().st_size / 2**30:.2f} GB, {'built in %.0f s' % build_s if build_s else 'reused'}); "
          f"{args.sessions} sessions x {args.rounds} rounds x {len(PAGES) + 2} visits, think {think[0]}-{think[1]} s; "
          f"load average {load_avg()} at start")
    res = measure(db, args.sessions, args.rounds, port=args.port, think=think, seed=args.seed)
    s = summary(res)
    print(f"load average {load_avg()} at end; {s['wall_s']:.0f} s wall, {s['mb_received']:.0f} MB received by the clients; "
          f"CPU s: dashboard {s['server_cpu_s']:.0f} ({s['server_cpu_s'] / max(s['ok'], 1) * 1000:.0f} ms per visit), "
          f"clients {s['client_cpu_s']:.0f}")
    print()
    print(table(res))
    print()
    print(f"visits {s['visits']}, finished without error {s['ok']}, errors {s['errors']}")
    for e in res.errors[:20]:
        print(f"  error: {e}")
    print(f"dashboard process (streamlit and children): peak RSS {s['peak_rss_gb']:.2f} GB "
          f"({res.rss_samples} samples every 0.2 s), at the end {s['end_rss_gb']:.2f} GB")
    verdict = (s["errors"] == 0 and s["p95"] <= TARGET_P95_S and s["peak_rss_gb"] <= TARGET_RSS_GB)
    print(f"overall p50 {s['p50']:.2f} s, p95 {s['p95']:.2f} s, max {s['max']:.2f} s: targets p95 <= {TARGET_P95_S} s, "
          f"peak <= {TARGET_RSS_GB} GB, no error: {'met' if verdict else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
