"""torch.distributed under torchrun, for the searches (cells sharded over ranks) and the
finetunes (each step's examples shared out): the rank, the process group (gloo on CPU, nccl
on GPUs, one GPU per rank), and the few collectives they use. Without torchrun (WORLD_SIZE
unset) every function here is a no-op on one process."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from experiments.errors import ConfigError


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def world() -> Dist:
    """This process's place among torchrun's ranks, from its environment."""
    return Dist(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0)))


def init_process_group(device: str | None = None) -> Dist:
    """The process group of a torchrun launch (WORLD_SIZE > 1): nccl with one GPU per rank when
    CUDA is there and `device` does not say cpu, else gloo."""
    me = world()
    if me.world <= 1 or dist.is_initialized():
        return Dist(dist.get_rank(), dist.get_world_size(), me.local_rank) if dist.is_initialized() else me
    use_cuda = torch.cuda.is_available() and not (device or "").startswith("cpu")
    if use_cuda:
        if me.local_rank >= torch.cuda.device_count():
            raise ConfigError(f"rank {me.local_rank} has no GPU: this machine has {torch.cuda.device_count()}; "
                              f"run torchrun with --nproc_per_node {torch.cuda.device_count()} (one rank per GPU), "
                              "or hide the GPUs (CUDA_VISIBLE_DEVICES=) to shard on CPU with gloo")
        torch.cuda.set_device(me.local_rank)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), me.local_rank)


def destroy_process_group() -> None:
    """End this process's process group, if it has one, before the interpreter exits: left to
    the exit, gloo's threads are torn down while still joinable and a rank can abort
    ("terminate called without an active exception") after its work is done."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor, d: Dist) -> torch.Tensor:
    if d.world > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def gather_text(text: str | None) -> list[str | None]:
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
