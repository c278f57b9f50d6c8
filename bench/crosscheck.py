"""Correctness cross-check against the peers (runs in bench/.venv-peers, which has both).

With the same weights, our modules and the peers' give the same outputs:
  dii_module      pyvene LowRankRotatedSpaceIntervention vs our RotatedSubspace (1e-5)
  loreft_module   pyreft LoreftIntervention vs our LoReFT with the same R, W, b (1e-5)
  dii_model       pyvene IntervenableModel vs our run_with_interventions and SuffixRunner:
                  answer logits of a GPT-2 with a rotated-subspace interchange at one site
  loreft_model    pyreft ReftModel vs our attach(): logits of a GPT-2 with LoReFT at two
                  layers on the f1+l1 positions
  pyreft_export   our export, loaded by pyreft's ReftModel.load, gives our outputs
                  (skipped, and said so, while the export does not exist)

Prints a table, writes bench/results/crosscheck.json, exits 1 if any check fails.
Timing is not measured here, so ours and the peers share this one process.

    bench/.venv-peers/bin/python bench/crosscheck.py
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import traceback
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import common  # noqa: E402
from peers import shims  # noqa: E402

shims.install()
import pyreft  # noqa: E402
import pyvene as pv  # noqa: E402

TOL = 1e-5
RESULTS = Path(os.environ.get("OUT") or Path(__file__).parent / "results")


def _module(v):
    return v[0] if isinstance(v, (tuple, list)) else v  # older pyvene stores (module, hook)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


def check_dii_module() -> dict:
    from interventions import RotatedSubspace

    torch.manual_seed(0)
    d, k, B = 768, 16, 32
    theirs = pv.LowRankRotatedSpaceIntervention(embed_dim=d, low_rank_dimension=k)
    base, source = torch.randn(B, d), torch.randn(B, d)
    with torch.no_grad():
        rotation = theirs.rotate_layer.weight.T  # pyvene keeps R^T, [d, k]
        ours = RotatedSubspace.from_rotation(rotation)
        out_theirs = theirs(base, source)
        out_ours = ours(base, source)
        formula = base + (source @ rotation.T - base @ rotation.T) @ rotation
    return {"max_abs_diff": max_diff(out_ours, out_theirs),
            "max_abs_diff_formula": max_diff(out_ours, formula), "d": d, "k": k}


def check_loreft_module() -> dict:
    from interventions import LoReFT

    torch.manual_seed(0)
    d, r, B = 768, 4, 32
    theirs = pyreft.LoreftIntervention(embed_dim=d, low_rank_dimension=r, dtype=torch.float32)
    with torch.no_grad():  # a non-trivial W, b (pyreft starts W random and b at 0)
        theirs.learned_source.bias.normal_()
        rotation = theirs.rotate_layer.weight.T  # [r, d]
        ours = LoReFT.from_rotation(rotation)
        ours.learned_source.load_state_dict(theirs.learned_source.state_dict())
        h = torch.randn(B, d)
        W, b = theirs.learned_source.weight, theirs.learned_source.bias
        formula = h + (h @ W.T + b - h @ rotation.T) @ rotation
        return {"max_abs_diff": max_diff(ours(h), theirs(h)),
                "max_abs_diff_formula": max_diff(ours(h), formula), "d": d, "r": r}


def _tiny_gpt2(seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(n_layer=4, n_embd=64, n_head=4, vocab_size=128, n_positions=64,
                     bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(cfg).eval().requires_grad_(False)


def check_dii_model() -> dict:
    from interventions import RotatedSubspace, Site, SuffixRunner, collect, load_model, run_with_interventions
    from interventions.positions import Batch

    hf = _tiny_gpt2()
    B, T, layer, k = 8, 12, 2, 8
    g = torch.Generator().manual_seed(1)
    base_ids = torch.randint(0, 128, (B, T), generator=g)
    source_ids = torch.randint(0, 128, (B, T), generator=g)

    intervenable = pv.IntervenableModel(pv.IntervenableConfig(
        model_type=type(hf),
        representations=[pv.RepresentationConfig(layer, "block_output", "pos", 1, low_rank_dimension=k)],
        intervention_types=pv.LowRankRotatedSpaceIntervention), hf)
    rotation = _module(next(iter(intervenable.interventions.values()))).rotate_layer.weight.T.detach().clone()
    with torch.no_grad():
        _, cf = intervenable({"input_ids": base_ids}, [{"input_ids": source_ids}], {"sources->base": T - 1})
    theirs = cf.logits[:, -1]

    model = load_model(hf, device="cpu")
    site = Site(layer, "block_output", "last")
    last = torch.full((B,), T - 1)
    mk = lambda ids: Batch(inputs={"input_ids": ids, "attention_mask": torch.ones_like(ids)},  # noqa: E731
                           positions=last, answer_positions=last)
    module = RotatedSubspace.from_rotation(rotation)
    with torch.no_grad():
        src = collect(model, mk(source_ids), site)
        ours_full = run_with_interventions(model, mk(base_ids), [(site, module, src)])
        runner = SuffixRunner(model, site)
        ours_suffix = runner.logits(runner.prepare(mk(base_ids)), lambda h: module(h, src))
        plain = hf(base_ids).logits[:, -1]
    return {"max_abs_diff": max_diff(ours_full, theirs),
            "max_abs_diff_suffix_runner": max_diff(ours_suffix, theirs),
            # the intervention must change something, or the equality above proves nothing
            "effect_size": max_diff(theirs, plain), "layer": layer, "k": k}


def _pyreft_model(hf, layers, rank, seed=0):
    torch.manual_seed(seed)
    config = pyreft.ReftConfig(representations=[{
        "layer": layer, "component": "block_output", "low_rank_dimension": rank,
        "intervention": pyreft.LoreftIntervention(embed_dim=hf.config.n_embd, low_rank_dimension=rank,
                                                  dtype=torch.float32),
    } for layer in layers])
    reft_model = pyreft.get_reft_model(hf, config, set_device=False)
    for v in reft_model.interventions.values():
        with torch.no_grad():
            _module(v).learned_source.bias.normal_()  # b = 0 at init; make it matter
    return reft_model


def _ours_from_pyreft(reft_model):
    from interventions import LoReFT

    mods = []
    for v in reft_model.interventions.values():
        theirs = _module(v)
        ours = LoReFT.from_rotation(theirs.rotate_layer.weight.T.detach())
        ours.learned_source.load_state_dict(theirs.learned_source.state_dict())
        mods.append(ours)
    return mods


def check_loreft_model() -> dict:
    from interventions import Site, attach, load_model

    hf = _tiny_gpt2()
    B, T, layers, rank = 4, 10, [1, 2], 4
    ids = torch.randint(0, 128, (B, T), generator=torch.Generator().manual_seed(2))
    positions = common.reft_positions(T, 1, 1)
    reft_model = _pyreft_model(hf, layers, rank)
    with torch.no_grad():
        _, cf = reft_model({"input_ids": ids},
                           unit_locations={"sources->base": (None, [[positions] * B] * len(layers))})
    theirs = cf.logits
    model = load_model(hf, device="cpu")
    pos = torch.tensor([positions] * B)
    entries = [(Site(layer, "block_output", None), m, pos) for layer, m in zip(layers, _ours_from_pyreft(reft_model))]
    with torch.no_grad(), attach(model, entries):
        ours = hf(ids).logits
    plain = hf(ids).logits
    return {"max_abs_diff": max_diff(ours, theirs), "effect_size": max_diff(theirs, plain),
            "layers": layers, "rank": rank, "positions": positions}


def _find_pyreft_export():
    """Our export to pyreft's format (experiments.export.pyreft.export_pyreft); None if it is missing."""
    try:
        from experiments.export.pyreft import export_pyreft
    except ImportError:
        return None
    return export_pyreft


