"""Page 2: configure and run a Distributed Alignment Search. The form's values make one
SearchConfig (the config the CLI reads): a bad value is refused by the config itself, its
reason written under the field, and Start stays disabled until every field is valid; the
config that will run is shown. The search runs in a background thread
(experiments.search.AlignmentSearch) writing a run directory; this page shows its progress and
loss curve live and can cancel it."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import streamlit as st  # noqa: E402

from app import caches, jobs, plots, widgets  # noqa: E402
from app.forms import live_job, method_option_fields, reasons_under, variable_step  # noqa: E402
from causal.tasks import TASK_NAMES  # noqa: E402
from experiments.search import SearchConfig, field_help  # noqa: E402
from experiments.search.methods import REGISTRY, default_controls, method_names  # noqa: E402

JOB_KEY = "search_job"
MORE_FIELDS = ("batch_size", "lr", "n_train", "n_test", "controls", "name")  # under "More settings"
kept = widgets.kept

widgets.page_header("Alignment search",
                    "Search the network for a linear subspace per causal variable (DAS) at each site, and measure "
                    "interchange intervention accuracy (IIA) on held-out counterfactuals.",
                    not_here=("run", "variable", "site"))

running = jobs.job_running(JOB_KEY)

# ---------------------------------------------------------------- the model
source = st.radio("Model", ["Zoo model", "Local Hugging Face directory"], horizontal=True, key=kept("s_source"),
                  disabled=running)
c1, c2 = st.columns([2, 1])
if source == "Zoo model":
    task_spec = widgets.choose("Task", caches.task_choices(zoo_only=True), shared="task", key="s_task",
                             default=caches.DEFAULT_TASK, where=c1, format_func=caches.task_label, disabled=running,
                             help="A built-in task, or your own (write or load it on the Causal model page): "
                                  "the zoo trains a small model on it the first time")
    st.session_state.setdefault("s_zoo_seed", 0)
    model_seed = c2.number_input("Zoo model seed", step=1, key=kept("s_zoo_seed"), disabled=running)
    model_spec = f"zoo:{task_spec}" if task_spec in TASK_NAMES else "zoo"
else:
    task_spec = widgets.choose("Task", caches.task_choices(), shared="task", key="s_task_local",
                             default=caches.DEFAULT_TASK, where=c1, format_func=caches.task_label, disabled=running)
    model_seed = 0
    model_spec = c2.text_input("Model directory", key=kept("s_path"), disabled=running,
                               placeholder="/path/to/a/save_pretrained/folder").strip()

task = None
with widgets.user_errors():
    task = caches.get_task(task_spec)
if task is None:
    st.stop()
task_name = task.name
info = None
with widgets.user_errors():
    if source == "Zoo model":
        if not isinstance(model_seed, int) or model_seed < 0:
            st.error(f"Zoo model seed: got {model_seed!r}; seeds are integers >= 0.")
        else:
            info = caches.model_info(str(caches.zoo_model(task_spec, int(model_seed))))
    elif not model_spec:
        st.info("Enter the folder of a Hugging Face model (the one `save_pretrained` wrote, with config.json).")
    elif not Path(model_spec).expanduser().is_dir():
        st.error(f"{model_spec!r} is not a directory. Give the path of a local Hugging Face model folder "
                 "(it holds config.json and the weights), or pick a zoo model.")
    else:
        model_spec = str(Path(model_spec).expanduser().resolve())
        info = caches.model_info(model_spec)

if info is None:
    st.stop()
st.caption(f"{info['name']}: {info['n_layers']} layers, hidden size {info['hidden_size']}, "
           f"{'token positions' if info['is_lm'] else 'vector inputs (no token positions)'}")

# ---------------------------------------------------------------- the form: every value goes into one config
hyp_names = list(task.hypotheses)
c1, c2 = row_hyp = st.columns(2)
hyp_key = kept(f"s_hyp_{task_name}")
st.session_state.setdefault(hyp_key, task.default_hypothesis)
hyp_name = c1.selectbox("Hypothesis", hyp_names, key=hyp_key, disabled=running)
hyp = task.hypothesis(hyp_name)
vars_key = kept(f"s_vars_{task_name}_{hyp_name}")
st.session_state.setdefault(vars_key, list(hyp.intermediates))
variables = c2.multiselect("Variables", list(hyp.intermediates), key=vars_key, disabled=running)

c1, c2, c3 = row_grid = st.columns(3)
layers_key = kept(f"s_layers_{info['name']}")
st.session_state.setdefault(layers_key, list(range(info["n_layers"])))
layers = c1.multiselect("Layers", list(range(info["n_layers"])), key=layers_key, disabled=running)
if info["is_lm"]:
    # A task's own fields are where its input variables sit: offer them all unless there are many.
    pos_key = kept(f"s_pos_{task_name}")
    in_prompt = task.prompt_positions  # offered, and run, in the order the prompt has them
    st.session_state.setdefault(pos_key, in_prompt if len(in_prompt) <= 5 else ["last"])
    positions = c2.multiselect("Positions", in_prompt, key=pos_key, help=field_help("positions"),
                               disabled=running)
    positions = [p for p in in_prompt if p in positions]
else:
    positions = ["last"]
    c2.caption("Positions: the whole input vector")
comp_key = kept(f"s_comp_{info['name']}")
st.session_state.setdefault(comp_key, ["block_output"])
components = c3.multiselect("Components", info["components"], key=comp_key, disabled=running)

c1, c2, c3, c4 = row_method = st.columns(4)
# Every registered featurizer (plugins from $DII_PLUGINS too), described by the registry.
method = c1.selectbox("Method", method_names("featurizer"), key=kept("s_method"), disabled=running,
                      format_func=lambda m: f"{m}: {REGISTRY[m].summary.split(':', 1)[-1].strip()}",
                      help=field_help("method"))
per_variable = REGISTRY[method].per_variable
default = lambda name: SearchConfig.model_fields[name].get_default(call_default_factory=True)  # noqa: E731
for key, value in (("s_k", str(default("k"))), ("s_steps", 200), ("s_seed", default("seed")),
                   ("s_bs", default("batch_size")), ("s_lr", default("lr")), ("s_ntrain", default("n_train")),
                   ("s_ntest", default("n_test"))):
    st.session_state.setdefault(key, value)
k_text = c2.text_input("k per variable", key=kept("s_k"), help=field_help("k"),
                       disabled=running or not REGISTRY[method].uses_k).strip()
k = int(k_text) if k_text.lstrip("-").isdigit() else k_text  # 'auto', or a count the config checks
steps = c3.number_input("Steps per site" + (" and variable" if per_variable else ""), step=50, key=kept("s_steps"),
                        help=field_help("steps") + ("; Boundless DAS trains each variable in turn, this many steps "
                                                    "each" if per_variable else ""), disabled=running)
seed = c4.number_input("Seed", step=1, key=kept("s_seed"), help=field_help("seed"), disabled=running)

if st.session_state.get("s_bad_more"):  # the last run found a bad value in there: keep it in sight
    st.session_state["s_more"] = True
with st.expander("More settings", key=kept("s_more"), on_change="rerun"):
    m1, m2, m3, m4 = st.columns(4)
    batch_size = m1.number_input("Batch size", step=16, key=kept("s_bs"), help=field_help("batch_size"),
                                 disabled=running)
    lr = m2.number_input("Learning rate", format="%.4f", step=1e-3, key=kept("s_lr"), help=field_help("lr"),
                         disabled=running)
    n_train = m3.number_input("Train pairs", step=100, key=kept("s_ntrain"), help=field_help("n_train"),
                              disabled=running)
    n_test = m4.number_input("Test pairs", step=100, key=kept("s_ntest"), help=field_help("n_test"),
                             disabled=running)
    others = [m for m in method_names() if m != method]
    st.session_state.setdefault("s_controls", [m for m in default_controls() if m in others])
    st.session_state["s_controls"] = [m for m in st.session_state["s_controls"] if m in others]
    controls = st.multiselect("Controls and other methods (more rows beside the main method)", others,
                              key=kept("s_controls"), disabled=running, help=field_help("controls"),
                              format_func=lambda m: f"{m} ({REGISTRY[m].role})")
    run_name = st.text_input("Run name", key=kept("s_name"), help=field_help("name"), disabled=running,
                             placeholder="default: task and time").strip()
    more = (m1, m2, m3, m4, st.container())
    method_options = {}  # each method's own settings, from its Options (the registry's declaration)
    for name in [method, *controls]:
        method_options.update(method_option_fields(name, disabled=running))
    options_box = st.container()

values = dict(model=model_spec, task=task_spec, hypothesis=hyp_name, variables=list(variables), layers=list(layers),
              positions=list(positions), components=list(components), method=method, k=k, steps=steps,
              batch_size=batch_size, lr=float(lr), n_train=n_train, n_test=n_test, seed=seed,
              controls=list(controls), name=run_name or None, model_seed=int(model_seed),
              method_options=method_options)
config, errors = SearchConfig.check_values(values)
# What only the loaded model can tell (AlignmentSearch checks it again): k against the hidden size.
if REGISTRY[method].uses_k and variables and isinstance(k, int) and k * len(variables) > info["hidden_size"]:
    errors["k"] = (f"k = {k} per variable x {len(variables)} variables = {k * len(variables)} rotated dimensions do "
                   f"not fit in the hidden size {info['hidden_size']}; choose k <= "
                   f"{info['hidden_size'] // len(variables)}")
    config = None
if not errors and (caches.runs_root() / config.run_name / "manifest.json").exists():
    errors["name"] = f"a run named {config.run_name!r} already exists in {caches.runs_root()}; choose another run name"
    config = None
st.session_state["s_bad_more"] = any(f in errors for f in MORE_FIELDS)  # drawn above: opened on the next run

# The reasons, each under its own field.
reasons_under(errors, {"hypothesis": row_hyp[0], "variables": row_hyp[1], "layers": row_grid[0],
                       "positions": row_grid[1], "components": row_grid[2], "method": row_method[0], "k": row_method[1],
                       "steps": row_method[2], "seed": row_method[3], "batch_size": more[0], "lr": more[1],
                       "n_train": more[2], "n_test": more[3], "controls": more[4], "name": more[4],
                       "method_options": options_box})


def start_search(config: SearchConfig) -> None:
    from experiments.search import AlignmentSearch

    run_dir = caches.runs_root() / config.run_name
    n_vars = len(config.variables or [])
    steps_each = config.steps

    def work(job: jobs.Job):
        def progress(p):
            where = f"site {p.cell_index + 1}/{p.n_cells}: {p.cell}"
            if p.event == "step":
                variable, step, n_steps = variable_step(p.step, p.n_steps, steps_each if per_variable else None,
                                                        list(config.variables or []))
                if variable is not None:
                    where += f", variable {variable} ({config.variables.index(variable) + 1}/{n_vars})"
                job.losses = [*job.losses, p.loss] if step > 1 else [p.loss]  # the curve of what trains now
                job.message = f"{where}, step {step}/{n_steps}, loss {p.loss:.3f}"
            else:
                job.message = where
            frac = p.step / p.n_steps if (p.event == "step" and p.n_steps) else 0.0
            if p.event in ("cell_done", "cell_skipped"):
                frac = 1.0
            job.progress = min(1.0, (p.cell_index + frac) / max(1, p.n_cells))

        job.message = "loading the model and preparing counterfactual data"
        search = AlignmentSearch.from_config(config)
        results = search.run(progress=progress, run_dir=run_dir, should_stop=job.should_stop)
        return {"run": config.run_name, "complete": results.complete}

    st.session_state["run"] = config.run_name  # the results page opens on it
    jobs.start_job(JOB_KEY, f"Search {config.run_name}", work, context=task_spec)


if not running:
    if st.button("Start search", type="primary", disabled=bool(errors), key="s_start"):
        start_search(config.replace(name=run_name or f"{task_name}-{time.strftime('%Y%m%d-%H%M%S')}"))
        running = True
if config is not None:
    n_sites = len(layers) * len(positions) * len(components)
    st.caption(f"{n_sites} sites ({len(layers)} layers x {len(positions)} positions x {len(components)} "
               f"component{'s' if len(components) > 1 else ''}); at each, {method} trains {steps} steps"
               + (" per variable" if per_variable else "")
               + (f", beside {len(controls)} control{'s' if len(controls) > 1 else ''}" if controls else "") + ".")
    with st.expander("The config this search runs (the same file runs with `dii search search.toml`)", expanded=True):
        shown_config = config if run_name else config.replace(name=f"{task_name}-{time.strftime('%Y%m%d-%H%M%S')}")
        if not run_name:
            st.caption("Without a run name, the run is named after the task and the time it starts.")
        st.code(shown_config.to_toml(), language="toml")
        st.download_button("Download search.toml", shown_config.to_toml().encode(), file_name=f"{task_name}-search.toml",
                           mime="application/toml", key="s_toml")


def show_search_outcome(job: jobs.Job) -> None:
    if job.losses:
        st.plotly_chart(plots.curves({"training loss": job.losses}, title="Loss of what trains now"),
                        key="s_live_loss")
    jobs.show_job_outcome(job)
    if job.result:
        done = "finished" if job.result["complete"] else "stopped early"
        st.success(f"Run {job.result['run']!r} {done}; it is in {caches.runs_root()}.")
        widgets.page_link("results", "Open the results", run=job.result["run"])


live_job(JOB_KEY, running, loss_title="Loss of what trains now",
         belongs=lambda job: job.context == task_spec, after=show_search_outcome)  # its messages belong to its task
