"""One site of a run in detail, for the results page: its IIA, its training curve, and what the
intervened network answered on the held-out test pairs the IIA was computed on, read from the
run (the predictions each row stores, and the pairs regenerated from the config's seed: no
model runs, so a click on a 30-layer map answers at once). Fresh pairs, through the model, only
on request."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from app import caches, plots, widgets


def fmt(x, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


@st.cache_data(show_spinner="Reading the held-out pairs (regenerated from the run's seed)")
def held_out_pairs(run_path: str, seed: int | None) -> list[dict]:
    """The run's counterfactual examples (train then test, the rows' indices), from its config."""
    from experiments.runs import load_run
    from experiments.search import AlignmentSearch, SearchConfig

    config = SearchConfig.from_dict(load_run(run_path).config)
    if seed is not None:
        config = config.replace(seed=seed, seeds=None, vary_model_seed=False)
    train, test = AlignmentSearch(config.model, config.task, config=config).datasets("random")
    return [{"base": ex.base, "sources": ex.source_for(), "base output": ex.base_output,
             "expected": ex.counterfactual_output} for ex in [*train.examples, *test.examples]]


def stored_predictions(run, row: dict, seed: int | None):
    """(labels, confusion, examples) of the row's own test pairs, or None for a run made before
    rows stored their predictions."""
    if not row.get("test_predicted") or not row.get("test_index"):
        return None
    data = run.manifest.get("data", {})
    data = data.get(f"seed{seed}", data).get("main", {}) if seed is not None else data.get("main", {})
    values = data.get("answer_values")
    if not values:
        return None
    pairs = held_out_pairs(str(run.path), seed)
    key = lambda v: json.dumps(v, sort_keys=True, default=repr)  # noqa: E731  (answer_values are these keys)
    index = {k: i for i, k in enumerate(values)}
    labels = [json.loads(v) for v in values]
    confusion = [[0] * len(values) for _ in values]
    examples = []
    for i, p in zip(row["test_index"], row["test_predicted"]):
        ex = pairs[i]
        confusion[index[key(ex["expected"])]][p] += 1
        examples.append({**ex, "predicted": labels[p]})
    return labels, confusion, examples


def examples_table(examples: list[dict]) -> pd.DataFrame:
    text = lambda inputs: ", ".join(f"{k}={v}" for k, v in inputs.items())  # noqa: E731
    return pd.DataFrame([{
        "base": text(ex["base"]), "sources": " | ".join(f"{v}: {text(src)}" for v, src in ex["sources"].items()),
        "base output": str(ex["base output"]), "counterfactual output": str(ex["expected"]),
        "network's answer": str(ex["predicted"]), "right": ex["predicted"] == ex["expected"],
    } for ex in examples])


def show(run, row: dict, site_key: str, variable: str, seed: int | None, curve: list[float], whose: str) -> None:
    c1, c2 = st.columns(2)
    c1.metric("IIA on held-out test pairs" + ("" if seed is None else f" (seed {seed})"), fmt(row.get("iia")),
              help=f"n = {row.get('n_test')}, 95% interval [{fmt(row.get('iia_low'), 2)}, {fmt(row.get('iia_high'), 2)}],"
                   f" floor {fmt(row.get('floor'))} ({row.get('floor_rule')})")
    if curve:
        c1.plotly_chart(plots.curves({"training loss": curve}, title=f"Training curve{whose} at {site_key}"),
                        key="r_curve", width="stretch")
    stored = None
    with widgets.user_errors():
        stored = stored_predictions(run, row, seed)
    if stored is not None:
        labels, confusion, examples = stored
        c2.plotly_chart(plots.confusion(labels, confusion, title=f"The {len(examples)} held-out test pairs: "
                                                                 "counterfactual output vs the network's answer"),
                        key="r_confusion", width="stretch")
        c2.caption("The same pairs the IIA is computed on: the diagonal holds its right answers. Read from the run, "
                   "no model needed.")
        st.dataframe(examples_table(examples[:20]), hide_index=True, width="stretch")
    else:
        c2.info("This run was made before runs stored each test pair's answer: draw fresh pairs below.")
    fresh_pairs(run, site_key, variable, seed)


def fresh_pairs(run, site_key: str, variable: str, seed: int | None) -> None:
    """Fresh counterfactual pairs through the model, on request (seconds to minutes on a real model)."""
    from causal.errors import WorkbenchError

    method = None if seed is None else f"{run.main_method}@seed{seed}"
    try:
        run.subspace_path(site_key, variable, method)
    except WorkbenchError:
        return
    with st.expander("Fresh pairs through the model (on request)"):
        st.caption("New pairs, drawn with another seed and intervening on the subspace's variables together: their "
                   "agreement estimates the same thing as the IIA above on other pairs, so the two differ by "
                   "sampling (and, for a joint subspace, by intervening on every variable at once).")
        st.session_state.setdefault("r_npred", 200)
        n = int(st.number_input("Fresh pairs", min_value=10, max_value=2000, step=50, key=widgets.kept("r_npred")))
        if not st.button("Run the model on fresh pairs", key="r_fresh"):
            return
        bar = st.progress(0.0, text="loading the model")
        with widgets.user_errors():
            model = _model_of(run, seed)
            bar.progress(0.5, text=f"running the intervened network on {n} fresh pairs")
            from experiments.search.predictions import predict_cell

            subspace = run.load_subspace(site_key, variable, model=model, method=method)
            pred = predict_cell(model, subspace, run.config["task"], run.manifest.get("hypothesis"), n=n,
                                task_options=run.config.get("task_options"))
            bar.progress(1.0, text="done")
            st.plotly_chart(plots.confusion(pred.labels, pred.confusion, title=f"{n} fresh pairs (agreement "
                                                                               f"{pred.accuracy:.2f})"),
                            key="r_fresh_confusion", width="stretch")
            st.dataframe(examples_table(pred.examples[:20]), hide_index=True, width="stretch")


def _model_of(run, seed: int | None):
    from experiments.models import resolve_model_path

    cfg = run.config
    model_seed = seed if (seed is not None and cfg.get("vary_model_seed")) else cfg.get("model_seed", 0)
    task = caches.get_task(cfg["task"], cfg.get("task_options"))
    return caches.load_model(resolve_model_path(cfg["model"], model_seed, task=task), cfg.get("dtype"),
                             cfg.get("device", "auto"))
