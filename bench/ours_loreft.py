"""Our side of the LoReFT benchmark: the same workload as peers/pyreft_loreft.py.

One LoReFT unit (rank r) per layer in --layers at block_output on the f+l prompt
positions, built by experiments.finetune.build_method exactly as `dii finetune` builds it
(ReftMethod: ReftInterventions with share_weights, applied by forward hooks); each step is
finetune's own micro-step (`train_micro_step`: the intervened forward with the LM head on
the response tokens only, the response-token loss normalised by their count, backward)
and AdamW. Prints one BENCH_RESULT line.

    python bench/ours_loreft.py --steps 10
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import common  # noqa: E402
from experiments.finetune import Encoded, FinetuneConfig, build_method, train_micro_step  # noqa: E402
from interventions import load_model  # noqa: E402


def main(argv=None):
    args = common.reft_args(argv)
    dev = common.device()
    dtype = common.DTYPES[args.dtype]
    hf = common.build_model(args.model, dtype, args.seed)
    model = load_model(hf, device=dev, tokenizer=common.word_tokenizer(hf.config.vocab_size))
    # The finetune config these flags amount to (model and data are given directly here).
    config = FinetuneConfig(model="bench", data="bench", method="loreft", layers=args.layers, rank=args.rank,
                            positions=f"f{args.first}+l{args.last}", share_weights=True, lr=args.lr,
                            batch_size=args.batch, seed=args.seed)
    method = build_method(model, config, provenance={})
    method.train()
    params = method.params
    opt = torch.optim.AdamW(params, lr=args.lr)
    batches = [Encoded(ids, torch.ones_like(ids), labels, torch.full((args.batch,), args.prompt_len))
               for ids, labels in common.reft_batches(hf.config.vocab_size, args.data_batches, args.batch,
                                                      args.prompt_len, args.response_len, args.seed)]
    losses = []

    def step(i):
        batch = batches[i % len(batches)]
        batch = Encoded(*(t.to(dev) for t in (batch.input_ids, batch.attention_mask, batch.labels,
                                               batch.prompt_lengths)))
        n_tokens = (batch.labels[:, 1:] != -100).sum().float()
        loss_sum = train_micro_step(method, batch, n_tokens)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append((loss_sum / n_tokens).item())

    measured = common.measure_reft(step, args, dev, losses)
    common.emit({
        "side": "ours", "task": "loreft", "model": args.model, "dtype": args.dtype,
        "batch": args.batch, "prompt_len": args.prompt_len, "response_len": args.response_len,
        "layers": args.layers, "rank": args.rank,
        "positions": common.reft_positions(args.prompt_len, args.first, args.last),
        "warmup": args.warmup, "steps": args.steps, "n_params": common.n_params(hf),
        "trainable_params": sum(p.numel() for p in params),
        **measured,
    })


if __name__ == "__main__":
    main()
