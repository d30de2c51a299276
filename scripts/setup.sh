#!/usr/bin/env bash
# Set up everything VLMemes needs on a Debian-like machine: apt packages, .venv, Python requirements.
#   scripts/setup.sh          runtime (precompute + dashboard)
#   scripts/setup.sh --dev    also the test tools (pytest, Playwright driving Debian's chromium)
# Safe to re-run: it skips what is already in place.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(tesseract-ocr tesseract-ocr-rus fonts-dejavu-core)
REQS=requirements.txt
if [[ "${1:-}" == "--dev" ]]; then
    APT_PACKAGES+=(chromium)
    REQS=requirements-dev.txt
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if (( ${#missing[@]} )); then
    echo "setup: installing apt packages: ${missing[*]}"
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
    echo "setup: creating .venv with $($PYTHON --version)"
    $PYTHON -m venv .venv
fi
stamp=".venv/.requirements-$(cat requirements.txt "$REQS" | sha256sum | cut -c1-16)"
if [[ ! -f "$stamp" ]]; then
    echo "setup: installing Python requirements ($REQS)"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -r "$REQS"
    touch "$stamp"
fi
echo "setup: ready (.venv, $(tesseract --version 2>&1 | head -1))"
