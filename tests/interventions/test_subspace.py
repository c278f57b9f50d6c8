"""DII modules: orthonormality under training, the DII formula, slices, Boundless DAS."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from interventions.errors import InterventionError
from interventions.subspace import (
    PARAMETRIZATIONS,
    BoundlessSubspace,
    RotatedSubspace,
    VanillaPatch,
    random_orthonormal_rows,
)

from .conftest import train_with_adam


def assert_orthonormal_rows(r, atol=1e-5):
    eye = torch.eye(r.shape[0])
    assert torch.allclose(r @ r.T, eye, atol=atol), (r @ r.T - eye).abs().max()


@pytest.mark.parametrize("kind", ["dii", "loreft"])
@pytest.mark.parametrize("parametrization", PARAMETRIZATIONS)
def test_rows_stay_orthonormal_after_1000_adam_steps(parametrization, kind):
    """A DII rotation, and LoReFT's R, keep orthonormal rows under unconstrained Adam."""
    from interventions.reft import LoReFT

    torch.manual_seed(0)
    d, k = 24, 6
    base, source, target = torch.randn(64, d), torch.randn(64, d), torch.randn(64, d)
    if kind == "dii":
        module = RotatedSubspace(d, k, parametrization=parametrization)
        start = train_with_adam(module, lambda: ((module(base, source) - target) ** 2).mean())
    else:
        module = LoReFT(d, k, parametrization=parametrization)
        start = train_with_adam(module, lambda: ((module(base) - target) ** 2).mean())
    r = module.rotation.detach()
    assert_orthonormal_rows(r)
    assert (r - start).abs().max() > 1e-2  # it did train


@pytest.mark.parametrize("parametrization", PARAMETRIZATIONS)
def test_trainable_numbers_are_d_times_k(parametrization):
    module = RotatedSubspace(20, 5, parametrization=parametrization)
    assert sum(p.numel() for p in module.parameters() if p.requires_grad) == 20 * 5


@settings(max_examples=25, deadline=None)
@given(d=st.integers(2, 40), k_frac=st.floats(0.01, 1.0), batch=st.integers(1, 6), seed=st.integers(0, 10_000),
       parametrization=st.sampled_from(PARAMETRIZATIONS))
def test_source_equal_to_base_is_identity(d, k_frac, batch, seed, parametrization):
    k = max(1, int(round(k_frac * d)))
    g = torch.Generator().manual_seed(seed)
    module = RotatedSubspace(d, k, parametrization=parametrization, generator=g)
    base = torch.randn(batch, d, generator=g)
    out = module(base, base.clone())
    assert out.shape == base.shape
    assert torch.allclose(out, base, atol=1e-6)
    assert_orthonormal_rows(module.rotation.detach())


@settings(max_examples=15, deadline=None)
@given(d=st.integers(1, 32), seed=st.integers(0, 10_000), parametrization=st.sampled_from(PARAMETRIZATIONS))
def test_full_rank_dii_is_full_vector_patching(d, seed, parametrization):
    g = torch.Generator().manual_seed(seed)
    module = RotatedSubspace(d, d, parametrization=parametrization, generator=g)
    base, source = torch.randn(4, d, generator=g), torch.randn(4, d, generator=g)
    assert torch.allclose(module(base, source), source, atol=1e-5)
    assert torch.equal(VanillaPatch()(base, source), source)


def test_dii_equals_hand_computed_formula():
    torch.manual_seed(3)
    d, k = 10, 3
    r = torch.linalg.qr(torch.randn(d, k)).Q.T  # explicit orthonormal rows
    module = RotatedSubspace.from_rotation(r)
    base, source = torch.randn(5, d), torch.randn(5, d)
    expected = torch.stack([hb + r.T @ (r @ hs - r @ hb) for hb, hs in zip(base, source)])
    assert torch.allclose(module(base, source), expected, atol=1e-6)
    # Only the subspace changed: the component orthogonal to it is the base's.
    proj_out = torch.eye(d) - r.T @ r
    assert torch.allclose(module(base, source) @ proj_out, base @ proj_out, atol=1e-6)
    assert torch.allclose(module(base, source) @ r.T, source @ r.T, atol=1e-6)


