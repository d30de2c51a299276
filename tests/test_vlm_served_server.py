"""The served VLM backend against a REAL OpenAI-compatible server: llama.cpp's llama-server on a tiny random
Qwen2.5-VL converted to GGUF (built by scripts/setup_llama_server.sh; see tests/llama_server.py). Faults a
real run meets are real too: the server is SIGKILLed mid-run and restarted; 429 storms, malformed JSON and
slow answers come from a proxy in front of the real server (tests/fault_proxy.py), everything else it passes
through. Nothing answered may be lost, a rerun asks only for what is missing, every loss is in `failures`."""
from __future__ import annotations

import json
import threading
import time

import duckdb
import pytest
from fault_proxy import FaultProxy
from llama_server import LlamaServer, require_llama_server, tiny_gguf

from pipeline import runner
from pipeline.cli import main
from pipeline.devtools.synthetic_memes import write_meme_folder
from pipeline.options import Options
from pipeline.stages import build
from pipeline.stages.vlm_prompts import DEFAULT_PROMPT_VERSIONS, get_prompt
from pipeline.stages.vlm_served import ServedVlmStage

pytestmark = [pytest.mark.process, pytest.mark.slow]

ALIAS = "tiny-qwen-gguf"
PIXELS = 112 * 112
N_MEMES = 6
TOP = 400           # the tiny tokenizer's whole vocabulary: a random model's label words are rarely in its top 20


@pytest.fixture(scope="module")
def gguf(tmp_path_factory):
    require_llama_server()
    return tiny_gguf(tmp_path_factory)


