"""Page 5: ReFT versus PEFT on your model and task (experiments.finetune.compare). Every method trains
with the same data, step budget, evaluation and seeds toward the same changed rule; past
comparisons are listed, reopened and deleted."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from app import caches, jobs, plots, widgets  # noqa: E402
from app.forms import changed_rule, live_job, task_option_fields  # noqa: E402
from app.model_picker import describe, model_field  # noqa: E402
from causal.errors import WorkbenchError  # noqa: E402
from experiments.finetune.config import FinetuneConfig  # noqa: E402

COMPARE_KEY = "compare_job"
kept = widgets.kept
# The summary's columns with the headers a reader sees (compare.csv keeps the field names).
HEADERS = {"method": "method", "trainable_params": "trainable parameters", "trainable_percent": "% of the model",
           "accuracy_mean": "accuracy (mean)", "accuracy_std": "accuracy sd",
           "generation_mean": "generated exactly (mean)", "generation_std": "generated sd",
           "generation_each": "generated, each seed", "base_generation": "base model generated",
           "eval_loss_mean": "eval loss (mean)",
           "eval_loss_std": "eval loss sd", "tokens_per_second": "tokens/s", "peak_memory_mb": "peak memory (MB)",
           "wall_seconds": "wall time (s)", "n_seeds": "seeds", "params_source": "parameter count from"}

widgets.page_header("ReFT versus PEFT",
                    "Every method trains with the same data, step budget, evaluation and seeds "
                    "(experiments.finetune.compare); trainable parameters are each method's own count.",
                    not_here=("run", "variable", "site"))
running = jobs.job_running(COMPARE_KEY)

with st.expander("Run a comparison", expanded=not caches.compare_runs()):
    from experiments.finetune import METHODS as FT_METHODS

    token_tasks = []
    for t in caches.task_choices():  # built-ins and the user's own tasks that read prompts
        try:
            if caches.get_task(t).input_kind == "tokens":
                token_tasks.append(t)
        except WorkbenchError:
            continue
    task_spec = widgets.choose("Task", token_tasks, shared="task", key="c_task", default=caches.DEFAULT_TASK,
                               format_func=caches.task_label, disabled=running)
    task_options = task_option_fields(task_spec, "c", running)
    choice = model_field(task_spec, "c", running, with_dtype=False)  # the model typed stays when the task changes
    if choice is not None:
        st.caption(describe(choice))
    st.session_state.setdefault("c_methods", [m for m in FT_METHODS if m != "full"])
    methods = st.multiselect("Methods", list(FT_METHODS), key=kept("c_methods"), disabled=running)
    for key, default in (("c_seeds", "0, 1, 2"), ("c_steps", 100), ("c_ntrain", 1000), ("c_neval", 200), ("c_rank", 4)):
        st.session_state.setdefault(key, default)
    c1, c2, c3, c5, c4 = st.columns(5)
    seeds_text = c1.text_input("Seeds", key=kept("c_seeds"), disabled=running,
                               help="comma-separated, e.g. 0, 1, 2: the table gives each method's mean and sd over them")
    steps = c2.number_input("Steps", step=50, key=kept("c_steps"), help=FinetuneConfig.field_help("steps"),
                            disabled=running)
    n_train = c3.number_input("Train examples", step=100, key=kept("c_ntrain"), help=FinetuneConfig.field_help("n_train"),
                              disabled=running)
    n_eval = c5.number_input("Held-out examples", step=100, key=kept("c_neval"),
                             help=FinetuneConfig.field_help("n_eval"), disabled=running)
    rank = c4.number_input("Rank (ReFT) / r (LoRA)", step=1, key=kept("c_rank"), disabled=running)
    rule = {}
    with widgets.user_errors():
        rule = changed_rule(caches.get_task(task_spec, task_options), "c", running)

    config, problem = None, None
    try:
        seeds = [int(x) for x in seeds_text.replace(",", " ").split()]
    except ValueError:
        problem = f"Seeds {seeds_text!r}: write whole numbers separated by commas, e.g. 0, 1, 2."
    if choice is None:
        problem = "Name a model above."
    if problem is None:
        from experiments.finetune.compare import CompareConfig

        try:
            config = CompareConfig(
                finetune=dict(model=choice.spec, model_seed=choice.model_seed, device=choice.device, task=task_spec,
                              task_options=task_options, steps=steps, n_train=n_train, n_eval=n_eval, rank=rank, lora_r=rank,
                              eval_every=max(1, steps // 10) if isinstance(steps, int) and steps > 0 else 1, **rule),
                methods=list(methods), seeds=seeds, name=f"compare-{time.strftime('%Y%m%d-%H%M%S')}")
        except WorkbenchError as e:
            problem = str(e)
    if problem:
        st.error(problem)
    if st.button("Start comparison", key="c_start", type="primary", disabled=config is None or running):
        st.session_state["compare_run"] = config.run_name

        def work(job: jobs.Job):
            from experiments.finetune.compare import compare
            from experiments.threads import use_cpu_threads

            use_cpu_threads()
            n_total = len(config.methods) * len(config.seeds)
            done = []

            def progress(method, seed, step, n_steps, loss):
                if job.should_stop():
                    raise jobs.Cancelled()
                if step == 1:
                    job.losses = []
                    done.append((method, seed))
                job.losses = [*job.losses, loss]
                job.progress = (len(done) - 1 + step / n_steps) / n_total
                job.message = f"{method} seed {seed}: step {step}/{n_steps}, loss {loss:.3f}"

            compare(config, runs_dir=caches.runs_root(), progress=progress)
            return {"name": config.run_name}

        jobs.start_job(COMPARE_KEY, f"comparison {config.run_name}", work, context=config.run_name)
        st.rerun()  # redraw the form locked


def select_finished(job: jobs.Job) -> None:
    """A comparison that just ended is the one shown (once: the user may pick another after)."""
    if job.result and st.session_state.get("c_selected_job") is not job:
        st.session_state["c_selected_job"] = job
        st.session_state["compare_run"] = job.result["name"]
        st.query_params["compare_run"] = job.result["name"]
        st.rerun()


live_job(COMPARE_KEY, running, after=select_finished)

comparisons = caches.compare_runs()
if not comparisons:
    st.caption("No comparisons yet: start one above; each is saved and listed here.")
    st.stop()
name = widgets.run_picker("Comparison", comparisons, shared="compare_run", key="c_show")
jobs.show_outcome_beside(COMPARE_KEY, name)
data = run = None
with widgets.user_errors():  # a damaged run is a message, not a traceback
    from experiments.runs import load_run

    run = load_run(caches.runs_root() / name)
if run is not None and run.manifest.get("status") == "running" and \
        not (caches.runs_root() / name / "compare.json").is_file():
    st.info(f"{name} is running: its table appears when its first method and seed finish.")
    st.stop()
if run is not None:
    with widgets.user_errors():
        data = run.comparison()
if data is not None:
    manifest = run.manifest
    shared = (manifest.get("config") or {}).get("finetune") or manifest.get("config") or {}
    model = manifest.get("model") if isinstance(manifest.get("model"), dict) else {}
    st.markdown(f"**{name}**: model `{shared.get('model')}`" + (f" (fingerprint `{model['fingerprint'][:12]}`)"
                                                              if model.get("fingerprint") else "")
                + f", task `{shared.get('task') or shared.get('data')}`"
                + (f" with options {shared['task_options']}" if shared.get("task_options") else "")
                + f", {shared.get('steps')} steps; status {manifest.get('status')}")
if data is not None and data.get("summary"):
    summary = pd.DataFrame(data["summary"])
    summary = summary[[c for c in HEADERS if c in summary.columns]]  # compare.json keeps its keys sorted
    st.dataframe(summary.rename(columns=HEADERS), hide_index=True, width="stretch",
                 column_config={h: st.column_config.NumberColumn(format="%.3f") for h in
                                ("accuracy (mean)", "accuracy sd", "generated exactly (mean)", "generated sd",
                                 "base model generated", "eval loss (mean)", "eval loss sd")})
    st.caption("accuracy: every response token ranked first, teacher-forced; generated: greedy decoding on the "
               "held-out prompts (interventions on the prompt only) reproduces the response exactly.")
    if (summary["n_seeds"] == 1).all():
        st.caption("One seed per method, so no sd: run the comparison with several seeds to see the spread.")
    left, right = st.columns(2)
    left.plotly_chart(plots.params_vs_score(list(summary["method"]), list(summary["trainable_params"]),
                                            list(summary["accuracy_mean"]), score_name="accuracy",
                                            title="Accuracy against trainable parameters"),
                      key="c_params", width="stretch")
    curves = data["curves"]  # in the table's order, so each method has one colour in both plots
    first_seed = {m: next(iter(curves[m].values()))["loss"] for m in summary["method"] if curves.get(m)}
    right.plotly_chart(plots.curves(first_seed, title="Training loss (first seed)", dashes=True), key="c_curves",
                       width="stretch")
    csv_path = caches.runs_root() / name / "compare.csv"
    if csv_path.is_file():
        st.download_button("Download compare.csv", data=csv_path.read_bytes(), file_name=f"{name}.csv",
                           mime="text/csv", key="c_download")
