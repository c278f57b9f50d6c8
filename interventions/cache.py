"""Activations at chosen sites for a whole dataset, collected once in batches and reused
across epochs and sweep cells. Kept on device, or spilled to disk as safetensors shards
(one per batch) when a directory is given or the in-memory total would exceed max_memory."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch
from safetensors.torch import load_file, save_file

from interventions.apply import collect_many
from interventions.errors import InterventionError
from interventions.model import Model, Site


class ActivationCache:
    """`cache[i]` is {site.key: Tensor[B_i, d]} for batch i; `cache.all(site)` concatenates."""

    def __init__(
        self,
        model: Model,
        sites: list[Site],
        max_memory: int | None = None,
        directory: str | os.PathLike | None = None,
        device=None,
    ):
        self.model = model
        self.sites = [model.check_site(s) for s in sites]
        self.device = torch.device(device) if device is not None else model.device
        self.max_memory = max_memory
        self._own_dir = False
        self.directory = Path(directory) if directory is not None else None
        self._shards: list[dict[str, torch.Tensor] | Path] = []
        self._bytes_in_memory = 0

    # ---------------------------------------------------------------- building
    @classmethod
    def build(
        cls,
        model: Model,
        sites: list[Site],
        batches: Iterable | None = None,
        *,
        dataset: list | None = None,
        encode_fn: Callable | None = None,
        batch_size: int = 64,
        max_memory: int | None = None,
        directory=None,
        device=None,
        progress: Callable[[int, int], None] | None = None,
    ) -> "ActivationCache":
        """From ready `batches` (Batch objects), or from `dataset` items cut into chunks of
        `batch_size` and turned into Batches by `encode_fn(chunk)`."""
        if batches is None:
            if dataset is None or encode_fn is None:
                raise InterventionError("give ActivationCache.build either batches, or dataset and encode_fn")
            batches = (encode_fn(dataset[i : i + batch_size]) for i in range(0, len(dataset), batch_size))
            total = (len(dataset) + batch_size - 1) // batch_size
        else:
            batches = list(batches)
            total = len(batches)
        cache = cls(model, sites, max_memory=max_memory, directory=directory, device=device)
        for i, batch in enumerate(batches):
            cache.add(batch)
            if progress is not None:
                progress(i + 1, total)
        return cache

    def add(self, batch) -> None:
        """Collect one batch's activations (one forward) and store them."""
        acts = collect_many(self.model, batch, self.sites)
        size = sum(t.numel() * t.element_size() for t in acts.values())
        spill = self.directory is not None and self.max_memory is None
        spill = spill or (self.max_memory is not None and self._bytes_in_memory + size > self.max_memory)
        if spill:
            self._shards.append(self._write_shard(acts))
        else:
            self._shards.append({k: v.to(self.device) for k, v in acts.items()})
            self._bytes_in_memory += size

    def _write_shard(self, acts: dict[str, torch.Tensor]) -> Path:
        if self.directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix="dii-acts-"))
            self._own_dir = True
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"shard_{len(self._shards):06d}.safetensors"
        tmp = path.with_suffix(".tmp")
        save_file({k: v.detach().contiguous().cpu() for k, v in acts.items()}, str(tmp))
        os.replace(tmp, path)  # never a half-written shard
        return path

    # ---------------------------------------------------------------- reading
    def __len__(self) -> int:
        return len(self._shards)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        shard = self._shards[i]
        if isinstance(shard, Path):
            try:
                return load_file(str(shard), device=str(self.device))
            except Exception as e:  # noqa: BLE001
                raise InterventionError(f"activation shard {shard} is unreadable ({e}); rebuild the cache") from None
        return shard

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for i in range(len(self)):
            yield self[i]

    def all(self, site: Site | str) -> torch.Tensor:
        """Every example's activation at `site`, concatenated over batches: [N, d]."""
        key = site.key if isinstance(site, Site) else site
        if key not in {s.key for s in self.sites}:
            raise InterventionError(f"site {key} is not in this cache; cached sites: {[s.key for s in self.sites]}")
        return torch.cat([shard[key] for shard in self], dim=0)

    @property
    def n_spilled(self) -> int:
        return sum(isinstance(s, Path) for s in self._shards)

    def close(self) -> None:
        """Delete shards this cache wrote to a temporary directory."""
        if self._own_dir and self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
        self._shards = []
        self._bytes_in_memory = 0
