#!/usr/bin/env bash
# Creates (or reuses) bench/.venv-peers: one venv that holds both the peers (pyvene 0.1.8,
# pyreft 0.1.0) and this project, so the same interpreter and library versions run both
# sides. Each side is still timed in its own process (nnsight, which pyvene imports too,
# patches Tensor.backward on import).
#
# - torch==2.13.0 goes in FIRST: it is the CPU wheel on local disk here; any other torch
#   pulls a multi-GB CUDA build. Every later install is constrained to it.
# - pyvene and pyreft go in with --no-deps: pyreft pins transformers==4.45.1 and both list
#   notebook-only extras (plotnine, jupyter, wandb, ydata-profiling, gcsfs, seaborn). We
#   install only what their imports need (checked by `import pyvene, pyreft` below).
# - transformers stays at whatever 5.x our project resolves to: the bench compares the peers
#   on current library versions. Nothing in site-packages is patched.
set -euo pipefail
cd "$(dirname "$0")/.."
V=bench/.venv-peers
PY=${PYTHON:-python3}
if [ ! -x "$V/bin/python" ]; then "$PY" -m venv "$V"; fi
P="$V/bin/python"
"$P" -m pip install -q --upgrade pip
if ! "$P" -c "import torch" 2>/dev/null; then
  "$P" -m pip install -q "torch==2.13.0"
fi
CONSTRAINT="$V/torch-constraint.txt"
"$P" -c "import torch; print('torch==' + torch.__version__)" > "$CONSTRAINT"
# Our project with its dependencies (transformers 5.x, nnsight, peft, ...).
"$P" -m pip install -q -c "$CONSTRAINT" -e .
# What the peers' imports need beyond that: pyvene imports networkx and matplotlib at top
# level (its CausalModel); pyreft imports datasets (which brings dill and multiprocess).
"$P" -m pip install -q -c "$CONSTRAINT" networkx matplotlib datasets dill multiprocess \
  sentencepiece protobuf psutil
"$P" -m pip install -q --no-deps "pyvene==0.1.8"
"$P" -m pip install -q --no-deps "pyreft==0.1.0"
"$P" - <<'PY'
import importlib.metadata as md
import pyvene, pyreft, transformers, torch  # noqa: F401  (fails loudly if an import breaks)
print("peers venv ready:", {p: md.version(p) for p in ("torch", "transformers", "pyvene", "pyreft", "nnsight", "dii-workbench")})
PY
