"""Page 1: the hypothesis. A built-in task's causal model drawn as a graph, its mechanisms,
sampled counterfactual pairs, and how often two hypotheses disagree on them."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from app import plots, state  # noqa: E402
from causal import CounterfactualDataset, can_distinguish  # noqa: E402
from causal.tasks import TASK_NAMES, get_task  # noqa: E402


def _show(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


st.title("Causal model")
st.write("State a hypothesis as a small causal model; the search looks for network subspaces "
         "that play its intermediate variables.")

left, right = st.columns(2)
task_name = left.selectbox("Task", TASK_NAMES, index=TASK_NAMES.index(state.DEFAULT_TASK), key="cm_task")
task = get_task(task_name)
hyp_names = list(task.hypotheses)
hyp_name = right.selectbox("Hypothesis", hyp_names, index=hyp_names.index(task.default_hypothesis),
                           key=f"cm_hyp_{task_name}")
model = task.hypothesis(hyp_name)
st.caption(task.description)

graph_col, mech_col = st.columns([3, 2])
graph_col.plotly_chart(plots.causal_graph(model.graph(), title=f"{task_name} / {hyp_name}"),
                       width="stretch", key="cm_graph")
with mech_col:
    st.subheader("Mechanisms")
    st.dataframe(pd.DataFrame([
        {"variable": v, "kind": model.kind(v),
         "parents": ", ".join(model.parents[v]) or "-",
         "values": (f"{len(model.variables[v])} values" if len(model.variables[v]) > 6
                    else ", ".join(map(str, model.variables[v]))),
         "mechanism": model.descriptions.get(v, "")}
        for v in model.order
    ]), hide_index=True, width="stretch")

st.subheader("Counterfactual pairs")
c1, c2, c3 = st.columns([3, 1, 1])
candidates = list(model.intermediates) or [v for v in model.order if v not in model.inputs]
intervened = c1.multiselect("Intervened variables (each alone)", candidates, default=model.intermediates,
                            key=f"cm_vars_{task_name}_{hyp_name}")
n_pairs = c2.number_input("Pairs", min_value=1, max_value=200, value=8, key="cm_n")
seed = c3.number_input("Seed", value=0, step=1, key="cm_seed")

dataset = None
if not intervened:
    st.error("Pick at least one intervened variable above: a counterfactual pair swaps a variable's value "
             "from a source input into a base input.")
else:
    with state.user_errors():
        dataset = CounterfactualDataset.generate(task, int(n_pairs), intervened=[[v] for v in intervened],
                                                 seed=int(seed), hypothesis=hyp_name)
if dataset is not None:
    rows = []
    for ex in dataset:
        row = {"variable": ", ".join(ex.variables), "base": _show(ex.base),
               "source": " | ".join(_show(s) for s in ex.sources)}
        if task.input_kind == "tokens":
            row["base prompt"] = task.render(ex.base)
        row.update({"base output": str(ex.base_output), "counterfactual output": str(ex.counterfactual_output),
                    "changed": ex.changed})
        rows.append(row)
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    st.metric("Pairs whose output the intervention changes", f"{dataset.changed_share():.0%}")

st.subheader("Can the data tell two hypotheses apart?")
others = [h for h in hyp_names if h != hyp_name]
if not others or dataset is None:
    st.info("This needs a second hypothesis and at least one intervened variable.")
else:
    other_name = st.selectbox("Compare with", others, key=f"cm_other_{task_name}_{hyp_name}")
    other = task.hypothesis(other_name)
    other_vars = list(other.intermediates)
    if not other_vars:
        st.info(f"{other_name!r} has no intermediate variable to intervene on: every interchange leaves its "
                "output as on the base input.")
    else:
        alignment = {}
        cols = st.columns(len(intervened))
        for col, v in zip(cols, intervened):
            default = other_vars.index(v) if v in other_vars else 0
            alignment[v] = col.selectbox(f"{hyp_name}.{v} plays {other_name}.", other_vars, index=default,
                                         key=f"cm_align_{task_name}_{hyp_name}_{other_name}_{v}")
        n_cmp = st.number_input("Pairs to compare on", min_value=10, max_value=5000, value=500, key="cm_ncmp")
        with state.user_errors():
            compare_set = CounterfactualDataset.generate(task, int(n_cmp), intervened=[[v] for v in intervened],
                                                         seed=int(seed), hypothesis=hyp_name)
            share = can_distinguish(model, other, compare_set, alignment=alignment)
            st.metric(f"Pairs where {hyp_name} and {other_name} predict different counterfactual outputs",
                      f"{share:.1%}")
            if share == 0:
                st.warning("The two hypotheses agree on every pair: no IIA on this data can favour one of them.")
