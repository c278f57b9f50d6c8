"""Subspace artifacts and the safe file helpers: round trip, refusal, corruption."""

import json
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from interventions.artifact import CONFIG_NAME, TENSORS_NAME, Subspace
from interventions.errors import InterventionError
from interventions.io import (
    atomic_save_safetensors,
    atomic_write_json,
    load_json,
    load_safetensors,
    load_safetensors_metadata,
)
from interventions.subspace import RotatedSubspace, random_orthonormal_rows

FINGERPRINT = "ab" * 32


def make_subspace(k=4, d=16, seed=0, **kw):
    fields = dict(rotation=random_orthonormal_rows(k, d, torch.Generator().manual_seed(seed)),
                  model_name="tiny-gpt2", model_fingerprint=FINGERPRINT, site="L1.block_output.last", layer=1,
                  component="block_output", position="last", variables=["V1"], task="hierarchical_equality",
                  hypothesis="both_equalities", iia=0.93)
    fields.update(kw)
    return Subspace(**fields)


def test_round_trip_is_bit_exact(tmp_path):
    sub = make_subspace(iia={"V1": 0.9, "V2": 0.5}, slices={"V1": (0, 2), "V2": (2, 4)}, variables=["V1", "V2"])
    sub.save(tmp_path / "s")
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [CONFIG_NAME, TENSORS_NAME]
    back = Subspace.load(tmp_path / "s")
    assert torch.equal(back.rotation, sub.rotation) and back.rotation.dtype == torch.float32
    for name in ("model_name", "model_fingerprint", "hidden_size", "site", "layer", "component", "position",
                 "variables", "slices", "parametrization", "task", "hypothesis", "iia", "library_version", "created"):
        assert getattr(back, name) == getattr(sub, name), name
    assert back.k == 4
    config = json.loads((tmp_path / "s" / CONFIG_NAME).read_text())
    assert config["k"] == 4 and config["hidden_size"] == 16 and config["format_version"] == 1
    assert not list(tmp_path.glob("s/.*"))  # no temp files left behind


@settings(max_examples=10, deadline=None)
@given(k=st.integers(1, 8), d_extra=st.integers(0, 24), seed=st.integers(0, 1000))
def test_round_trip_any_shape_and_module_equivalence(tmp_path_factory, k, d_extra, seed):
    d = k + d_extra
    directory = tmp_path_factory.mktemp("sub")
    sub = make_subspace(k=k, d=d, seed=seed)
    sub.save(directory)
    back = Subspace.load(directory, model=SimpleNamespace(hidden_size=d, fingerprint=FINGERPRINT))
    assert torch.equal(back.rotation, sub.rotation)
    module = back.to_module()
    assert isinstance(module, RotatedSubspace)
    assert torch.allclose(module.rotation, sub.rotation, atol=1e-6)


def test_from_module_and_to_module_keep_slices_and_parametrization(tmp_path):
    module = RotatedSubspace(12, 4, parametrization="cayley", slices={"V1": (0, 1), "V2": (1, 4)})
    model = SimpleNamespace(name="m", fingerprint=FINGERPRINT, hidden_size=12)
    site = SimpleNamespace(key="L0.mlp_output.3", layer=0, component="mlp_output", position=3)
    sub = Subspace.from_module(module, model=model, site=site, task="t", iia=0.5)
    assert sub.variables == ["V1", "V2"] and sub.site == "L0.mlp_output.3" and sub.position == 3
    back = Subspace.load(sub.save(tmp_path / "s"), model=model)
    rebuilt = back.to_module()
    assert rebuilt.parametrization == "cayley" and rebuilt.slices == module.slices
    base, sources = torch.randn(3, 12), torch.randn(3, 2, 12)
    active = torch.tensor([[True, False], [True, True], [False, True]])
    assert torch.allclose(rebuilt(base, sources, active), module(base, sources, active), atol=1e-5)
    assert back.to_module(parametrization="qr").parametrization == "qr"


def test_mismatched_hidden_size_is_always_refused(tmp_path):
    make_subspace().save(tmp_path / "s")
    other = SimpleNamespace(hidden_size=32, fingerprint=FINGERPRINT)
    with pytest.raises(InterventionError, match="hidden size 16"):
        Subspace.load(tmp_path / "s", model=other)
    with pytest.raises(InterventionError, match="hidden size"):
        Subspace.load(tmp_path / "s", model=other, allow_fingerprint_mismatch=True)


def test_mismatched_fingerprint_is_refused_unless_allowed(tmp_path):
    make_subspace().save(tmp_path / "s")
    other = SimpleNamespace(hidden_size=16, fingerprint="cd" * 32)
    with pytest.raises(InterventionError, match="allow_fingerprint_mismatch=True"):
        Subspace.load(tmp_path / "s", model=other)
    loaded = Subspace.load(tmp_path / "s", model=other, allow_fingerprint_mismatch=True)
    assert loaded.model_fingerprint == FINGERPRINT


