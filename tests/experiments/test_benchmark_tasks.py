"""The MIB-style built-ins on their zoo models, through the config path a user takes
(`[task_options]`, `model = "zoo"`): two-digit addition answered by the tens of the sum puts
the ones carry at token b0 in the first layer, and the untrained-model control stays at
chance. Its zoo model trains for about two minutes, so this runs on request, with the other
minutes-long zoo checks: DII_TEST_ALL_ZOO=1 make test."""

from __future__ import annotations

import pytest

from experiments.search import SearchConfig
from experiments.search import AlignmentSearch
from tests.experiments.test_zoo import ALL_ZOO

pytestmark = pytest.mark.skipif(not ALL_ZOO, reason="trains a zoo model for minutes; DII_TEST_ALL_ZOO=1 runs it")


def test_the_carry_of_two_digit_addition_is_at_token_b0(zoo_cache):
    config = SearchConfig(model="zoo", task="arithmetic_carry", task_options={"answer": "tens"}, variables=["C"],
                          layers=[0], positions=["a0", "b0"], k=4, epochs=2, n_train=1000, n_test=300,
                          controls=["untrained_model"])
    rows = AlignmentSearch.from_config(config).run().rows
    das = {r["position"]: r for r in rows if r["method"] == "das"}
    untrained = {r["position"]: r for r in rows if r["method"] == "untrained_model"}
    assert das["b0"]["iia"] >= 0.95 and das["b0"]["above_floor"]  # the carry is computed where b0 is read
    assert not das["a0"]["above_floor"]  # a0 alone cannot hold it
    assert untrained["b0"]["iia"] <= 0.2  # 20 possible answers: the untrained model is at chance


def test_ioi_decides_by_the_subject_read_at_token_s_then_the_last_token(zoo_cache):
    """IOI on its zoo GPT-2 (README, "IOI"). On s2_io_flip pairs (the subject replaced by the
    other name) what decides the answer sits at token s in layer 0 and at the last token from
    layer 1, nowhere at the introduced names. On s1_io_flip pairs (the names swapped, the
    subject kept) the network keeps its answer: it follows the name's identity, not its
    position, so output position is at its floor at the last token."""
    def grid(option):
        config = SearchConfig(model="zoo:ioi", task="ioi", task_options={"counterfactuals": option},
                              hypothesis="output_position", variables=["P"], layers=[0, 1], positions=["n1", "s", "last"],
                              k=4, epochs=2, n_train=1000, n_test=300, contrastive=False, controls=["untrained_model"])
        rows = AlignmentSearch.from_config(config).run().rows
        return {(r["method"], r["layer"], r["position"]): r["iia"] for r in rows}

    s2 = grid("s2_io_flip")
    assert s2[("das", 0, "s")] >= 0.7 and s2[("das", 1, "last")] >= 0.95
    assert s2[("das", 0, "last")] <= 0.1 and s2[("das", 1, "s")] <= 0.1 and s2[("das", 0, "n1")] <= 0.1
    assert max(v for (m, *_), v in s2.items() if m == "untrained_model") <= 0.3  # 8 names: chance is 0.125
    s1 = grid("s1_io_flip")
    assert s1[("das", 1, "last")] <= 0.1
