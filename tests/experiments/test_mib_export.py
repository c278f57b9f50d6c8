"""`dii export RUN --format mib`: the MIB causal-variable track's folder layout, files that
torch.load(weights_only=True) reads, a featurizer that rebuilds the way the track's loader
does (CausalAbstraction's Featurizer.load_modules: copy the rotation into a fresh layer, put
torch's orthogonal parametrization on it, load the state dict) and projects like our
subspace to 1e-6, and refusals for tasks and models the track does not have.
(bench/mib_export_check.py repeats the rebuild with pyvene's own LowRankRotateLayer.)"""

from __future__ import annotations

import json

import pytest
import torch

from experiments.cli import main
from experiments.export.mib import _RotateLayer, _Holder
from experiments.runs import load_run


def make_run(runs, name: str, task: str, variable: str, sites: list[tuple[int, str]], d: int = 64, k: int = 4):
    """A finished search run in the run store's layout (manifest, results, one Subspace per
    site), with random orthonormal rotations: the export reads only these files."""
    from interventions import Subspace
    from experiments.runs import subspace_dirname

    run = runs / name
    rows = []
    for layer, position in sites:
        site = f"L{layer}.block_output.{position}"
        rotation = torch.linalg.qr(torch.randn(d, k))[0].T.contiguous()
        Subspace(rotation=rotation, hidden_size=d, site=site, layer=layer, component="block_output",
                 position=position, variables=[variable], task=task, model_name="gpt2-tiny",
                 model_fingerprint="f" * 64).save(run / "subspaces" / subspace_dirname(site, variable))
        rows.append({"site": site, "layer": layer, "position": position, "component": "block_output",
                     "variable": variable, "method": "das", "iia": 0.9, "seed": 0})
    (run / "manifest.json").write_text(json.dumps({"config": {"task": task, "model": "config:gpt2-tiny", "method": "das",
                                                              "seed": 0, "model_seed": 0},
                                                   "created": "2026-12-02T00:00:00+00:00", "status": "finished"}))
    (run / "results.json").write_text(json.dumps(rows))
    return run


@pytest.fixture(scope="module")
def ioi_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    make_run(runs, "ioi", "ioi", "P", [(0, "last"), (0, "s"), (1, "last")])
    return runs


def test_the_submission_layout_loads_with_weights_only_and_rebuilds_to_1e6(ioi_run, tmp_path, capsys):
    assert main(["export", "ioi", "--runs-dir", str(ioi_run), "--format", "mib", "--out", str(tmp_path / "sub")]) == 0
    folder = tmp_path / "sub" / "ioi_task_GPT2LMHeadModel_output_position"
    names = sorted(p.name for p in folder.iterdir())
    # gpt2-tiny has 2 blocks: our layer 0 output enters block 1 (the track's Layer-1); layer 1's output enters none.
    assert names == [f"ResidualStream(Layer-1,Token-{t})_{kind}" for t in ("last_token", "s")
                     for kind in ("featurizer", "indices", "inverse_featurizer")]
    run = load_run("ioi", ioi_run)
    x = torch.randn(5, 64)
    for token, position in (("last_token", "last"), ("s", "s")):
        unit = folder / f"ResidualStream(Layer-1,Token-{token})"
        featurizer = torch.load(f"{unit}_featurizer", weights_only=True)
        inverse = torch.load(f"{unit}_inverse_featurizer", weights_only=True)
        info = featurizer["model_info"]
        assert info["featurizer_class"] == "SubspaceFeaturizerModule" and info["n_features"] == 4
        assert inverse["model_info"]["inverse_featurizer_class"] == "SubspaceInverseFeaturizerModule"
        assert json.loads(open(f"{unit}_indices").read()) == [0, 1, 2, 3]
        ours = run.load_subspace(f"L0.block_output.{position}", "P").rotation
        # The loader's steps: a fresh [d, k] layer, the saved rotation copied in, orthogonal on top, the state loaded.
        layer = _RotateLayer(torch.empty(64, 4))
        layer.weight.data.copy_(info["additional_config"]["rotation_matrix"])
        rotate = torch.nn.utils.parametrizations.orthogonal(layer)
        holder = _Holder(rotate)
        holder.load_state_dict(featurizer["state_dict"])
        w = holder.rotate.weight.detach()  # SubspaceFeaturizerModule: features f = x @ W
        assert torch.allclose(w @ w.T, ours.T @ ours, atol=1e-6)  # the same projection
        assert torch.allclose(x @ w, x @ ours.T, atol=1e-5)


@pytest.mark.parametrize("task, fragment", [
    ("hierarchical_equality", "not one of the MIB causal-variable track's"),
    ("mcqa4", "no 4_answer_MCQA results for GPT2LMHeadModel"),
])
def test_tasks_and_models_the_track_does_not_have_are_refused(tmp_path, capsys, task, fragment):
    make_run(tmp_path / "runs", "r", task, "V1" if task == "hierarchical_equality" else "P", [(0, "last")])
    assert main(["export", "r", "--runs-dir", str(tmp_path / "runs"), "--format", "mib",
                 "--out", str(tmp_path / "sub")]) != 0
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err, err
    assert not (tmp_path / "sub").exists()
