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

DEFAULT_TASK = "hierarchical_equality_tokens"  # reads prompts, so the finetune page works on it too
DEFAULT_ZOO_SEED = 0
# name -> st.Page, filled by main.py; empty when a page file runs on its own (tests).
PAGES: dict = {}


def page_link(name: str, label: str, **query_params: str) -> None:
    """A link to another page; `query_params` open it on a view (run=..., task=...)."""
    if name in PAGES:
        st.page_link(PAGES[name], label=label, query_params=query_params or None)

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
    """The finetune page's runs: LoReFT arms from one learned subspace (experiments.reuse)."""
    from experiments.runs import list_runs

    return list_runs(runs_root(), kind="reuse")


def run_label(row: dict) -> str:
    """A run in a selectbox: its name, and its status unless it finished."""
    status = row.get("status")
    return row["name"] if status == "finished" else f"{row['name']} ({status})"


def delete_button(name: str, key: str) -> None:
    """"Delete this run", which asks for confirmation in a dialog before removing the folder."""

    @st.dialog(f"Delete run {name}?")
    def confirm() -> None:
        st.write(f"This removes the folder `{runs_root() / name}` and everything in it: results, curves and "
                 "saved subspaces or interventions. It cannot be undone.")
        c1, c2 = st.columns(2)
        if c1.button("Delete", type="primary", key=f"{key}_yes"):
            from experiments.runs import delete_run

            try:
                delete_run(name, runs_root())
            except WorkbenchError as e:
                st.error(str(e))
                return
            for shared in ("run", "finetune_run", "compare_run"):  # the shared run choices that named it
                if st.session_state.get(shared) == name:
                    del st.session_state[shared]
            st.session_state["deleted_run"] = name
            st.rerun()
        if c2.button("Keep it", key=f"{key}_no"):
            st.rerun()

    if st.button("Delete this run", key=key, help="asks for confirmation first"):
        confirm()


def run_picker(label: str, rows: list[dict], *, shared: str, key: str) -> str:
    """Pick one of the listed runs (shared between pages and in the URL), with its status in
    the list and "Delete this run" beside it."""
    labels = {r["name"]: run_label(r) for r in rows}
    c1, c2 = st.columns([4, 1])
    name = choose(label, list(labels), shared=shared, key=key, where=c1, format_func=labels.get)
    with c2:
        st.write("")  # level with the selectbox
        delete_button(name, key=f"{key}_delete")
    return name


def deleted_notice() -> None:
    name = st.session_state.pop("deleted_run", None)
    if name:
        st.toast(f"Run {name!r} deleted.")


# ---------------------------------------------------------------- what survives a page change and a reload

_KEPT = "_kept_widget_keys"


def kept(key: str) -> str:
    """A widget key whose value survives a page change (Streamlit forgets the state of widgets
    a page does not draw; keep_widget_values() in main.py re-stores these every run)."""
    st.session_state.setdefault(_KEPT, set()).add(key)
    return key


def keep_widget_values() -> None:
    for key in st.session_state.get(_KEPT, set()):
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


def choose(label: str, options, *, shared: str, key: str, default=None, where=None, **kwargs):
    """A selectbox whose choice is shared by every page that offers it and written to the URL
    (?shared=value), so a page change, a reload or a link opens the same view. A shared value
    that is not among `options` leaves the widget on `default` (the first option if none)."""
    where = where or st
    options = list(options)
    if not options:
        return None
    as_text = {str(o): o for o in options}
    # The URL first (a link or a reload; pages write it on every run, so otherwise it agrees with
    # the session), then the session (a page change).
    current = as_text.get(st.query_params.get(shared, ""), st.session_state.get(shared))
    if current not in options:
        current = st.session_state.get(key) if st.session_state.get(key) in options else (
            default if default in options else options[0])
    if st.session_state.get(key) != current:
        st.session_state[key] = current

    def changed() -> None:  # the user's pick wins over the URL it came with
        st.session_state[shared] = st.session_state[key]
        st.query_params[shared] = str(st.session_state[key])

    value = where.selectbox(label, options, key=key, on_change=changed, **kwargs)
    if st.session_state.get(shared) is None or st.session_state.get(shared) in options:
        st.session_state[shared] = value
    st.query_params[shared] = str(value)
    return value


def forget_url(*names: str) -> None:
    """Query parameters that do not describe this page's view."""
    for name in names:
        if name in st.query_params:
            del st.query_params[name]


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


# ---------------------------------------------------------------- background jobs


from experiments.runs import RunStopped as Cancelled  # noqa: E402  (raised from a progress callback: Cancel)


@dataclass
class Job:
    """A long computation in a thread. The thread writes progress here; pages read it."""

    name: str
    context: Any = None  # what the job's messages belong to (a task, a run): pages show them only there
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


def start_job(key: str, name: str, work: Callable[[Job], Any], context: Any = None) -> Job:
    """Run `work(job)` in a daemon thread; the job is kept in st.session_state[key]."""
    job = Job(name=name, context=context)

    def target():
        try:
            job.result = work(job)
        except Cancelled:  # the Cancel button, raised from a progress callback: the run says "interrupted"
            pass
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


def show_outcome_beside(key: str, context: Any) -> None:
    """The outcome of the ended job in st.session_state[key], if it belongs to `context` (the
    run the page shows)."""
    job = get_job(key)
    if job is not None and not job.running and job.context == context:
        show_job_outcome(job)


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
