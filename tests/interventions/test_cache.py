"""ActivationCache: in memory, spilled to safetensors shards, reused."""

from __future__ import annotations

import pytest
import torch

from interventions import ActivationCache, InterventionError, Site, collect_many, encode


@pytest.fixture
def lm_and_batches(tiny):
    model = tiny.make_lm("gpt2")
    task = tiny.PromptTask()
    inputs = tiny.prompt_inputs(10, seed=4)
    batches = [encode(model, task, inputs[i : i + 4], "noun") for i in range(0, 10, 4)]
    return model, task, inputs, batches


SITES = [Site(0, "block_output", "noun"), Site(1, "mlp_output", "noun")]


def test_in_memory_cache_equals_direct_collection(lm_and_batches):
    model, _, _, batches = lm_and_batches
    cache = ActivationCache.build(model, SITES, batches)
    assert len(cache) == 3 and cache.n_spilled == 0
    for shard, batch in zip(cache, batches):
        direct = collect_many(model, batch, SITES)
        for key in direct:
            torch.testing.assert_close(shard[key], direct[key], atol=0, rtol=0)
    assert cache.all(SITES[1]).shape == (10, 32)
    with pytest.raises(InterventionError, match="not in this cache"):
        cache.all(Site(1))


def test_spilled_cache_round_trips_exactly(lm_and_batches, tmp_path):
    model, _, _, batches = lm_and_batches
    memory = ActivationCache.build(model, SITES, batches)
    on_disk = ActivationCache.build(model, SITES, batches, directory=tmp_path / "acts")
    assert on_disk.n_spilled == 3
    assert sorted(p.name for p in (tmp_path / "acts").iterdir()) == [f"shard_00000{i}.safetensors" for i in range(3)]
    for epoch in range(2):  # reusable: a second pass reads the same values
        for a, b in zip(memory, on_disk):
            assert a.keys() == b.keys()
            for key in a:
                assert torch.equal(a[key], b[key])
    for site in SITES:
        assert torch.equal(memory.all(site), on_disk.all(site))


def test_max_memory_spills_only_what_does_not_fit(lm_and_batches):
    model, _, _, batches = lm_and_batches
    one_batch = 4 * 32 * 4 * len(SITES)  # 4 examples x 32 floats x 4 bytes x 2 sites
    cache = ActivationCache.build(model, SITES, batches, max_memory=one_batch)
    assert cache.n_spilled == 2
    reference = ActivationCache.build(model, SITES, batches)
    assert torch.equal(cache.all(SITES[0]), reference.all(SITES[0]))
    directory = cache.directory
    cache.close()
    assert not directory.exists()


def test_build_from_dataset_and_encode_fn(lm_and_batches):
    model, task, inputs, batches = lm_and_batches
    seen = []
    cache = ActivationCache.build(
        model, SITES, dataset=inputs, encode_fn=lambda chunk: encode(model, task, chunk, "noun"), batch_size=4,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert torch.equal(cache.all(SITES[0]), ActivationCache.build(model, SITES, batches).all(SITES[0]))


def test_corrupt_shard_gives_a_clear_error(lm_and_batches, tmp_path):
    model, _, _, batches = lm_and_batches
    cache = ActivationCache.build(model, SITES, batches[:1], directory=tmp_path)
    (tmp_path / "shard_000000.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(InterventionError, match="rebuild"):
        cache[0]
