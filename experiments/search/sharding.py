"""Sweep cells are independent, so a search shards them over processes:

    torchrun --nproc_per_node 4 -m experiments.cli search CONFIG.toml

Rank r runs cells r::world (each cell is seeded by its own key, so the results do not
depend on which rank runs it), records each finished cell in the shared run directory
(a `ShardSink`), and rank 0 starts the run, merges the tables once all ranks are done and
finishes it. Without torchrun (WORLD_SIZE unset) this is a plain run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import torch

from experiments.errors import ConfigError
from experiments.parallel import barrier, gather_text, init_process_group, world
from experiments.search.config import SearchConfig


def run_search_from_config(config: SearchConfig, runs_dir: str | Path | None = None, resume: bool = False,
                           progress: Callable | None = None):
    """`dii search`: the whole search in one process, or this rank's shard under torchrun.
    Returns the loaded Run on rank 0, None on other ranks."""
    from experiments.runs import runs_root
    from experiments.search.search import AlignmentSearch

    me = world()
    run_dir = runs_root(runs_dir) / config.run_name  # named before the device is pinned: the same on every rank
    if me.world > 1 and torch.cuda.is_available() and config.device in ("auto", "cuda") and config.device_map is None:
        config = config.replace(device=f"cuda:{me.local_rank}", name=run_dir.name)
    init_process_group(config.device)
    search = AlignmentSearch.from_config(config)
    if me.is_main:  # the estimate goes in the manifest, beside the time the run takes
        plan = search.plan()
        if progress:
            from experiments.search.cells import Progress

            progress(Progress("note", "", 0, len(search.cells()), message=f"plan: {plan.summary()}"))
    return run_sharded(search, run_dir, resume=resume, progress=progress, rank=me.rank, size=me.world)


def run_sharded(search, run_dir: str | Path, resume: bool = False, progress: Callable | None = None,
                rank: int = 0, size: int = 1):
    from experiments.runs import RunStore, ShardSink, load_run

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
    error = gather_text(error)[0]  # every rank stops on rank 0's error, none hangs at a barrier
    if error is not None:
        raise ConfigError(error)

    mine = search.cells()[rank::size]
    shown = None if progress is None else (lambda p: progress(dataclasses.replace(p, is_main=rank == 0)))
    try:
        result = search.run(progress=shown, cells=mine, resume=resume, sink=ShardSink(store))
        failed = None
    except Exception as e:  # noqa: BLE001  (reported to every rank below)
        result, failed = None, f"rank {rank}: {type(e).__name__}: {e}"
    failures = [f for f in gather_text(failed) if f]
    if failures:
        if rank == 0:
            store.finish("failed", error="; ".join(failures))
        raise ConfigError(f"the sharded search failed ({'; '.join(failures)}); finished cells are saved, rerun with --resume")
    if rank != 0:
        barrier()
        return None
    order = [c.key for c in search.cells()]
    store.end(order, timings={**search.timings, "rank0_run_s": search.timings.get("run_s")},
              data=result.manifest.get("data", {}) if result else {})
    barrier()
    return load_run(run_dir)
