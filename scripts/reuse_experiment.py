"""Why reuse matters: DAS-initialised versus random-initialised LoReFT on a changed rule.

1. A quick DAS search on the zoo price-tagging LM localises the left-boundary variable
   ("left" = X >= L) at the last prompt token over all layers; the best site's Subspace is
   saved.
2. The task changes that variable's rule: "yes" needs X >= L + 2 (--variant lower_shift=2,
   the default), or the lower bound is dropped (ignore_lower=1: left := True).
3. LoReFT at the best site's layer and the last token, rank r, trains from the DAS
   directions (init_from) or from random ones, same seeds, data, budget and evaluation;
   optionally also with the DAS rotation frozen.

Prints a table (final accuracy, steps to 95%, final eval loss; mean over seeds) and writes
JSON with the loss and evaluation curves. The figures are reported as they come out.

    .venv/bin/python scripts/reuse_experiment.py [--seeds 0 1 2] [--steps 150] [--out runs/reuse-price-tagging]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def locate(k: int, steps: int, out: Path):
    from experiments.search import AlignmentSearch

    search = AlignmentSearch("zoo:price_tagging", "price_tagging", variables=["left"], layers="all",
                             positions=["last"], k=k, steps=steps, batch_size=64, lr=1e-2, n_train=2000,
                             n_test=500, seed=0)
    t0 = time.perf_counter()
    results = search.run()
    best = results.best("left")
    sub = results.subspaces[(best["site"], "left")]
    sub.save(out / "subspace")
    print(f"DAS (k={k}) located 'left' at {best['site']} with IIA {best['iia']:.3f} "
          f"({time.perf_counter() - t0:.0f} s); IIA by site: "
          + ", ".join(f"{r['site']} {r['iia']:.3f}" for r in results.rows_for("left", "das")))
    return best, sub


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=150, help="LoReFT optimizer steps")
    parser.add_argument("--das-steps", type=int, default=300)
    parser.add_argument("--k", type=int, default=2, help="DAS subspace dimension")
    parser.add_argument("--rank", type=int, default=2, help="LoReFT rank")
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--frozen", action="store_true", help="also train with the DAS rotation frozen")
    parser.add_argument("--variant", default="lower_shift=2",
                        help="the changed rule, KEY=INT (lower_shift=2, or ignore_lower=1: left := True)")
    parser.add_argument("--out", default=str(ROOT / "runs" / "reuse-price-tagging"))
    args = parser.parse_args(argv)

    from experiments.finetune.reuse import reuse_arms, run_arms
    from interventions.model import Site

    key, value = args.variant.split("=")
    variant = {key: int(value)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    best, sub = locate(args.k, args.das_steps, out)
    layer = Site.parse(best["site"]).layer
    configs = reuse_arms(out / "subspace", with_frozen=args.frozen, model="zoo:price_tagging", task="price_tagging",
                         variant=variant, layers=[layer], positions="l1", rank=args.rank, lr=args.lr,
                         steps=args.steps, batch_size=32, n_train=2000, n_eval=400, eval_every=args.eval_every)
    arms = {"DAS init": "das_init", "random init": "random_init", "DAS init, frozen": "das_init_frozen"}
    arms = {arms[label]: label for label in configs}
    rows = []
    for arm, label in arms.items():
        for seed in args.seeds:
            r = run_arms({label: configs[label].replace(seed=seed)})[label]
            rows.append({"arm": arm, "seed": seed, "final_accuracy": r.final_accuracy, "final_loss": r.final_loss,
                         "steps_to_95": r.steps_to(0.95), "start_accuracy": r.eval_curve[0]["accuracy"],
                         "trainable_params": r.trainable_params, "loss_curve": r.loss_curve,
                         "eval_curve": r.eval_curve})
            print(f"{arm:16s} seed {seed}: accuracy {r.eval_curve[0]['accuracy']:.3f} -> {r.final_accuracy:.3f}, "
                  f"steps to 95% {r.steps_to(0.95)}, eval loss {r.final_loss:.4f}", flush=True)

    summary = []
    for arm in arms:
        rs = [r for r in rows if r["arm"] == arm]
        reached = [r["steps_to_95"] for r in rs if r["steps_to_95"] is not None]
        summary.append({
            "arm": arm, "n_seeds": len(rs),
            "final_accuracy_mean": statistics.fmean(r["final_accuracy"] for r in rs),
            "final_accuracy_min": min(r["final_accuracy"] for r in rs),
            "final_loss_mean": statistics.fmean(r["final_loss"] for r in rs),
            "steps_to_95_mean": statistics.fmean(reached) if reached else None,
            "reached_95": f"{len(reached)}/{len(rs)}",
            "steps_to_95_each": [r["steps_to_95"] for r in rs]})
    print()
    print(f"LoReFT rank {args.rank} at {best['site']} (DAS IIA {best['iia']:.3f}), price tagging changed by {variant}, "
          f"{args.steps} steps, seeds {args.seeds}, evaluated every {args.eval_every} steps")
    header = f"{'arm':16s} {'final acc (mean)':>16s} {'min':>6s} {'eval loss':>10s} {'steps to 95%':>13s} {'reached':>8s}  each"
    print(header)
    print("-" * len(header))
    for s in summary:
        steps = "-" if s["steps_to_95_mean"] is None else f"{s['steps_to_95_mean']:.0f}"
        print(f"{s['arm']:16s} {s['final_accuracy_mean']:16.3f} {s['final_accuracy_min']:6.3f} "
              f"{s['final_loss_mean']:10.4f} {steps:>13s} {s['reached_95']:>8s}  {s['steps_to_95_each']}")
    from interventions.io import atomic_write_json

    atomic_write_json(out / "reuse.json", {"variant": variant, "site": best["site"], "das_iia": best["iia"], "k": args.k,
                                           "rank": args.rank, "steps": args.steps, "lr": args.lr,
                                           "seeds": args.seeds, "summary": summary, "rows": rows})
    print(f"written to {out / 'reuse.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
