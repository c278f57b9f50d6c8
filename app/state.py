"""What the pages share: where runs live, the zoo model made ready once per server, error
display, and background jobs (a search or finetune runs in a thread so that the page stays
responsive and a Cancel click can reach it through `should_stop`)."""

from __future__ import annotations

import io
import sys
import threading
import time
import traceback
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

# `streamlit run app/main.py` puts app/ on sys.path, not the repository root.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import streamlit as st  # noqa: E402

from causal.errors import WorkbenchError  # noqa: E402

DEFAULT_TASK = "hierarchical_equality"
DEFAULT_ZOO_SEED = 0
# name -> st.Page, filled by main.py; empty when a page file runs on its own (tests).
PAGES: dict = {}


def page_link(name: str, label: str) -> None:
    if name in PAGES:
        st.page_link(PAGES[name], label=label)


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


def zip_directory(directory: Path) -> bytes:
    """A download of an artifact directory, the folder itself at the zip's top level."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(Path(directory).rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(Path(directory).parent))
    return buf.getvalue()


@contextmanager
def user_errors():
    """Show an error the user can fix as st.error with its message, never a traceback."""
    try:
        yield
    except WorkbenchError as e:
        st.error(str(e))


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
    from experiments.runs import write_text_atomic

    folder = task_folder()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    write_text_atomic(path, text)
    return path


# ---------------------------------------------------------------- zoo models


@st.cache_resource(show_spinner=False)
def _ready_zoo_models() -> dict[tuple[str, int, str], str]:
    """(task, seed, task content hash) -> model directory, for models already checked this server process."""
    return {}


def zoo_model(task: str = DEFAULT_TASK, seed: int = DEFAULT_ZOO_SEED) -> Path:
    """The zoo model's directory; trains it on first use with a visible progress bar."""
    from experiments import zoo

    ready = _ready_zoo_models()
    key = (task, seed, get_task(task).content_hash())  # an edited task file is another model
    if key in ready:
        return Path(ready[key])
    bar = st.progress(0.0, text=f"Preparing the zoo model for {task_label(task)} (seed {seed}); "
                                "the first start trains it, later starts reuse it")
    try:
        path = zoo.get_model(task, seed=seed, progress=False,
                             progress_callback=lambda f: bar.progress(min(max(float(f), 0.0), 1.0)))
    finally:
        bar.empty()
    ready[key] = str(path)
    return Path(path)


# ---------------------------------------------------------------- background jobs


class Cancelled(Exception):
    """Raised from a progress callback to end work that has no should_stop hook of its own."""


@dataclass
class Job:
    """A long computation in a thread. The thread writes progress here; pages read it."""

    name: str
    progress: float = 0.0
    message: str = ""
    losses: list[float] = field(default_factory=list)
    result: Any = None
    error: str | None = None
    crashed: str | None = None  # an unexpected exception's traceback (a bug, not a user error)
    done: bool = False
    cancelled: bool = False
    started: float = field(default_factory=time.time)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return not self.done

    def should_stop(self) -> bool:
        return self.stop.is_set()

    def cancel(self) -> None:
        self.stop.set()


def start_job(key: str, name: str, work: Callable[[Job], Any]) -> Job:
    """Run `work(job)` in a daemon thread; the job is kept in st.session_state[key]."""
    job = Job(name=name)

    def target():
        try:
            job.result = work(job)
        except WorkbenchError as e:
            job.error = str(e)
        except Exception:  # noqa: BLE001 - shown as a bug report, the server stays up
            job.crashed = traceback.format_exc()
        finally:
            job.cancelled = job.stop.is_set()
            job.done = True

    job.thread = threading.Thread(target=target, name=f"dii-{key}", daemon=True)
    st.session_state[key] = job
    job.thread.start()
    return job


def get_job(key: str) -> Job | None:
    return st.session_state.get(key)


def job_running(key: str) -> bool:
    job = get_job(key)
    return job is not None and job.running


def show_job_outcome(job: Job) -> None:
    if job.error:
        st.error(job.error)
    elif job.crashed:
        st.error(f"{job.name} failed unexpectedly; this is a bug, please report it with this trace:")
        st.code(job.crashed)
    elif job.cancelled:
        st.warning(f"{job.name} was cancelled; finished parts are kept.")


@st.cache_resource(show_spinner="Loading the model")
def load_model(path: str):
    """One loaded (frozen) interventions.Model per path and server process."""
    from interventions import load_model as _load

    return _load(path)


def model_info(path: str) -> dict:
    """What the search form needs to offer valid choices: layers, width, components."""
    m = load_model(path)
    return {"name": Path(path).name, "path": path, "n_layers": m.n_layers, "hidden_size": m.hidden_size,
            "components": list(m.components()), "is_lm": bool(m.is_lm)}
