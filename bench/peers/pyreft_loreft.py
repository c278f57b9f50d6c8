"""pyreft 0.1.0 side of the LoReFT benchmark: LoreftIntervention finetuning steps.

One LoreftIntervention (rank r) per layer in --layers at block_output, on the f+l prompt
positions (the first f and last l prompt tokens; one intervention per layer covers both,
as pyreft's --share_weights does). Each step is pyreft's ReftTrainer.compute_loss (the
intervened forward with labels, loss from the model) followed by backward and AdamW;
the HF Trainer around it is left out on both sides. Prints one BENCH_RESULT JSON line.

    python bench/peers/pyreft_loreft.py --steps 10
"""

import importlib.metadata as md
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

import common  # noqa: E402
from peers import shims  # noqa: E402

shims.install()
import pyreft  # noqa: E402


def make_reft_model(model, layers, rank, dtype):
    d = model.config.hidden_size
    config = pyreft.ReftConfig(representations=[{
        "layer": layer, "component": "block_output", "low_rank_dimension": rank,
        # pyreft makes W, b in bf16 unless told: keep them in the model's dtype.
        "intervention": pyreft.LoreftIntervention(embed_dim=d, low_rank_dimension=rank, dtype=dtype),
    } for layer in layers])
    reft_model = pyreft.get_reft_model(model, config)
    reft_model.set_device(common.device())
    return reft_model


def main():
    args = common.reft_args()
    dev = common.device()
    dtype = common.DTYPES[args.dtype]
    model = common.build_model(args.model, dtype, args.seed)
    torch.manual_seed(args.seed)
    reft_model = make_reft_model(model, args.layers, args.rank, dtype)
    params = [p for v in reft_model.interventions.values()
              for p in (v[0] if isinstance(v, (tuple, list)) else v).parameters()]
    opt = torch.optim.AdamW(params, lr=args.lr)
    batches = common.reft_batches(model.config.vocab_size, args.data_batches, args.batch, args.prompt_len,
                                  args.response_len, args.seed)
    positions = common.reft_positions(args.prompt_len, args.first, args.last)
    locations = {"sources->base": (None, [[positions] * args.batch] * len(args.layers))}
    losses = []

    def step(i):
        ids, labels = (t.to(dev) for t in batches[i % len(batches)])
        _, cf = reft_model({"input_ids": ids, "attention_mask": torch.ones_like(ids)},
                           unit_locations=locations, labels=labels)
        cf.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(cf.loss.item())

    measured = common.measure_reft(step, args, dev, losses)
    common.emit({
        "side": "pyreft", "peer_version": md.version("pyreft"), "task": "loreft", "model": args.model,
        "dtype": args.dtype, "batch": args.batch, "prompt_len": args.prompt_len,
        "response_len": args.response_len, "layers": args.layers, "rank": args.rank,
        "positions": positions, "warmup": args.warmup, "steps": args.steps,
        "n_params": common.n_params(model), "trainable_params": sum(p.numel() for p in params),
        **measured,
    })


if __name__ == "__main__":
    main()
