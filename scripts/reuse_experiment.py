"""Why reuse matters: DAS-initialised versus random-initialised LoReFT on a changed rule.

1. A quick DAS search localises a variable, and the best site's Subspace is saved.
2. The task changes that variable's rule.
3. LoReFT at the best site's layer and the last token, rank k, trains from the DAS
   directions (init_from) or from random ones, same seeds, data, budget and evaluation;
   optionally also with the DAS rotation frozen.

Two setups (--setup):
  price-tagging  the zoo price-tagging LM; "left" (X >= L) at the last token over all layers;
                 the changed rule: "yes" needs X >= L + 2 (--variant lower_shift=2).
  smollm2-ioi    SmolLM2-135M-Instruct (bash scripts/fetch_models.sh); IOI's output position P
                 on the s1_io_flip pairs at the last token (layers --layers, default 16-24:2);
                 the changed rule: answer with the subject ("s") instead of the indirect object.

Prints a table (accuracy at the start and end, steps to 95%, final eval loss; mean over
seeds), writes JSON with the loss and evaluation curves, and a plot of accuracy against step
(reuse.html; reuse.png too where kaleido is installed).

    .venv/bin/python scripts/reuse_experiment.py [--setup smollm2-ioi] [--seeds 0 1 2] [--out DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SMOLLM2 = str(ROOT / ".cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf")

# Each setup: the search that locates the variable, and the finetune that changes its rule.
SETUPS = {
    "price-tagging": {
        "search": dict(model="zoo:price_tagging", task="price_tagging", variables=["left"], layers="all",
                       positions=["last"], k=2, steps=300, batch_size=64, lr=1e-2, n_train=2000, n_test=500),
        "finetune": dict(model="zoo:price_tagging", task="price_tagging", variant={"lower_shift": 2},
                         batch_size=32, n_train=2000, n_eval=400),
        "steps": 150, "lr": 5e-3, "eval_every": 10,
        "about": "the zoo price-tagging LM, 'yes' changed to X >= L + 2"},
    "smollm2-ioi": {
        "search": dict(model=SMOLLM2, task="ioi", task_options={"counterfactuals": "s1_io_flip"}, variables=["P"],
                       layers="16-24:2", positions=["last"], epochs=2, n_train=1000, n_test=300),
        "finetune": dict(model=SMOLLM2, task="ioi", rule="s", batch_size=16, n_train=600, n_eval=200),
        "steps": 60, "lr": 1e-2, "eval_every": 5,
        "about": "SmolLM2-135M-Instruct, IOI answered with the subject (rule 's') instead of the indirect object"},
}


def locate(search_fields: dict, out: Path, seed: int = 0):
    from experiments.search import AlignmentSearch

    variable = search_fields["variables"][0]
    search = AlignmentSearch(search_fields["model"], search_fields["task"], seed=seed,
                             **{k: v for k, v in search_fields.items() if k not in ("model", "task")})
    t0 = time.perf_counter()
    results = search.run()
    best = results.best(variable)
    sub = results.subspaces[(best["site"], variable)]
    sub.save(out / "subspace")
    print(f"DAS (k={best['k']}) located {variable!r} at {best['site']} with IIA {best['iia']:.3f} "
          f"[{best['iia_low']:.2f}, {best['iia_high']:.2f}], floor {best['floor']:.3f} "
          f"({time.perf_counter() - t0:.0f} s); IIA by site: "
          + ", ".join(f"{r['site']} {r['iia']:.3f}" for r in results.rows_for(variable, "das")))
    return best, sub


def plot(rows: list[dict], title: str, out: Path) -> None:
    """Evaluated accuracy against step, one line per arm and seed (reuse.html, and reuse.png
    where kaleido can render it)."""
    import plotly.graph_objects as go

    colours = {"das_init": "#1f77b4", "random_init": "#d62728", "das_init_frozen": "#2ca02c"}
    fig = go.Figure()
    for r in rows:
        fig.add_trace(go.Scatter(x=[p["step"] for p in r["eval_curve"]], y=[p["accuracy"] for p in r["eval_curve"]],
                                 mode="lines", name=f"{r['arm']} (seed {r['seed']})",
                                 line={"color": colours.get(r["arm"]), "dash": "solid" if r["seed"] == 0 else "dot"}))
    import textwrap

    fig.update_layout(title={"text": "<br>".join(textwrap.wrap(title, 95)), "font": {"size": 13}}, xaxis_title="step", yaxis_title="held-out accuracy", yaxis_range=[0, 1.02],
                      width=900, height=460, template="plotly_white")
    fig.write_html(out / "reuse.html", include_plotlyjs="cdn")
    try:
        fig.write_image(out / "reuse.png", scale=1)
    except Exception as e:  # kaleido missing or no browser for it: the HTML stays
        print(f"(no reuse.png: {type(e).__name__}: {str(e)[:120]})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--setup", choices=list(SETUPS), default="price-tagging")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, help="LoReFT optimizer steps (default: the setup's)")
    parser.add_argument("--lr", type=float, help="LoReFT learning rate (default: the setup's)")
    parser.add_argument("--layers", help="layers the search tries (default: the setup's)")
    parser.add_argument("--eval-every", type=int)
    parser.add_argument("--frozen", action="store_true", help="also train with the DAS rotation frozen")
    parser.add_argument("--out", help="default: runs/reuse-<setup>")
    args = parser.parse_args(argv)

    from experiments.finetune.reuse import reuse_arms, run_arms
    from experiments.threads import use_cpu_threads
    from interventions.model import Site

    use_cpu_threads()  # as the CLI: $DII_THREADS, else one per core
    setup = SETUPS[args.setup]
    steps, lr = args.steps or setup["steps"], args.lr or setup["lr"]
    eval_every = args.eval_every or setup["eval_every"]
    out = Path(args.out or ROOT / "runs" / f"reuse-{args.setup}")
    out.mkdir(parents=True, exist_ok=True)
    search_fields = {**setup["search"], **({"layers": args.layers} if args.layers else {})}
    best, sub = locate(search_fields, out)
    layer = Site.parse(best["site"]).layer
    rank = int(best["k"])
    configs = reuse_arms(out / "subspace", with_frozen=args.frozen, **setup["finetune"], layers=[layer],
                         positions="l1", rank=rank, lr=lr, steps=steps, eval_every=eval_every)
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
            "start_accuracy_mean": statistics.fmean(r["start_accuracy"] for r in rs),
            "final_accuracy_mean": statistics.fmean(r["final_accuracy"] for r in rs),
            "final_accuracy_each": [r["final_accuracy"] for r in rs],
            "final_accuracy_min": min(r["final_accuracy"] for r in rs),
            "final_loss_mean": statistics.fmean(r["final_loss"] for r in rs),
            "steps_to_95_mean": statistics.fmean(reached) if reached else None,
            "reached_95": f"{len(reached)}/{len(rs)}",
            "steps_to_95_each": [r["steps_to_95"] for r in rs]})
    print()
    title = (f"LoReFT rank {rank} at {best['site']} (DAS IIA {best['iia']:.3f}), {setup['about']}, "
             f"{steps} steps, lr {lr}, seeds {args.seeds}")
    print(title)
    header = (f"{'arm':16s} {'start acc':>9s} {'final acc (mean)':>16s} {'min':>6s} {'eval loss':>10s} "
              f"{'steps to 95%':>13s} {'reached':>8s}  each")
    print(header)
    print("-" * len(header))
    for s in summary:
        to_95 = "-" if s["steps_to_95_mean"] is None else f"{s['steps_to_95_mean']:.0f}"
        print(f"{s['arm']:16s} {s['start_accuracy_mean']:9.3f} {s['final_accuracy_mean']:16.3f} {s['final_accuracy_min']:6.3f} "
              f"{s['final_loss_mean']:10.4f} {to_95:>13s} {s['reached_95']:>8s}  {s['steps_to_95_each']}")
    from interventions.io import atomic_write_json

    atomic_write_json(out / "reuse.json", {"setup": args.setup, "about": setup["about"], "site": best["site"],
                                           "das_iia": best["iia"], "das_iia_interval": [best["iia_low"], best["iia_high"]],
                                           "floor": best["floor"], "k": rank, "rank": rank, "steps": steps, "lr": lr,
                                           "seeds": args.seeds, "summary": summary, "rows": rows})
    plot(rows, title, out)
    print(f"written to {out / 'reuse.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
