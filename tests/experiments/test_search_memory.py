"""The peak memory of a search stays under a bound computed from the model's and the batch's
shapes: what a search must hold is the frozen model's prepared inputs (the KV prefix and the
site activations of every distinct input) and one training step (the suffix's activations for
the backward, and the logits); nothing grows with the number of cells or steps."""

from __future__ import annotations

from experiments.memory import PeakMemory
from experiments.search import AlignmentSearch

FLOAT = 4  # bytes
SLACK_MB = 64  # the allocator's arenas, thread stacks and Python objects of a run


def shape_bound_mb(model, n_inputs: int, seq_len: int, batch: int, n_sites: int) -> float:
    d, layers, vocab = model.hidden_size, model.n_layers, model.hf.config.vocab_size
    prepared = n_inputs * (layers * 2 * seq_len * d + n_sites * d) * FLOAT  # KV (keys and values) + site activations
    # one step: every layer's saved tensors for the backward (attention and MLP, at most ~16 of
    # width d per token, the MLP's 4d counted in), the attention scores, and the logits
    step = batch * seq_len * layers * (16 * d + 2 * seq_len * model.hf.config.num_attention_heads) * FLOAT
    step += 3 * batch * vocab * FLOAT
    return 2 * (prepared + step) / 2**20 + SLACK_MB  # x2: a freed block and its successor can coexist


def test_a_search_peaks_under_the_bound_from_its_shapes(zoo_model):
    model_dir = str(zoo_model("hierarchical_equality_tokens"))
    search = AlignmentSearch(model_dir, "hierarchical_equality_tokens", layers="all", positions=["b", "d"], k=8,
                             steps=40, batch_size=64, n_train=600, n_test=200, controls=["random_rotation"])
    model = search.model
    with PeakMemory("cpu") as mem:
        run = search.run()
    assert run.complete
    split = search.split("main")
    n_inputs = len(split.inputs)
    seq_len = int(split.prepared(search.sites[0])[1].inputs["attention_mask"].shape[1])
    bound = shape_bound_mb(model, n_inputs, seq_len, 64, len(search.sites))
    # measured: a 56 MB peak against a 105 MB bound (8 sites x 2 methods, 40 steps each)
    assert 0 < mem.peak_mb <= bound, (mem.peak_mb, bound)
