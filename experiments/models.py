"""Where every run gets its network: one resolver for model specs ("zoo:<task>",
"config:<shape>", a local directory or a hub id) and one loader on top of
interventions.load_model, used by searches, finetunes and comparisons alike."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from interventions import Model, load_model


def resolve_model_path(spec: str, model_seed: int = 0, vocabulary: list[str] | None = None, task=None) -> str:
    """"zoo:<task>" -> the zoo model's directory (trained on first use); "zoo" -> the zoo model
    of `task` (the user's own task: trained on it and cached under its content hash);
    "config:<shape>" -> a randomly initialised model of that shape over `vocabulary`;
    anything else unchanged."""
    if spec == "zoo" or spec.startswith("zoo:"):
        from experiments import zoo
        from experiments.errors import ConfigError

        if spec == "zoo" and task is None:
            raise ConfigError("model 'zoo' trains a zoo model on the run's task; give a task, or 'zoo:<task name>'")
        return str(zoo.get_model(task if spec == "zoo" else spec[4:], seed=model_seed, progress=False))
    if spec.startswith("config:"):
        from experiments.finetune_data import config_model_dir

        return str(config_model_dir(spec[7:], vocabulary or [], model_seed))
    return spec


def load_model_spec(spec: str, device: str = "auto", dtype: str | torch.dtype | None = None,
                    device_map: str | None = None, model_seed: int = 0,
                    vocabulary: list[str] | None = None, task=None) -> Model:
    """A frozen Model from a spec, honouring a config's device, dtype and device_map."""
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    path = resolve_model_path(spec, model_seed, vocabulary, task)
    return load_model(path, device=device, dtype=dtype, device_map=device_map)


def untrained_copy(model: Model, seed: int) -> Model:
    """The same architecture with random weights: from the zoo's build_untrained when the
    model has a directory, else a re-initialised copy of the module."""
    from experiments import zoo

    src = getattr(getattr(model.hf, "config", None), "_name_or_path", "") or model.name
    if src and (Path(src) / "config.json").is_file():
        path = zoo.build_untrained(src, seed=seed)
        return load_model(str(path), device=model.device, tokenizer=model.tokenizer, name=f"{model.name} (untrained)")
    torch.manual_seed(seed)
    config = getattr(model.hf, "config", None)
    if config is not None and hasattr(type(model.hf), "config_class"):
        hf = type(model.hf)(config)  # an HF model: its own initialisation
    else:
        hf = copy.deepcopy(model.hf)
        for m in hf.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
    return load_model(hf, device=model.device, tokenizer=model.tokenizer, name=f"{model.name} (untrained)")
