"""Flags and data loading shared by the two IIA sides (no nnsight, no peers imported)."""

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file


def iia_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="One side of the IIA comparison (same data, same steps).")
    p.add_argument("--data", required=True, help="folder written by bench/iia_data.py")
    p.add_argument("--layer", type=int, default=1)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def load(data_dir: str):
    meta = json.loads((Path(data_dir) / "meta.json").read_text())
    return meta, load_file(str(Path(data_dir) / "data.safetensors"))


def batch_order(n: int, batch: int, steps: int, seed: int) -> list[torch.Tensor]:
    """The same shuffled minibatches on both sides: epochs of a seeded permutation."""
    g = torch.Generator().manual_seed(seed)
    out, order, pos = [], torch.randperm(n, generator=g), 0
    for _ in range(steps):
        if pos + batch > n:
            order, pos = torch.randperm(n, generator=g), 0
        out.append(order[pos:pos + batch])
        pos += batch
    return out


def iia(answer_logits: torch.Tensor, answer_ids: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of examples whose argmax over the task's answer tokens is the counterfactual answer."""
    pred = answer_ids[answer_logits[:, answer_ids].argmax(-1)]
    return float((pred == labels).float().mean())
