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

import re
from pathlib import Path

import torch

from experiments.errors import ConfigError
from causal.io import write_dir_atomic
from interventions.reft_artifact import ReftInterventions, load_reft

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


# ------------------------------------------------------------------ import
PYVENE_KEY = re.compile(r"^layer_(\d+)_comp_(\w+?)_unit_pos_nunit_\d+#(\d+)$")
LOREFT_STATE = {"weight": 2, "bias": 1, "rotate_layer": 2}  # pyreft's LoReFT state dict: name -> tensor rank


def import_pyreft(directory: str | Path, model, positions: str) -> ReftInterventions:
    """A pyreft/pyvene LoReFT directory (config.json + intkey_*.bin, as `ReftModel.save` or
    `export_pyreft` writes it) as our ReFT artifact, for `model` (whose fingerprint it takes:
    pyreft records none). pyreft keeps the token positions outside the checkpoint, so give
    them (`positions`, e.g. "f1+l2"; with untied weights, one group per pyvene key suffix #i).
    The .bin files are read with torch.load(weights_only=True): plain tensor dicts only."""
    import json
    import pickle

    directory = Path(directory)
    fix = "pass a directory that pyreft's ReftModel.save (or export_pyreft) wrote"
    try:
        config = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{directory / 'config.json'} cannot be read ({e}); {fix}") from None
    keys = config.get("sorted_keys") if isinstance(config, dict) else None
    types = config.get("intervention_types") if isinstance(config, dict) else None
    if not isinstance(keys, list) or not keys or not isinstance(types, list) or len(types) != len(keys):
        raise ConfigError(f"{directory / 'config.json'} has no sorted_keys / intervention_types of one length; {fix}")
    if any("LoreftIntervention" not in str(t) for t in types):
        raise ConfigError(f"{directory} holds {sorted(set(map(str, types)))}; only pyreft's LoreftIntervention imports")
    ours = {v: k for k, v in PYVENE_COMPONENTS.items()}
    units = []
    for key in keys:
        match = PYVENE_KEY.match(str(key))
        if match is None or match.group(2) not in ours:
            raise ConfigError(f"{directory}: intervention key {key!r} is not a pyvene position-unit key on "
                              f"{sorted(ours)}; {fix}")
        path = directory / f"intkey_{key}.bin"
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise ConfigError(f"{path} is missing; {fix}") from None
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
            raise ConfigError(f"{path} is not a plain tensor file that torch.load(weights_only=True) reads "
                              f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); it is refused "
                              "rather than unpickled") from None
        if not isinstance(state, dict) or set(state) != set(LOREFT_STATE) or not all(
                isinstance(t, torch.Tensor) and t.dim() == LOREFT_STATE[n] and t.is_floating_point()
                for n, t in state.items()):
            raise ConfigError(f"{path} is not pyreft's LoReFT state ({sorted(LOREFT_STATE)}: 2-d weight and "
                              f"rotate_layer, 1-d bias, floating point); {fix}")
        units.append((int(match.group(1)), ours[match.group(2)], int(match.group(3)), state))
    components = {c for _, c, _, _ in units}
    rank, d = units[0][3]["weight"].shape
    if len(components) != 1 or any(s["weight"].shape != (rank, d) or s["rotate_layer"].shape != (d, rank)
                                   or s["bias"].shape != (rank,) for *_, s in units):
        raise ConfigError(f"{directory}: its interventions differ in component or shape; import them one set at a time")
    if d != model.hidden_size:
        raise ConfigError(f"{directory} acts on width {d}, but {model.name} has hidden size {model.hidden_size}; "
                          "import it for the model it was trained on")
    layers = sorted({layer for layer, *_ in units})
    n_groups = max(i for _, _, i, _ in units) + 1
    provenance = {"model_name": model.name, "model_fingerprint": model.fingerprint,
                  "imported_from": f"pyreft checkpoint {directory}"}
    reft = ReftInterventions("loreft", d, rank, layers, positions, n_groups == 1, components.pop(),
                             provenance=provenance)
    groups = ["all"] if reft.share_weights else [g for g, _ in reft.spec.groups]
    if len(groups) != n_groups or len(units) != len(layers) * n_groups:
        raise ConfigError(f"{directory} holds {len(units)} interventions over layers {layers} "
                          f"({n_groups} per layer), which positions {positions!r} does not describe: "
                          f"{len(groups)} group(s) of {'tied' if reft.share_weights else 'untied'} weights")
    with torch.no_grad():
        for layer, _, i, state in units:
            module = reft.units[reft.unit_key(layer, groups[i])]
            module.learned_source.weight.copy_(state["weight"])
            module.learned_source.bias.copy_(state["bias"])
            # exact: pyreft uses its saved R as it is, so ours does too (DESIGN.md, pyreft interop)
            module.rows.set_rows(state["rotate_layer"].T.contiguous().float(), exact=True)
    return reft.eval()
