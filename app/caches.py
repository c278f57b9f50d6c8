"""What the pages load once and share: where runs live and their lists, tasks (built-in and
the user's own), zoo models (trained once per server, with a progress bar) and loaded models."""

from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

from causal.errors import WorkbenchError

DEFAULT_TASK = "hierarchical_equality_tokens"  # reads prompts, so the finetune page works on it too
DEFAULT_ZOO_SEED = 0


def runs_root() -> Path:
    """$DII_RUNS, else ./runs (read at every call so tests can point it elsewhere)."""
    from experiments.runs import runs_root as _root

    return _root()


def search_runs() -> list[dict]:
    """The run store's summaries of search runs (comparisons and finetunes share the store)."""
    from experiments.runs import list_runs

    return list_runs(runs_root(), kind="search")


def compare_runs() -> list[dict]:
    from experiments.runs import list_runs

    return list_runs(runs_root(), kind="compare")


def reuse_runs() -> list[dict]:
    """The finetune page's runs: LoReFT arms from one learned subspace (experiments.finetune.reuse)."""
    from experiments.runs import list_runs

    return list_runs(runs_root(), kind="reuse")


# ---------------------------------------------------------------- tasks: built-in and the user's own

USER_TASKS_KEY = "user_tasks"  # session: task specs (file paths, "file.py:build") loaded this session


def task_folder() -> Path:
    """Where the app keeps task files written or uploaded in the page: <runs>/tasks/."""
    return runs_root() / "tasks"


def task_choices(zoo_only: bool = False) -> list[str]:
    """Built-in task names, then the user's task files: saved in task_folder() and any loaded
    from a path this session."""
    from causal.tasks import TASK_NAMES

    builtins = [t for t in TASK_NAMES if not (zoo_only and get_task(t).needs_pretrained)]
    saved = sorted(str(p) for p in task_folder().glob("*.toml")) if task_folder().is_dir() else []
    session = [t for t in st.session_state.get(USER_TASKS_KEY, []) if t not in saved]
    return builtins + saved + session


def task_label(spec: str) -> str:
    from causal.tasks import TASK_NAMES

    if spec in TASK_NAMES:
        return spec
    try:
        name = get_task(spec).name
    except WorkbenchError:
        name = Path(spec.split(".py:")[0]).stem
    return f"{name} (my task: {spec})"


def add_user_task(spec: str) -> None:
    specs = st.session_state.setdefault(USER_TASKS_KEY, [])
    if spec not in specs:
        specs.append(spec)


def get_task(spec: str, options: dict | None = None):
    """The Task a spec names (a built-in name, a task file, a builder; `options` for a builder),
    checked afresh so that an edited file is read again; a bad one raises its CausalModelError."""
    from causal.tasks import resolve_task

    return resolve_task(spec, options=options)


def save_task_text(text: str, name: str) -> Path:
    """A declarative task spec written (atomically) to task_folder()/<name>.toml."""
    from causal.io import atomic_write_text

    folder = task_folder()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    atomic_write_text(path, text)
    return path


# ---------------------------------------------------------------- zoo models


@st.cache_resource(show_spinner=False)
def _ready_zoo_models() -> dict[tuple[str, int, str], str]:
    """(task, seed, task content hash) -> model directory, for models already checked this server process."""
    return {}


def zoo_model(task: str = DEFAULT_TASK, seed: int = DEFAULT_ZOO_SEED) -> Path:
    """The zoo model's directory; trains it on first use, with a progress bar that says what is
    trained and how long it should take."""
    from experiments import zoo

    ready = _ready_zoo_models()
    key = (task, seed, get_task(task).content_hash())  # an edited task file is another model
    if key in ready:
        return Path(ready[key])
    what = (f"Training the zoo model for {task_label(task)} (seed {seed}): a small network that does the task, "
            f"trained once on this machine and cached in {zoo.cache_root()}")
    bar = st.progress(0.0, text=f"{what} · checking the cache")
    started = time.monotonic()

    def update(fraction: float) -> None:
        f = min(max(float(fraction), 0.0), 1.0)
        elapsed = time.monotonic() - started
        # Training stops early once the model does the task, so the step count gives an upper bound.
        left = (f"at most about {elapsed / f * (1 - f):.0f} s left (it stops early once the model does the task)"
                if f >= 0.03 else "estimating the time left")
        bar.progress(f, text=f"{what} · {f:.0%} after {elapsed:.0f} s, {left}")

    try:
        path = zoo.get_model(task, seed=seed, progress=False, progress_callback=update)
    finally:
        bar.empty()
    ready[key] = str(path)
    return Path(path)


@st.cache_resource(show_spinner="Loading the model (a GGUF file is dequantized the first time, then cached)")
def load_model(spec: str, dtype: str | None = None, device: str = "auto"):
    """One loaded (frozen) interventions.Model per (model spec, dtype, device) and server: a local
    folder, a hub id, a .gguf checkpoint, or a zoo model's folder."""
    from experiments.models import load_model_spec

    return load_model_spec(spec, device=device, dtype=dtype)


def model_info(spec: str, dtype: str | None = None, device: str = "auto") -> dict:
    """What the forms need to offer valid choices: layers, width, components; and who it is."""
    m = load_model(spec, dtype, device)
    return {"name": Path(spec).name if Path(spec).exists() else spec, "path": spec, "n_layers": m.n_layers,
            "hidden_size": m.hidden_size, "components": list(m.components()), "is_lm": bool(m.is_lm),
            "fingerprint": m.fingerprint}


def devices() -> list[str]:
    import torch

    return ["auto", "cpu", *(["cuda"] if torch.cuda.is_available() else [])]


def zoo_is_trained(task: str, seed: int) -> bool:
    """Is the zoo model for this task and seed in the cache (nothing is trained to find out)?"""
    from experiments.zoo import is_trained

    return is_trained(get_task(task), seed)


def zoo_architecture(task: str) -> dict:
    """A zoo model's shape before it is trained: the MLP for vector tasks, the small GPT-2 for prompts."""
    from experiments.zoo.training import LM_ARCHITECTURE, MLP_ARCHITECTURE

    if get_task(task).input_kind == "vectors":
        return {"name": f"zoo MLP for {task_label(task)}", "n_layers": MLP_ARCHITECTURE["n_hidden"],
                "hidden_size": MLP_ARCHITECTURE["hidden_size"], "components": ["block_output"], "is_lm": False}
    return {"name": f"zoo GPT-2 for {task_label(task)}", "n_layers": LM_ARCHITECTURE["n_layer"],
            "hidden_size": LM_ARCHITECTURE["n_embd"], "is_lm": True,
            "components": ["block_output", "attn_output", "mlp_output", "head_output"]}
