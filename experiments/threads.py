"""How many CPU threads a run computes with, set in one place for the CLI and the app's jobs
alike (a job's thread does not inherit the main thread's setting), and recorded in every
manifest (`device_name`). `$DII_THREADS` overrides the default of one per core."""

from __future__ import annotations

import contextlib
import os
import platform

import torch

SMALL_MODEL_PARAMS = 5_000_000


def cpu_threads() -> int:
    """$DII_THREADS, else one per core this process may use."""
    text = os.environ.get("DII_THREADS", "")
    if text.strip().isdigit() and int(text) > 0:
        return int(text)
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def use_cpu_threads() -> int:
    """Set torch's threads for the calling thread to cpu_threads() (the CLI at start, each
    app job in its own thread) and return the count."""
    n = cpu_threads()
    torch.set_num_threads(n)
    return n


@contextlib.contextmanager
def threads_for(model):
    """On CPU, a small model's matmuls are microseconds: handing them to several threads
    costs more than it saves (30x slower on a busy 2-core machine), so run them on one."""
    n_params = sum(p.numel() for p in model.hf.parameters())
    if model.device.type != "cpu" or n_params > SMALL_MODEL_PARAMS or torch.get_num_threads() == 1:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"{device.type} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
