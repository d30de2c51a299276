"""The load benchmark's websocket clients (benchmarks/dashboard_load.py) against a real dashboard, small.

4 sessions x 1 round on a 2,000-meme synthetic cache: `vlmemes dashboard` is started as a lab would, and
each client speaks Streamlit's own protocol on /_stcore/stream (rerun_script -> script_finished), visiting
every page, Errors page 2 and a filter change, and a Meme page. Asserted: every visit was made and
finished without an error (no exception element, no error notice, success status, the intended page
ran, no dropped connection), and the server's memory was measured. No time is asserted: the numbers are
for docs/benchmarks.md, printed by the script itself.
"""
from __future__ import annotations

import importlib.util
import sys

import pytest
from dashboard_helpers import REPO, build_synth

pytestmark = [pytest.mark.slow, pytest.mark.process]

SESSIONS, ROUNDS = 4, 1


def _load_module():
    spec = importlib.util.spec_from_file_location("dashboard_load", REPO / "benchmarks" / "dashboard_load.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod            # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


def test_concurrent_sessions_visit_every_page_without_error(tmp_path):
    load = _load_module()
    db = build_synth(tmp_path / "synth-2000.duckdb", n=2000)
    res = load.measure(db, SESSIONS, ROUNDS, think=(0.0, 0.0), log=tmp_path / "dashboard.log")

    assert res.errors == [], "\n".join(res.errors[:20]) + f"\n--- server log:\n{(tmp_path / 'dashboard.log').read_text()[-3000:]}"
    per_round = len(load.PAGES) + 2          # six pages + Errors page 2 + Errors with a filter
    assert len(res.visits) == SESSIONS * ROUNDS * per_round
    assert all(v.ok and v.seconds > 0 and v.messages > 0 for v in res.visits)
    for s in range(SESSIONS):                # every client saw every page (and both Errors variants)
        labels = {v.label for v in res.visits if v.session == s}
        assert labels == {*load.PAGES, "errors p.2", "errors filter"}, (s, labels)
    assert res.rss_samples > 0 and res.peak_rss > 0 and res.end_rss > 0
    assert res.peak_rss >= res.end_rss
    s = load.summary(res)
    assert s["ok"] == s["visits"] and s["errors"] == 0
    print(load.table(res))                   # for the log (-s), not asserted
