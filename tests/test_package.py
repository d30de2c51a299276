"""The project as an installed package: the `vlmemes` command, its error contract, and the cache schema
documented column by column."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from dashboard_helpers import free_port, wait_healthy

from pipeline import cli
from pipeline.errors import VlmemesError, first_line
from pipeline.store import Store, StoreError

REPO = Path(__file__).resolve().parent.parent
SCHEMA_DOC = REPO / "docs" / "schema.md"


def test_every_column_of_the_store_is_documented_in_schema_md(tmp_path):
    """Each table's section of docs/schema.md names every column a new cache has (migrations included)."""
    db = tmp_path / "c.duckdb"
    Store(db)
    con = duckdb.connect(str(db), read_only=True)
    try:
        columns = con.execute("SELECT table_name, column_name FROM duckdb_columns() WHERE schema_name = 'main' "
                              "AND database_name = current_database() AND NOT internal "
                              "ORDER BY table_name, column_index").fetchall()
    finally:
        con.close()
    doc = SCHEMA_DOC.read_text(encoding="utf-8")
    sections = {m.group(1): m.start() for m in re.finditer(r"^## `(\w+)`", doc, re.M)}
    missing = []
    for table, column in columns:
        assert table in sections, f"docs/schema.md has no section for table {table!r}"
        start = sections[table]
        end = min([p for p in sections.values() if p > start] + [len(doc)])
        rows = [ln for ln in doc[start:end].splitlines() if ln.startswith("|")]
        documented = {name.strip() for ln in rows for name in ln.split("|")[1].split(",")}
        if column not in documented:
            missing.append(f"{table}.{column}")
    assert not missing, f"columns not documented in docs/schema.md: {missing}"


def test_user_errors_share_one_base_class_and_the_cli_reports_them_in_one_line(tmp_path, capsys):
    from pipeline.dataset import ScanError
    from pipeline.export import ExportError
    from pipeline.stages.base import StageLoadError
    for cls in (StoreError, ScanError, StageLoadError, ExportError):
        assert issubclass(cls, VlmemesError)
    assert cli.main(["status", "--db", str(tmp_path / "nothing.duckdb")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert first_line(ValueError("\n  first\nsecond")) == "first" and first_line(KeyError()) == "KeyError"


def test_vlmemes_command_is_installed_and_lists_every_command():
    exe = Path(sys.executable).with_name("vlmemes")
    assert exe.exists() or shutil.which("vlmemes"), "the console script is missing: run scripts/setup.sh"
    out = subprocess.run([str(exe if exe.exists() else "vlmemes"), "--help"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0
    for command in ("precompute", "status", "annotations", "export", "dashboard"):
        assert command in out.stdout


def test_vlmemes_dashboard_serves_the_given_cache(smoke_db, tmp_path):
    port = free_port()
    log = tmp_path / "dashboard.log"
    exe = Path(sys.executable).with_name("vlmemes")
    with open(log, "w") as fh:
        proc = subprocess.Popen([str(exe), "dashboard", "--db", str(smoke_db), "--port", str(port), "--headless",
                                 "--address", "127.0.0.1"], stdout=fh, stderr=subprocess.STDOUT)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, log)
        argv = cli.dashboard_command(cli.build_parser().parse_args(["dashboard", "--db", str(smoke_db)]))
        assert argv[-2:] == ["--db", str(smoke_db)] and Path(argv[4]).name == "app.py"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    # stopping the command stops the server: nothing is left answering on its port
    import urllib.request
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=3)


@pytest.mark.parametrize("command", [["status"], ["dashboard"]])
def test_commands_take_the_cache_from_vlmemes_db(command, monkeypatch, tmp_path):
    monkeypatch.setenv("VLMEMES_DB", str(tmp_path / "x.duckdb"))
    assert cli.build_parser().parse_args(command).db == tmp_path / "x.duckdb"
