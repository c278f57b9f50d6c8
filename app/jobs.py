"""Background jobs: a search, finetune or comparison runs in a thread so that the page stays
responsive and a Cancel click can reach it through `should_stop`; pages poll the `Job`."""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import streamlit as st

from causal.errors import WorkbenchError
from experiments.runs import RunStopped as Cancelled  # raised from a progress callback: Cancel



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
