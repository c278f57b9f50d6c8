"""Page 2: configure and run a Distributed Alignment Search. The form's values make one
SearchConfig (the config the CLI reads): a bad value is refused by the config itself, its
reason written under the field, and Start stays disabled until every field is valid; the
config that will run is shown, with its cell count and, on request, the time it should take.
The search runs in a background thread with the CLI's thread count, writing a run directory;
while it runs the form is locked and says what runs, and the page shows progress and the loss."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import streamlit as st  # noqa: E402

from app import caches, jobs, plots, widgets  # noqa: E402
from app.forms import live_job, method_option_fields, reasons_under, task_option_fields, variable_step  # noqa: E402
from app.model_picker import describe, model_field  # noqa: E402
from experiments.search import SearchConfig, field_help  # noqa: E402
from experiments.search.config import parse_layers  # noqa: E402
from experiments.search.methods import REGISTRY, default_controls, method_names  # noqa: E402

JOB_KEY = "search_job"
MORE_FIELDS = ("batch_size", "lr", "n_train", "n_test", "controls", "name", "screen_top")  # under "More settings"
kept = widgets.kept
default = lambda name: SearchConfig.model_fields[name].get_default(call_default_factory=True)  # noqa: E731

widgets.page_header("Alignment search",
                    "Search the network for a linear subspace per causal variable (DAS) at each site, and measure "
                    "interchange intervention accuracy (IIA) on held-out counterfactuals.",
                    not_here=("run", "variable", "site"))
job = jobs.get_job(JOB_KEY)
running = jobs.job_running(JOB_KEY)
if running:
    st.info(f"Running: {job.name}. The form is locked until it ends (or Cancel below).")

# ---------------------------------------------------------------- the task and the model
task_spec = widgets.choose("Task", caches.task_choices(), shared="task", key="s_task", default=caches.DEFAULT_TASK,
                           format_func=caches.task_label, disabled=running,
                           help="A built-in task, or your own (write or load it on the Causal model page)")
task_options = task_option_fields(task_spec, "s", running)
task = None
with widgets.user_errors():
    task = caches.get_task(task_spec, task_options)
if task is None:
    st.stop()
task_name = task.name
choice = model_field(task_spec, "s", running)
if choice is None:
    st.stop()
info = choice.info
st.caption(describe(choice))

# ---------------------------------------------------------------- the form: every value goes into one config
c1, c2 = row_hyp = st.columns(2)
hyp_key = kept(f"s_hyp_{task_name}")
st.session_state.setdefault(hyp_key, task.default_hypothesis)
hyp_name = c1.selectbox("Hypothesis", list(task.hypotheses), key=hyp_key, disabled=running)
hyp = task.hypothesis(hyp_name)
vars_key = kept(f"s_vars_{task_name}_{hyp_name}")
st.session_state.setdefault(vars_key, list(hyp.intermediates))
variables = c2.multiselect("Variables", list(hyp.intermediates), key=vars_key, disabled=running)

big = info["n_layers"] > 12  # a real model: every third layer at the last token, until the user widens it
c1, c2, c3 = row_grid = st.columns(3)
layers_key = kept(f"s_layers_{info['name']}")
st.session_state.setdefault(layers_key, f"0-{info['n_layers'] - 1}:3" if big else "all")
layers_text = c1.text_input("Layers", key=layers_key, disabled=running,
                            help=f"this model has layers 0..{info['n_layers'] - 1}: {field_help('layers')}")
try:
    layers = parse_layers(layers_text, info["n_layers"])
    c1.caption(f"{len(layers)} layers: {', '.join(map(str, layers))}")
except ValueError as e:
    layers = layers_text  # the config refuses it, under the field
    c1.markdown(f":red[{e}]")
if info["is_lm"]:
    pos_key = kept(f"s_pos_{task_name}")
    in_prompt = task.prompt_positions  # offered, and run, in the order the prompt has them
    st.session_state.setdefault(pos_key, ["last"] if big or len(in_prompt) > 5 else in_prompt)
    positions = c2.multiselect("Positions", in_prompt, key=pos_key, help=field_help("positions"), disabled=running)
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
    s1, s2 = st.columns(2)
    run_name = s1.text_input("Run name", key=kept("s_name"), help=field_help("name"), disabled=running,
                             placeholder="default: task and time").strip()
    screen = s2.number_input("Screen to the top N sites per variable (0: train every site)", min_value=0, step=1,
                             key=kept("s_screen"), help=field_help("screen_top"), disabled=running)
    more = (m1, m2, m3, m4, s1, s2)
    method_options = {}  # each method's own settings, from its Options (the registry's declaration)
    for name in [method, *controls]:
        method_options.update(method_option_fields(name, disabled=running))
    options_box = st.container()

values = dict(model=choice.spec, task=task_spec, task_options=task_options, hypothesis=hyp_name,
              variables=list(variables), layers=layers, positions=list(positions), components=list(components),
              method=method, k=k, steps=steps, batch_size=batch_size, lr=float(lr), n_train=n_train, n_test=n_test,
              seed=seed, controls=list(controls), name=run_name or None, model_seed=int(choice.model_seed),
              method_options=method_options, dtype=choice.dtype, device=choice.device,
              screen_top=int(screen) if screen else None)
config, errors = SearchConfig.check_values(values)
# What only the loaded model can tell (AlignmentSearch checks it again): k against the hidden size.
if REGISTRY[method].uses_k and variables and isinstance(k, int) and k * len(variables) > info["hidden_size"]:
    errors["k"] = (f"k = {k} per variable x {len(variables)} variables = {k * len(variables)} rotated dimensions do "
                   f"not fit in the hidden size {info['hidden_size']}; choose k <= "
                   f"{info['hidden_size'] // len(variables)}")
    config = None
st.session_state["s_bad_more"] = any(f in errors for f in MORE_FIELDS)  # drawn above: opened on the next run
reasons_under(errors, {"hypothesis": row_hyp[0], "variables": row_hyp[1], "layers": row_grid[0],
                       "positions": row_grid[1], "components": row_grid[2], "method": row_method[0], "k": row_method[1],
                       "steps": row_method[2], "seed": row_method[3], "batch_size": more[0], "lr": more[1],
                       "n_train": more[2], "n_test": more[3], "controls": options_box, "name": more[4],
                       "screen_top": more[5], "method_options": options_box, "task_options": st.container()})


def cell_count(config: SearchConfig) -> tuple[int, str]:
    """The cells the run will have (what its progress counts), and how they come about."""
    n_sites = len(config.layers) * len(config.positions if info["is_lm"] else [None]) * len(config.components)
    methods = [config.method, *config.controls]
    if config.screen_top:
        n_kept = min(n_sites, config.screen_top * len(config.variables or hyp.intermediates))
        return n_sites + n_kept * len(methods), (f"{n_sites} screening cells, then at most {n_kept} kept sites x "
                                                 f"{len(methods)} methods ({', '.join(methods)})")
    return n_sites * len(methods), (f"{n_sites} sites ({len(config.layers)} layers x {len(positions)} positions x "
                                    f"{len(config.components)} component{'s' if len(config.components) > 1 else ''}) "
                                    f"x {len(methods)} methods ({', '.join(methods)})")


def start_search(config: SearchConfig) -> None:
    from experiments.search import AlignmentSearch

    run_dir = caches.runs_root() / config.run_name
    variables = list(config.variables or [])

    def work(job: jobs.Job):
        from experiments.threads import use_cpu_threads

        use_cpu_threads()  # the CLI's count: a job's thread does not inherit the server's

        def progress(p):
            if p.event == "note":
                return
            where = f"cell {p.cell_index + 1}/{p.n_cells}: {p.cell}"
            if p.event == "step":
                variable, step, n_steps = variable_step(p.step, p.n_steps, config.steps if per_variable else None,
                                                        variables)
                if variable is not None:
                    where += f", variable {variable} ({variables.index(variable) + 1}/{len(variables)})"
                job.losses = [*job.losses, p.loss] if step > 1 else [p.loss]  # the curve of what trains now
                job.message = f"{where}, step {step}/{n_steps}, loss {p.loss:.3f}"
            else:
                job.message = where
            frac = p.step / p.n_steps if (p.event == "step" and p.n_steps) else 0.0
            if p.event in ("cell_done", "cell_skipped"):
                frac = 1.0
            job.progress = min(1.0, (p.cell_index + frac) / max(1, p.n_cells))

        job.message = "loading the model (a zoo model trains first if it is not yet) and preparing the data"
        search = AlignmentSearch.from_config(config)
        search.plan()  # the estimate goes into the manifest, beside the time the run takes
        results = search.run(progress=progress, run_dir=run_dir, should_stop=job.should_stop)
        return {"run": config.run_name, "complete": results.complete}

    st.session_state["run"] = config.run_name  # the results page opens on it
    st.session_state.pop("site", None)  # and on its own best site, not the last run's
    jobs.start_job(JOB_KEY, f"search {config.run_name}", work, context=task_spec)


if config is not None:
    n_cells, how = cell_count(config)
    st.caption(f"{n_cells} cells: {how}; at each, {method} trains {steps} steps"
               + (" per variable" if per_variable else "") + "." + ("" if choice.trained else
                                                                     " The zoo model trains first."))
    estimate = st.session_state.get("s_estimate", {}).get(config.hash())
    e1, e2 = st.columns([1, 3])
    if e1.button("Estimate the time", key="s_plan", disabled=running, help="a few calibration steps on this machine"):
        from experiments.search import AlignmentSearch

        with st.spinner("Calibrating a few steps on this machine"), widgets.user_errors():
            estimate = AlignmentSearch.from_config(config).plan().summary()
            st.session_state.setdefault("s_estimate", {})[config.hash()] = estimate
    if estimate:
        e2.caption(f"Plan: {estimate}.")
if st.button("Start search", type="primary", disabled=bool(errors) or running, key="s_start"):
    name = run_name or f"{task_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if (caches.runs_root() / name / "manifest.json").exists():  # a clash is checked now, not after the run
        st.error(f"A run named {name!r} already exists in {caches.runs_root()}; choose another run name.")
    else:
        start_search(config.replace(name=name))
        st.rerun()  # redraw the form locked
if config is not None:
    with st.expander("The config this search runs (the same file runs with `dii search search.toml`)",
                     expanded=not running):
        shown = config if run_name else config.replace(name=f"{task_name}-{time.strftime('%Y%m%d-%H%M%S')}")
        if not run_name:
            st.caption("Without a run name, the run is named after the task and the time it starts.")
        st.code(shown.to_toml(), language="toml")
        st.download_button("Download search.toml", shown.to_toml().encode(), file_name=f"{task_name}-search.toml",
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
