"""LoReFT / DiReFT: the formulas, parameter counts, orthonormal R under training."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from interventions.errors import InterventionError
from interventions.reft import DiReFT, LoReFT
from interventions.subspace import PARAMETRIZATIONS, random_orthonormal_rows


def n_trainable(module):
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


@pytest.mark.parametrize("parametrization", PARAMETRIZATIONS)
@pytest.mark.parametrize("d,r", [(16, 1), (32, 4), (24, 24)])
def test_trainable_parameter_count_is_2dr_plus_r(parametrization, d, r):
    assert n_trainable(LoReFT(d, r, parametrization=parametrization)) == 2 * d * r + r
    assert n_trainable(DiReFT(d, r)) == 2 * d * r + r


@settings(max_examples=20, deadline=None)
@given(d=st.integers(2, 32), r_frac=st.floats(0.01, 1.0), seed=st.integers(0, 10_000),
       lead=st.lists(st.integers(1, 3), min_size=0, max_size=2), parametrization=st.sampled_from(PARAMETRIZATIONS))
def test_loreft_with_w_equal_r_and_zero_bias_is_identity(d, r_frac, seed, lead, parametrization):
    r = max(1, int(round(r_frac * d)))
    g = torch.Generator().manual_seed(seed)
    module = LoReFT(d, r, parametrization=parametrization, generator=g)
    with torch.no_grad():
        module.learned_source.weight.copy_(module.rotation)
        module.learned_source.bias.zero_()
    h = torch.randn(*lead, d, generator=g)
    out = module(h)
    assert out.shape == h.shape
    assert torch.allclose(out, h, atol=1e-5)


def test_loreft_equals_hand_computed_formula_on_any_leading_shape():
    torch.manual_seed(0)
    d, r = 12, 3
    module = LoReFT(d, r)
    R, W, b = module.rotation.detach(), module.learned_source.weight.detach(), module.learned_source.bias.detach()
    h = torch.randn(2, 5, d)
    expected = h + (h @ W.T + b - h @ R.T) @ R
    assert torch.allclose(module(h), expected, atol=1e-5)
    # The edit lives in the row space of R: the orthogonal complement is untouched.
    proj_out = torch.eye(d) - R.T @ R
    assert torch.allclose(module(h) @ proj_out, h @ proj_out, atol=1e-5)


def test_direft_equals_hand_computed_formula():
    torch.manual_seed(0)
    module = DiReFT(10, 3)
    W1, b, W2 = module.learned_source.weight.detach(), module.learned_source.bias.detach(), module.write.detach()
    h = torch.randn(4, 7, 10)
    assert torch.allclose(module(h), h + (h @ W1.T + b) @ W2, atol=1e-5)


@pytest.mark.parametrize("r", [2, 4, 7])
def test_from_rotation_keeps_given_directions(r):
    given_rows = random_orthonormal_rows(4, 16, torch.Generator().manual_seed(0))
    module = LoReFT.from_rotation(given_rows, r=r, generator=torch.Generator().manual_seed(1))
    R = module.rotation.detach()
    assert R.shape == (r, 16)
    assert torch.allclose(R @ R.T, torch.eye(r), atol=1e-5)
    kept = min(r, 4)
    assert torch.allclose(R[:kept], given_rows[:kept], atol=1e-6)
    assert n_trainable(module) == 2 * 16 * r + r


def test_identity_init_and_frozen_rotation_train_only_w_and_b():
    torch.manual_seed(0)
    given_rows = random_orthonormal_rows(3, 12)
    module = LoReFT.from_rotation(given_rows, identity_init=True)
    h = torch.randn(5, 12)
    assert torch.allclose(module(h), h, atol=1e-5)
    module.freeze_rotation()
    assert n_trainable(module) == 12 * 3 + 3
    opt = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(20):
        opt.zero_grad()
        ((module(h) - 2 * h) ** 2).mean().backward()
        opt.step()
    assert torch.allclose(module.rotation.detach(), given_rows, atol=1e-6)
    assert not torch.allclose(module(h), h, atol=1e-3)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_input_comes_back_in_its_dtype(dtype):
    module = LoReFT(16, 2)
    h = torch.randn(3, 16).to(dtype)
    assert module(h).dtype == dtype and DiReFT(16, 2)(h).dtype == dtype
    assert torch.allclose(module(h).float(), module(h.float()), atol=5e-2)


def test_dropout_only_drops_the_edit():
    torch.manual_seed(0)
    module = LoReFT(16, 4, dropout=0.5, identity_init=True)
    module.train()
    h = torch.randn(8, 16)
    # Identity edit is zero, so dropout must leave h unchanged (pyreft drops h itself).
    assert torch.allclose(module(h), h, atol=1e-5)


def test_bad_rank_gives_our_error():
    with pytest.raises(InterventionError, match="rank"):
        LoReFT(8, 9)
    with pytest.raises(InterventionError, match="rank"):
        DiReFT(8, 0)