@pytest.mark.parametrize("parametrization", PARAMETRIZATIONS)
def test_from_rotation_is_exact(parametrization):
    r = random_orthonormal_rows(4, 12, torch.Generator().manual_seed(7))
    module = RotatedSubspace.from_rotation(r, parametrization=parametrization)
    assert torch.allclose(module.rotation, r, atol=1e-6)


def test_from_rotation_refuses_non_orthonormal_rows():
    with pytest.raises(InterventionError, match="orthonormal"):
        RotatedSubspace.from_rotation(torch.randn(3, 8))


def test_seeded_generator_reproduces_init():
    a = RotatedSubspace(16, 4, generator=torch.Generator().manual_seed(1)).rotation
    b = RotatedSubspace(16, 4, generator=torch.Generator().manual_seed(1)).rotation
    c = RotatedSubspace(16, 4, generator=torch.Generator().manual_seed(2)).rotation
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_slices_swap_only_active_variables():
    torch.manual_seed(0)
    d = 12
    r = random_orthonormal_rows(6, d, torch.Generator().manual_seed(0))
    slices = {"V1": (0, 2), "V2": (2, 5)}  # row 5 belongs to no variable
    module = RotatedSubspace.from_rotation(r, slices=slices)
    base = torch.randn(4, d)
    sources = torch.randn(4, 2, d)
    active = torch.tensor([[True, False], [False, True], [True, True], [False, False]])
    out = module(base, sources, active=active)
    rb, ro = base @ r.T, out @ r.T
    rs = sources @ r.T  # [B, V, k]
    for b in range(4):
        for v, (start, stop) in enumerate(slices.values()):
            want = rs[b, v, start:stop] if active[b, v] else rb[b, start:stop]
            assert torch.allclose(ro[b, start:stop], want, atol=1e-5)
        assert torch.allclose(ro[b, 5:], rb[b, 5:], atol=1e-5)  # unowned row keeps base
    assert torch.allclose(out[3], base[3], atol=1e-6)  # nothing active: base unchanged
    # The sum formula: h_b + sum_v active_v R_v^T (R_v h_s_v - R_v h_b).
    expected = base.clone()
    for v, (start, stop) in enumerate(slices.values()):
        rv = r[start:stop]
        expected += active[:, v, None] * ((sources[:, v] @ rv.T - base @ rv.T) @ rv)
    assert torch.allclose(out, expected, atol=1e-5)


def test_slices_must_be_disjoint_and_in_range():
    with pytest.raises(InterventionError, match="overlap"):
        RotatedSubspace(8, 4, slices={"a": (0, 3), "b": (2, 4)})
    with pytest.raises(InterventionError, match="start < stop"):
        RotatedSubspace(8, 4, slices={"a": (0, 5)})
    module = RotatedSubspace(8, 4, slices={"a": (0, 2), "b": (2, 4)})
    with pytest.raises(InterventionError, match="one source per slice"):
        module(torch.randn(2, 8), torch.randn(2, 3, 8))


def test_bad_shapes_and_names_give_our_error():
    with pytest.raises(InterventionError, match="parametrization"):
        RotatedSubspace(8, 2, parametrization="givens")
    with pytest.raises(InterventionError, match="k <= d"):
        RotatedSubspace(4, 8)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_activations_come_back_in_their_dtype(dtype):
    torch.manual_seed(0)
    module = RotatedSubspace(16, 4)
    base, source = torch.randn(3, 16).to(dtype), torch.randn(3, 16).to(dtype)
    out = module(base, source)
    assert out.dtype == dtype
    assert torch.equal(module(base, base), base)
    expected = module(base.float(), source.float())
    assert torch.allclose(out.float(), expected, atol=5e-2)
    assert module.rotation.dtype == torch.float32


