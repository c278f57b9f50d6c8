"""Cells trained together (`train_together`): DAS cells sharing a layer train in one batched step
per group of stackable minibatches, and each gives the IIA it gives alone (within 1e-4, fixed
seeds), with progress, resume and cancel still per cell."""

from __future__ import annotations

import pytest

from experiments.search import AlignmentSearch
from experiments.search.cells import Cell


def _search(model, **fields):
    return AlignmentSearch(model, fields.pop("task"), controls=["random_rotation"], n_train=300, n_test=200,
                           steps=30, batch_size=32, **fields)


def _iia(run) -> dict:
    return {(r["cell"], r["variable"]): r["iia"] for r in run.rows}


@pytest.mark.parametrize("task, fields", [
    # the MLP: no KV cache; three seeds at each layer share every step's forward
    ("hierarchical_equality", dict(layers=[0, 1], seeds=[0, 1, 2])),
    # a zoo transformer: the two seeds of a site stack (two positions keep different KV prefixes,
    # so each position's seeds form their own group)
    ("hierarchical_equality_tokens", dict(layers=[1], positions=["b", "d"], seeds=[0, 1])),
])
def test_cells_trained_together_give_the_iia_they_give_alone(zoo_model, task, fields):
    model = zoo_model(task)
    alone = _search(model, task=task, train_together=False, **fields).run()
    together = _search(model, task=task, **fields).run()
    assert alone.complete and together.complete
    a, b = _iia(alone), _iia(together)
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == pytest.approx(b[key], abs=1e-4), key
    das = [r for r in together.rows if r["method"] == "das"]
    n_seeds = len(fields["seeds"])
    assert das and all(r["trained_together"] == n_seeds for r in das)
    assert not any("trained_together" in r for r in alone.rows)
    assert [r["cell"] for r in together.rows] == [r["cell"] for r in alone.rows]  # the grid's order


def test_a_group_stopped_midway_keeps_nothing_of_it_and_a_resume_equals_a_full_run(zoo_model, tmp_path):
    model = zoo_model("hierarchical_equality")
    fields = dict(task="hierarchical_equality", layers=[0, 1], seeds=[0, 1])
    full = _search(model, **fields).run()

    events = []

    def progress(p):
        events.append((p.event, p.cell))

    polls = {"n": 0}

    def stop_in_the_second_group():  # polled before each cell and every 10 steps
        polls["n"] += 1
        return any(e == "cell_start" and c == "das__L1.block_output.vector__seed0" for e, c in events)

    stopped = _search(model, **fields).run(run_dir=tmp_path / "run", should_stop=stop_in_the_second_group,
                                           progress=progress)
    assert not stopped.complete
    kept = {r["cell"] for r in stopped.rows}
    assert {"das__L0.block_output.vector__seed0", "das__L0.block_output.vector__seed1"} <= kept
    assert not any(c.startswith("das__L1") for c in kept)  # the group was stopped: none of it is kept
    # the first group's cells each reported done, as cells
    done = [c for e, c in events if e == "cell_done"]
    assert done[:2] == ["das__L0.block_output.vector__seed0", "das__L0.block_output.vector__seed1"]

    resumed = _search(model, **fields).run(run_dir=tmp_path / "run", resume=True)
    assert resumed.complete and _iia(resumed) == pytest.approx(_iia(full), abs=1e-4)


def test_a_cell_trains_alone_when_nothing_shares_its_layer(zoo_model):
    from experiments.search.together import group_from

    search = _search(zoo_model("hierarchical_equality"), task="hierarchical_equality", layers=[0, 1])
    cells = search.cells()
    assert group_from(search, cells, skip=set()) == cells[:1]
    seeded = _search(zoo_model("hierarchical_equality"), task="hierarchical_equality", layers=[0, 1], seeds=[0, 1])
    group = group_from(seeded, seeded.cells(), skip=set())
    assert group == [Cell("das", group[0].site, 0), Cell("das", group[0].site, 1)]
    off = _search(zoo_model("hierarchical_equality"), task="hierarchical_equality", layers=[0], seeds=[0, 1],
                  train_together=False)
    assert len(group_from(off, off.cells(), skip=set())) == 1
    own_models = _search(zoo_model("hierarchical_equality"), task="hierarchical_equality", layers=[0], seeds=[0, 1],
                         vary_model_seed=True)  # each seed its own zoo model: no forward to share
    assert len(group_from(own_models, own_models.cells(), skip=set())) == 1
