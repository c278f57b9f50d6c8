"""pyvene 0.1.8 side of the DAS benchmark: LowRankRotatedSpaceIntervention training steps.

The loop mirrors pyvene's own DAS tutorial: an IntervenableModel with one
LowRankRotatedSpaceIntervention at (layer, block_output, last position), base and source
batches through `intervenable(base, [source], {"sources->base": pos})`, cross-entropy on the
last-token logits, Adam on the rotation. Prints one BENCH_RESULT JSON line.

    python bench/peers/pyvene_das.py --steps 10            # one site, layer 6
    python bench/peers/pyvene_das.py --sweep --steps 3     # every layer at the last position
"""

import importlib.metadata as md
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

import common  # noqa: E402
from peers import shims  # noqa: E402

shims.install()
import pyvene as pv  # noqa: E402


def make_intervenable(model, layer: int, k: int):
    config = pv.IntervenableConfig(
        model_type=type(model),
        representations=[pv.RepresentationConfig(layer, "block_output", "pos", 1, low_rank_dimension=k)],
        intervention_types=pv.LowRankRotatedSpaceIntervention,
    )
    intervenable = pv.IntervenableModel(config, model)
    intervenable.set_device(common.device())
    intervenable.disable_model_gradients()
    return intervenable


def rotation_params(intervenable):
    params = []
    for v in intervenable.interventions.values():
        v = v[0] if isinstance(v, (tuple, list)) else v  # older pyvene stores (module, hook)
        params += list(v.rotate_layer.parameters())
    return params


def train_site(model, layer, args, batches, n_warmup, n_steps, dev):
    intervenable = make_intervenable(model, layer, args.k)
    opt = torch.optim.Adam(rotation_params(intervenable), lr=args.lr)
    pos = args.seq - 1
    losses = []

    def step(i):
        base, source, labels = (t.to(dev) for t in batches[i % len(batches)])
        _, cf = intervenable({"input_ids": base}, [{"input_ids": source}], {"sources->base": pos})
        loss = torch.nn.functional.cross_entropy(cf.logits[:, -1].float(), labels)
        loss.backward()
        opt.step()
        intervenable.set_zero_grad()
        losses.append(loss.item())

    timing = common.time_steps(step, n_warmup, n_steps, dev)
    flops = common.count_flops(lambda: step(0)) if args.count_flops else None
    return timing, losses, flops


def main():
    args = common.das_args()
    dev = common.device()
    model = common.build_model(args.model, common.DTYPES[args.dtype], args.seed)
    vocab = model.config.vocab_size
    batches = common.das_batches(vocab, args.data_batches, args.batch, args.seq, args.seed)
    layers = list(range(model.config.num_hidden_layers)) if args.sweep else [args.layer]
    result = {"side": "pyvene", "peer_version": md.version("pyvene"),
              "task": "das_sweep" if args.sweep else "das", "model": args.model, "dtype": args.dtype,
              "batch": args.batch, "seq": args.seq, "k": args.k, "layers": layers,
              "warmup": args.warmup, "steps": args.steps, "n_params": common.n_params(model)}
    per_layer = []
    t0 = time.perf_counter()
    with common.PeakMemory(dev) as mem:
        for layer in layers:
            # In a sweep every site pays its own setup and warmup, as a user's sweep would.
            timing, losses, flops = train_site(model, layer, args, batches, args.warmup, args.steps, dev)
            per_layer.append({"layer": layer, "ms_per_step": timing.ms_per_step,
                              "first_loss": losses[0], "final_loss": losses[-1]})
    total = time.perf_counter() - t0
    rates = common.das_rates(args, per_layer)
    rates.pop("timed_s")
    result.update(**rates, total_s=total, peak_mem_bytes=mem.peak_bytes)
    if flops is not None:  # the last site's step
        result.update(common.flops_fields(flops, per_layer[-1]["ms_per_step"]))
    common.emit(result)


if __name__ == "__main__":
    main()
