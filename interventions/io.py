"""Safe file helpers: every write goes to a temp file in the same directory and is renamed
into place (never half-written); every read turns a missing, truncated or corrupt file
into an InterventionError that names the file and the fix. No pickle: JSON + safetensors.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes

from interventions.errors import InterventionError

_DEFAULT_FIX = "delete it and re-run the step that wrote it"


# The one atomic-write helper lives at the bottom layer; these names are re-exported here.
from causal.io import atomic_write_bytes, atomic_write_json, atomic_write_text, write_dir_atomic  # noqa: E402,F401


def atomic_save_safetensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor],
                            metadata: dict[str, Any] | None = None) -> Path:
    """Metadata values that are not strings are stored as JSON text (safetensors wants str)."""
    meta = None
    if metadata:
        meta = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    data = safetensors_bytes({k: t.detach().cpu().contiguous() for k, t in tensors.items()}, metadata=meta)
    return atomic_write_bytes(path, data)


def _missing(path: Path, what: str, fix: str | None) -> InterventionError:
    return InterventionError(f"{what} not found at {path}: {fix or 'check the path, or re-run the step that writes it'}")


def load_json(path: str | os.PathLike, what: str, fix: str | None = None) -> Any:
    """``what`` names the file for the user ("subspace config"); ``fix`` says what to do."""
    path = Path(path)
    if not path.is_file():
        raise _missing(path, what, fix)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InterventionError(
            f"{what} at {path} is truncated or corrupt (not valid JSON: {e}); {fix or _DEFAULT_FIX}"
        ) from None
    except OSError as e:
        raise InterventionError(f"cannot read {what} at {path} ({e.strerror}); check its permissions") from None


def load_safetensors(path: str | os.PathLike, what: str, fix: str | None = None,
                     device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    return _read_safetensors(Path(path), what, fix, device)[0]


def load_safetensors_metadata(path: str | os.PathLike, what: str, fix: str | None = None) -> dict[str, str]:
    return _read_safetensors(Path(path), what, fix, "cpu", tensors=False)[1]


def _read_safetensors(path: Path, what: str, fix: str | None, device: str | torch.device,
                      tensors: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if not path.is_file():
        raise _missing(path, what, fix)
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            metadata = dict(f.metadata() or {})
            out = {key: f.get_tensor(key) for key in f.keys()} if tensors else {}
    except Exception as e:  # safetensors raises its own Rust-side error type for bad headers
        raise InterventionError(
            f"{what} at {path} is truncated or corrupt (safetensors could not read it: {e}); "
            f"{fix or _DEFAULT_FIX}"
        ) from None
    return out, metadata


def sha256_file(path) -> str:
    """The sha256 of a file, read in chunks (artifacts' weights, GGUF checkpoints)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()
