"""The model side of the workbench: load any network, address its sites generically,
run it with interventions (full via nnsight, or suffix-only for training), cache
activations, and the intervention modules and subspace artifacts."""

from .errors import InterventionError
from .model import COMPONENTS, Model, Site
from .loading import load_model
from .positions import Batch, answer_ids, answer_rule, encode, split_position
from .apply import collect, collect_many, run_with_interventions
from .suffix import Prepared, SuffixRunner
from .attach import attach
from .cache import ActivationCache
from .subspace import BoundlessSubspace, MaskedBasisPatch, RotatedSubspace, VanillaPatch, complete_orthonormal_rows
from .reft import DiReFT, LoReFT
from .artifact import Subspace

__all__ = [
    "InterventionError",
    "COMPONENTS",
    "Model",
    "Site",
    "load_model",
    "Batch",
    "answer_ids",
    "answer_rule",
    "split_position",
    "encode",
    "Prepared",
    "SuffixRunner",
    "attach",
    "collect",
    "collect_many",
    "run_with_interventions",
    "ActivationCache",
    "BoundlessSubspace",
    "MaskedBasisPatch",
    "complete_orthonormal_rows",
    "RotatedSubspace",
    "VanillaPatch",
    "DiReFT",
    "LoReFT",
    "Subspace",
]
