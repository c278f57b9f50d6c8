"""`python -m experiments.cli ...` (and `torchrun -m experiments.cli ...`): the `dii` command."""

import sys

from experiments.cli import main

sys.exit(main())
