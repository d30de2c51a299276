#!/usr/bin/env bash
# Set up (runtime + test tools), lint (ruff) and run the whole test suite. Extra arguments go to pytest,
# e.g. `scripts/test.sh -m "not browser and not process and not slow"` for the fast part.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --dev
scripts/setup_llama_server.sh       # llama.cpp's llama-server: the served-VLM tests run against it
export HF_HUB_OFFLINE=1 STREAMLIT_BROWSER_GATHER_USAGE_STATS=false VLMEMES_REQUIRE_LLAMA_SERVER=1
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@" tests