def test_gradients_reach_only_the_rotation():
    module = RotatedSubspace(8, 2)
    base = torch.randn(3, 8, requires_grad=True)
    module(base, torch.randn(3, 8)).sum().backward()
    assert all(p.grad is not None for p in module.parameters())


def test_boundless_mask_becomes_hard_and_full_mask_patches():
    torch.manual_seed(0)
    d = 16
    module = BoundlessSubspace(d, init_boundary=0.3)  # boundary at 4.8 dims
    module.set_temperature(1e-4)
    mask = module.mask().detach()
    assert torch.equal(mask, (torch.arange(d) < 5).float())
    assert module.intervention_size == 5
    hard = module.hard_rotation()
    assert hard.shape == (5, d)
    assert torch.allclose(hard, module.rotation.detach()[:5])
    assert_orthonormal_rows(hard)
    # Hard mask: Boundless equals the DII on the kept rows.
    base, source = torch.randn(4, d), torch.randn(4, d)
    dii = RotatedSubspace.from_rotation(hard)
    assert torch.allclose(module(base, source), dii(base, source), atol=1e-5)
    # At a high temperature the mask is soft.
    module.set_temperature(50.0)
    assert ((module.mask() > 0.01) & (module.mask() < 0.99)).all()
    # Full mask: patching.
    full = BoundlessSubspace(d, init_boundary=1 - 1e-6)
    full.set_temperature(1e-3)
    assert torch.allclose(full(base, source), source, atol=1e-5)
    assert torch.allclose(full(base, base), base, atol=1e-6)


def test_boundless_temperature_schedule_anneals_geometrically():
    module = BoundlessSubspace(8, temperature_start=50.0, temperature_end=0.1)
    temps = [module.temperature_at(s, 11) for s in range(11)]
    assert temps[0] == pytest.approx(50.0) and temps[-1] == pytest.approx(0.1)
    ratios = [b / a for a, b in zip(temps, temps[1:])]
    assert all(r == pytest.approx(ratios[0]) for r in ratios) and ratios[0] < 1


def test_boundless_boundary_receives_gradient_and_rotation_stays_orthonormal():
    torch.manual_seed(0)
    d = 16
    module = BoundlessSubspace(d)
    opt = torch.optim.Adam(module.parameters(), lr=1e-2)
    base, source = torch.randn(32, d), torch.randn(32, d)
    for step in range(200):
        module.set_temperature(module.temperature_at(step, 200))
        opt.zero_grad()
        # Reward moving towards the source: the boundary should grow.
        loss = ((module(base, source) - source) ** 2).mean()
        loss.backward()
        opt.step()
    assert module.boundary.item() > 0.5
    assert_orthonormal_rows(module.rotation.detach())


def test_exact_rows_are_returned_as_given_until_the_module_trains():
    """An imported pyreft R is orthonormal only to float32 rounding; set_rows(exact=True) keeps
    those very numbers (pyreft computes with them), and training returns to the QR map."""
    from interventions.subspace import OrthonormalRows, _qr_rows, random_orthonormal_rows

    g = torch.Generator().manual_seed(0)
    given = random_orthonormal_rows(4, 32, g) + 1e-6 * torch.randn(4, 32, generator=g)
    rows = OrthonormalRows(32, 4).eval()
    rows.set_rows(given, exact=True)
    assert torch.equal(rows(), given)
    assert not torch.equal(_qr_rows(given.T.contiguous()), given)  # the QR map would move them
    assert torch.equal(rows.double()(), given.double())  # at the module's dtype, same numbers
    rows.float()

    rows.train()
    trained = rows()
    assert trained.requires_grad and torch.allclose(trained @ trained.T, torch.eye(4), atol=1e-5)
    assert not torch.equal(rows.eval()(), given)  # once trained, the map is the truth again
