#!/usr/bin/env bash
# Downloads into bench/wheels/ (git-ignored) what bench/gpu.sh installs on a GPU machine
# that has torch, transformers, peft, accelerate and pandas but no network: nnsight and its
# small dependencies, pyvene and pyreft, and what their imports touch. Versions are the
# ones bench/.venv-peers runs here (so the set is known to work together); wheels are for
# CPython $PYVER (3.12 on the GPU image) on manylinux x86_64. Carry bench/wheels with the
# working tree to the GPU machine. About 15 MB.
#
#   bash bench/fetch_gpu_wheels.sh              # PYVER=3.12 by default
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER=${PYVER:-3.12}
DEST=${DEST:-bench/wheels}
SRC_PY=${SRC_PY:-bench/.venv-peers/bin/python}
[ -x "$SRC_PY" ] || bash bench/setup_peers.sh
PKGS=(nnsight greenlet pydantic pydantic-core annotated-types typing-inspection typing_extensions
      websocket-client zstandard cloudpickle pyvene pyreft datasets dill multiprocess xxhash networkx)
PINS=$("$SRC_PY" - "${PKGS[@]}" <<'PY'
import importlib.metadata as md, sys
print(" ".join(f"{p}=={md.version(p)}" for p in sys.argv[1:]))
PY
)
mkdir -p "$DEST"
rm -f "$DEST"/*.whl
# shellcheck disable=SC2086
"$SRC_PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" \
  --implementation cp --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux_2_28_x86_64 --platform any -d "$DEST" $PINS 2>&1 | grep -v "is ignored" || true
ls -1 "$DEST"
du -sh "$DEST"
n=$(ls "$DEST"/*.whl | wc -l)
if [ "$n" -lt "${#PKGS[@]}" ]; then echo "expected ${#PKGS[@]} wheels, got $n" >&2; exit 1; fi
