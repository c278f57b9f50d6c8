"""Our side of the DAS benchmark: the same workload as peers/pyvene_das.py.

What our AlignmentSearch does per cell, on the benchmark's random-token batches: each
batch is prepared once (SuffixRunner.prepare: one no-grad forward keeping the KV prefix
before the intervened token and the activations at every swept site; sources are their
own forward's activations at the site), then every training step is one suffix forward
above the site with the DII applied by a hook, the same cross-entropy on the last-token
logits, and Adam on a RotatedSubspace (QR parametrization). Prepare time is reported and
counted in `total_s` and `examples_per_s_incl_prepare`. Prints one BENCH_RESULT line.

    python bench/ours_das.py --steps 10            # one site, layer 6
    python bench/ours_das.py --sweep --steps 3     # every layer at the last position
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import common  # noqa: E402
from interventions import RotatedSubspace, Site, SuffixRunner, load_model  # noqa: E402
from interventions.positions import Batch  # noqa: E402


def as_batch(ids: torch.Tensor, dev) -> Batch:
    ids = ids.to(dev)
    last = torch.full((ids.shape[0],), ids.shape[1] - 1, device=dev)
    return Batch(inputs={"input_ids": ids, "attention_mask": torch.ones_like(ids)},
                 positions=last, answer_positions=last)


def main(argv=None):
    args = common.das_args(argv)
    dev = common.device()
    hf = common.build_model(args.model, common.DTYPES[args.dtype], args.seed)
    model = load_model(hf, device=dev, tokenizer=common.word_tokenizer(hf.config.vocab_size))
    batches = common.das_batches(hf.config.vocab_size, args.data_batches, args.batch, args.seq, args.seed)
    layers = list(range(model.n_layers)) if args.sweep else [args.layer]
    sites = [Site(layer, "block_output", "last") for layer in layers]
    result = {"side": "ours", "task": "das_sweep" if args.sweep else "das", "model": args.model,
              "dtype": args.dtype, "batch": args.batch, "seq": args.seq, "k": args.k, "layers": layers,
              "warmup": args.warmup, "steps": args.steps, "data_batches": args.data_batches,
              "n_params": common.n_params(hf)}
    per_layer = []
    t0 = time.perf_counter()
    with common.PeakMemory(dev) as mem:
        runner = SuffixRunner(model, sites[0])
        tp = time.perf_counter()
        with torch.no_grad():
            prepared = [runner.prepare(as_batch(base, dev), sites=sites) for base, _, _ in batches]
            sources = [runner.prepare(as_batch(source, dev), sites=sites).acts for _, source, _ in batches]
        common.sync(dev)
        prepare_s = time.perf_counter() - tp
        labels = [lab.to(dev) for _, _, lab in batches]
        for site in sites:
            torch.manual_seed(args.seed)
            module = RotatedSubspace(model.site_dim(site), args.k).to(dev)
            opt = torch.optim.Adam(module.parameters(), lr=args.lr)
            losses = []

            def step(i, site=site, module=module, opt=opt, losses=losses):
                j = i % len(prepared)
                src = sources[j][site.key]
                logits = runner.logits(prepared[j], lambda h: module(h, src), site=site)
                loss = torch.nn.functional.cross_entropy(logits.float(), labels[j])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(loss.item())

            timing = common.time_steps(step, args.warmup, args.steps, dev)
            flops = common.count_flops(lambda: step(0)) if args.count_flops else None
            per_layer.append({"layer": site.layer, "ms_per_step": timing.ms_per_step,
                              "first_loss": losses[0], "final_loss": losses[-1]})
    total = time.perf_counter() - t0
    rates = common.das_rates(args, per_layer)
    timed = rates.pop("timed_s")
    result.update(
        **rates,
        prepare_s=prepare_s,
        examples_per_s_incl_prepare=args.batch * args.steps * len(per_layer) / (timed + prepare_s),
        total_s=total,
        peak_mem_bytes=mem.peak_bytes,
    )
    if flops is not None:  # the last site's step
        result.update(common.flops_fields(flops, per_layer[-1]["ms_per_step"]))
    common.emit(result)


if __name__ == "__main__":
    main()
