"""peft-LoRA side of the LoReFT benchmark: the same workload as pyreft_loreft.py and
ours_loreft.py (same model, batches, layers, rank, steps), finetuned the way a peft user
does it: LoRA rank r on the attention projection (`c_attn` on GPT-2, q/v on Llama) of the
layers in --layers, the model's own forward with labels, backward, AdamW. Prints one
BENCH_RESULT JSON line.

    python bench/peers/peft_lora.py --steps 10
"""

import importlib.metadata as md
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from peft import LoraConfig, TaskType, get_peft_model  # noqa: E402

import common  # noqa: E402


def main():
    args = common.reft_args()
    dev = common.device()
    model = common.build_model(args.model, common.DTYPES[args.dtype], args.seed)
    targets = ["c_attn"] if model.config.model_type == "gpt2" else ["q_proj", "v_proj"]
    config = LoraConfig(task_type=TaskType.CAUSAL_LM, r=args.rank, lora_alpha=2 * args.rank, lora_dropout=0.0,
                        target_modules=targets, layers_to_transform=list(args.layers))
    peft_model = get_peft_model(model, config)
    peft_model.train()
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr)
    batches = common.reft_batches(model.config.vocab_size, args.data_batches, args.batch, args.prompt_len,
                                  args.response_len, args.seed)
    losses = []

    def step(i):
        ids, labels = (t.to(dev) for t in batches[i % len(batches)])
        loss = peft_model(input_ids=ids, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())

    measured = common.measure_reft(step, args, dev, losses)
    common.emit({
        "side": "peft-lora", "peer_version": md.version("peft"), "task": "loreft", "model": args.model,
        "dtype": args.dtype, "batch": args.batch, "prompt_len": args.prompt_len, "response_len": args.response_len,
        "layers": args.layers, "rank": args.rank, "targets": targets, "warmup": args.warmup, "steps": args.steps,
        "trainable_params": sum(p.numel() for p in params),
        **measured,
    })


if __name__ == "__main__":
    main()
