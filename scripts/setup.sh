#!/usr/bin/env bash
# Set up everything VLMemes needs on a Debian-like machine: apt packages, .venv, the project installed
# into it (pip install -e ., which puts the `vlmemes` command in .venv/bin) with its pinned requirements.
#   scripts/setup.sh          runtime (precompute + dashboard)
#   scripts/setup.sh --dev    also the test tools (pytest, ruff, Playwright driving Debian's chromium)
# Safe to re-run: it skips what is already in place.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(tesseract-ocr tesseract-ocr-rus fonts-dejavu-core)
TARGET=.
if [[ "${1:-}" == "--dev" ]]; then
    APT_PACKAGES+=(chromium nginx)      # nginx: tests/test_access_proxy.py runs docs/access.md's proxy config
    TARGET=".[dev]"
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
stamp=".venv/.requirements-$(echo "$TARGET" | cat - pyproject.toml requirements*.txt | sha256sum | cut -c1-16)"
if [[ ! -f "$stamp" ]]; then
    echo "setup: installing vlmemes and its Python requirements (pip install -e \"$TARGET\")"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e "$TARGET"
    touch "$stamp"
fi
echo "setup: ready (.venv, $(tesseract --version 2>&1 | head -1))"
