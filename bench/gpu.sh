#!/usr/bin/env bash
# The whole GPU benchmark, one command, about 8 minutes, no network:
#
#   bash bench/fetch_gpu_wheels.sh     # once, on a machine with PyPI (fills bench/wheels/)
#   bash bench/gpu.sh                  # on the GPU machine, with bench/wheels carried along
#
# The GPU image has python 3.12, torch, transformers 5.x, peft, accelerate and pandas, but
# neither nnsight nor the peers. The carried wheels go into a private folder on PYTHONPATH
# (pip --target, --no-index --no-deps): the image's own packages are left as they are, and
# our project runs from this checkout (PYTHONPATH), not installed. Results go to
# $OUT/gpu_results.json ($OUT defaults to bench/results); SMOKE=1 runs a tiny model.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/bench/results}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
SITE=${BENCH_SITE:-/tmp/dii-bench-site}
WHEELS=${WHEELS:-bench/wheels}
LOG="$OUT/gpu_log.txt"
{
  echo "== $(date -u +%FT%TZ) $(hostname)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    echo "$WHEELS has no wheels: run 'bash bench/fetch_gpu_wheels.sh' where PyPI is reachable, and carry bench/wheels" >&2
    exit 1
  fi
  rm -rf "$SITE"
  PIP_BREAK_SYSTEM_PACKAGES=1 "$PY" -m pip install -q --no-index --no-deps --target "$SITE" "$WHEELS"/*.whl \
    || { echo "installing the carried wheels failed" >&2; exit 1; }
  export PYTHONPATH="$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
  export TOKENIZERS_PARALLELISM=false
  "$PY" - <<'PY'
import importlib.metadata as md, sys
sys.path.insert(0, "bench")
from peers import shims
stubbed = shims.install()
import torch, transformers, nnsight, pyvene, pyreft, interventions, experiments.finetune  # noqa: F401
print("python", sys.version.split()[0], "| torch", torch.__version__, "| transformers", transformers.__version__,
      "| nnsight", md.version("nnsight"), "| pyvene", md.version("pyvene"), "| pyreft", md.version("pyreft"),
      "| cuda", torch.cuda.is_available(), "| stubbed for the peers:", stubbed or "nothing")
PY
  # Hard stop at 8 minutes; run_gpu.py stops starting comparisons well before that.
  timeout -k 10 480 "$PY" bench/run_gpu.py --out "$OUT" --budget-s "${BUDGET_S:-420}" ${SMOKE:+--smoke} ${ONLY:+--only "$ONLY"}
  echo "run_gpu.py exit code $?"
} 2>&1 | tee "$LOG"