def test_truncated_safetensors_gives_our_error(tmp_path):
    make_subspace().save(tmp_path / "s")
    path = tmp_path / "s" / TENSORS_NAME
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(InterventionError, match="truncated or corrupt"):
        Subspace.load(tmp_path / "s")
    path.write_bytes(b"\x00" * 3)
    with pytest.raises(InterventionError, match=TENSORS_NAME):
        Subspace.load(tmp_path / "s")


def test_flipped_bytes_in_tensor_data_are_caught(tmp_path):
    make_subspace().save(tmp_path / "s")
    path = tmp_path / "s" / TENSORS_NAME
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # valid header, wrong numbers: only the checksum can tell
    path.write_bytes(bytes(data))
    with pytest.raises(InterventionError, match="sha256"):
        Subspace.load(tmp_path / "s")


def test_corrupt_or_missing_json_gives_our_error(tmp_path):
    make_subspace().save(tmp_path / "s")
    config = tmp_path / "s" / CONFIG_NAME
    text = config.read_text()
    config.write_text(text[: len(text) // 2])
    with pytest.raises(InterventionError, match="subspace config .* truncated or corrupt"):
        Subspace.load(tmp_path / "s")
    config.unlink()
    with pytest.raises(InterventionError, match="not found"):
        Subspace.load(tmp_path / "s")
    with pytest.raises(InterventionError, match="no subspace directory"):
        Subspace.load(tmp_path / "nowhere")


def test_shape_mismatch_and_future_format_are_refused(tmp_path):
    make_subspace().save(tmp_path / "s")
    config_path = tmp_path / "s" / CONFIG_NAME
    config = json.loads(config_path.read_text())
    atomic_write_json(config_path, {**config, "k": 5})
    with pytest.raises(InterventionError, match="shape"):
        Subspace.load(tmp_path / "s")
    atomic_write_json(config_path, {**config, "format_version": 99})
    with pytest.raises(InterventionError, match="format 99"):
        Subspace.load(tmp_path / "s")


def test_invalid_subspace_is_refused_on_construction():
    with pytest.raises(InterventionError, match="hidden_size"):
        make_subspace(hidden_size=8)
    with pytest.raises(InterventionError, match="slice"):
        make_subspace(slices={"V1": (0, 9)})


def test_io_helpers_round_trip_and_replace_atomically(tmp_path):
    path = atomic_write_json(tmp_path / "deep" / "x.json", {"a": [1, 2.5, None], "b": "é"})
    assert load_json(path, "test file") == {"a": [1, 2.5, None], "b": "é"}
    atomic_write_json(path, {"a": 2})
    assert load_json(path, "test file") == {"a": 2}
    tensors = {"x": torch.arange(6, dtype=torch.float32).reshape(2, 3), "y": torch.ones(2, dtype=torch.bfloat16)}
    st_path = atomic_save_safetensors(tmp_path / "t.safetensors", tensors, metadata={"n": 3, "s": "hi"})
    back = load_safetensors(st_path, "test tensors")
    assert all(torch.equal(back[k], tensors[k]) and back[k].dtype == tensors[k].dtype for k in tensors)
    assert load_safetensors_metadata(st_path, "test tensors") == {"n": "3", "s": "hi"}
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["deep", "t.safetensors", "x.json"]


def test_io_errors_name_the_file_and_the_fix(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InterventionError, match=r"run manifest at .*bad\.json.*re-run the search") as info:
        load_json(bad, "run manifest", fix="re-run the search")
    assert info.value.__cause__ is None
    with pytest.raises(InterventionError, match="cache shard not found"):
        load_safetensors(tmp_path / "missing.safetensors", "cache shard")
    garbage = tmp_path / "g.safetensors"
    garbage.write_bytes(b"\xff" * 100)
    with pytest.raises(InterventionError, match="g.safetensors is truncated or corrupt"):
        load_safetensors(garbage, "cache shard")


def test_width_is_checked_at_the_subspace_site(tmp_path):
    # An MLP layer or an attention head can be narrower than the model's hidden size.
    make_subspace(site="L1.mlp_output.last").save(tmp_path / "s")
    widths = {1: 16}
    model = SimpleNamespace(hidden_size=32, fingerprint=FINGERPRINT, site_dim=lambda site: widths[site.layer])
    assert Subspace.load(tmp_path / "s", model=model).hidden_size == 16
    widths[1] = 8
    with pytest.raises(InterventionError, match="hidden size 8 at L1.mlp_output.last"):
        Subspace.load(tmp_path / "s", model=model)


def test_atomic_write_text_replaces_whole_file(tmp_path):
    from interventions.io import atomic_write_text

    path = atomic_write_text(tmp_path / "a.txt", "first version, long\n")
    atomic_write_text(path, "second\n")
    assert path.read_text() == "second\n" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]
