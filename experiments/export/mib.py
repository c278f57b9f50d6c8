"""Export a search run's subspaces as an MIB causal-variable-track submission: one folder per
task, model and variable, `{TASK}_{MODEL}_{VARIABLE}/`, holding for each site a triplet
`{unit}_featurizer`, `{unit}_inverse_featurizer` and `{unit}_indices`, in the file layout of
CausalAbstraction's `Featurizer.save_modules` (read from its source; written here).

- A featurizer file is `{"model_info": {featurizer_class, inverse_featurizer_class,
  n_features, additional_config: {rotation_matrix, requires_grad}}, "state_dict": ...}`,
  only tensors, strings, numbers and booleans, so `torch.load(weights_only=True)` reads it.
  The rotation is pyvene's LowRankRotateLayer weight [d, k] (our rotation transposed) under
  torch's orthogonal parametrization, whose state dict is what the track's loader expects.
- A unit is `ResidualStream(Layer-{l},Token-{position id})`. The track names a residual
  stream by the block it enters (block_input), so our block_output of layer l is its layer
  l + 1; the last block's output enters no block and is not exported.
- The indices file is JSON: the feature indices used (all k of a DAS subspace).

Task, model and variable names follow the track's `verify_submission.py`; a run whose task or
model the track does not have is refused, naming the valid pairs.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from causal.io import write_dir_atomic
from experiments.errors import ConfigError

# The track's tasks, their variables, and the (task, model class) pairs it scores.
MIB_TASKS = {"ioi": "ioi_task", "mcqa4": "4_answer_MCQA", "arithmetic_carry": "arithmetic", "ravel": "ravel_task"}
MIB_VARIABLES = {
    "ioi": {"P": "output_position", "T": "output_token"},
    "mcqa4": {"P": "answer_pointer", "T": "answer"},
    "arithmetic_carry": {"C": "ones_carry"},
    "ravel": {"Country": "Country", "Continent": "Continent", "Language": "Language"},
}
VALID_TASK_MODELS = {
    "ioi_task": ("GPT2LMHeadModel", "Qwen2ForCausalLM", "Gemma2ForCausalLM", "LlamaForCausalLM"),
    "4_answer_MCQA": ("Qwen2ForCausalLM", "Gemma2ForCausalLM", "LlamaForCausalLM"),
    "arithmetic": ("Gemma2ForCausalLM", "LlamaForCausalLM"),
    "ravel_task": ("Gemma2ForCausalLM", "LlamaForCausalLM"),
}
MIB_POSITIONS = {"last": "last_token"}  # other named positions keep their name as the token-position id
FEATURIZER, INVERSE = "SubspaceFeaturizerModule", "SubspaceInverseFeaturizerModule"


class _RotateLayer(torch.nn.Module):
    """The shape of pyvene's LowRankRotateLayer: a [d, k] weight, features = x @ weight."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = torch.nn.Parameter(weight.clone())


class _Holder(torch.nn.Module):
    """Holds the rotate layer as `rotate`, like both of the track's subspace modules."""

    def __init__(self, rotate: torch.nn.Module):
        super().__init__()
        self.rotate = rotate


def featurizer_files(rotation: torch.Tensor) -> tuple[dict, dict]:
    """(featurizer, inverse featurizer) checkpoints for a [k, d] rotation with orthonormal rows."""
    weight = rotation.detach().float().cpu().T.contiguous()  # [d, k]
    rotate = torch.nn.utils.parametrizations.orthogonal(_RotateLayer(weight))
    state = {k: v.detach().clone() for k, v in _Holder(rotate).state_dict().items()}
    info = {"featurizer_class": FEATURIZER, "inverse_featurizer_class": INVERSE, "n_features": int(weight.shape[1]),
            "additional_config": {"rotation_matrix": rotate.weight.detach().clone(), "requires_grad": False}}
    return {"model_info": info, "state_dict": state}, {"model_info": info, "state_dict": dict(state)}


def unit_name(layer: int, position: str) -> str:
    return f"ResidualStream(Layer-{layer + 1},Token-{MIB_POSITIONS.get(position, position)})"


def export_mib(run, out: str | Path, model_class: str, n_layers: int) -> list[Path]:
    """Write the run's single-variable subspaces (its main method, first seed) under `out`;
    the folders written. `model_class` is the model's architecture (e.g. "GPT2LMHeadModel"),
    `n_layers` its number of blocks."""
    task_name = str(run.config.get("task"))
    if task_name not in MIB_TASKS:
        raise ConfigError(f"task {task_name!r} is not one of the MIB causal-variable track's; it has "
                          f"{sorted(MIB_TASKS)} (as ours: ioi, mcqa4, arithmetic_carry, ravel)")
    task = MIB_TASKS[task_name]
    if model_class not in VALID_TASK_MODELS[task]:
        pairs = [f"{t} with {m}" for t, ms in VALID_TASK_MODELS.items() for m in ms]
        raise ConfigError(f"the MIB track has no {task} results for {model_class}; the pairs it scores: {pairs}")
    main = run.config.get("method", "das")
    seed = (run.config.get("seeds") or [run.config.get("seed", 0)])[0]  # the seed whose artifacts are the run's own
    rows = [r for r in run.rows if r.get("method") == main and r.get("variable") in MIB_VARIABLES[task_name]
            and r.get("component") == "block_output" and r.get("seed", seed) == seed]
    exported: dict[str, list[tuple[str, dict, dict, list]]] = {}
    for row in rows:
        if row["layer"] >= n_layers - 1:
            continue  # the last block's output enters no block: the track has no name for it
        subspace = run.load_subspace(row["site"], row["variable"])
        if subspace.slices:  # a joint subspace: the track scores one variable at a time
            continue
        featurizer, inverse = featurizer_files(subspace.rotation)
        folder = f"{task}_{model_class}_{MIB_VARIABLES[task_name][row['variable']]}"
        exported.setdefault(folder, []).append((unit_name(row["layer"], str(row["position"])), featurizer, inverse,
                                                list(range(subspace.k))))
    if not exported:
        raise ConfigError(f"run {run.name!r} has no single-variable block_output subspaces of "
                          f"{sorted(MIB_VARIABLES[task_name])} to export")

    def write(tmp: Path) -> None:
        for folder, units in exported.items():
            (tmp / folder).mkdir()
            for unit, featurizer, inverse, indices in units:
                torch.save(featurizer, tmp / folder / f"{unit}_featurizer")  # the track reads torch files
                torch.save(inverse, tmp / folder / f"{unit}_inverse_featurizer")
                (tmp / folder / f"{unit}_indices").write_text(json.dumps(indices))

    write_dir_atomic(Path(out), write)
    return [Path(out) / f for f in exported]
