"""Why reuse matters: LoReFT started from a DAS subspace against the same LoReFT started at
random, same data, budget, evaluation and seed. Used by the app's finetune page and by
scripts/reuse_experiment.py, so both run the same experiment."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from experiments.finetune import FinetuneConfig, FinetuneResult, finetune


def reuse_arms(init_from: str | Path, with_random: bool = True, freeze_rotation: bool = False,
               with_frozen: bool = False, **common) -> dict[str, FinetuneConfig]:
    """The arms: "DAS init" (R starts from the subspace), optionally "random init" and
    "DAS init, frozen" (R fixed, W and b train); `common` is every other FinetuneConfig field."""
    common = {"method": "loreft", **common}
    arms = {"DAS init": FinetuneConfig(**common, init_from=str(init_from), freeze_rotation=freeze_rotation)}
    if with_random:
        arms["random init"] = FinetuneConfig(**common, freeze_rotation=freeze_rotation)
    if with_frozen:
        arms["DAS init, frozen"] = FinetuneConfig(**common, init_from=str(init_from), freeze_rotation=True)
    return arms


def run_arms(arms: dict[str, FinetuneConfig], out_root: str | Path | None = None,
             progress: Callable[[str, int, int, float], None] | None = None) -> dict[str, FinetuneResult]:
    """Train each arm in turn; `progress(arm, step, n_steps, loss)`. With out_root, each arm is a
    finetune run under out_root/<arm>."""
    results = {}
    for label, cfg in arms.items():
        cb = None if progress is None else (lambda s, n, l, a=label: progress(a, s, n, l))
        out = None if out_root is None else Path(out_root) / label.replace(" ", "_").replace(",", "")
        results[label] = finetune(cfg, progress=cb, out_dir=out, verbose=False)
    return results
