"""Why reuse matters: LoReFT started from a DAS subspace against the same LoReFT started at
random, same data, budget, evaluation and seed. Used by the app's finetune page and by
scripts/reuse_experiment.py, so both run the same experiment."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from causal.io import json_hash
from experiments.finetune.config import FinetuneConfig
from experiments.finetune.train import FinetuneResult, finetune


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


def arm_dirname(label: str) -> str:
    return label.replace(" ", "_").replace(",", "")


def run_arms(arms: dict[str, FinetuneConfig], out_root: str | Path | None = None,
             progress: Callable[[str, int, int, float], None] | None = None,
             about: dict | None = None) -> dict[str, FinetuneResult]:
    """Train each arm in turn; `progress(arm, step, n_steps, loss)`. With out_root, the arms
    are one run of kind "reuse" (listed, reopened with load_arms and deleted like any run):
    out_root/manifest.json, and each arm a finetune run in out_root/<arm>. `about` (where the
    subspace came from) goes into the manifest's config."""
    store = None
    if out_root is not None:
        from experiments.runs import RunStore, run_versions

        config = {**(about or {}), "arms": {label: cfg.to_dict() for label, cfg in arms.items()}}
        store = RunStore(out_root)
        store.start({"config": config, "config_hash": json_hash(config), "n_cells": None, "versions": run_versions()},
                    kind="reuse")
    results = {}
    try:
        for label, cfg in arms.items():
            cb = None if progress is None else (lambda s, n, l, a=label: progress(a, s, n, l))
            out = None if out_root is None else Path(out_root) / arm_dirname(label)
            results[label] = finetune(cfg, progress=cb, out_dir=out, verbose=False)
            if store is not None:  # each arm as it ends, so the run lists what is done
                store.update_manifest(arms=_arm_dirs(results))
    except BaseException as e:
        if store is not None:
            store.finish_raised(e, arms=_arm_dirs(results))
        raise
    if store is not None:
        store.finish("finished", arms=_arm_dirs(results),
                     result={label: {"final_accuracy": r.final_accuracy, "steps": r.steps} for label, r in results.items()})
    return results


def _arm_dirs(results: dict) -> dict[str, str]:
    return {label: arm_dirname(label) for label in results}


def load_arms(path: str | Path) -> dict[str, FinetuneResult]:
    """The finished arms of a reuse run, by label, as run_arms returned them."""
    from experiments.runs import load_run

    return {label: FinetuneResult.from_dict(record) for label, record in load_run(path).arms().items()}
