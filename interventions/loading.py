"""`load_model`: any local Hugging Face model directory, hub id, GGUF checkpoint or torch module
becomes a frozen `Model`. The one place the workbench loads a network."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from interventions.errors import InterventionError
from interventions.gguf import is_gguf_spec
from interventions.model import Model

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")  # weight files torch.load would unpickle


def _resolve_device(device) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _load_hf(name: str, dtype, trust_remote_code: bool, device_map: str | None = None):
    import transformers

    import interventions.mlp  # noqa: F401  (registers "dii_mlp" with the Auto classes)

    path = Path(name)
    if path.exists() and not (path / "config.json").is_file():
        raise InterventionError(
            f"{name} is not a model directory: expected a Hugging Face model folder with config.json "
            "and weights (model.safetensors), e.g. one written by save_pretrained or the zoo"
        )
    pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES) if path.is_dir() else []
    if pickles and not any(path.glob("*.safetensors")):
        raise InterventionError(
            f"{name} holds its weights only as pickle files ({', '.join(pickles)}); "
            "the workbench loads safetensors only, because unpickling a file can run any code it contains. Convert "
            "it where you trust it: AutoModel.from_pretrained(dir).save_pretrained(dir, safe_serialization=True)")
    try:
        config = transformers.AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
    except Exception as e:  # noqa: BLE001  (hub errors, malformed config: one clear message)
        raise InterventionError(
            f"could not load a model config from {name!r} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
            "expected a local folder with config.json + model.safetensors or a hub id"
        ) from None
    arch = " ".join(getattr(config, "architectures", None) or [])
    order = [transformers.AutoModelForCausalLM, transformers.AutoModelForMaskedLM,
             transformers.AutoModelForSequenceClassification, transformers.AutoModel]
    if "MaskedLM" in arch:
        order.insert(0, transformers.AutoModelForMaskedLM)
    elif "SequenceClassification" in arch or getattr(config, "model_type", "") == "dii_mlp":
        order.insert(0, transformers.AutoModelForSequenceClassification)
    kwargs = {"trust_remote_code": trust_remote_code, "use_safetensors": True}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if device_map is not None:
        kwargs["device_map"] = device_map
    last: Exception | None = None
    for auto in order:
        try:
            return auto.from_pretrained(name, **kwargs)
        except ValueError as e:  # this Auto class does not know the config type: try the next
            last = e
        except OSError as e:
            raise InterventionError(
                f"could not load weights from {name!r}: {str(e).splitlines()[0]}; expected model.safetensors "
                "next to config.json"
            ) from None
        except Exception as e:  # noqa: BLE001  (truncated files, shapes that disagree with the config)
            text = str(e)
            if "size mismatch" in text or "ignore_mismatched_sizes" in text:
                why = "the weights' shapes disagree with config.json (was the config edited, or copied from another model?)"
            elif "deserializ" in text or "incomplete" in text or "header" in text:
                why = "the safetensors file is damaged or truncated (re-download or re-save it)"
            else:
                why = f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"
            raise InterventionError(f"could not load weights from {name!r}: {why}") from None
    raise InterventionError(f"no transformers model class loads {name!r} (model_type {config.model_type!r}): {last}")


def _load_tokenizer(name: str, trust_remote_code: bool):
    import transformers

    path = Path(name)
    if path.is_dir() and not any((path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")):
        return None
    try:
        return transformers.AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
    except Exception:  # noqa: BLE001  (models without a tokenizer, e.g. our MLP)
        return None


HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


def _check_path_or_hub_id(src: str) -> None:
    """A local folder, or something that can be a hub id: else one message about the path (the
    hub's own "Repo id must be in the form ..." is no help to someone who typed a folder)."""
    path = Path(src).expanduser()
    if path.is_dir():
        return
    looks_like_path = src.startswith(("/", "./", "../", "~", ".\\")) or src.count("/") > 1 or path.exists()
    if looks_like_path or not HUB_ID.match(src):
        raise InterventionError(
            f"{src!r} is not a model folder on this machine ({'it is a file' if path.is_file() else 'no such directory'})"
            f"{'' if looks_like_path else ', nor a hub id'}; give the folder `save_pretrained` wrote (with "
            "config.json and the weights), or a hub id like 'gpt2' or 'user/name'")


def load_model(
    name_or_path_or_module,
    device="auto",
    dtype=None,
    trust_remote_code: bool = False,
    tokenizer=None,
    name: str | None = None,
    device_map: str | None = None,
    gguf_file: str | None = None,
) -> Model:
    """A frozen `Model` (eval mode, no parameter gradients) from a local HF directory, a hub
    id, a GGUF checkpoint (a `.gguf` file, "user/repo/file.gguf", or a directory or hub id with
    `gguf_file`: dequantized once and cached, interventions/gguf.py), or a torch module
    (`tokenizer` may be given with a module). device_map="auto" (accelerate) spreads a large
    model over the visible GPUs instead of moving it to one device."""
    if device_map not in (None, "auto"):
        raise InterventionError(f"device_map {device_map!r} is not supported; use None or 'auto'")
    if gguf_file is not None or is_gguf_spec(name_or_path_or_module):
        from interventions.gguf import converted

        spec = str(name_or_path_or_module)
        local = converted(spec, gguf_file, dtype if isinstance(dtype, torch.dtype) else None)
        return load_model(local, device=device, dtype=dtype, tokenizer=tokenizer, device_map=device_map,
                          name=name or (f"{spec}/{gguf_file}" if gguf_file else spec))
    if isinstance(name_or_path_or_module, nn.Module):
        hf = name_or_path_or_module
        name = name or getattr(getattr(hf, "config", None), "_name_or_path", None) or type(hf).__name__
    elif isinstance(name_or_path_or_module, (str, Path)):
        src = str(name_or_path_or_module)
        _check_path_or_hub_id(src)
        hf = _load_hf(src, dtype, trust_remote_code, device_map)
        if tokenizer is None:
            tokenizer = _load_tokenizer(src, trust_remote_code)
        name = name or src
    else:
        raise InterventionError(
            f"load_model takes a model directory, a hub id or a torch nn.Module, not {type(name_or_path_or_module).__name__}"
        )
    if device_map is None:  # a dispatched model stays where accelerate put it
        hf = hf.to(_resolve_device(device))
    if dtype is not None and device_map is None:
        hf = hf.to(dtype)
    hf.eval()
    for p in hf.parameters():
        p.requires_grad_(False)
    if tokenizer is not None and tokenizer.pad_token is None:
        # Batches need a pad token; reuse eos (or unk) as pad, the usual choice for causal LMs.
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return Model(hf, tokenizer=tokenizer, name=name)
