"""Page 4: from a learned subspace to finetuning. A LoReFT intervention initialised from a DAS
subspace (experiments.finetune, init_from=...) beside the same finetune from a random
init; their curves; the trained artifact as a zip. Then the ReFT-versus-PEFT comparison
table and curves (experiments.compare)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from app import plots, state  # noqa: E402
from causal.errors import WorkbenchError  # noqa: E402
from causal.tasks import TASK_NAMES  # noqa: E402
from experiments.finetune_config import FinetuneConfig  # noqa: E402
from experiments.runs import load_run  # noqa: E402

JOB_KEY = "finetune_job"


def subspaces_of(run) -> list[str]:
    return run.subspace_names()


st.title("Subspace to finetuning")
st.write("Reuse a subspace that DAS found as the starting rotation of a LoReFT intervention, "
         "and compare it with the same finetune from a random start.")

running = state.job_running(JOB_KEY)
runs = state.search_runs()
run = None
choice = None
if not runs:
    st.info(f"No search runs in {state.runs_root()} yet: run a search first, its subspaces appear here.")
else:
    c1, c2 = st.columns(2)
    run_name = c1.selectbox("Search run", [r["name"] for r in runs], key="f_run", disabled=running)
    with state.user_errors():
        run = load_run(state.runs_root() / run_name)
    if run is not None:
        names = subspaces_of(run)
        if not names:
            st.info(f"Run {run_name!r} saved no subspaces (only DAS and Boundless DAS cells save one).")
            run = None
        else:
            choice = c2.selectbox("Learned subspace (site / variable)", names, key=f"f_sub_{run_name}",
                                  format_func=lambda n: n.replace("__", " / "), disabled=running)

sub_cfg = None
task = None
if run is not None and choice is not None:
    sub_dir = run.path / "subspaces" / choice
    sub_cfg = json.loads((sub_dir / "config.json").read_text())
    iia = sub_cfg.get("iia")
    iia_text = f"{iia:.3f}" if isinstance(iia, (int, float)) else json.dumps(iia)
    st.caption(f"Site {sub_cfg['site']} · variables {', '.join(sub_cfg['variables'])} · k = {sub_cfg['k']} · "
               f"IIA {iia_text} · model {run.config.get('model')}")
    task = None
    with state.user_errors():
        task = state.get_task(run.config["task"], run.config.get("task_options"))
    if task is None:
        sub_cfg = None
    elif task.input_kind != "tokens":
        st.error(f"LoReFT finetuning trains a language model on prompts, but run {run.name!r} searched "
                 f"{run.config['task']!r}, whose model reads vectors. Pick a subspace from a search on a "
                 "tokens task (e.g. price_tagging or hierarchical_equality_tokens with its zoo model).")
        sub_cfg = None

if sub_cfg is not None:
    from experiments.finetune import VARIANTS

    c1, c2, c3, c4 = st.columns(4)
    rank = int(c1.number_input("Rank r", min_value=1, value=int(sub_cfg["k"]), key="f_rank", help=FinetuneConfig.field_help("rank"), disabled=running))
    positions = c2.text_input("Positions", value="l1", key="f_pos", help=FinetuneConfig.field_help("positions"), disabled=running)
    steps = int(c3.number_input("Steps", min_value=1, value=200, step=50, key="f_steps", help=FinetuneConfig.field_help("steps"), disabled=running))
    lr = float(c4.number_input("Learning rate", min_value=1e-6, value=4e-3, format="%.4f", key="f_lr", help=FinetuneConfig.field_help("lr"),
                               disabled=running))
    c1, c2, c3, c4 = st.columns(4)
    batch_size = int(c1.number_input("Batch size", min_value=1, value=16, key="f_bs", help=FinetuneConfig.field_help("batch_size"), disabled=running))
    n_train = int(c2.number_input("Train examples", min_value=2, value=1000, step=100, key="f_ntrain", help=FinetuneConfig.field_help("n_train"),
                                  disabled=running))
    seed = int(c3.number_input("Seed", value=0, step=1, key="f_seed", help=FinetuneConfig.field_help("seed"), disabled=running))
    eval_every = int(c4.number_input("Evaluate every (steps)", min_value=0, value=max(1, steps // 10),
                                     key="f_eval", help=FinetuneConfig.field_help("eval_every"), disabled=running))
    variant = None
    allowed = VARIANTS.get(run.config["task"], ())
    if allowed:
        cols = st.columns(len(allowed))
        shifts = {k: int(col.number_input(f"Changed rule: {k}", value=2 if k == "lower_shift" else 0, step=1,
                                          key=f"f_var_{k}", disabled=running)) for col, k in zip(cols, allowed)}
        variant = {k: v for k, v in shifts.items() if v != 0} or None
    c1, c2 = st.columns(2)
    freeze = c1.checkbox("Freeze the rotation (train W and b only)", value=False, key="f_freeze", help=FinetuneConfig.field_help("freeze_rotation"), disabled=running)
    with_random = c2.checkbox("Also train from a random init (the comparison)", value=True, key="f_random",
                              disabled=running)

    def configs() -> dict:
        from experiments.reuse import reuse_arms

        return reuse_arms(sub_dir, with_random=with_random, freeze_rotation=freeze,
                          model=run.config["model"], model_seed=run.config.get("model_seed", 0),
                          task=run.config["task"], variant=variant, layers=[int(sub_cfg["layer"])],
                          component=sub_cfg["component"], rank=rank, positions=positions.strip(), lr=lr,
                          batch_size=batch_size, steps=steps, n_train=n_train, seed=seed, eval_every=eval_every)

    if not running and st.button("Start finetuning", type="primary", key="f_start"):
        cfgs = None
        with state.user_errors():
            cfgs = configs()
        if cfgs is not None:
            out_root = state.runs_root() / f"finetune-{time.strftime('%Y%m%d-%H%M%S')}"

            def work(job: state.Job):
                from experiments.reuse import run_arms

                labels = list(cfgs)
                job.result = {}

                def progress(label, step, n_steps, loss):
                    if job.should_stop():
                        raise state.Cancelled()
                    if step == 1:
                        job.losses = []
                    job.losses.append(loss)
                    job.progress = (labels.index(label) + step / n_steps) / len(labels)
                    job.message = f"{label}: step {step}/{n_steps}, loss {loss:.3f}"

                try:
                    job.result = run_arms(cfgs, out_root=out_root, progress=progress)
                except state.Cancelled:
                    pass
                return job.result

            state.start_job(JOB_KEY, "Finetuning", work)
            running = True


def show_finetune_results(results: dict) -> None:
    st.subheader("DAS init against random init")
    st.dataframe(pd.DataFrame([{
        "init": label, "final accuracy": r.final_accuracy, "eval loss": r.final_loss,
        "steps to 95% accuracy": (f"{r.steps_to(0.95)}" if r.steps_to(0.95) is not None  # one type per column (Arrow)
                                  else f"not within {r.steps}"),
        "trainable params": r.trainable_params, "wall time (s)": round(r.wall_seconds, 1),
    } for label, r in results.items()]), hide_index=True, width="stretch")
    c1, c2 = st.columns(2)
    c1.plotly_chart(plots.curves({label: r.loss_curve for label, r in results.items()}, title="Training loss"),
                    key="f_loss", width="stretch")
    acc_fig = plots.curves({label: [e["accuracy"] for e in r.eval_curve] for label, r in results.items()},
                           title="Eval accuracy", y_title="accuracy", x_title="step",
                           steps={label: [e["step"] for e in r.eval_curve] for label, r in results.items()})
    c2.plotly_chart(acc_fig, key="f_acc", width="stretch")
    for label, r in results.items():
        if r.artifact_path:
            st.download_button(f"Download the {label} intervention (zip)",
                               data=state.zip_directory(Path(r.artifact_path)),
                               file_name=f"loreft-{label.replace(' ', '_')}.zip", mime="application/zip",
                               key=f"f_dl_{label.replace(' ', '_')}")


def live_job(key: str, is_running: bool, show_result) -> None:
    """Progress, live loss and Cancel while the job runs (polled every second); its outcome after."""

    @st.fragment(run_every=1.0 if is_running else None)
    def live() -> None:
        job = state.get_job(key)
        if job is None:
            return
        if job.running:
            st.progress(job.progress, text=job.message or "loading the model and data")
            if st.button("Cancel", key=f"{key}_cancel"):
                job.cancel()
            if job.losses:
                st.plotly_chart(plots.curves({"training loss": job.losses}, title="Loss of the run in training"),
                                key=f"{key}_live_loss")
            return
        if st.session_state.get(f"{key}_shown") is not job:  # it just ended: redraw the page once
            st.session_state[f"{key}_shown"] = job
            st.rerun()
        state.show_job_outcome(job)
        if job.result:
            show_result(job.result)

    live()


live_job(JOB_KEY, running, show_finetune_results)

# ---------------------------------------------------------------- ReFT versus PEFT (issue 8)
COMPARE_KEY = "compare_job"
st.header("ReFT versus PEFT on your model and task")
st.write("Every method trains with the same data, step budget, evaluation and seeds "
         "(experiments.compare); trainable parameters are each method's own count.")
compare_running = state.job_running(COMPARE_KEY)

with st.expander("Run a comparison", expanded=not state.compare_runs()):
    from experiments.finetune import METHODS as FT_METHODS

    token_tasks = []
    for t in state.task_choices(zoo_only=True):  # built-ins and the user's own tasks that read prompts
        try:
            if state.get_task(t).input_kind == "tokens":
                token_tasks.append(t)
        except WorkbenchError:
            continue
    run_task = run.config.get("task") if run is not None else None
    default_task = run_task if run_task in token_tasks else "price_tagging"
    c1, c2 = st.columns(2)
    cmp_task = c1.selectbox("Task", token_tasks, index=token_tasks.index(default_task), key="c_task",
                            format_func=state.task_label, disabled=compare_running)
    cmp_model = c2.text_input("Model", value=f"zoo:{cmp_task}" if cmp_task in TASK_NAMES else "zoo", key=f"c_model_{cmp_task}", disabled=compare_running,
                              help="'zoo:<task>', 'zoo' (a zoo model trained on your own task), 'config:gpt2-tiny' (random "
                                   "weights) or a local model directory")
    cmp_methods = st.multiselect("Methods", list(FT_METHODS), default=[m for m in FT_METHODS if m != "full"],
                                 key="c_methods", disabled=compare_running)
    c1, c2, c3, c4 = st.columns(4)
    cmp_seeds = c1.text_input("Seeds", value="0", key="c_seeds", disabled=compare_running,
                              help="comma-separated, e.g. 0, 1, 2")
    cmp_steps = int(c2.number_input("Steps", min_value=1, value=100, step=50, key="c_steps", help=FinetuneConfig.field_help("steps"), disabled=compare_running))
    cmp_ntrain = int(c3.number_input("Train examples", min_value=2, value=1000, step=100, key="c_ntrain", help=FinetuneConfig.field_help("n_train"),
                                     disabled=compare_running))
    cmp_rank = int(c4.number_input("Rank (ReFT) / r (LoRA)", min_value=1, value=4, key="c_rank",
                                   disabled=compare_running))
    if not compare_running and st.button("Start comparison", key="c_start"):
        from experiments.compare import CompareConfig, compare

        cmp_config = None
        with state.user_errors():
            try:
                seeds = [int(x) for x in cmp_seeds.replace(",", " ").split()]
            except ValueError:
                raise state.WorkbenchError(f"seeds {cmp_seeds!r}: write whole numbers separated by commas, "
                                           "e.g. 0, 1, 2") from None
            cmp_config = CompareConfig(
                finetune=dict(model=cmp_model.strip(), task=cmp_task, steps=cmp_steps, n_train=cmp_ntrain,
                              rank=cmp_rank, lora_r=cmp_rank, eval_every=max(1, cmp_steps // 10)),
                methods=list(cmp_methods), seeds=seeds, name=f"compare-{time.strftime('%Y%m%d-%H%M%S')}")
        if cmp_config is not None:
            st.session_state["compare_run"] = cmp_config.run_name

            def work(job: state.Job):
                n_total = len(cmp_config.methods) * len(cmp_config.seeds)
                done = []

                def progress(method, seed, step, n_steps, loss):
                    if job.should_stop():
                        raise state.Cancelled()
                    if step == 1:
                        job.losses = []
                        done.append((method, seed))
                    job.losses = [*job.losses, loss]
                    job.progress = (len(done) - 1 + step / n_steps) / n_total
                    job.message = f"{method} seed {seed}: step {step}/{n_steps}, loss {loss:.3f}"

                try:
                    compare(cmp_config, runs_dir=state.runs_root(), progress=progress)
                except state.Cancelled:
                    pass
                return {"name": cmp_config.run_name}

            state.start_job(COMPARE_KEY, "Comparison", work)
            compare_running = True

live_job(COMPARE_KEY, compare_running, lambda result: st.success(f"Comparison {result['name']!r} written."))

comparisons = state.compare_runs()
if comparisons:
    names = [r["name"] for r in comparisons]
    wanted = st.session_state.get("compare_run")
    cmp_name = st.selectbox("Comparison", names, index=names.index(wanted) if wanted in names else 0, key="c_show")
    data = None
    with state.user_errors():
        from experiments.compare import load_compare

        data = load_compare(state.runs_root() / cmp_name)
    if data is not None and data.get("summary"):
        summary = pd.DataFrame(data["summary"])
        st.dataframe(summary, hide_index=True, width="stretch")
        left, right = st.columns(2)
        left.plotly_chart(plots.params_vs_score(list(summary["method"]), list(summary["trainable_params"]),
                                                list(summary["accuracy_mean"]), score_name="accuracy",
                                                title="Accuracy against trainable parameters"),
                          key="c_params", width="stretch")
        first_seed = {m: next(iter(per_seed.values()))["loss"] for m, per_seed in data["curves"].items() if per_seed}
        right.plotly_chart(plots.curves(first_seed, title="Training loss (first seed)"), key="c_curves",
                           width="stretch")
        csv_path = state.runs_root() / cmp_name / "compare.csv"
        if csv_path.is_file():
            st.download_button("Download compare.csv", data=csv_path.read_bytes(), file_name=f"{cmp_name}.csv",
                               mime="text/csv", key="c_download")
