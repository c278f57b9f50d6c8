"""Loading, generic site resolution on every supported architecture, errors, fingerprint."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from interventions import InterventionError, Site, load_model
from interventions.mlp import MLPClassifier, MLPClassifierConfig



def test_every_architecture_offers_all_components(tiny, arch):
    model = tiny.make_lm(arch)
    assert model.n_layers == 2
    assert model.components() == ["block_output", "attn_output", "mlp_output", "head_output"]
    assert model.hidden_size == 32
    for comp in ("block_output", "attn_output", "mlp_output"):
        assert model.site_dim(Site(1, comp)) == 32
    # All heads concatenated: n_heads * head_dim.
    assert model.site_dim(Site(0, "head_output")) == 4 * model.head_dim
    sites = model.sites(positions=("last", -2))
    assert len(sites) == 4 * 2 * 2 and len({s.key for s in sites}) == len(sites)
    assert model.is_causal_lm == (arch != "bert")
    assert not model.hf.training
    assert not any(p.requires_grad for p in model.hf.parameters())


def test_components_resolve_to_the_expected_modules(tiny):
    gpt2 = tiny.make_lm("gpt2")
    assert gpt2.module_path(Site(1, "block_output")) == ("transformer.h.1", "output")
    assert gpt2.module_path(Site(1, "attn_output")) == ("transformer.h.1.attn", "output")
    assert gpt2.module_path(Site(1, "mlp_output")) == ("transformer.h.1.mlp", "output")
    assert gpt2.module_path(Site(1, "head_output")) == ("transformer.h.1.attn.c_proj", "input")
    opt = tiny.make_lm("opt")  # no MLP child: the last hidden-sized Linear outside attention
    assert opt.module_path(Site(0, "mlp_output"))[0] == "model.decoder.layers.0.fc2"
    assert opt.module_path(Site(0, "head_output"))[0] == "model.decoder.layers.0.self_attn.out_proj"
    bert = tiny.make_lm("bert")
    assert bert.module_path(Site(0, "mlp_output"))[0] == "bert.encoder.layer.0.output.dense"
    assert bert.module_path(Site(0, "attn_output"))[0] == "bert.encoder.layer.0.attention"
    phi3 = tiny.make_lm("phi3")  # o_proj is registered before qkv_proj
    assert phi3.module_path(Site(0, "head_output"))[0] == "model.layers.0.self_attn.o_proj"


def test_plain_sequential_mlp_layers_are_hidden_activations(tiny):
    model = load_model(tiny.make_mlp_module(), device="cpu")
    assert not model.is_lm
    assert model.n_layers == 2
    assert model.components() == ["block_output"]
    assert [model.module_path(Site(i, "block_output", None))[0] for i in range(2)] == ["1", "3"]
    assert [model.site_dim(Site(i, "block_output", None)) for i in range(2)] == [24, 20]
    assert model.sites() == [Site(0, "block_output", None), Site(1, "block_output", None)]


def test_plain_module_with_a_modulelist_of_linears():
    class ListMLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([nn.Linear(8, 12), nn.Linear(12, 10), nn.Linear(10, 3)])

        def forward(self, x):
            for layer in self.layers[:-1]:
                x = torch.relu(layer(x))
            return self.layers[-1](x)

    model = load_model(ListMLP(), device="cpu")
    # Functional activations: a layer is each hidden Linear (not the output layer).
    assert model.n_layers == 2
    assert [model.site_dim(Site(i)) for i in range(2)] == [12, 10]


def test_dii_mlp_directory_round_trip(tmp_path):
    torch.manual_seed(0)
    hf = MLPClassifier(MLPClassifierConfig(input_size=16, hidden_size=16, n_hidden=3, n_classes=2))
    hf.save_pretrained(tmp_path / "mlp")
    model = load_model(tmp_path / "mlp", device="cpu")
    assert isinstance(model.hf, MLPClassifier)
    assert model.n_layers == 3 and model.hidden_size == 16
    assert model.tokenizer is None and not model.is_lm
    assert model.fingerprint == load_model(hf, device="cpu").fingerprint


def test_lm_directory_loads_with_its_tokenizer(tiny, tmp_path):
    hf = tiny.make_hf("gpt2")
    hf.save_pretrained(tmp_path / "lm")
    tiny.make_tokenizer().save_pretrained(tmp_path / "lm")
    model = load_model(str(tmp_path / "lm"), device="auto")
    assert model.is_causal_lm and model.tokenizer is not None
    assert model.name == str(tmp_path / "lm")
    assert model.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert model.fingerprint == load_model(hf, device="cpu").fingerprint


def test_fingerprint_tracks_weights(tiny):
    a = load_model(tiny.make_hf("llama", seed=0), device="cpu")
    b = load_model(tiny.make_hf("llama", seed=0), device="cpu")
    c = load_model(tiny.make_hf("llama", seed=1), device="cpu")
    assert len(a.fingerprint) == 64
    assert a.fingerprint == b.fingerprint != c.fingerprint
    with torch.no_grad():
        b.hf.lm_head.weight[0, 0] += 1e-3
    b._fingerprint = None  # cached on first use; recompute after an edit
    assert b.fingerprint != a.fingerprint


def test_path_that_is_not_a_model_gives_one_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InterventionError, match="config.json"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 1, "n_embd": 8, "n_head": 2}))
    with pytest.raises(InterventionError, match="safetensors"):
        load_model(tmp_path)
    with pytest.raises(InterventionError, match="nn.Module"):
        load_model(42)


def test_bad_site_lists_valid_layers_and_components(tiny):
    model = tiny.make_lm("gpt2")
    with pytest.raises(InterventionError, match=r"0\.\.1.*block_output.*attn_output"):
        model.check_site(Site(5))
    with pytest.raises(InterventionError, match="valid components"):
        model.module_at(Site(0, "residual"))
    mlp = load_model(tiny.make_mlp_module(), device="cpu")
    with pytest.raises(InterventionError, match="block_output"):
        mlp.check_site(Site(0, "attn_output", None))


@pytest.mark.parametrize("site", [Site(3), Site(0, "mlp_output", -2), Site(11, "attn_output", "noun"), Site(1, "block_output", None)])
def test_site_key_round_trip(site):
    assert Site.parse(site.key) == site
    assert site.key.startswith(f"L{site.layer}.{site.component}.")


def test_site_parse_rejects_garbage():
    with pytest.raises(InterventionError, match="L3.block_output.last"):
        Site.parse("layer three")
