"""Where every run gets its network: one resolver for model specs ("zoo:<task>",
"config:<shape>", a local directory or a hub id) and one loader on top of
interventions.load_model, used by searches, finetunes and comparisons alike."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import torch

from causal.io import write_dir_atomic
from interventions import Model, load_model

# Models built from a config with random weights (no download): name -> (class, sizes).
CONFIG_MODELS = {
    "gpt2-tiny": ("gpt2", dict(n_layer=2, n_embd=64, n_head=4, n_positions=256)),
    "gpt2-small-shape": ("gpt2", dict(n_layer=12, n_embd=768, n_head=12, n_positions=512)),
    "llama-tiny": ("llama", dict(num_hidden_layers=2, hidden_size=64, intermediate_size=128,
                                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)),
}


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


def config_model_dir(name: str, vocabulary: list[str], seed: int = 0) -> Path:
    """A randomly initialised model of a named shape with a word-level tokenizer over
    `vocabulary` (the zoo's), saved once under $DII_CACHE/config_models/."""
    import transformers

    from experiments import zoo

    kind, sizes = CONFIG_MODELS[name]
    words = sorted({w for text in vocabulary for w in str(text).split()})
    key = hashlib.sha256(json.dumps([name, sizes, words, seed]).encode()).hexdigest()[:12]
    final = zoo.cache_root().parent / "config_models" / f"{name}-seed{seed}-{key}"
    if (final / "config.json").is_file():
        return final
    tokenizer = zoo.build_tokenizer(words)
    ids = dict(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id)
    if kind == "gpt2":
        cfg = transformers.GPT2Config(**sizes, **ids, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    else:
        cfg = transformers.LlamaConfig(**sizes, **ids)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(cfg)

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    if not final.exists():
        try:
            write_dir_atomic(final, write)
        except OSError:  # another process published it first
            if not (final / "config.json").is_file():
                raise
    return final
