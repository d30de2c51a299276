#!/usr/bin/env bash
# The main job: set up, precompute memes_project/memes into data/vlmemes.duckdb, open the dashboard.
# With no memes in memes_project/memes yet, it runs on the built-in demo set instead (data/demo_memes,
# cache data/demo.duckdb) and says so. Extra arguments go to `vlmemes start` (the precompute's options,
# e.g. --stages ocr,clip --limit 10). HEADLESS=true: do not open a browser; ADDRESS: the bind address.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh || exit $?
HEADLESS_FLAG=(); [[ "${HEADLESS:-false}" == "true" ]] && HEADLESS_FLAG=(--headless)
exec .venv/bin/vlmemes start --address "${ADDRESS:-localhost}" "${HEADLESS_FLAG[@]}" "$@"
