"""Check the MIB export against the track's own loader steps with pyvene's real layer:
CausalAbstraction's Featurizer.load_modules builds pyvene's LowRankRotateLayer(d, k,
init_orth=False), copies the saved rotation_matrix in, puts torch's orthogonal
parametrization on it and loads the saved state dict into a module holding it as `rotate`;
its features are x @ rotate.weight. The projection it defines, W W^T, must equal our
subspace's projection R^T R to 1e-6 (entrywise), and the files must load with
torch.load(weights_only=True). The features of random inputs are reported beside it.

Runs in the peers venv (pyvene is never a core dependency):
    bench/.venv-peers/bin/python bench/mib_export_check.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOLERANCE = 1e-6


def main() -> int:
    import pyvene as pv

    from experiments.export.mib import featurizer_files

    worst = 0.0
    for d, k, seed in ((64, 4, 0), (768, 16, 1), (16, 8, 2)):
        torch.manual_seed(seed)
        rotation = torch.linalg.qr(torch.randn(d, k))[0].T.contiguous()  # ours: [k, d], orthonormal rows
        featurizer, _ = featurizer_files(rotation)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "ResidualStream(Layer-1,Token-last_token)_featurizer"
            torch.save(featurizer, path)
            saved = torch.load(path, weights_only=True)
        info = saved["model_info"]
        layer = pv.models.layers.LowRankRotateLayer(*info["additional_config"]["rotation_matrix"].shape, init_orth=False)
        layer.weight.data.copy_(info["additional_config"]["rotation_matrix"])
        layer = torch.nn.utils.parametrizations.orthogonal(layer)

        class Holder(torch.nn.Module):
            def __init__(self, rotate):
                super().__init__()
                self.rotate = rotate

        module = Holder(layer)
        module.load_state_dict(saved["state_dict"])
        w = module.rotate.weight.detach()
        diff = (w @ w.T - rotation.T @ rotation).abs().max().item()
        x = torch.randn(32, d)
        features = (x @ w - x @ rotation.T).abs().max().item()
        worst = max(worst, diff)
        print(f"d = {d}, k = {k}: max |pyvene-rebuilt projection - ours| = {diff:.2e} "
              f"(features of N(0, 1) inputs: {features:.2e})")
    ok = worst <= TOLERANCE
    print("MIB export check:", "PASS" if ok else f"FAIL (tolerance {TOLERANCE})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
