"""The Subspace artifact: a learned rotation plus where it came from.

A directory of ``config.json`` (provenance, shapes, a sha256 of the tensor file) and
``subspace.safetensors`` (the rotation, fp32), like HF's save_pretrained. The tensor file
is written first and the config last, each atomically, so a directory with a config
always has the tensors that config describes. No pickle.
"""

from __future__ import annotations

import importlib.metadata
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from interventions.errors import InterventionError
from interventions.hub import HubArtifact, iia_text
from interventions.io import atomic_save_safetensors, atomic_write_json, load_json, load_safetensors
from interventions.subspace import DEFAULT_PARAMETRIZATION, RotatedSubspace

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
TENSORS_NAME = "subspace.safetensors"
_RESAVE = "re-export it from its run (dii export RUN SITE VAR) or re-run the search"


def library_version() -> str:
    try:
        return importlib.metadata.version("dii-workbench")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Subspace(HubArtifact):
    """rotation [k, d] with orthonormal rows; ``slices`` (variable -> (start, stop) over the
    k rows) when several variables share one rotation. ``site`` is a Site key such as
    ``L3.block_output.last``; layer/component/position repeat it as fields."""

    rotation: torch.Tensor
    model_name: str = ""
    model_fingerprint: str = ""
    hidden_size: int | None = None
    site: str = ""
    layer: int | None = None
    component: str | None = None
    position: int | str | None = None
    variables: list[str] = field(default_factory=list)
    slices: dict[str, tuple[int, int]] | None = None
    parametrization: str = DEFAULT_PARAMETRIZATION
    task: str = ""
    hypothesis: str = ""
    iia: float | dict[str, Any] | None = None
    library_version: str = field(default_factory=library_version)
    created: str = field(default_factory=_now)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.rotation, torch.Tensor) or self.rotation.dim() != 2:
            raise InterventionError("Subspace.rotation must be a [k, d] tensor")
        self.rotation = self.rotation.detach().to(device="cpu", dtype=torch.float32).contiguous()
        k, d = self.rotation.shape
        if self.hidden_size is None:
            self.hidden_size = d
        if self.hidden_size != d:
            raise InterventionError(f"rotation is [{k}, {d}] but hidden_size is {self.hidden_size}; they must agree")
        if isinstance(self.variables, str):
            self.variables = [self.variables]
        self.variables = list(self.variables)
        if self.slices:
            self.slices = {str(v): (int(a), int(b)) for v, (a, b) in self.slices.items()}
            for v, (a, b) in self.slices.items():
                if not 0 <= a < b <= k:
                    raise InterventionError(f"slice {v!r}=({a}, {b}) is outside the {k} rotation rows")
            if not self.variables:
                self.variables = list(self.slices)
        else:
            self.slices = None

    @property
    def k(self) -> int:
        return self.rotation.shape[0]

    @classmethod
    def from_module(cls, module: RotatedSubspace, model: Any = None, site: Any = None, **provenance: Any) -> "Subspace":
        """Provenance from a Model (name, fingerprint, hidden size) and a Site (key, layer,
        component, position) where given; anything else as keywords."""
        fields: dict[str, Any] = {
            "parametrization": getattr(module, "parametrization", DEFAULT_PARAMETRIZATION),
            "slices": dict(getattr(module, "slices", {}) or {}) or None,
        }
        if model is not None:
            fields.update(model_name=str(getattr(model, "name", "")), model_fingerprint=str(model.fingerprint),
                          hidden_size=int(model.hidden_size))
        if site is not None and not isinstance(site, str):
            fields.update(site=site.key, layer=site.layer, component=site.component, position=site.position)
        elif site is not None:
            fields["site"] = site
        fields.update(provenance)
        return cls(rotation=module.rotation.detach(), **fields)

    def to_module(self, parametrization: str | None = None) -> RotatedSubspace:
        return RotatedSubspace.from_rotation(self.rotation, parametrization=parametrization or self.parametrization,
                                             slices=self.slices)

    def config(self) -> dict[str, Any]:
        return {
            "format": "dii-workbench.subspace",
            "format_version": FORMAT_VERSION,
            "k": self.k,
            "hidden_size": self.hidden_size,
            "model_name": self.model_name,
            "model_fingerprint": self.model_fingerprint,
            "site": self.site,
            "layer": self.layer,
            "component": self.component,
            "position": self.position,
            "variables": self.variables,
            "slices": {v: list(s) for v, s in self.slices.items()} if self.slices else None,
            "parametrization": self.parametrization,
            "task": self.task,
            "hypothesis": self.hypothesis,
            "iia": _json_safe(self.iia),
            "library_version": self.library_version,
            "created": self.created,
            "extra": self.extra,
        }

    def save(self, directory: str | os.PathLike) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors_path = atomic_save_safetensors(directory / TENSORS_NAME, {"rotation": self.rotation},
                                               metadata={"format_version": FORMAT_VERSION})
        config = self.config()
        config["tensors_sha256"] = _sha256(tensors_path)
        atomic_write_json(directory / CONFIG_NAME, config)
        return directory

    # ---- the Hub's conventions (interventions/hub.py)
    def card_fields(self) -> dict[str, Any]:
        extra = self.extra or {}
        return {
            "title": f"Subspace for {', '.join(self.variables) or 'a variable'} at {self.site or 'a site'}",
            "summary": (f"A k = {self.k} rotated subspace of the {self.hidden_size}-dim activation at `{self.site}`, "
                        f"learned by {extra.get('method', 'DAS')} so that interchanging it moves the causal variable(s) "
                        f"{', '.join(self.variables)} of hypothesis `{self.hypothesis}`."),
            "tags": ["distributed-alignment-search", "das"],
            "base_model": self.model_name, "base_model_revision": extra.get("base_model_revision"),
            "model_fingerprint": self.model_fingerprint, "task": self.task, "hypothesis": self.hypothesis,
            "library_version": self.library_version,
            "what": {"site": self.site, "layer": self.layer, "component": self.component, "position": self.position,
                     "variables": ", ".join(self.variables), "k": self.k, "hidden size": self.hidden_size,
                     "slices": self.slices, "parametrization": self.parametrization},
            "iia_text": iia_text(self.iia, extra.get("iia_low"), extra.get("iia_high"), extra.get("n_test"),
                                 extra.get("floor")),
            "training_config": extra.get("training_config") or {k: v for k, v in extra.items()
                                                                 if k in ("method", "seed")},
            "load_lines": ["from interventions import Subspace, load_model",
                           f"model = load_model({self.model_name!r})",
                           "subspace = Subspace.from_pretrained(REPO_OR_DIR, model=model)  # .to_module() to intervene"],
        }

    @classmethod
    def load(cls, directory: str | os.PathLike, model: Any = None,
             allow_fingerprint_mismatch: bool = False) -> "Subspace":
        """``model``: anything with ``.hidden_size`` and ``.fingerprint`` to check against."""
        directory = Path(directory)
        if not directory.is_dir():
            raise InterventionError(
                f"no subspace directory at {directory}: pass a directory written by Subspace.save "
                f"(it holds {CONFIG_NAME} and {TENSORS_NAME})"
            )
        config = load_json(directory / CONFIG_NAME, "subspace config", fix=_RESAVE)
        if not isinstance(config, dict) or "format_version" not in config:
            raise InterventionError(f"{directory / CONFIG_NAME} is not a subspace config (no format_version); {_RESAVE}")
        if config["format_version"] != FORMAT_VERSION:
            raise InterventionError(
                f"{directory} has subspace format {config['format_version']}, this dii-workbench "
                f"({library_version()}) reads format {FORMAT_VERSION}: install the version that wrote it "
                f"({config.get('library_version', 'unknown')}) or {_RESAVE}"
            )
        tensors_path = directory / TENSORS_NAME
        tensors = load_safetensors(tensors_path, "subspace tensors", fix=_RESAVE)
        expected_hash = config.get("tensors_sha256")
        if not isinstance(expected_hash, str) or not expected_hash:
            raise InterventionError(f"{directory / CONFIG_NAME} has no tensors_sha256, so {TENSORS_NAME} cannot be "
                                    f"checked; {_RESAVE}")
        if _sha256(tensors_path) != expected_hash:
            raise InterventionError(f"{tensors_path} does not match its config (sha256 differs): "
                                    f"the file was changed or corrupted; {_RESAVE}")
        if "rotation" not in tensors:
            raise InterventionError(f"{tensors_path} holds no 'rotation' tensor; {_RESAVE}")
        rotation = tensors["rotation"]
        if not rotation.is_floating_point():
            raise InterventionError(f"{tensors_path} holds a {rotation.dtype} rotation; a rotation is floating point. "
                                    f"{_RESAVE}")
        if not bool(torch.isfinite(rotation).all()):
            raise InterventionError(f"{tensors_path} holds a rotation with NaN or infinite entries; {_RESAVE}")
        shape = (config.get("k"), config.get("hidden_size"))
        if tuple(rotation.shape) != shape:
            raise InterventionError(f"{tensors_path} holds a rotation of shape {tuple(rotation.shape)} but its "
                                    f"config says [k, hidden_size] = {list(shape)}; {_RESAVE}")
        if model is not None:
            check_model(config, model, allow_fingerprint_mismatch, directory)
        slices = config.get("slices")
        try:
            return cls(
                rotation=rotation,
                model_name=config.get("model_name", ""),
                model_fingerprint=config.get("model_fingerprint", ""),
                hidden_size=config["hidden_size"],
                site=config.get("site", ""),
                layer=config.get("layer"),
                component=config.get("component"),
                position=config.get("position"),
                variables=config.get("variables") or [],
                slices={v: tuple(s) for v, s in slices.items()} if slices else None,
                parametrization=config.get("parametrization", DEFAULT_PARAMETRIZATION),
                task=config.get("task", ""),
                hypothesis=config.get("hypothesis", ""),
                iia=config.get("iia"),
                library_version=config.get("library_version", "unknown"),
                created=config.get("created", ""),
                extra=config.get("extra") or {},
            )
        except (TypeError, ValueError, AttributeError) as e:
            if isinstance(e, InterventionError):
                raise
            raise InterventionError(f"{directory / CONFIG_NAME} has a malformed field ({e}); {_RESAVE}") from None

    load_artifact = load  # what HubArtifact.from_pretrained reads a snapshot with


