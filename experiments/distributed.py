"""Sweep cells are independent, so a search shards them over processes:

    torchrun --nproc_per_node 4 -m experiments.cli search CONFIG.toml

Rank r runs cells r::world (each cell is seeded by its own key, so the results do not
depend on which rank runs it), records each finished cell in the shared run directory,
and rank 0 merges the tables once all ranks are done. gloo on CPU, nccl on GPUs (one GPU
per rank, cuda:LOCAL_RANK). Without torchrun (WORLD_SIZE unset) this is a plain run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist

from experiments.config import SearchConfig
from experiments.errors import ConfigError


def world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def init_process_group() -> None:
    if dist.is_initialized():
        return
    _, size, local = world()
    if size <= 1:
        return
    if torch.cuda.is_available():
        if local >= torch.cuda.device_count():
            raise ConfigError(f"rank {local} has no GPU: this machine has {torch.cuda.device_count()}; "
                              f"run torchrun with --nproc_per_node {torch.cuda.device_count()} (one rank per GPU), "
                              "or hide the GPUs (CUDA_VISIBLE_DEVICES=) to shard on CPU with gloo")
        torch.cuda.set_device(local)
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")


def destroy_process_group() -> None:
    """End this process's process group, if it has one, before the interpreter exits: left to
    the exit, gloo's threads are torn down while still joinable and a rank can abort
    ("terminate called without an active exception") after its work is done."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def run_search_from_config(config: SearchConfig, runs_dir: str | Path | None = None, resume: bool = False,
                           progress: Callable | None = None):
    """`dii search`: the whole search in one process, or this rank's shard under torchrun.
    Returns the loaded Run on rank 0, None on other ranks."""
    from experiments.runs import runs_root
    from experiments.search import AlignmentSearch

    rank, size, local = world()
    run_dir = runs_root(runs_dir) / config.run_name  # named before the device is pinned: the same on every rank
    if size > 1 and torch.cuda.is_available() and config.device in ("auto", "cuda") and config.device_map is None:
        config = config.replace(device=f"cuda:{local}", name=run_dir.name)
    init_process_group()
    search = AlignmentSearch.from_config(config)
    return run_sharded(search, run_dir, resume=resume, progress=progress, rank=rank, size=size)


def run_sharded(search, run_dir: str | Path, resume: bool = False, progress: Callable | None = None,
                rank: int = 0, size: int = 1):
    from experiments.runs import RunStore, load_run

    run_dir = Path(run_dir)
    if size <= 1:
        search.run(progress=progress, run_dir=run_dir, resume=resume)
        return load_run(run_dir)

    store = RunStore(run_dir)
    error = None
    if rank == 0:
        try:
            store.start({**search.manifest(), "world_size": size}, resume=resume, kind="search")
        except ConfigError as e:
            error = str(e)
    error = _broadcast(error)  # every rank stops on rank 0's error, none hangs at a barrier
    if error is not None:
        raise ConfigError(error)

    mine = search.cells()[rank::size]
    try:
        result = search.run(progress=progress, run_dir=run_dir, resume=resume, cells=mine, is_main=(rank == 0),
                            start_store=False, finish_store=False)
        failed = None
    except Exception as e:  # noqa: BLE001  (reported to every rank below)
        result, failed = None, f"rank {rank}: {type(e).__name__}: {e}"
    failures = _gather(failed)
    if any(failures):
        if rank == 0:
            store.finish("failed", error="; ".join(f for f in failures if f))
        msg = "; ".join(f for f in failures if f)
        raise ConfigError(f"the sharded search failed ({msg}); finished cells are saved, rerun with --resume")
    if rank != 0:
        dist.barrier()
        return None
    store.merge(order=[c.key for c in search.cells()])
    n_done = len(store.finished_cells())
    store.finish("finished" if n_done >= len(search.cells()) else "interrupted",
                 timings={**search.timings, "rank0_run_s": search.timings.get("run_s")},
                 data=result.manifest.get("data", {}) if result else {})
    dist.barrier()
    return load_run(run_dir)


def _broadcast(text: str | None) -> str | None:
    return _gather(text)[0]


def _gather(text: str | None) -> list[str | None]:
    """Every rank's text (None allowed), as byte tensors: no pickled objects between processes."""
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    data = b"\x00" if text is None else b"\x01" + text.encode("utf-8")
    size = dist.get_world_size()
    length = torch.tensor([len(data)], dtype=torch.int64, device=device)
    lengths = [torch.zeros_like(length) for _ in range(size)]
    dist.all_gather(lengths, length)
    width = int(max(int(n) for n in lengths))
    buf = torch.zeros(width, dtype=torch.uint8, device=device)
    buf[: len(data)] = torch.tensor(list(data), dtype=torch.uint8, device=device)
    bufs = [torch.zeros_like(buf) for _ in range(size)]
    dist.all_gather(bufs, buf)
    out = []
    for b, n in zip(bufs, lengths):
        raw = bytes(b[: int(n)].cpu().tolist())
        out.append(None if raw[:1] == b"\x00" else raw[1:].decode("utf-8"))
    return out


# ---- the process group of a finetune (every rank trains on its share of each step)
@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> Dist:
    """Under torchrun (WORLD_SIZE > 1): one process group, gloo on CPU, nccl on CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def all_reduce_sum(t: torch.Tensor, d: Dist) -> torch.Tensor:
    if d.world > 1:
        import torch.distributed as dist

        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t
