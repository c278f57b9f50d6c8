"""The peak memory of a search stays under a bound computed from the model's and the batch's
shapes: what a search must hold is the frozen model's prepared inputs (the KV prefix and the
site activations of every distinct input) and one training step (the suffix's activations for
the backward, and the logits); nothing grows with the number of cells or steps. Measured in a
fresh process: on the CPU the meter reads the resident set, which memory an earlier test freed
but the allocator kept would hide."""

from __future__ import annotations

import json
import subprocess
import sys

FLOAT = 4  # bytes
SLACK_MB = 64  # the allocator's arenas, thread stacks and Python objects of a run

SEARCH = """
import json, sys
from experiments.memory import PeakMemory
from experiments.search import AlignmentSearch

search = AlignmentSearch(sys.argv[1], "hierarchical_equality_tokens", layers="all", positions=["b", "d"], k=8,
                         steps=20, batch_size=64, n_train=600, n_test=200, controls=["random_rotation"])
model = search.model
with PeakMemory("cpu") as mem:
    run = search.run()
split = search.split("main")
print(json.dumps({"complete": run.complete, "peak_mb": mem.peak_mb, "n_inputs": len(split.inputs),
                  "seq_len": int(split.prepared(search.sites[0])[1].inputs["attention_mask"].shape[1]),
                  "n_sites": len(search.sites), "d": model.hidden_size, "layers": model.n_layers,
                  "vocab": model.hf.config.vocab_size, "heads": model.hf.config.num_attention_heads}))
"""


def shape_bound_mb(s: dict, batch: int) -> float:
    d, layers, seq = s["d"], s["layers"], s["seq_len"]
    prepared = s["n_inputs"] * (layers * 2 * seq * d + s["n_sites"] * d) * FLOAT  # KV (keys, values) + site activations
    # one step: every layer's saved tensors for the backward (attention and MLP, at most ~16 of
    # width d per token, the MLP's 4d counted in), the attention scores, and the logits
    step = batch * seq * layers * (16 * d + 2 * seq * s["heads"]) * FLOAT + 3 * batch * s["vocab"] * FLOAT
    return 2 * (prepared + step) / 2**20 + SLACK_MB  # x2: a freed block and its successor can coexist


def test_a_search_peaks_under_the_bound_from_its_shapes(zoo_model):
    model_dir = str(zoo_model("hierarchical_equality_tokens"))
    out = subprocess.run([sys.executable, "-c", SEARCH, model_dir], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    s = json.loads(out.stdout.strip().splitlines()[-1])
    bound = shape_bound_mb(s, batch=64)
    assert s["complete"]
    # measured: a 56 MB peak against a 105 MB bound (8 sites x 2 methods, 40 steps each; the peak
    # does not grow with the steps, so the test runs 20)
    assert 0 < s["peak_mb"] <= bound, (s["peak_mb"], bound)
