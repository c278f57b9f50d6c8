"""pyvene 0.1.8 side of the end-to-end search benchmark: DAS at every layer's block_output,
last position, as a user would sweep it with pyvene (one IntervenableModel per layer, the
DAS tutorial's loop), on bench/search_data.py's pairs: k = 16, batch 32, 5 epochs over the
training pairs, IIA on the held-out pairs.

pyvene keeps no state across layers or steps (every step runs the base and the source in
full), so the sweep need not run whole: `--layers` are run whole (training and IIA), and
`--time-layers` only for `--time-steps` steps each. The sweep's wall time is then
extrapolated linearly and the result says how: model build + for every layer, set-up and
evaluation (as measured on the whole layers) + its steps at the step time interpolated
linearly in the layer between the timed layers (the backward runs from the output down to
the layer, so the step time is linear in it), with the spread of the measured step times.
Prints one BENCH_RESULT JSON line.
"""

import importlib.metadata as md
import json
import os
import statistics
import sys
import time
import argparse
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

import common  # noqa: E402
import search_task as st  # noqa: E402
from peers import shims  # noqa: E402
from peers.pyvene_das import make_intervenable, rotation_params  # noqa: E402

shims.install()


def iia(logits, answer_ids, labels) -> float:
    return float((answer_ids[logits[:, answer_ids].argmax(-1)] == labels).float().mean())


def run_layer(model, layer: int, d: dict, dev, max_steps: int | None = None) -> dict:
    """Train DAS at `layer` for EPOCHS over the training pairs (or only `max_steps` steps,
    with no evaluation) and evaluate IIA; times of the whole layer and of every step."""
    t0 = time.perf_counter()
    intervenable = make_intervenable(model, layer, st.K)
    opt = torch.optim.Adam(rotation_params(intervenable), lr=st.LR)
    pos = st.SEQ - 1
    g = torch.Generator().manual_seed(layer)
    n = len(d["train_label"])
    step_s = []
    for _ in range(st.EPOCHS):
        order = torch.randperm(n, generator=g)
        for i in range(0, n, st.BATCH):
            idx = order[i:i + st.BATCH]
            s0 = time.perf_counter()
            _, cf = intervenable({"input_ids": d["train_base"][idx].to(dev)},
                                 [{"input_ids": d["train_source"][idx].to(dev)}], {"sources->base": pos})
            loss = torch.nn.functional.cross_entropy(cf.logits[:, -1].float(), d["train_label"][idx].to(dev))
            loss.backward()
            opt.step()
            intervenable.set_zero_grad()
            common.sync(dev)
            step_s.append(time.perf_counter() - s0)
            if max_steps is not None and len(step_s) >= max_steps:
                break
        if max_steps is not None and len(step_s) >= max_steps:
            return {"layer": layer, "steps": len(step_s), "step_s_median": statistics.median(step_s),
                    "step_s_min": min(step_s), "step_s_max": max(step_s)}
    setup_and_train = time.perf_counter() - t0
    right = []
    with torch.no_grad():
        for i in range(0, len(d["test_label"]), 64):
            _, cf = intervenable({"input_ids": d["test_base"][i:i + 64].to(dev)},
                                 [{"input_ids": d["test_source"][i:i + 64].to(dev)}], {"sources->base": pos})
            right.append(iia(cf.logits[:, -1], d["answer_ids"].to(dev), d["test_label"][i:i + 64].to(dev)) *
                         len(d["test_label"][i:i + 64]))
    common.sync(dev)
    return {"layer": layer, "seconds": time.perf_counter() - t0, "steps": len(step_s),
            "setup_s": setup_and_train - sum(step_s), "eval_s": time.perf_counter() - t0 - setup_and_train,
            "step_s_median": statistics.median(step_s), "step_s_min": min(step_s), "step_s_max": max(step_s),
            "iia": sum(right) / len(d["test_label"])}


def _interpolate(points: list[tuple[int, float]], layer: int) -> float:
    """Piecewise-linear in the layer through the measured (layer, seconds) points, flat outside."""
    if layer <= points[0][0]:
        return points[0][1]
    for (l0, s0), (l1, s1) in zip(points, points[1:]):
        if layer <= l1:
            return s0 + (s1 - s0) * (layer - l0) / (l1 - l0) if l1 > l0 else s1
    return points[-1][1]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--layers", default="all", help="'all' or comma-separated layers to run whole (IIA and time)")
    p.add_argument("--time-layers", default="", help="comma-separated layers to time for --time-steps steps only")
    p.add_argument("--time-steps", type=int, default=8)
    p.add_argument("--loss-over", default="vocabulary", help="accepted for the shared command line (our side's option)")
    args = p.parse_args()
    meta = json.loads((Path(args.data) / "meta.json").read_text())
    d = load_file(str(Path(args.data) / "data.safetensors"))
    dev = common.device()
    with common.PeakMemory(dev) as mem:
        t0 = time.perf_counter()
        model = common.build_model(meta["model"])
        build_s = time.perf_counter() - t0
        n_layers = model.config.num_hidden_layers
        layers = list(range(n_layers)) if args.layers == "all" else [int(x) for x in args.layers.split(",")]
        per_layer = [run_layer(model, layer, d, dev) for layer in layers]
        timed = [run_layer(model, int(x), d, dev, args.time_steps) for x in args.time_layers.split(",") if x]
        measured = time.perf_counter() - t0
    steps_per_layer = per_layer[0]["steps"]
    if len(layers) == n_layers:
        total, how = measured, "measured every layer"
    else:
        points = sorted((p["layer"], p["step_s_median"]) for p in per_layer + timed)
        overhead = statistics.mean(p["setup_s"] + p["eval_s"] for p in per_layer)
        total = build_s + sum(overhead + steps_per_layer * _interpolate(points, layer) for layer in range(n_layers))
        how = (f"extrapolated: ran layers {layers} whole and timed {args.time_steps} steps at layers "
               f"{[p['layer'] for p in timed]} ({measured:.0f} s in all); total = model build {build_s:.1f} s + per "
               f"layer set-up and evaluation {overhead:.1f} s + {steps_per_layer} steps x the median step time, "
               f"interpolated linearly in the layer between {[(l, round(s, 3)) for l, s in points]}")
    steps = steps_per_layer * n_layers
    common.emit({"side": "pyvene", "peer_version": md.version("pyvene"), "task": "search_e2e", "model": meta["model"],
                 "layers": layers, "extrapolated": len(layers) < n_layers, "extrapolation": how, "timed_layers": timed,
                 "iia_per_layer": [p["iia"] for p in per_layer], "iia_mean": statistics.mean(p["iia"] for p in per_layer),
                 "total_s": total, "examples_per_s": steps * st.BATCH / total, "peak_mem_bytes": mem.peak_bytes,
                 "per_layer": per_layer, "n_test": len(d["test_label"]), "n_train_kept": len(d["train_label"]),
                 "threads": torch.get_num_threads()})


if __name__ == "__main__":
    main()
