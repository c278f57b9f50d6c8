"""Page 2: configure and run a Distributed Alignment Search. The search runs in a background
thread (experiments.search.AlignmentSearch) writing a run directory; this page shows its
progress and loss curve live and can cancel it."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import streamlit as st  # noqa: E402

from app import plots, state  # noqa: E402
from causal.tasks import TASK_NAMES  # noqa: E402
from experiments.config import SearchConfig, field_help  # noqa: E402
from experiments.methods import REGISTRY, method_names  # noqa: E402

JOB_KEY = "search_job"

st.title("Alignment search")
st.write("Search the network for a linear subspace per causal variable (DAS) at each site, and "
         "measure interchange intervention accuracy (IIA) on held-out counterfactuals.")

running = state.job_running(JOB_KEY)

# ---------------------------------------------------------------- the model
source = st.radio("Model", ["Zoo model", "Local Hugging Face directory"], horizontal=True, key="s_source",
                  disabled=running)
zoo_tasks = state.task_choices(zoo_only=True)
c1, c2 = st.columns([2, 1])
if source == "Zoo model":
    task_spec = c1.selectbox("Task", zoo_tasks, index=zoo_tasks.index(state.DEFAULT_TASK), key="s_task",
                             format_func=state.task_label, disabled=running,
                             help="A built-in task, or your own (write or load it on the Causal model page): "
                                  "the zoo trains a small model on it the first time")
    model_seed = int(c2.number_input("Zoo model seed", min_value=0, value=0, step=1, key="s_zoo_seed",
                                     disabled=running))
    model_spec = f"zoo:{task_spec}" if task_spec in TASK_NAMES else "zoo"
else:
    all_tasks = state.task_choices()
    task_spec = c1.selectbox("Task", all_tasks, key="s_task_local", format_func=state.task_label, disabled=running)
    model_seed = 0
    model_spec = c2.text_input("Model directory", key="s_path", disabled=running,
                               placeholder="/path/to/a/save_pretrained/folder").strip()

task = None
with state.user_errors():
    task = state.get_task(task_spec)
if task is None:
    st.stop()
task_name = task.name
info = None
with state.user_errors():
    if source == "Zoo model":
        info = state.model_info(str(state.zoo_model(task_spec, model_seed)))
    elif not model_spec:
        st.info("Enter the folder of a Hugging Face model (the one `save_pretrained` wrote, with config.json).")
    elif not Path(model_spec).expanduser().is_dir():
        st.error(f"{model_spec!r} is not a directory. Give the path of a local Hugging Face model folder "
                 "(it holds config.json and the weights), or pick a zoo model.")
    else:
        model_spec = str(Path(model_spec).expanduser().resolve())
        info = state.model_info(model_spec)

if info is None:
    st.stop()
st.caption(f"{info['name']}: {info['n_layers']} layers, hidden size {info['hidden_size']}, "
           f"{'token positions' if info['is_lm'] else 'vector inputs (no token positions)'}")

# ---------------------------------------------------------------- the hypothesis and the grid
hyp_names = list(task.hypotheses)
c1, c2 = st.columns(2)
hyp_name = c1.selectbox("Hypothesis", hyp_names, index=hyp_names.index(task.default_hypothesis),
                        key=f"s_hyp_{task_name}", disabled=running)
hyp = task.hypothesis(hyp_name)
variables = c2.multiselect("Variables", list(hyp.intermediates), default=list(hyp.intermediates),
                           key=f"s_vars_{task_name}_{hyp_name}", disabled=running)

c1, c2, c3 = st.columns(3)
layers = c1.multiselect("Layers", list(range(info["n_layers"])), default=list(range(info["n_layers"])),
                        key=f"s_layers_{info['name']}", disabled=running)
if info["is_lm"]:
    # A task's own fields are where its input variables sit: offer them all unless there are many.
    default_positions = task.positions if len(task.positions) <= 4 else ["last"]
    positions = c2.multiselect("Positions", task.positions, default=default_positions, key=f"s_pos_{task_name}",
                               help=field_help("positions"),
                               disabled=running)
else:
    positions = ["last"]
    c2.caption("Positions: the whole input vector")
components = c3.multiselect("Components", info["components"], default=["block_output"],
                            key=f"s_comp_{info['name']}", disabled=running)

c1, c2, c3, c4 = st.columns(4)
# Every registered featurizer (plugins from $DII_PLUGINS too), described by the registry.
method = c1.selectbox("Method", method_names("featurizer"), key="s_method", disabled=running,
                      format_func=lambda m: f"{m}: {REGISTRY[m].summary.split(':', 1)[-1].strip()}",
                      help=field_help("method"))
k = int(c2.number_input("k per variable", min_value=1, value=min(4, info["hidden_size"]), step=1, key="s_k",
                        disabled=running or method in ("boundless", "dbm", "dbm_pca"), help=field_help("k")))
steps = int(c3.number_input("Steps per site", min_value=1, value=200, step=50, key="s_steps", help=field_help("steps"), disabled=running))
seed = int(c4.number_input("Seed", value=0, step=1, key="s_seed", help=field_help("seed"), disabled=running))

with st.expander("More settings"):
    c1, c2, c3, c4 = st.columns(4)
    batch_size = int(c1.number_input("Batch size", min_value=1, value=64, step=16, key="s_bs", help=field_help("batch_size"), disabled=running))
    lr = float(c2.number_input("Learning rate", min_value=1e-6, value=1e-2, format="%.4f", key="s_lr", help=field_help("lr"),
                               disabled=running))
    n_train = int(c3.number_input("Train pairs", min_value=10, value=2000, step=100, key="s_ntrain", help=field_help("n_train"), disabled=running))
    n_test = int(c4.number_input("Test pairs", min_value=10, value=500, step=100, key="s_ntest", help=field_help("n_test"), disabled=running))
    others = [m for m in method_names() if m != method]
    controls = st.multiselect("Controls and other methods (more rows beside the main method)", others,
                              default=[m for m in ("random_rotation", "vanilla") if m in others], key="s_controls",
                              disabled=running, help=field_help("controls"),
                              format_func=lambda m: f"{m} ({REGISTRY[m].role})")
    run_name = st.text_input("Run name", value="", key="s_name", help=field_help("name"), disabled=running,
                             placeholder="default: task and time").strip()


def validation_errors() -> list[str]:
    """What the user can fix before anything runs, each with how."""
    errors = []
    if not variables:
        errors.append("Pick at least one variable of the hypothesis to align.")
    if not layers:
        errors.append("The layer list is empty: pick at least one layer to search.")
    if not positions:
        errors.append("Pick at least one token position (\"last\" is where the answer is read).")
    if not components:
        errors.append("Pick at least one component (block_output is the residual stream after a block).")
    if method == "das" and variables and k * len(variables) > info["hidden_size"]:
        errors.append(f"k = {k} per variable x {len(variables)} variables = {k * len(variables)} rotated dimensions "
                      f"do not fit in the hidden size {info['hidden_size']}; choose k <= "
                      f"{info['hidden_size'] // len(variables)}.")
    return errors


def start_search(config: SearchConfig) -> None:
    from experiments.search import AlignmentSearch

    run_dir = state.runs_root() / config.run_name

    def work(job: state.Job):
        def progress(p):
            if p.event == "step":  # the live curve follows the site in training
                job.losses = [*job.losses, p.loss] if p.step > 1 else [p.loss]
            frac = p.step / p.n_steps if (p.event == "step" and p.n_steps) else 0.0
            if p.event in ("cell_done", "cell_skipped"):
                frac = 1.0
            job.progress = min(1.0, (p.cell_index + frac) / max(1, p.n_cells))
            job.message = f"site {p.cell_index + 1}/{p.n_cells}: {p.cell}" + (
                f", step {p.step}/{p.n_steps}, loss {p.loss:.3f}" if p.event == "step" else "")

        job.message = "loading the model and preparing counterfactual data"
        search = AlignmentSearch.from_config(config)
        results = search.run(progress=progress, run_dir=run_dir, should_stop=job.should_stop)
        return {"run": config.run_name, "complete": results.complete}

    st.session_state["results_run"] = config.run_name
    state.start_job(JOB_KEY, f"Search {config.run_name}", work)


if not running:
    errors = validation_errors()
    for e in errors:
        st.error(e)
    if st.button("Start search", type="primary", disabled=bool(errors), key="s_start"):
        config = None
        with state.user_errors():
            config = SearchConfig(
                model=model_spec, task=task_spec, hypothesis=hyp_name, variables=list(variables), layers=list(layers),
                positions=list(positions), components=list(components), method=method, k=k, steps=steps,
                batch_size=batch_size, lr=lr, n_train=n_train, n_test=n_test, seed=seed, controls=list(controls),
                name=run_name or f"{task_name}-{time.strftime('%Y%m%d-%H%M%S')}", model_seed=model_seed)
            if (state.runs_root() / config.run_name / "manifest.json").exists():
                st.error(f"A run named {config.run_name!r} already exists in {state.runs_root()}; "
                         "choose another run name.")
                config = None
        if config is not None:
            start_search(config)
            running = True


@st.fragment(run_every=1.0 if running else None)
def live() -> None:
    job = state.get_job(JOB_KEY)
    if job is None:
        return
    if job.running:
        st.progress(job.progress, text=job.message or "starting")
        if st.button("Cancel", key="s_cancel"):
            job.cancel()
            st.info("Cancelling after the current step...")
    if job.losses:
        st.plotly_chart(plots.curves({"training loss": job.losses}, title="Loss of the site in training"),
                        key="s_live_loss")
    if job.running:
        return
    if st.session_state.get("s_shown") is not job:  # the search just ended: redraw the whole page once
        st.session_state["s_shown"] = job
        st.rerun()
    state.show_job_outcome(job)
    if job.result:
        done = "finished" if job.result["complete"] else "stopped early"
        st.success(f"Run {job.result['run']!r} {done}; it is in {state.runs_root()}.")
        state.page_link("results", "Open the results")


live()
