#!/usr/bin/env bash
# Set up gradop in ./.venv on a machine that has only Python 3.10+.
#   bash environment/install.sh          # library, CLI and app
#   bash environment/install.sh --test   # + pytest, Playwright and Debian's Chromium for browser tests
# torch: a torch already in .venv is kept (install your CUDA build there first); otherwise
# GRADOP_TORCH (default torch==2.13.0, the CPU build) is installed. Never an unpinned torch:
# that pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip install --disable-pip-version-check -q)
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    "${PIP[@]}" "${GRADOP_TORCH:-torch==2.13.0}"
fi
if [ "${1:-}" = "--test" ]; then
    "${PIP[@]}" -r environment/requirements-test.txt -e .
    if ! command -v chromium >/dev/null; then
        SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
    fi
else
    "${PIP[@]}" -r environment/requirements.txt -e .
fi
echo "gradop installed in .venv"
