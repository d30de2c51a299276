#!/usr/bin/env bash
# The main job: set up, precompute memes_project/memes into data/vlmemes.duckdb, open the dashboard.
# Extra arguments go to the precompute (e.g. --stages ocr,clip --limit 10).
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh || exit $?
DB=${VLMEMES_DB:-data/vlmemes.duckdb}
.venv/bin/vlmemes precompute --db "$DB" "$@"
status=$?
if (( status != 0 )); then
    echo "precompute finished with exit code $status (see the summary above and the Runs page); opening the dashboard on what is cached."
fi
HEADLESS_FLAG=(); [[ "${HEADLESS:-false}" == "true" ]] && HEADLESS_FLAG=(--headless)
exec .venv/bin/vlmemes dashboard --db "$DB" --address "${ADDRESS:-localhost}" "${HEADLESS_FLAG[@]}"
