"""Page 1: the hypothesis. A built-in task's causal model drawn as a graph, its mechanisms,
sampled counterfactual pairs, and how often two hypotheses disagree on them."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from app import caches, plots, widgets  # noqa: E402
from causal import CounterfactualDataset, can_distinguish  # noqa: E402
from causal.errors import CausalModelError  # noqa: E402
from causal.tasks import TASK_NAMES, get_task  # noqa: E402
from causal.tasks.spec import task_from_text  # noqa: E402
import experiments  # noqa: E402


# The example a new user starts from: the README's own-hypothesis task file, one copy.
EXAMPLE_SPEC = (Path(experiments.__file__).parent / "configs" / "both_warm_task.toml").read_text()
SPEC_HELP = ("Mechanisms are expressions over their parents: names, arithmetic, comparisons, and/or/not, "
             "'a if c else b', and abs, min, max, len, int, float, str, bool, round. Attribute access, "
             "imports and other calls are refused.")


def _show(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


widgets.page_header("Causal model",
                    "State a hypothesis as a small causal model over prompts of your own; the search looks for "
                    "network subspaces that play its intermediate variables. Start from a built-in task, or write "
                    "your own as a task spec (TOML: variables, parents, mechanisms, a prompt template, answers).",
                    not_here=("run", "variable", "site"))

SOURCES = ["Built-in task", "Write a task spec", "Task file on disk", "Upload a task file"]
source = st.radio("Hypothesis from", SOURCES, horizontal=True, key=widgets.kept("cm_source"))
task, task_spec = None, None
if source == "Built-in task":
    task_spec = widgets.choose("Task", TASK_NAMES, shared="task", key="cm_task", default=caches.DEFAULT_TASK,
                             help="the search, finetune and comparison pages open on the task picked here")
    task = get_task(task_spec)
elif source == "Write a task spec":
    text = st.text_area("Task spec (TOML); checked as you type", value=EXAMPLE_SPEC, height=420, key="cm_spec",
                        help=SPEC_HELP)
    try:
        task = task_from_text(text, where="this spec")
    except CausalModelError as e:
        st.error(str(e))
    if task is not None and st.button("Save as my task (then pick it on the search page)", key="cm_save"):
        path = caches.save_task_text(text, task.name)
        caches.add_user_task(str(path))
        st.success(f"Saved as {path}; the search and finetune pages now offer {task.name!r}.")
    if task is not None:
        task_spec = str(caches.task_folder() / f"{task.name}.toml")
elif source == "Task file on disk":
    path = st.text_input("Task file: a .toml spec, or a Python builder 'my_tasks.py:build'", key="cm_path",
                         placeholder="/path/to/my_task.toml").strip()
    if path:
        with widgets.user_errors():
            task = caches.get_task(path)
            task_spec = path
            caches.add_user_task(path)
            st.success(f"Loaded {task.name!r}; the search and finetune pages now offer it.")
else:
    upload = st.file_uploader("Task spec (.toml)", type=["toml"], key="cm_upload")
    if upload is not None:
        text = upload.getvalue().decode("utf-8", errors="replace")
        try:
            task = task_from_text(text, where=f"uploaded file {upload.name!r}")
            path = caches.save_task_text(text, task.name)
            caches.add_user_task(str(path))
            task_spec = str(path)
            st.success(f"Loaded {task.name!r} (saved as {path}); the search and finetune pages now offer it.")
        except CausalModelError as e:
            st.error(str(e))
if task is None:
    st.stop()

task_name = task.name
hyp_names = list(task.hypotheses)
hyp_key = widgets.kept(f"cm_hyp_{task_name}")
st.session_state.setdefault(hyp_key, task.default_hypothesis)
hyp_name = st.selectbox("Hypothesis", hyp_names, key=hyp_key)
model = task.hypothesis(hyp_name)
st.caption(task.description)

st.plotly_chart(plots.causal_graph(model.graph(), title=f"{task_name} / {hyp_name}"), width="stretch",
                key="cm_graph")
# The mechanisms under the graph, full width: the mechanism column is the one to read.
st.subheader("Mechanisms")
st.dataframe(pd.DataFrame([
    {"variable": v, "kind": model.kind(v),
     "parents": ", ".join(model.parents[v]) or "-",
     "values": (f"{len(model.variables[v])} values" if len(model.variables[v]) > 6
                else ", ".join(map(str, model.variables[v]))),
     "mechanism": model.descriptions.get(v, "") or ("sampled (an input)" if v in model.inputs else "")}
    for v in model.order
]), hide_index=True, width="stretch",
    column_config={"mechanism": st.column_config.TextColumn(width="large"),
                   "values": st.column_config.TextColumn(width="medium")})

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
    with widgets.user_errors():
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

if task.input_kind == "tokens":
    st.subheader("How a tokenizer reads the prompt")
    st.caption("The zoo's models split prompts at spaces; a real model's tokenizer (byte-level BPE, SentencePiece) "
               "may split a field into several tokens: it is then read at its last token, or 'field:first' / "
               "'field:<offset>' in the search's positions. The model named here is the one the search page uses.")
    spec = widgets.shared_text("Model (its tokenizer)", shared="model", key="cm_model", default="zoo",
                               help="'zoo' (the zoo's word tokenizer), a local folder, a hub id or a .gguf file")
    example = dataset.examples[0].base if dataset is not None and len(dataset) else task.sample_input(
        __import__("random").Random(int(seed)))
    tokenizer = None
    if spec == "zoo" or spec.startswith("zoo:"):
        from experiments.zoo import build_tokenizer

        tokenizer = build_tokenizer(task.vocabulary)
    elif spec:
        with widgets.user_errors():
            tokenizer = caches.load_model(spec).tokenizer
    if tokenizer is not None:
        from interventions.preview import tokenization_preview

        with widgets.user_errors():
            prompt, table, answers = tokenization_preview(tokenizer, task, example)
            st.markdown(f"Prompt: `{prompt}`")
            st.dataframe(pd.DataFrame(table), hide_index=True, width="stretch",
                         height=38 + 35 * len(table))  # every token in view, no inner scroll
            st.caption("Answers as scored: " + "; ".join(f"{v} -> {a}" for v, a in answers.items()))

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
        with widgets.user_errors():
            compare_set = CounterfactualDataset.generate(task, int(n_cmp), intervened=[[v] for v in intervened],
                                                         seed=int(seed), hypothesis=hyp_name)
            share = can_distinguish(model, other, compare_set, alignment=alignment)
            st.metric(f"Pairs where {hyp_name} and {other_name} predict different counterfactual outputs",
                      f"{share:.1%}")
            if share == 0:
                st.warning("The two hypotheses agree on every pair: no IIA on this data can favour one of them.")
