"""The search wing: Distributed Alignment Search over a grid of sites.

- `AlignmentSearch` (search.py): configure, then `run()` cells of (method, site, seed);
- `SearchConfig`, `load_config` (config.py): the config `dii search` reads;
- methods/: the registry of alignment methods and controls, one file each;
- prepared.py: what the cells on one (model, split) share; stats.py and report.py: the
  numbers every IIA carries; predictions.py: a cell's answers, for display;
- sharding.py: cells over torchrun ranks.
Its results are `experiments.runs.Run` objects.
"""

from experiments.search.cells import Cell, Progress
from experiments.search.config import SearchConfig, field_help, fields_help, load_config
from experiments.search.search import AlignmentSearch, SearchResults

__all__ = ["AlignmentSearch", "Cell", "Progress", "SearchConfig", "SearchResults", "field_help", "fields_help",
           "load_config"]