@pytest.fixture(scope="module")
def memes(tmp_path_factory):
    root = tmp_path_factory.mktemp("served-memes")
    write_meme_folder(root, n_toxic=N_MEMES // 2, n_non_toxic=N_MEMES // 2, seed=3, size=(160, 120))
    return root


@pytest.fixture(scope="module")
def server(gguf, tmp_path_factory):
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with LlamaServer(gguf.model, gguf.mmproj, extra_args=["--alias", ALIAS, "-np", "2"], log=log) as srv:
        yield srv


def _argv(memes, db, url, *extra):
    return ["precompute", "--memes", str(memes), "--db", str(db), "--stages", "vlm", "--vlm-backend", "openai",
            "--vlm-url", url, "--vlm-model", ALIAS, "--vlm-random-weights", "--max-new-tokens", "12",
            "--max-pixels", str(PIXELS), "--vlm-top-logprobs", str(TOP), *extra]


def _rows(db) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute("SELECT meme_id, prompt_version, raw_answer, score, logits, label_mass, score_note, "
                           "label, prompt, is_smoke, run_id, model_id FROM predictions ORDER BY meme_id, prompt_version"
                           ).fetchall()


def _failures(db) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute("SELECT run_id, stage, error_type, message FROM failures ORDER BY run_id").fetchall()


def _stage(url, **kw) -> ServedVlmStage:
    defaults = dict(url=url, model=ALIAS, max_pixels=PIXELS, max_new_tokens=12, random_weights=True,
                    prefill="continue", backoff_s=0.02, top_logprobs=TOP)
    return ServedVlmStage(**{**defaults, **kw})


def _precompute(memes, db, stage) -> int:
    return runner.precompute(memes, db, ["vlm"], lambda name: stage, {"test": True}, device="cpu")


def test_a_precompute_against_the_server_stores_every_answer_and_score(memes, server, tmp_path):
    db = tmp_path / "served.duckdb"
    assert main(_argv(memes, db, server.url, "--vlm-prefill", "continue", "--vlm-concurrency", "2")) == 0
    rows = _rows(db)
    assert len(rows) == N_MEMES * len(DEFAULT_PROMPT_VERSIONS)
    for meme_id, version, raw, score, logits, mass, note, label, prompt, smoke, run_id, model_id in rows:
        assert isinstance(raw, str) and prompt == get_prompt(version).render()
        assert smoke and model_id == f"served:{ALIAS}"
        # a score is there (read from the server's log-probabilities) or the row says why not
        assert (score is None) == (note is not None), (score, note)
        if score is not None:
            lp = json.loads(logits)
            assert lp["toxic"] <= 0 and lp["non_toxic"] <= 0 and 0 <= score <= 1
            assert mass == pytest.approx(pow(2.718281828459045, lp["toxic"]) + pow(2.718281828459045, lp["non_toxic"]))
    # the tiny model's tokenizer splits the space off the word: the prefill reads the words after it
    assert sum(r[3] is not None for r in rows) == len(rows), [r[6] for r in rows if r[6]]
    # deterministic: asking again gives the same answers and scores
    again = tmp_path / "again.duckdb"
    assert main(_argv(memes, again, server.url, "--vlm-prefill", "continue")) == 0
    for a, b in zip(_rows(again), rows):     # llama.cpp batches concurrent requests: sums in another order
        assert a[:3] == b[:3] and a[3] == pytest.approx(b[3], abs=1e-3)
    # without prefill the answer of a random model holds no class line: no score, and the reason
    plain = tmp_path / "plain.duckdb"
    assert main(_argv(memes, plain, server.url)) == 0
    notes = [r[6] for r in _rows(plain)]
    assert all(r[3] is None for r in _rows(plain)) and all("no prefill" in n for n in notes)


def test_the_meme_page_says_why_a_served_score_is_missing(memes, server, tmp_path, monkeypatch):
    from dashboard_helpers import app_opener, goto
    db = tmp_path / "plain.duckdb"
    assert main(_argv(memes, db, server.url)) == 0
    meme_id, note = _rows(db)[0][0], _rows(db)[0][6]
    at = goto(app_opener(monkeypatch)(db), "views/meme.py", meme=meme_id)
    assert "No p(toxic): why" in [c.value for c in at.caption]
    assert note in [t.value for t in at.text]                 # plain text, never markdown or HTML


def test_the_same_weights_served_and_in_process_agree(gguf, memes, server, tmp_path):
    """The GGUF conversion of the tiny checkpoint answers like the checkpoint through transformers: the two
    prediction sets are different variants of one cache, and the scores agree closely."""
    db = tmp_path / "both.duckdb"
    assert main(_argv(memes, db, server.url, "--vlm-prefill", "continue")) == 0
    assert main(["precompute", "--memes", str(memes), "--db", str(db), "--stages", "vlm", "--vlm-model",
                 str(gguf.model.parent / "tiny-random-qwen25vl-gguf"), "--max-new-tokens", "12", "--max-pixels", str(PIXELS), "--precision", "fp32",
                 "--device", "cpu"]) == 0
    with duckdb.connect(str(db), read_only=True) as con:
        pairs = con.execute(
            "SELECT s.meme_id, s.prompt_version, s.score, t.score, s.raw_answer, t.raw_answer FROM predictions s "
            "JOIN predictions t USING (meme_id, prompt_version) "
            "WHERE s.model_id LIKE 'served:%' AND t.model_id NOT LIKE 'served:%'").fetchall()
        n_sets = con.execute("SELECT count(DISTINCT variant_id) FROM predictions").fetchall()[0][0]
    assert n_sets == 2 * len(DEFAULT_PROMPT_VERSIONS) and len(pairs) == N_MEMES * len(DEFAULT_PROMPT_VERSIONS)
    # greedy answers of a random model: its next-token distribution is nearly flat, so f16 (GGUF) and fp32
    # (transformers) part ways at the first near-tie; they start alike
    assert all(a[:3] == b[:3] for *_, a, b in pairs), [(a, b) for *_, a, b in pairs]
    assert sum(a == b for *_, a, b in pairs) >= len(pairs) // 3
    # the scores are read at the same prompt + `Класс:` on both sides: they agree
    diffs = [abs(s - t) for _, _, s, t, *_ in pairs if s is not None and t is not None]
    assert len(diffs) == len(pairs) and max(diffs) < 0.01, diffs


def test_server_killed_mid_run_then_restarted_loses_nothing(gguf, memes, tmp_path):
    db = tmp_path / "killed.duckdb"
    with LlamaServer(gguf.model, gguf.mmproj, extra_args=["--alias", ALIAS], log=tmp_path / "s.log") as srv, \
            FaultProxy(srv.base) as proxy:
        stage = _stage(proxy.url, retries=1)
        killer = threading.Thread(target=_kill_after, args=(srv, proxy, 4), daemon=True)
        killer.start()
        assert _precompute(memes, db, stage) == 1              # some memes failed: exit code says so
        killer.join()
        first = _rows(db)
        failures = _failures(db)
        assert 0 < len(first) < N_MEMES * 2
        assert len(failures) == N_MEMES * 2 - len(first)        # every unanswered (meme, prompt) is recorded
        assert all(f[2] == "ServerDown" and "not answering" in f[3] for f in failures), failures
        srv.restart()
        asked_before = proxy.forwarded
        assert _precompute(memes, db, _stage(proxy.url, retries=1)) == 0
        rows = _rows(db)
        assert len(rows) == N_MEMES * 2
        # what the first run stored is kept as it was (same run id), the rerun asked only for the rest
        assert [r for r in rows if r[10] == first[0][10]] == first
        missing = N_MEMES * 2 - len(first)
        assert missing <= proxy.forwarded - asked_before <= 3 * missing      # answer + at most 2 prefill requests


def _kill_after(srv: LlamaServer, proxy: FaultProxy, n: int) -> None:
    deadline = time.monotonic() + 120
    while proxy.forwarded < n and time.monotonic() < deadline:
        time.sleep(0.01)
    srv.kill()


def test_a_429_storm_is_ridden_out_and_a_longer_one_recorded(gguf, memes, server, tmp_path):
    with FaultProxy(server.base) as proxy:
        proxy.fail_next(7, status=429)
        db = tmp_path / "storm.duckdb"
        assert _precompute(memes, db, _stage(proxy.url, retries=4, concurrency=2)) == 0
        assert len(_rows(db)) == N_MEMES * 2 and not _failures(db)
        assert proxy.posts - proxy.forwarded == 7                  # every 429 was retried

        proxy.fail_next(10_000, status=503)                         # the server refuses everything
        db2 = tmp_path / "storm2.duckdb"
        assert _precompute(memes, db2, _stage(proxy.url, retries=2)) == 1
        failures = _failures(db2)
        assert len(failures) == N_MEMES * 2 and not _rows(db2)
        assert all("HTTP 503" in f[3] and "after 3 attempt(s)" in f[3] for f in failures), failures[0]
        proxy._faults.clear()
        assert _precompute(memes, db2, _stage(proxy.url, retries=2)) == 0     # the rerun completes
        assert len(_rows(db2)) == N_MEMES * 2


def test_malformed_json_and_slow_answers(gguf, memes, server, tmp_path):
    with FaultProxy(server.base) as proxy:
        proxy.malform_next(3)
        db = tmp_path / "malformed.duckdb"
        assert _precompute(memes, db, _stage(proxy.url, retries=3)) == 0
        assert len(_rows(db)) == N_MEMES * 2 and not _failures(db)

        proxy.delay_s = 1.5                                         # slower than the timeout
        slow = tmp_path / "slow.duckdb"
        stage = _stage(proxy.url, retries=1, timeout=0.3, prompt_versions=["label-first-v1"])
        assert _precompute(memes, slow, stage) == 1
        failures = _failures(slow)
        assert failures and all("no answer within 0.3 s after 2 attempt(s)" in f[3] for f in failures), failures
        proxy.delay_s = 0
        assert _precompute(memes, slow, _stage(proxy.url)) == 0
        assert len(_rows(slow)) == N_MEMES * 2


def test_a_wrong_model_name_is_one_clear_line(server, memes, tmp_path, capsys):
    code = main(["precompute", "--memes", str(memes), "--db", str(tmp_path / "c.duckdb"), "--stages", "vlm",
                 "--vlm-backend", "openai", "--vlm-url", server.url, "--vlm-model", "qwen-72b"])
    err = capsys.readouterr().err
    assert code == 1 and f"serves {ALIAS}, not 'qwen-72b'" in err


def test_options_build_the_served_stage(server):
    stage = build("vlm", Options(vlm_backend="openai", vlm_url=server.url, vlm_model=ALIAS))
    stage.load()
    assert stage.client is not None


def test_derived_views_are_asked_of_the_server_too(memes, server, tmp_path):
    """--views all with the served backend: the caption-removed image with the same prompt and the caption alone
    as a text-only request (no image part), stored as the same derived sets as the in-process backend's."""
    db = tmp_path / "views.duckdb"
    argv = _argv(memes, db, server.url, "--vlm-prefill", "continue", "--views", "all", "--ocr-engine", "tesseract")
    argv[argv.index("--stages") + 1] = "ocr,views,vlm"
    assert main(argv) == 0
    with duckdb.connect(str(db), read_only=True) as con:
        with_text = con.execute("SELECT count(*) FROM ocr WHERE regexp_matches(text, '[\\pL\\pN]')").fetchall()[0][0]
        sets = dict(con.execute("SELECT prompt_version, count(*) FROM predictions GROUP BY ALL").fetchall())
        only = con.execute("SELECT p.prompt, o.text FROM predictions p JOIN ocr o USING (meme_id) "
                           "WHERE p.prompt_version LIKE '%/caption-only'").fetchall()
        removed = con.execute("SELECT DISTINCT prompt_version, prompt FROM predictions "
                              "WHERE prompt_version LIKE '%/caption-removed'").fetchall()
        failures = con.execute("SELECT count(*) FROM failures").fetchall()[0][0]
    assert with_text >= N_MEMES - 1 and failures == 0
    for version in DEFAULT_PROMPT_VERSIONS:
        assert sets[version] == N_MEMES
        assert sets[f"{version}/caption-removed"] == sets[f"{version}/caption-only"] == with_text
    assert only and all("без картинки" in p and " ".join(t.split()) in p for p, t in only)
    assert removed and all(p == get_prompt(v.split("/")[0]).render() for v, p in removed)
