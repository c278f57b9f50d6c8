"""Page 4: from a learned subspace to finetuning. A LoReFT intervention initialised from a DAS
subspace (experiments.finetune, init_from=...) beside the same finetune from a random init,
trained toward a changed rule; their curves; the trained artifacts as zips. Every such
finetune is a run (experiments.finetune.reuse, kind "reuse"): past ones are listed, reopened and deleted."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from app import caches, jobs, plots, widgets  # noqa: E402
from app.forms import changed_rule, live_job, reasons_under  # noqa: E402
from experiments.finetune.config import FinetuneConfig  # noqa: E402
from experiments.runs import load_run, subspace_dirname  # noqa: E402

JOB_KEY = "finetune_job"
kept = widgets.kept


def best_subspace(run, names: list[str]) -> str:
    """The saved subspace at the best site (highest IIA of the run's main method) of its first
    variable that has one: the variable the default changed rule reads (V1, price_tagging's left)."""
    for v in run.variables():
        row = run.best(v)
        if row is not None and subspace_dirname(row["site"], v) in names:
            return subspace_dirname(row["site"], v)
    return names[0]


def show_finetune_results(name: str, results: dict) -> None:
    st.dataframe(pd.DataFrame([{
        "init": label, "final accuracy": r.final_accuracy, "eval loss": r.final_loss,
        "steps to 95% accuracy": (f"{r.steps_to(0.95)}" if r.steps_to(0.95) is not None  # one type per column (Arrow)
                                  else f"not within {r.steps}"),
        "trainable parameters": r.trainable_params, "wall time (s)": round(r.wall_seconds, 1),
    } for label, r in results.items()]), hide_index=True, width="stretch",
        column_config={"final accuracy": st.column_config.NumberColumn(format="%.3f"),
                       "eval loss": st.column_config.NumberColumn(format="%.4f")})
    c1, c2 = st.columns(2)
    c1.plotly_chart(plots.curves({label: r.loss_curve for label, r in results.items()}, title="Training loss"),
                    key="f_loss", width="stretch")
    acc_fig = plots.curves({label: [e["accuracy"] for e in r.eval_curve] for label, r in results.items()},
                           title="Eval accuracy", y_title="accuracy", x_title="step",
                           steps={label: [e["step"] for e in r.eval_curve] for label, r in results.items()})
    c2.plotly_chart(acc_fig, key="f_acc", width="stretch")
    cols = st.columns(max(1, len(results)))
    for col, (label, r) in zip(cols, results.items()):
        if r.artifact_path and Path(r.artifact_path).is_dir():
            col.download_button(f"Download the {label} intervention (zip)",
                                data=widgets.zip_directory(Path(r.artifact_path)),
                                file_name=f"{name}-loreft-{label.replace(' ', '_').replace(',', '')}.zip",
                                mime="application/zip", key=f"f_dl_{label.replace(' ', '_')}")


@st.cache_data(show_spinner=False)
def generated_answers(run_path: str, n: int = 8) -> pd.DataFrame:
    """Greedy answers (a few tokens) of the frozen model and of each trained arm, on the first
    held-out prompts of the arms' data, beside the answer the changed rule asks for."""
    from experiments.finetune import FinetuneConfig as Config
    from experiments.finetune.data import task_examples
    from experiments.finetune.reuse import load_arms
    from interventions.reft_artifact import generate, load_reft

    arms = load_arms(run_path)
    first = next(iter(arms.values()))
    config = Config.from_dict({k: v for k, v in first.config.items() if k in Config.model_fields})
    _, held_out, _ = task_examples(config)
    held_out = held_out[:n]
    model = caches.load_model(config.model if not config.model.startswith("zoo") else
                              str(caches.zoo_model(config.task, config.model_seed)))
    prompts = [ex.prompt for ex in held_out]
    table = {"prompt": prompts, "the changed rule's answer": [ex.response for ex in held_out],
             "base model": generate(model, None, prompts, max_new_tokens=3)}
    for label, r in arms.items():
        if r.artifact_path and Path(r.artifact_path).is_dir():
            table[label] = generate(model, load_reft(r.artifact_path, model=model), prompts, max_new_tokens=3)
    return pd.DataFrame(table)


widgets.page_header("Subspace to finetuning",
                    "Reuse a subspace that DAS found as the starting rotation of a LoReFT intervention, and compare "
                    "it with the same finetune from a random start, both trained toward a changed rule.",
                    not_here=("task", "variable", "site"))

running = jobs.job_running(JOB_KEY)
runs = caches.search_runs()
run = None
choice = None
if not runs:
    st.info(f"No search runs in {caches.runs_root()} yet: run a search first, its subspaces appear here.")
    widgets.page_link("alignment_search", "Go to Alignment search")
else:
    labels = {r["name"]: widgets.run_label(r) for r in runs}
    c1, c2 = st.columns(2)
    run_name = widgets.choose("Search run", list(labels), shared="run", key="f_run", where=c1, format_func=labels.get,
                            disabled=running)
    with widgets.user_errors():
        run = load_run(caches.runs_root() / run_name)
    if run is not None:
        names = run.subspace_names()
        if not names:
            status = run.manifest.get("status")
            if status == "failed":
                st.error(f"Run {run_name!r} failed ({run.manifest.get('error') or 'no reason recorded'}) before it "
                         "saved a subspace; pick another run.")
            elif status == "running":
                st.info(f"Run {run_name!r} is still running and has saved no subspace yet.")
            else:
                st.info(f"Run {run_name!r} saved no subspaces: only DAS and Boundless DAS cells save one "
                        f"(this run's method: {run.config.get('method')}).")
            run = None
        else:
            key = f"f_sub_{run_name}"
            st.session_state.setdefault(key, best_subspace(run, names))
            choice = c2.selectbox("Learned subspace (site / variable)", names, key=kept(key),
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
    with widgets.user_errors():
        task = caches.get_task(run.config["task"], run.config.get("task_options"))
    if task is None:
        sub_cfg = None
    elif task.input_kind != "tokens":
        st.error(f"LoReFT finetuning trains a language model on prompts, but run {run.name!r} searched "
                 f"{run.config['task']!r}, whose model reads vectors. Pick a subspace from a search on a "
                 "tokens task (e.g. hierarchical_equality_tokens, the default, or price_tagging).")
        sub_cfg = None

if sub_cfg is not None:
    help_of = FinetuneConfig.field_help
    for key, default in (("f_rank", int(sub_cfg["k"])), ("f_pos", "l1"), ("f_steps", 200), ("f_lr", 4e-3),
                         ("f_bs", 16), ("f_ntrain", 1000), ("f_seed", 0), ("f_eval", 20), ("f_neval", 200),
                         ("f_freeze", False),
                         ("f_random", True)):
        st.session_state.setdefault(key, default)
    c1, c2, c3, c4 = row1 = st.columns(4)
    rank = c1.number_input("Rank r", step=1, key=kept("f_rank"), help=help_of("rank"), disabled=running)
    positions = c2.text_input("Positions", key=kept("f_pos"), help=help_of("positions"), disabled=running)
    steps = c3.number_input("Steps", step=50, key=kept("f_steps"), help=help_of("steps"), disabled=running)
    lr = c4.number_input("Learning rate", format="%.4f", step=1e-3, key=kept("f_lr"), help=help_of("lr"),
                         disabled=running)
    c1, c2, c3, c4 = row2 = st.columns(4)
    batch_size = c1.number_input("Batch size", step=1, key=kept("f_bs"), help=help_of("batch_size"), disabled=running)
    n_train = c2.number_input("Train examples", step=100, key=kept("f_ntrain"), help=help_of("n_train"),
                              disabled=running)
    seed = c3.number_input("Seed", step=1, key=kept("f_seed"), help=help_of("seed"), disabled=running)
    eval_every = c4.number_input("Evaluate every (steps)", step=10, key=kept("f_eval"), help=help_of("eval_every"),
                                 disabled=running)
    c1, _, _, _ = row3 = st.columns(4)
    n_eval = c1.number_input("Held-out examples", step=50, key=kept("f_neval"), help=help_of("n_eval"),
                             disabled=running)
    rule = changed_rule(task, "f", running)
    c1, c2 = st.columns(2)
    freeze = c1.checkbox("Freeze the rotation (train W and b only)", key=kept("f_freeze"),
                         help=help_of("freeze_rotation"), disabled=running)
    with_random = c2.checkbox("Also train from a random init (the comparison)", key=kept("f_random"), disabled=running)

    values = dict(method="loreft", model=run.config["model"], model_seed=run.config.get("model_seed", 0),
                  task=run.config["task"], task_options=run.config.get("task_options") or {},
                  layers=[int(sub_cfg["layer"])], component=sub_cfg["component"], rank=rank,
                  positions=positions.strip(), lr=float(lr), batch_size=batch_size, steps=steps, n_train=n_train,
                  seed=seed, eval_every=eval_every, n_eval=n_eval, freeze_rotation=freeze, init_from=str(sub_dir),
                  **rule)
    config, errors = FinetuneConfig.check_values(values)
    placed = {"rank": row1[0], "positions": row1[1], "steps": row1[2], "lr": row1[3], "batch_size": row2[0],
              "n_train": row2[1], "seed": row2[2], "eval_every": row2[3], "n_eval": row3[0]}
    reasons_under(errors, placed)
    if st.button("Start finetuning", type="primary", key="f_start", disabled=bool(errors) or running):
        from experiments.finetune.reuse import reuse_arms

        common = {k: v for k, v in config.to_dict().items() if k not in ("init_from", "freeze_rotation", "method")}
        cfgs = reuse_arms(sub_dir, with_random=with_random, freeze_rotation=freeze, **common)
        out_root = caches.runs_root() / f"finetune-{time.strftime('%Y%m%d-%H%M%S')}"
        about = {"search_run": run.name, "subspace": choice, **rule}

        def work(job: jobs.Job):
            from experiments.finetune.reuse import run_arms
            from experiments.threads import use_cpu_threads

            use_cpu_threads()
            labels = list(cfgs)

            def progress(label, step, n_steps, loss):
                if job.should_stop():
                    raise jobs.Cancelled()
                if step == 1:
                    job.losses = []
                job.losses.append(loss)
                job.progress = (labels.index(label) + step / n_steps) / len(labels)
                job.message = f"{label}: step {step}/{n_steps}, loss {loss:.3f}"

            run_arms(cfgs, out_root=out_root, progress=progress, about=about)
            return {"name": out_root.name}

        st.session_state["finetune_run"] = out_root.name  # the list below opens on it
        st.query_params["finetune_run"] = out_root.name
        jobs.start_job(JOB_KEY, f"finetune {out_root.name}", work, context=out_root.name)
        st.rerun()  # redraw the form locked
    if config is not None:
        with st.expander("The config of the DAS-init arm (the same file runs with `dii finetune finetune.toml`)"):
            st.code(config.to_toml(), language="toml")


live_job(JOB_KEY, running)

# ---------------------------------------------------------------- past finetunes, reopened
st.header("Finetunes")
finetunes = caches.reuse_runs()
if not finetunes:
    st.caption("None yet: the finetunes started above are listed here, and stay after the server restarts.")
else:
    ft_name = widgets.run_picker("Finetune run", finetunes, shared="finetune_run", key="f_show")
    jobs.show_outcome_beside(JOB_KEY, ft_name)  # a failure or a cancel, beside its own run
    from experiments.finetune.reuse import load_arms

    manifest = load_run(caches.runs_root() / ft_name).manifest if (caches.runs_root() / ft_name).is_dir() else {}
    about = manifest.get("config", {})
    arms_cfg = next(iter(about.get("arms", {}).values()), {})
    rule = (f"toward hypothesis {about['hypothesis']!r}" if about.get("hypothesis")
            else f"toward the rule {about['rule']!r}" if about.get("rule")
            else "toward the changed rule " + ", ".join(f"{k} = {v}" for k, v in about["variant"].items())
            if about.get("variant") else "on the task's main rule")
    results = None
    with widgets.user_errors():
        results = load_arms(caches.runs_root() / ft_name)
    model = next((r.model for r in (results or {}).values() if r.model), None) or {}
    st.caption(f"Model {arms_cfg.get('model')}" + (f" (fingerprint {model['fingerprint'][:12]})" if model else "")
               + f" · task {arms_cfg.get('task')} · from run {about.get('search_run')!r}, subspace "
               f"{str(about.get('subspace')).replace('__', ' / ')} · trained {rule} · {arms_cfg.get('steps')} steps · "
               f"status {manifest.get('status')}")
    if results:
        show_finetune_results(ft_name, results)
        with st.expander("What it answers: the base model beside each arm, on held-out prompts", expanded=True):
            with widgets.user_errors(), st.spinner("Generating on 8 held-out prompts"):
                st.dataframe(generated_answers(str(caches.runs_root() / ft_name)), hide_index=True, width="stretch")
    elif manifest.get("status") == "running":
        st.info("This finetune is still running; its arms appear here when they finish.")
