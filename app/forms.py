"""Form pieces the pages share: a config's reasons written under its fields and a background
job's live progress (search, finetune, comparison), the changed rule to train toward (finetune,
comparison), and Boundless DAS's per-variable step count (search)."""

from __future__ import annotations

from typing import Callable

import streamlit as st

from app import jobs, plots, widgets
from experiments.finetune.config import VARIANT_FLAGS, VARIANTS, FinetuneConfig

kept = widgets.kept
NO_CHANGE = "(the task's main rule: no change)"


def variable_step(step: int, n_steps: int, steps_each: int | None, variables: list[str]) -> tuple[str | None, int, int]:
    """A per-variable method (Boundless DAS) trains its variables one after another and reports
    one count over all of them (233 of 400 for two variables at 200 steps): which variable is
    training, and its own step of its own steps (V2, 33 of 200). Others: (None, step, n_steps)."""
    if steps_each and variables and n_steps == steps_each * len(variables) and len(variables) > 1:
        i = min((step - 1) // steps_each, len(variables) - 1)
        return variables[i], step - i * steps_each, steps_each
    return None, step, n_steps


def method_option_fields(method: str, disabled: bool) -> dict:
    """A widget per field of a method's own Options (declared in its file, so a plugin's appear
    too); returns {method: {field: value}} with the values that differ from the defaults."""
    import tomllib

    from experiments.search.methods import REGISTRY

    fields = REGISTRY[method].Options.model_fields
    if not fields:
        return {}
    st.caption(f"{method}'s own settings ([method_options.{method}] in a config):")
    chosen = {}
    for col, (name, f) in zip(st.columns(len(fields)), fields.items()):
        default, key = f.get_default(call_default_factory=True), kept(f"s_opt_{method}_{name}")
        label, helptext = f"{method}: {name.replace('_', ' ')}", f.description or None
        if isinstance(default, bool):
            value = col.checkbox(label, value=default, key=key, help=helptext, disabled=disabled)
        elif isinstance(default, (int, float)):
            value = col.number_input(label, value=default, key=key, help=helptext, disabled=disabled,
                                     **({"step": 1} if isinstance(default, int) else {"format": "%.4g"}))
        else:  # lists, strings: typed as a TOML value, e.g. [50, 0.1]
            import tomli_w

            text = col.text_input(label, value=tomli_w.dumps({"v": default})[4:].strip(), key=key, help=helptext,
                                  disabled=disabled)
            try:
                value = tomllib.loads(f"v = {text}")["v"]
            except tomllib.TOMLDecodeError:
                value = text  # the config refuses it, under the field, naming what it expects
        if value != default:
            chosen[name] = value
    return {method: chosen} if chosen else {}


def task_option_fields(task_spec: str, prefix: str, disabled: bool) -> dict:
    """A widget per option of the task's builder (its signature, and the choices it declares:
    ioi's counterfactuals); returns the options set away from their defaults ([task_options])."""
    import tomllib

    from causal.tasks import task_options_of

    options = task_options_of(task_spec)
    if not options:
        return {}
    chosen = {}
    cols = st.columns(min(4, len(options)))
    for i, (name, o) in enumerate(options.items()):
        col, key, default = cols[i % len(cols)], kept(f"{prefix}_opt_{task_spec}_{name}"), o["default"]
        label = f"task option: {name.replace('_', ' ')}"
        if o["choices"]:
            st.session_state.setdefault(key, default)
            value = col.selectbox(label, o["choices"], key=key, disabled=disabled)
        elif isinstance(default, bool):
            value = col.checkbox(label, value=default, key=key, disabled=disabled)
        elif isinstance(default, int):
            value = col.number_input(label, value=default, step=1, key=key, disabled=disabled)
        else:  # anything else as a TOML value (a list of cities: ["Berlin", "Tokyo"]); empty: the default
            text = col.text_input(label, key=key, disabled=disabled, placeholder=f"default: {default!r}").strip()
            try:
                value = tomllib.loads(f"v = {text}")["v"] if text else default
            except tomllib.TOMLDecodeError:
                value = text
        if value != default:
            chosen[name] = value
    return chosen


def reasons_under(errors: dict[str, str], placed: dict) -> None:
    """Each config error under the field it names (`placed`: field -> the column holding its
    widget; a column takes more elements after the widget), the rest as errors here."""
    for name, message in errors.items():
        if name in placed:
            placed[name].markdown(f":red[{message.split(': ', 1)[-1]}]")
        else:
            st.error(message)
    if errors:
        st.warning("Start is disabled until the fields marked in red are fixed.")


# The changed rule a finetune page starts on, per task with variants: one that changes answers.
DEFAULT_VARIANT = {"price_tagging": {"lower_shift": 2}, "hierarchical_equality_tokens": {"left_only": 1}}


def changed_rule(task, prefix: str, disabled: bool) -> dict:
    """The rule to finetune toward, as FinetuneConfig fields: a task's variant (price_tagging's
    shifted bounds, hierarchical equality's output that reads one pair), else another of its
    hypotheses whose answers differ from the main one's (same answers would teach nothing)."""
    allowed = VARIANTS.get(task.name, ())
    if allowed:
        st.caption("Changed rule to train toward (the model was trained on the task's main rule):")
        cols = st.columns(len(allowed))
        chosen = {}
        for col, k in zip(cols, allowed):
            key = kept(f"{prefix}_var_{k}")
            default = DEFAULT_VARIANT.get(task.name, {}).get(k, 0)
            if k in VARIANT_FLAGS:
                st.session_state.setdefault(key, bool(default))
                chosen[k] = int(col.checkbox(k.replace("_", " "), key=key, disabled=disabled))
            else:
                st.session_state.setdefault(key, default)
                chosen[k] = col.number_input(k.replace("_", " "), step=1, key=key, disabled=disabled)
        variant = {k: v for k, v in chosen.items() if v != 0}
        return {"variant": variant} if variant else {}
    alternatives = [h for h in task.hypotheses if h != task.default_hypothesis]
    others = [h for h in alternatives if answers_differ(task, h)]
    same = [h for h in alternatives if h not in others]
    if same:
        st.caption(f"{', '.join(same)} gives the same answers as {task.default_hypothesis!r} (they differ only inside), "
                   "so training toward it would teach nothing; pick a rule that changes the answers.")
    WRITE = "(write a rule)"
    options = [NO_CHANGE, *[f"hypothesis: {h}" for h in others],
               *[f"rule: {expr}  ({what})" for expr, what in task.changed_rules.items()], WRITE]
    key = kept(f"{prefix}_rule_{task.name}")
    st.session_state.setdefault(key, options[1] if len(options) > 2 else WRITE)
    c1, c2 = st.columns([2, 1])
    target = c1.selectbox("Changed rule to train toward", options, key=key, disabled=disabled,
                          help=f"The model follows {task.default_hypothesis!r}. A rule that changes its answers gives the "
                               "finetune something to learn: another hypothesis of the task, or a rule written as "
                               "an expression over its variables.")
    if target == WRITE:
        expr = c2.text_input("Rule (an expression)", key=kept(f"{prefix}_rule_text_{task.name}"), disabled=disabled,
                             placeholder=next(iter(task.changed_rules), "e.g. not O"),
                             help=FinetuneConfig.field_help("rule")).strip()
        return {"rule": expr} if expr else {}
    if target.startswith("hypothesis: "):
        return {"hypothesis": target.removeprefix("hypothesis: ")}
    if target.startswith("rule: "):
        return {"rule": target.removeprefix("rule: ").split("  (")[0]}
    return {}


@st.cache_data(show_spinner=False)
def _differ_share(task_spec: str, hypothesis: str) -> float:
    from causal.tasks import resolve_task

    task = resolve_task(task_spec)
    main, other = task.hypothesis(task.default_hypothesis), task.hypothesis(hypothesis)
    inputs = [x for x, _ in task.factual_data(200, seed=0)]
    return sum(main.run(x)[main.output] != other.run(x)[other.output] for x in inputs) / len(inputs)


def answers_differ(task, hypothesis: str) -> bool:
    """Do the two hypotheses answer differently on some sampled inputs? (An alternative
    internal structure with the same answers is no rule to finetune toward.)"""
    from causal.tasks import task_spec_of

    try:
        return _differ_share(task_spec_of(task), hypothesis) > 0
    except Exception:  # noqa: BLE001 - a task the spec cannot name again: offer the hypothesis
        return True


def live_job(key: str, is_running: bool, *, loss_title: str = "Loss of the arm in training",
             belongs: Callable[[jobs.Job], bool] | None = None,
             after: Callable[[jobs.Job], None] | None = None) -> None:
    """Progress, live loss and Cancel while the job in st.session_state[key] runs (polled every
    second); when it has ended, the page is redrawn once and `after(job)` shows its outcome.
    `belongs(job)`: whether an ended job's messages belong to what the page shows now."""

    @st.fragment(run_every=1.0 if is_running else None)
    def live() -> None:
        job = jobs.get_job(key)
        if job is None or (not job.running and belongs is not None and not belongs(job)):
            return
        if job.running:
            st.progress(job.progress, text=job.message or "loading the model and data")
            if st.button("Cancel", key=f"{key}_cancel"):
                job.cancel()
                st.info("Cancelling after the current step...")
            if job.losses:
                st.plotly_chart(plots.curves({"training loss": job.losses}, title=loss_title), key=f"{key}_live_loss")
            return
        if st.session_state.get(f"{key}_shown") is not job:  # it just ended: redraw the page once
            st.session_state[f"{key}_shown"] = job
            st.rerun()
        if after is not None:
            after(job)

    live()