def check_model(config: dict[str, Any], model: Any, allow_fingerprint_mismatch: bool, where: Path) -> None:
    hidden = _width_at_site(model, config.get("site") or "")
    if hidden != config["hidden_size"]:
        raise InterventionError(
            f"subspace {where} was learned on hidden size {config['hidden_size']} "
            f"({config.get('model_name') or 'unnamed model'}) but this model has hidden size {hidden} "
            f"at {config.get('site') or 'its residual stream'}: load it onto the model it was trained on"
        )
    fingerprint = str(model.fingerprint)
    if fingerprint != config.get("model_fingerprint") and not allow_fingerprint_mismatch:
        raise InterventionError(
            f"subspace {where} was learned on {config.get('model_name') or 'another model'} "
            f"(weights {str(config.get('model_fingerprint'))[:12]}...) but this model's weights are "
            f"{fingerprint[:12]}...: load it onto that model, or pass allow_fingerprint_mismatch=True "
            "to apply it to different weights of the same shape on purpose"
        )


def _width_at_site(model: Any, site_key: str) -> int:
    """The activation width at the subspace's site: an MLP's layers, or an attention
    head, can be narrower than ``model.hidden_size``."""
    if site_key and hasattr(model, "site_dim"):
        from interventions.model import Site  # lazy: model.py pulls in transformers and nnsight

        return int(model.site_dim(Site.parse(site_key)))
    return int(model.hidden_size)


def _sha256(path: Path) -> str:
    from interventions.io import sha256_file

    return sha256_file(path)


def _json_safe(value: Any) -> Any:
    """IIA may hold numpy/torch scalars or NaN; JSON gets plain floats (NaN as null)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
