"""The export wing: what a run's artifacts become for other tools.

- mib.py: a search run as the MIB causal-variable track's submission folders;
- pyreft.py: a ReFT artifact as pyreft's checkpoint, and pyreft's own checkpoints read back.
(A Subspace or ReFT artifact's Hub card and push live beside the artifacts, interventions/hub.py.)
"""

from experiments.export.mib import MIB_TASKS, MIB_VARIABLES, VALID_TASK_MODELS, export_mib, featurizer_files, unit_name
from experiments.export.pyreft import export_pyreft, import_pyreft, pyreft_order, pyreft_unit_locations

__all__ = ["MIB_TASKS", "MIB_VARIABLES", "VALID_TASK_MODELS", "export_mib", "export_pyreft", "featurizer_files",
           "import_pyreft", "pyreft_order", "pyreft_unit_locations", "unit_name"]
