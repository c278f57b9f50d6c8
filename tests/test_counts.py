"""Counts and seeds are integers, never bools, at every Python entry point (True is an int to
Python: `generate(model, True)` used to make one example). Each is one clear error of ours."""

import pytest

from causal.errors import WorkbenchError


def _cases():
    import torch

    from causal import CounterfactualDataset
    from causal.tasks import get_task
    from experiments import zoo
    from interventions import BoundlessSubspace, DiReFT, LoReFT, RotatedSubspace, Site

    task = get_task("hierarchical_equality")
    data = CounterfactualDataset.generate(task, 8, seed=0)
    return {
        "dataset n": lambda: CounterfactualDataset.generate(task, True),
        "dataset seed": lambda: CounterfactualDataset.generate(task, 8, seed=True),
        "split seed": lambda: data.split(seed=False),
        "rotation k": lambda: RotatedSubspace(16, True),
        "rotation d": lambda: RotatedSubspace(True, 1),
        "loreft rank": lambda: LoReFT(16, True),
        "direft rank": lambda: DiReFT(16, True),
        "site layer": lambda: Site(True),
        "site position": lambda: Site(0, position=True),
        "zoo seed": lambda: zoo.get_model("hierarchical_equality", seed=True, progress=False),
        "boundless d": lambda: BoundlessSubspace(True) if torch else None,
    }


@pytest.mark.parametrize("case", list(_cases()))
def test_a_bool_is_not_a_count(case):
    with pytest.raises(WorkbenchError, match=r"True|False|bool|integer"):
        _cases()[case]()
