"""Forward passes with interventions: the nnsight reference path, the suffix-only fast
path, and ReFT hooks. Tiny random-weight models; fp32 throughout."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from interventions import (
    LoReFT,
    Prepared,
    RotatedSubspace,
    Site,
    SuffixRunner,
    attach,
    collect,
    collect_many,
    encode,
    load_model,
    run_with_interventions,
)

TOL = dict(atol=1e-5, rtol=1e-5)


def clean_answer_logits(model, batch):
    with torch.no_grad():
        out = model.forward(batch.inputs)
    logits = getattr(out, "logits", out)
    if logits.dim() == 3:
        logits = logits[torch.arange(len(batch)), batch.answer_positions]
    return logits


def prompt_batch(tiny, model, n=6, seed=0, position="adj"):
    return encode(model, tiny.PromptTask(), tiny.prompt_inputs(n, seed=seed), position)


def test_dii_with_source_equal_to_base_is_the_unmodified_forward(tiny, arch):
    model = tiny.make_lm(arch)
    batch = prompt_batch(tiny, model)
    assert len(set(batch.positions.tolist())) > 1
    clean = clean_answer_logits(model, batch)
    torch.manual_seed(0)
    for component in ("block_output", "attn_output", "mlp_output", "head_output"):
        site = Site(1, component, "adj")
        source = collect(model, batch, site)
        dii = RotatedSubspace(model.site_dim(site), 8)
        logits = run_with_interventions(model, batch, [(site, dii, source)])
        torch.testing.assert_close(logits, clean, **TOL)
        # The fast path agrees on the same identity.
        runner = SuffixRunner(model, site)
        torch.testing.assert_close(runner.logits(runner.prepare(batch), lambda h: dii(h, source)), clean, **TOL)


def test_dii_with_source_equal_to_base_on_mlps(tiny, tmp_path):
    from interventions.mlp import MLPClassifier, MLPClassifierConfig

    torch.manual_seed(0)
    MLPClassifier(MLPClassifierConfig(input_size=16, hidden_size=16, n_hidden=3)).save_pretrained(tmp_path)
    for model in (load_model(tiny.make_mlp_module(), device="cpu"), load_model(tmp_path, device="cpu")):
        batch = encode(model, tiny.VectorTask(), tiny.vector_inputs(8), None)
        clean = clean_answer_logits(model, batch)
        for layer in range(model.n_layers):
            site = Site(layer, "block_output", None)
            source = collect(model, batch, site)
            dii = RotatedSubspace(model.site_dim(site), 4)
            torch.testing.assert_close(run_with_interventions(model, batch, [(site, dii, source)]), clean, **TOL)


def test_full_dii_equals_patching_the_source_and_changes_the_answer(tiny):
    """k = d swaps the whole vector: the intervened logits are the source run's logits when
    the site is the last position of the last block (nothing after it mixes)."""
    model = tiny.make_lm("llama")
    base = prompt_batch(tiny, model, seed=0, position="last")
    source_batch = prompt_batch(tiny, model, seed=5, position="last")
    site = Site(1, "block_output", "last")
    source = collect(model, source_batch, site)
    dii = RotatedSubspace(model.hidden_size, model.hidden_size)
    logits = run_with_interventions(model, base, [(site, dii, source)])
    torch.testing.assert_close(logits, clean_answer_logits(model, source_batch), **TOL)
    assert (logits - clean_answer_logits(model, base)).abs().max() > 1e-3


@pytest.mark.parametrize("arch", ["gpt2", "llama", "opt"])
@pytest.mark.parametrize("component", ["block_output", "mlp_output", "head_output"])
def test_an_edit_equals_the_same_edit_by_a_hand_written_hook(tiny, arch, component):
    model = tiny.make_lm(arch)
    batch = prompt_batch(tiny, model, position="noun")
    site = Site(0, component, "noun")
    delta = torch.randn(model.site_dim(site), generator=torch.Generator().manual_seed(1))
    logits = run_with_interventions(model, batch, [(site, lambda h: h + delta)])

    rows = torch.arange(len(batch))

    def add_delta(h):
        if h.dim() == 2:  # OPT's MLP sees tokens flattened to rows
            return add_delta(h.view(len(batch), -1, h.shape[-1])).view(h.shape)
        h = h.clone()
        h[rows, batch.positions] += delta
        return h

    module = model.module_at(site)
    if model.module_path(site)[1] == "input":
        handle = module.register_forward_pre_hook(lambda m, args: (add_delta(args[0]),))
    else:
        handle = module.register_forward_hook(lambda m, a, out: add_delta(out) if not isinstance(out, tuple) else (add_delta(out[0]), *out[1:]))
    try:
        expected = clean_answer_logits(model, batch)
    finally:
        handle.remove()
    torch.testing.assert_close(logits, expected, **TOL)
    assert (logits - clean_answer_logits(model, batch)).abs().max() > 1e-4


def test_intervention_at_p_leaves_earlier_positions_unchanged(tiny, causal_arch):
    model = tiny.make_lm(causal_arch)
    batch = prompt_batch(tiny, model, position="noun")
    site = Site(0, "block_output", "noun")
    delta = 3.0 * torch.randn(model.hidden_size, generator=torch.Generator().manual_seed(0))
    push = lambda h: h + delta  # noqa: E731  (not a constant shift: LayerNorm would remove it)
    before = replace(batch, answer_positions=batch.positions - 1)
    torch.testing.assert_close(run_with_interventions(model, before, [(site, push)]), clean_answer_logits(model, before), atol=1e-6, rtol=1e-6)
    at = replace(batch, answer_positions=batch.positions)
    assert (run_with_interventions(model, at, [(site, push)]) - clean_answer_logits(model, at)).abs().max() > 1e-3


def test_collect_many_is_one_forward_of_each_collect(tiny):
    model = tiny.make_lm("gpt2")
    batch = prompt_batch(tiny, model)
    sites = [Site(1, "mlp_output"), Site(0, "block_output"), Site(0, "head_output")]
    many = collect_many(model, batch, sites)
    assert list(many) == [s.key for s in sites]
    for site in sites:
        torch.testing.assert_close(many[site.key], collect(model, batch, site), atol=0, rtol=0)
    # block_output of layer 0 at each position equals the HF hidden state.
    hidden = model.hf(**batch.inputs, output_hidden_states=True).hidden_states[1]
    torch.testing.assert_close(many["L0.block_output.last"], hidden[torch.arange(len(batch)), batch.positions], **TOL)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_suffix_runner_equals_the_full_intervened_forward(tiny, arch, side):
    model = tiny.make_lm(arch, padding_side=side)
    base = prompt_batch(tiny, model, n=8, seed=0, position="adj")
    source_batch = prompt_batch(tiny, model, n=8, seed=9, position="adj")
    if side == "right":
        assert len(set(base.positions.tolist())) > 1  # positions vary across the batch
    site = Site(0, "block_output", "adj")
    source = collect(model, source_batch, site)

    torch.manual_seed(0)
    dii_full = RotatedSubspace(model.hidden_size, 4)
    dii_fast = RotatedSubspace(model.hidden_size, 4)
    dii_fast.load_state_dict(dii_full.state_dict())

    full = run_with_interventions(model, base, [(site, dii_full, source)])
    runner = SuffixRunner(model, site)
    prepared = runner.prepare(base)
    assert prepared.prefix_len == int(base.positions.min()) > 0  # the cache path runs
    fast = runner.logits(prepared, lambda h: dii_fast(h, source))
    torch.testing.assert_close(fast, full, **TOL)
    assert (full - clean_answer_logits(model, base)).abs().max() > 1e-4

    target = torch.zeros(len(base), dtype=torch.long)
    nn.functional.cross_entropy(full, target).backward()
    nn.functional.cross_entropy(fast, target).backward()
    for p_full, p_fast in zip(dii_full.parameters(), dii_fast.parameters()):
        assert p_fast.grad is not None and p_fast.grad.abs().sum() > 0
        torch.testing.assert_close(p_fast.grad, p_full.grad, **TOL)
    assert all(p.grad is None for p in model.hf.parameters())

    # A second step on the same prepared batch (the cache must not carry the first step).
    again = runner.logits(prepared, lambda h: dii_fast(h, source) * 1.0)
    torch.testing.assert_close(again, full, **TOL)

    # Minibatches of a prepared batch equal the full path on the sub-batch.
    idx = torch.tensor([5, 0, 3])
    sub = runner.logits(prepared.select(idx), lambda h: dii_fast(h, source[idx]))
    torch.testing.assert_close(sub, run_with_interventions(model, base.select(idx), [(site, dii_full, source[idx])]), **TOL)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gpt_neox", "gemma2", "opt"])
def test_suffix_runner_skips_the_blocks_below_a_last_token_site_and_stays_exact(tiny, arch):
    # Left padding puts every example's last token at the same index: the suffix is that one
    # token, so a block_output step need not run blocks 0..L.
    model = tiny.make_lm(arch, padding_side="left")
    base = prompt_batch(tiny, model, n=8, seed=0, position="last")
    source_batch = prompt_batch(tiny, model, n=8, seed=9, position="last")
    attn_calls = {layer: 0 for layer in range(model.n_layers)}

    def count(layer):
        def hook(*_):
            attn_calls[layer] += 1
        return hook

    for layer in range(model.n_layers):
        model.module_at(Site(layer, "attn_output")).register_forward_hook(count(layer))
    for layer in range(model.n_layers):
        site = Site(layer, "block_output", "last")
        source = collect(model, source_batch, site)
        torch.manual_seed(layer)
        dii_full = RotatedSubspace(model.hidden_size, 4)
        dii_fast = RotatedSubspace(model.hidden_size, 4)
        dii_fast.load_state_dict(dii_full.state_dict())

        runner = SuffixRunner(model, site)
        prepared = runner.prepare(base)
        assert prepared.inputs["input_ids"].shape[1] == 1  # the suffix is the last token alone
        before = dict(attn_calls)
        fast = runner.logits(prepared, lambda h: dii_fast(h, source))
        # Blocks 0..L did not run; the blocks above did.
        assert all(attn_calls[i] == before[i] for i in range(layer + 1))
        assert all(attn_calls[i] == before[i] + 1 for i in range(layer + 1, model.n_layers))

        full = run_with_interventions(model, base, [(site, dii_full, source)])  # the blocks are restored
        torch.testing.assert_close(fast, full, **TOL)
        assert (full - clean_answer_logits(model, base)).abs().max() > 1e-4

        target = torch.arange(len(base)) % 3
        nn.functional.cross_entropy(full, target).backward()
        nn.functional.cross_entropy(fast, target).backward()
        for p_full, p_fast in zip(dii_full.parameters(), dii_fast.parameters()):
            assert p_fast.grad is not None and p_fast.grad.abs().sum() > 0
            torch.testing.assert_close(p_fast.grad, p_full.grad, **TOL)

        # A minibatch, and a second step, go through the skip path too.
        idx = torch.tensor([6, 1, 2])
        sub = runner.logits(prepared.select(idx), lambda h: dii_fast(h, source[idx]))
        torch.testing.assert_close(sub, run_with_interventions(model, base.select(idx), [(site, dii_full, source[idx])]), **TOL)
    # After the steps the model is its own: the plain forward equals a fresh copy's.
    torch.testing.assert_close(clean_answer_logits(model, base), clean_answer_logits(tiny.make_lm(arch, padding_side="left"), base), **TOL)


def test_suffix_runner_runs_every_block_when_a_hook_sits_on_a_skippable_block(tiny):
    model = tiny.make_lm("gpt2", padding_side="left")
    base = prompt_batch(tiny, model, position="last")
    site = Site(1, "block_output", "last")
    runner = SuffixRunner(model, site)
    prepared = runner.prepare(base)
    d = model.hidden_size
    # Someone else's hook on a block below the site expects that block to run: it must see it run.
    seen = []
    handle = model.module_at(Site(0, "block_output")).register_forward_hook(lambda _m, _a, out: seen.append(out.shape))
    try:
        fn = lambda h: h * 0.5  # noqa: E731
        fast = runner.logits(prepared, fn)
        assert seen == [torch.Size([len(base), 1, d])]
        torch.testing.assert_close(fast, run_with_interventions(model, base, [(site, fn)]), **TOL)
    finally:
        handle.remove()


def test_one_prepare_serves_every_site_of_a_sweep(tiny):
    model = tiny.make_lm("gpt2", padding_side="right")
    base = prompt_batch(tiny, model, position="noun")
    sites = [Site(layer, comp, "noun") for layer in range(2) for comp in ("block_output", "attn_output", "mlp_output")]
    runner = SuffixRunner(model, sites[0])
    prepared = runner.prepare(base, sites=sites)
    for site in sites:
        fn = lambda h: h * 0.5  # noqa: E731
        torch.testing.assert_close(runner.logits(prepared, fn, site=site), run_with_interventions(model, base, [(site, fn)]), **TOL)


@pytest.mark.parametrize("which", ["bert", "mlp"])
def test_suffix_runner_without_a_cache_is_the_hooked_forward(tiny, which):
    if which == "bert":
        model = tiny.make_lm("bert")
        batch = prompt_batch(tiny, model)
        site = Site(1, "mlp_output", "adj")
    else:
        model = load_model(tiny.make_mlp_module(), device="cpu")
        batch = encode(model, tiny.VectorTask(), tiny.vector_inputs(8), None)
        site = Site(0, "block_output", None)
    runner = SuffixRunner(model, site)
    prepared = runner.prepare(batch)
    assert prepared.prefix_kv is None
    fn = lambda h: h.flip(0)  # noqa: E731  (another example's activation)
    torch.testing.assert_close(runner.logits(prepared, fn), run_with_interventions(model, batch, [(site, fn)]), **TOL)


def test_attach_applies_reft_at_given_positions(tiny):
    model = tiny.make_lm("llama", padding_side="left")
    batch = prompt_batch(tiny, model, position="adj")
    torch.manual_seed(0)
    reft = LoReFT(model.hidden_size, 4)
    site = Site(1, "block_output", "adj")
    # One position per example: equal to the reference path with fn = LoReFT.
    with attach(model, [(site, reft, batch.positions[:, None])]):
        hooked = clean_answer_logits(model, batch)
    torch.testing.assert_close(hooked, run_with_interventions(model, batch, [(site, reft)]), **TOL)
    # Padding entries (-1) are skipped: [p, -1] is the same as [p].
    padded = torch.stack([batch.positions, torch.full_like(batch.positions, -1)], dim=1)
    with attach(model, [((1, "block_output"), reft, padded)]):
        torch.testing.assert_close(clean_answer_logits(model, batch), hooked, **TOL)
    # Gradients reach the ReFT parameters; hooks are gone after the context.
    with attach(model, [(site, reft, batch.positions[:, None])]):
        model.forward(batch.inputs).logits.sum().backward()
    assert reft.learned_source.weight.grad.abs().sum() > 0
    assert not model.module_at(site)._forward_hooks


def test_attach_edits_only_the_prompt_forward_during_generate(tiny):
    model = tiny.make_lm("gpt2", padding_side="left")
    batch = prompt_batch(tiny, model, n=3, position="last")
    calls = []

    class Counting(nn.Module):
        def forward(self, h):
            calls.append(h.shape)
            return h + 1.0

    with attach(model, [(Site(0), Counting(), batch.positions[:, None])]):
        out = model.hf.generate(**{k: v for k, v in batch.inputs.items() if k != "position_ids"},
                                max_new_tokens=3, do_sample=False, pad_token_id=0)
    assert out.shape[1] == batch.seq_len + 3
    assert len(calls) == 1 and calls[0] == (3, 32)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gemma2", "opt", "bert"])
def test_a_head_restricted_to_some_tokens_gives_those_columns_of_the_full_logits(tiny, arch):
    """The answer-token loss computes only the answer rows of the unembedding: the numbers
    must be the full head's columns (values and gradients), and the head must be whole again
    afterwards. Gemma 2 soft-caps its logits (elementwise, so it commutes with the cut)."""
    model = tiny.make_lm(arch)
    base = prompt_batch(tiny, model, n=6, seed=0, position="adj")
    source = collect(model, prompt_batch(tiny, model, n=6, seed=4, position="adj"), Site(0, "block_output", "adj"))
    site = Site(0, "block_output", "adj")
    rows = torch.tensor([5, 2, 17, 40])
    torch.manual_seed(0)
    dii = RotatedSubspace(model.hidden_size, 4)
    runner = SuffixRunner(model, site)
    prepared = runner.prepare(base)
    full = runner.logits(prepared, lambda h: dii(h, source))
    cut = runner.logits(prepared, lambda h: dii(h, source), vocab_rows=rows)
    assert cut.shape == (len(base), len(rows))
    torch.testing.assert_close(cut, full[:, rows], **TOL)
    (g_full,) = torch.autograd.grad(full[:, rows].logsumexp(-1).sum(), dii.parameters().__next__())
    (g_cut,) = torch.autograd.grad(cut.logsumexp(-1).sum(), dii.parameters().__next__())
    torch.testing.assert_close(g_cut, g_full, **TOL)
    assert runner.logits(prepared, lambda h: dii(h, source)).shape == full.shape  # the head is whole again


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_preparing_several_positions_from_one_forward_equals_one_forward_each(tiny, arch):
    """prepare_positions: every position's activations, KV prefix and suffix inputs are those
    of its own prepare, and a DII step on them gives the same logits."""
    model = tiny.make_lm(arch)
    inputs = tiny.prompt_inputs(8, seed=3)
    positions = ["adj", "noun", "last"]
    batches = {p: encode(model, tiny.PromptTask(), inputs, p) for p in positions}
    sites = {p: [Site(0, "block_output", p), Site(1, "block_output", p)] for p in positions}
    runner = SuffixRunner(model, sites["adj"][0])
    together = runner.prepare_positions(batches, sites)
    torch.manual_seed(0)
    dii = RotatedSubspace(model.hidden_size, 4)
    for p in positions:
        alone = SuffixRunner(model, sites[p][0]).prepare(batches[p], sites=sites[p])
        assert together[p].prefix_len == alone.prefix_len == int(batches[p].positions.min())
        for key in alone.acts:
            torch.testing.assert_close(together[p].acts[key], alone.acts[key], **TOL)
        for (k1, v1), (k2, v2) in zip(together[p].prefix_kv, alone.prefix_kv):
            torch.testing.assert_close(k1, k2, **TOL)
            torch.testing.assert_close(v1, v2, **TOL)
        assert all(torch.equal(together[p].inputs[k], alone.inputs[k]) for k in alone.inputs)
        source = alone.acts[sites[p][1].key].flip(0)
        torch.testing.assert_close(runner.logits(together[p], lambda h: dii(h, source), site=sites[p][1]),
                                   runner.logits(alone, lambda h: dii(h, source), site=sites[p][1]), **TOL)


def test_a_minibatch_copies_no_kv_prefix_and_a_step_gathers_only_the_layers_it_runs(tiny):
    """`select` keeps the prefix and narrows its row index; the step's cache gathers those rows
    for the blocks above the site and holds zero-memory stand-ins below it. Stacking minibatches
    of one prepare stacks row indices. Every path gives the full forward's logits."""
    from interventions.suffix import _new_cache

    model = tiny.make_lm("gpt2", padding_side="left")
    base = prompt_batch(tiny, model, n=8, seed=0, position="last")
    site = Site(0, "block_output", "last")
    source = collect(model, prompt_batch(tiny, model, n=8, seed=9, position="last"), site)
    runner = SuffixRunner(model, site)
    prepared = runner.prepare(base)
    idx = torch.tensor([6, 1, 2])
    sub = prepared.select(idx)
    assert sub.prefix_kv is prepared.prefix_kv and torch.equal(sub.kv_rows, idx)
    assert torch.equal(sub.select(torch.tensor([2, 0])).kv_rows, torch.tensor([2, 6]))

    cache = _new_cache(model, sub, skipped=[0])
    stand_in = cache.layers[0].keys
    assert stand_in.shape == (3, *prepared.prefix_kv[0][0].shape[1:]) and stand_in.stride() == (0, 0, 0, 0)
    for layer in range(1, model.n_layers):
        torch.testing.assert_close(cache.layers[layer].keys, prepared.prefix_kv[layer][0][idx], rtol=0, atol=0)
        torch.testing.assert_close(cache.layers[layer].values, prepared.prefix_kv[layer][1][idx], rtol=0, atol=0)
    assert cache.get_seq_length() == prepared.prefix_len

    torch.manual_seed(0)
    dii = RotatedSubspace(model.hidden_size, 4)
    other = torch.tensor([3, 3, 7])
    stacked = Prepared.stack([sub, prepared.select(other)])
    assert stacked.prefix_kv is prepared.prefix_kv and torch.equal(stacked.kv_rows, torch.cat([idx, other]))
    both = torch.cat([idx, other])
    expected = run_with_interventions(model, base.select(both), [(site, dii, source[both])])
    torch.testing.assert_close(runner.logits(stacked, lambda h: dii(h, source[both])), expected, **TOL)
    gathered = stacked.with_prefix_rows()
    assert gathered.kv_rows is None
    torch.testing.assert_close(runner.logits(gathered, lambda h: dii(h, source[both])), expected, **TOL)
