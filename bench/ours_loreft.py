"""Our side of the LoReFT benchmark: the same workload as peers/pyreft_loreft.py.

One LoReFT unit (rank r) per layer in --layers at block_output on the f+l prompt
positions (ReftInterventions with share_weights, as experiments/finetune.py builds it),
applied by forward hooks (`attached`); each step is the model's forward, our finetune's
response-token loss (experiments.finetune.response_loss_sum, normalised by the number of
response tokens), backward and AdamW. Prints one BENCH_RESULT line.

    python bench/ours_loreft.py --steps 10
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import common  # noqa: E402
from experiments.finetune import response_loss_sum  # noqa: E402
from experiments.reft_artifact import ReftInterventions  # noqa: E402
from interventions import load_model  # noqa: E402


def main(argv=None):
    args = common.reft_args(argv)
    dev = common.device()
    dtype = common.DTYPES[args.dtype]
    hf = common.build_model(args.model, dtype, args.seed)
    model = load_model(hf, device=dev, tokenizer=common.word_tokenizer(hf.config.vocab_size))
    torch.manual_seed(args.seed)
    positions = f"f{args.first}+l{args.last}"
    reft = ReftInterventions("loreft", model.hidden_size, args.rank, args.layers, positions,
                             share_weights=True).to(dev)
    params = [p for p in reft.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr)
    batches = common.reft_batches(hf.config.vocab_size, args.data_batches, args.batch, args.prompt_len,
                                  args.response_len, args.seed)
    prompt_lengths = torch.full((args.batch,), args.prompt_len, device=dev)
    losses = []

    def step(i):
        ids, labels = (t.to(dev) for t in batches[i % len(batches)])
        with reft.attached(model, prompt_lengths):
            logits = hf(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        loss_sum, _, count = response_loss_sum(logits, labels)
        loss = loss_sum / count.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())

    with common.PeakMemory(dev) as mem:
        timing = common.time_steps(step, args.warmup, args.steps, dev)
    tokens = args.batch * (args.prompt_len + args.response_len)
    common.emit({
        "side": "ours", "task": "loreft", "model": args.model, "dtype": args.dtype,
        "batch": args.batch, "prompt_len": args.prompt_len, "response_len": args.response_len,
        "layers": args.layers, "rank": args.rank,
        "positions": common.reft_positions(args.prompt_len, args.first, args.last),
        "warmup": args.warmup, "steps": args.steps, "n_params": common.n_params(hf),
        "trainable_params": sum(p.numel() for p in params),
        "ms_per_step": timing.ms_per_step,
        "tokens_per_s": tokens * args.steps / timing.seconds,
        "examples_per_s": args.batch * args.steps / timing.seconds,
        "peak_mem_bytes": mem.peak_bytes,
        "first_loss": losses[0], "final_loss": losses[-1],
    })


if __name__ == "__main__":
    main()
