"""Export a trained LoReFT intervention to the directory format pyreft's `ReftModel.load`
reads (pyreft 0.1.0 on pyvene 0.1.8), so it can move into an existing pyreft pipeline.

pyvene's `IntervenableModel.save` writes `config.json` (an IntervenableConfig: one
representation per intervention, their class names and dimensions, the key order) and one
`intkey_<key>.bin` per intervention holding its state dict. pyreft's LoreftIntervention
keeps its own compact state dict: "weight" [r, d] and "bias" [r] (W and b) and
"rotate_layer" [d, r] (R transposed: columns orthonormal). Key order follows pyreft's
recipe: with untied weights, every layer's first-n intervention, then every layer's last-n.

pyvene reads those `.bin` files with torch.load, so this is the one place in the project
where torch.save writes a file: plain dicts of tensors only (no objects), which torch.load
with weights_only=True reads. Our own artifacts stay safetensors + JSON.

Not exported: DiReFT (pyreft's DireftIntervention keeps W2 orthonormal through a
parametrization, ours leaves it free, so the weights would not round-trip).
"""

from __future__ import annotations

from pathlib import Path

import torch

from experiments.errors import ConfigError
from causal.io import write_dir_atomic
from experiments.reft_artifact import ReftInterventions, load_reft

PYVENE_COMPONENTS = {"block_output": "block_output", "mlp_output": "mlp_output", "attn_output": "attention_output"}
LOREFT_CLASS = "<class 'pyreft.interventions.LoreftIntervention'>"


def pyreft_order(reft: ReftInterventions) -> list[tuple[str, str]]:
    """[(our unit key, pyvene key)] in pyreft's order."""
    component = PYVENE_COMPONENTS[reft.component]
    groups = ["all"] if reft.share_weights else [g for g, _ in reft.spec.groups]
    out = []
    for i, g in enumerate(groups):  # pyvene numbers repeated (layer, component) pairs #0, #1, ...
        for layer in reft.layers:
            out.append((reft.unit_key(layer, g), f"layer_{layer}_comp_{component}_unit_pos_nunit_1#{i}"))
    return out


def export_pyreft(reft: ReftInterventions | str | Path, directory: str | Path, transformers_version: str | None = None) -> Path:
    """Write `directory` (config.json + intkey_*.bin) for `pyreft.ReftModel.load(directory, model)`."""
    if not isinstance(reft, ReftInterventions):
        reft = load_reft(reft)
    if reft.method != "loreft":
        raise ConfigError(f"only LoReFT exports to pyreft (got {reft.method!r}): pyreft's DiReFT keeps W2 "
                          f"orthonormal and ours does not, so its weights would not load as trained")
    if reft.component not in PYVENE_COMPONENTS:
        raise ConfigError(f"component {reft.component!r} has no pyvene name; export interventions on "
                          f"{sorted(PYVENE_COMPONENTS)}")
    if transformers_version is None:
        import transformers

        transformers_version = transformers.__version__
    order = pyreft_order(reft)
    representations, state_dicts = [], {}
    for ours, key in order:
        layer, component, _ = ReftInterventions.parse_key(ours)
        module = reft.units[ours]
        # RepresentationConfig fields: layer component unit max_number_of_units low_rank_dimension
        # intervention_type intervention subspace_partition group_key intervention_link_key moe_key
        # source_representation hidden_source_representation latent_dim
        representations.append([layer, PYVENE_COMPONENTS[component], "pos", 1, reft.rank,
                                None, None, None, None, None, None, None, None, None])
        with torch.no_grad():
            state_dicts[key] = {
                "weight": module.learned_source.weight.detach().float().cpu().clone(),
                "bias": module.learned_source.bias.detach().float().cpu().clone(),
                "rotate_layer": module.rotation.detach().float().cpu().T.contiguous().clone(),
            }
    config = {
        "intervention_constant_sources": [True] * len(order),
        "intervention_dimensions": [reft.d] * len(order),
        "intervention_types": [LOREFT_CLASS] * len(order),
        "mode": "parallel",
        "representations": representations,
        "sorted_keys": [key for _, key in order],
        "transformers_version": transformers_version,
    }

    def write(tmp: Path) -> None:
        import json

        for key, sd in state_dicts.items():
            torch.save(sd, tmp / f"intkey_{key}.bin")  # pyvene's format (see the module docstring)
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    return write_dir_atomic(Path(directory), write)


def pyreft_unit_locations(reft: ReftInterventions, prompt_lengths: torch.Tensor) -> list[list[list[int]]]:
    """pyreft's `unit_locations["sources->base"][1]`: [interventions][batch][positions], the
    same token positions ours uses (right padding, no offset)."""
    positions = reft.positions_for(prompt_lengths)
    return [positions[ours].tolist() for ours, _ in pyreft_order(reft)]