def check_pyreft_export() -> dict:
    export = _find_pyreft_export()
    if export is None:
        return {"skipped": "experiments.export.pyreft.export_pyreft is missing"}
    from experiments.export.pyreft import pyreft_unit_locations
    from interventions.reft_artifact import ReftInterventions
    from interventions import load_model

    hf = _tiny_gpt2()
    B, T, layers, rank = 4, 10, [1, 2], 4
    ids = torch.randint(0, 128, (B, T), generator=torch.Generator().manual_seed(3))
    model = load_model(hf, device="cpu")
    torch.manual_seed(0)
    ours = ReftInterventions("loreft", hf.config.n_embd, rank, layers, "f1+l1")
    for p in ours.parameters():
        with torch.no_grad():
            p.add_(0.1 * torch.randn_like(p))
    lengths = torch.full((B,), T)
    with torch.no_grad(), ours.attached(model, lengths):
        ours_logits = hf(ids).logits
    with torch.no_grad():
        plain = hf(ids).logits
    with tempfile.TemporaryDirectory() as tmp:
        export_dir = export(ours, tmp)
        loaded = pyreft.ReftModel.load(str(export_dir), hf)
        # pyreft 0.1.0 builds W and b in bfloat16 and ReftModel.load passes no dtype: cast them to
        # float32 and load the exported weights again through pyreft's own load_state_dict.
        for key, intervention in loaded.interventions.items():
            intervention.learned_source.float()
            intervention.load_state_dict(torch.load(Path(export_dir) / f"intkey_{key}.bin", weights_only=True))
            intervention.eval()
        loaded.set_device("cpu")
        n = len(loaded.interventions)
        with torch.no_grad():
            _, cf = loaded({"input_ids": ids, "attention_mask": torch.ones_like(ids)},
                           unit_locations={"sources->base": (None, pyreft_unit_locations(ours, lengths))})
    return {"max_abs_diff": max_diff(ours_logits, cf.logits), "effect_size": max_diff(cf.logits, plain),
            "n_interventions": n}


CHECKS = {
    "dii_module": check_dii_module,
    "loreft_module": check_loreft_module,
    "dii_model": check_dii_model,
    "loreft_model": check_loreft_model,
    "pyreft_export": check_pyreft_export,
}


def main() -> int:
    results, failed = {}, False
    for name, check in CHECKS.items():
        try:
            r = check()
            if "skipped" in r:
                r["status"] = "skipped"
            else:
                diffs = [v for key, v in r.items() if key.startswith("max_abs_diff")]
                ok = all(v <= TOL for v in diffs) and r.get("effect_size", 1.0) > 1e-3
                r["status"] = "ok" if ok else "FAIL"
        except Exception as e:  # noqa: BLE001  (one broken check must not hide the others)
            r = {"status": "ERROR", "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
        failed |= r["status"] in ("FAIL", "ERROR")
        results[name] = r
    print(f"{'check':<15} {'status':<8} max |ours - peer| (tolerance {TOL:g})")
    for name, r in results.items():
        diffs = ", ".join(f"{k[len('max_abs_diff'):].lstrip('_') or 'out'}={v:.2e}"
                          for k, v in r.items() if k.startswith("max_abs_diff"))
        print(f"{name:<15} {r['status']:<8} {diffs or r.get('skipped') or r.get('error', '')}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "crosscheck.json"
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"tolerance": TOL, "checks": results}, indent=2))
    os.replace(tmp, out)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
