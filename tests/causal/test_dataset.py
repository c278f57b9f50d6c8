"""Counterfactual datasets: balance, determinism, JSONL round trip, disjoint splits,
min_changed, can_distinguish, and errors."""

from collections import Counter

import pytest

from causal import CausalModel, CausalModelError, CounterfactualDataset, can_distinguish, get_task

EQ = get_task("hierarchical_equality_tokens")


def counts_by_set(dataset):
    counts = {}
    for ex in dataset:
        key = tuple(ex.variables)
        counts.setdefault(key, {}).setdefault(ex.counterfactual_output, 0)
        counts[key][ex.counterfactual_output] += 1
    return counts


@pytest.mark.parametrize(
    "task_name, intervened, n",
    [
        ("hierarchical_equality_tokens", [["V1"], ["V2"], ["V1", "V2"]], 300),
        ("price_tagging", [["left"], ["right"]], 201),
        ("mcqa", [["P"]], 160),
    ],
)
def test_generation_is_balanced_over_counterfactual_outputs(task_name, intervened, n):
    task = get_task(task_name)
    data = CounterfactualDataset.generate(task, n, intervened=intervened, seed=1)
    assert len(data) == n
    counts = counts_by_set(data)
    assert sorted(counts) == sorted(map(tuple, intervened))
    n_values = len(task.causal_model.variables[task.causal_model.output])
    for per_value in counts.values():
        assert len(per_value) == n_values
        assert max(per_value.values()) - min(per_value.values()) <= 1
    model = task.causal_model
    for ex in data:
        assert len(ex.sources) == len(ex.variables)
        assert ex.base_output == model.run(ex.base)[model.output]
        assert ex.counterfactual_output == model.interchange(ex.base, dict(zip(ex.variables, ex.sources)))[model.output]
    expected_share = sum(ex.counterfactual_output != ex.base_output for ex in data) / n
    assert data.changed_share() == expected_share
    assert 0.2 < expected_share < 0.8


def test_unbalanced_generation_and_default_variables():
    data = CounterfactualDataset.generate(EQ.causal_model, 40, seed=0, balance=False)
    assert len(data) == 40 and sorted(data.variable_sets) == [["V1"], ["V2"]]
    first = CounterfactualDataset.generate(EQ, 20, hypothesis="first_argument", seed=0)
    assert first.variable_sets == [["A"]] and first.model is EQ.hypothesis("first_argument")
    assert len(data.for_variables("V1")) == 20


def test_same_seed_same_bytes_and_round_trip(tmp_path):
    kw = dict(intervened=[["V1"], ["V2"]], seed=5)
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    CounterfactualDataset.generate(EQ, 64, **kw).to_jsonl(a)
    CounterfactualDataset.generate(EQ, 64, **kw).to_jsonl(b)
    assert a.read_bytes() == b.read_bytes()
    other = tmp_path / "c.jsonl"
    CounterfactualDataset.generate(EQ, 64, intervened=[["V1"], ["V2"]], seed=6).to_jsonl(other)
    assert other.read_bytes() != a.read_bytes()
    loaded = CounterfactualDataset.from_jsonl(a)
    assert loaded.examples == CounterfactualDataset.generate(EQ, 64, **kw).examples
    assert not list(tmp_path.glob(".tmp-*"))


def test_round_trip_keeps_value_types(tmp_path):
    # ints, bools, strings and tuples must come back as the same values and types.
    model = CausalModel(
        {"n": [0, 1], "s": ["x", "y"], "t": [(0, 1), (1, 0)], "o": [False, True]},
        {"o": ["n", "s", "t"]},
        {"o": lambda n, s, t: (n == 1) == (s == "x") == (t == (0, 1))},
    )
    data = CounterfactualDataset.generate(model, 20, intervened=[["n"], ["t"]], seed=0)
    path = tmp_path / "d.jsonl"
    data.to_jsonl(path)
    loaded = CounterfactualDataset.from_jsonl(path)
    assert loaded.examples == data.examples
    for ex in loaded:
        assert type(ex.base["n"]) is int and type(ex.base["t"]) is tuple and type(ex.counterfactual_output) is bool


def test_corrupt_jsonl_names_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    CounterfactualDataset.generate(EQ, 3, intervened=[["V1"]]).to_jsonl(path)
    path.write_text(path.read_text() + "{not json\n")
    with pytest.raises(CausalModelError, match="bad.jsonl:4"):
        CounterfactualDataset.from_jsonl(path)
    with pytest.raises(CausalModelError, match="missing.jsonl"):
        CounterfactualDataset.from_jsonl(tmp_path / "missing.jsonl")


def test_plain_split_partitions_examples():
    data = CounterfactualDataset.generate(EQ, 100, intervened=[["V1"]], seed=0)
    train, test = data.split(test_fraction=0.25, seed=3)
    assert len(train) == 75 and len(test) == 25
    ids = lambda d: [id(ex) for ex in d]
    assert sorted(ids(train) + ids(test)) == sorted(ids(data))
    assert ids(data.split(0.25, seed=3)[1]) == ids(test)


def held_out_check(train, test, held):
    for ex in test:
        for x in (ex.base, *ex.sources):
            assert all(x[v] in vals for v, vals in held.items())
    for ex in train:
        for x in (ex.base, *ex.sources):
            assert all(x[v] not in vals for v, vals in held.items())


def test_disjoint_split_on_chosen_values():
    data = CounterfactualDataset.generate(get_task("price_tagging"), 200, intervened=[["left"], ["right"]], seed=0)
    held = {"X": [3, 4, 5, 15]}
    train, test = data.split(test_fraction=0.2, disjoint_on=held, seed=0)
    assert len(train) == 160 and len(test) == 40
    held_out_check(train, test, held)
    assert train.held_out == held == test.held_out
    assert {ex.base["X"] for ex in test} <= set(held["X"])


def test_disjoint_split_picks_shared_values_automatically():
    data = CounterfactualDataset.generate(EQ, 200, intervened=[["V1"], ["V2"]], seed=0)
    train, test = data.split(test_fraction=0.2, disjoint_on=["a", "b", "c", "d"], seed=1)
    held = test.held_out
    assert len(held["a"]) == 4 and all(held[v] == held["a"] for v in "bcd")
    held_out_check(train, test, held)
    assert len(test) == 40 and len(train) == 160
    # Test still holds both outputs in balance (a == b stays possible on held-out objects).
    counts = test.output_counts()
    assert abs(counts[True] - counts[False]) <= 2
    again = data.split(test_fraction=0.2, disjoint_on=["a", "b", "c", "d"], seed=1)[1]
    assert again.examples == test.examples


def test_loaded_dataset_is_filtered_when_split_disjointly(tmp_path):
    data = CounterfactualDataset.generate(get_task("price_tagging"), 300, intervened=[["left"]], seed=0)
    path = tmp_path / "p.jsonl"
    data.to_jsonl(path)
    loaded = CounterfactualDataset.from_jsonl(path)
    held = {"U": list(range(10, 20))}
    train, test = loaded.split(disjoint_on=held)
    assert len(train) > 0 and len(test) > 0
    held_out_check(train, test, held)
    assert len(train) + len(test) <= len(loaded)


def test_min_changed_is_enforced():
    left_only = get_task("price_tagging")
    # The output of left_only ignores U: swapping U never changes it.
    with pytest.raises(CausalModelError, match="min_changed"):
        CounterfactualDataset.generate(left_only, 50, intervened=[["U"]], hypothesis="left_only", min_changed=0.1)
    data = CounterfactualDataset.generate(left_only, 50, intervened=[["left"]], hypothesis="left_only", min_changed=0.3)
    assert data.changed_share() >= 0.3


def test_can_distinguish_matches_hand_count():
    data = CounterfactualDataset.generate(EQ, 200, intervened=[["V1"]], seed=2)
    both, left, first = (EQ.hypothesis(h) for h in ("both_equalities", "left_equality", "first_argument"))
    assert can_distinguish(both, left, data) == 0.0
    # V1 from the source is (s.a == s.b); A from the source gives (s.a == base.b) instead.
    expected = sum(
        ((s["a"] == s["b"]) == (ex.base["c"] == ex.base["d"])) != ((s["a"] == ex.base["b"]) == (ex.base["c"] == ex.base["d"]))
        for ex in data
        for s in ex.sources
    ) / len(data)
    assert can_distinguish(both, first, data, alignment={"V1": "A"}) == expected > 0.3
    with pytest.raises(CausalModelError, match="'V1'"):
        can_distinguish(both, first, data)


@pytest.mark.parametrize(
    "kwargs, named",
    [
        (dict(intervened=[["nope"]]), "'nope'"),
        (dict(intervened=[["V1"]], hypothesis="nope"), "nope"),
        (dict(intervened=[[]]), "empty"),
        (dict(intervened=[["V1"]], allowed_values={"V1": [True]}), "'V1'"),
    ],
)
def test_generation_errors(kwargs, named):
    with pytest.raises(CausalModelError, match=named):
        CounterfactualDataset.generate(EQ, 10, **kwargs)


def test_unreachable_output_value_is_reported():
    # O can never be 2 here, so balancing cannot fill its quota.
    model = CausalModel({"x": [0, 1], "o": [0, 1, 2]}, {"o": ["x"]}, {"o": lambda x: x})
    with pytest.raises(CausalModelError, match="o=2.*balance=False"):
        CounterfactualDataset.generate(model, 9, intervened=[["o"]])
    assert len(CounterfactualDataset.generate(model, 9, intervened=[["o"]], balance=False)) == 9


def test_split_errors():
    data = CounterfactualDataset.generate(EQ, 20, intervened=[["V1"]])
    with pytest.raises(CausalModelError, match="'V1'"):
        data.split(disjoint_on=["V1"])
    with pytest.raises(CausalModelError, match="test_fraction"):
        data.split(test_fraction=1.5)
    with pytest.raises(CausalModelError, match="'a'"):
        data.split(disjoint_on={"a": [f"o{i}" for i in range(20)]})


# ---- contrastive generation ------------------------------------------------------------------
VECTORS_EQ = get_task("hierarchical_equality")  # 100 objects: a swapped-in a rarely equals the base's b


def outputs_by_base(dataset):
    groups = {}
    for ex in dataset:
        groups.setdefault((repr(sorted(ex.base.items())), tuple(ex.variables)), []).append(ex.counterfactual_output)
    return groups


def set_v1_false_rule_accuracy(dataset):
    """IIA of a rule that reads only the base: answer as if a == b were False."""
    both = VECTORS_EQ.hypothesis("both_equalities")
    return sum(ex.counterfactual_output == both.run(ex.base, {"V1": False})["O"] for ex in dataset) / len(dataset)


def test_default_first_argument_data_is_dominated_by_setting_v1_false():
    """Why contrastive generation exists: without it, the identity-of-a hypothesis' counterfactuals
    are almost all those of 'set a == b to False', which an a == b subspace reproduces."""
    data = CounterfactualDataset.generate(VECTORS_EQ, 1000, hypothesis="first_argument", seed=0)
    assert sum(ex.sources[0]["a"] == ex.base["b"] for ex in data) / len(data) < 0.05
    assert set_v1_false_rule_accuracy(data) > 0.95


def test_contrastive_pairs_put_base_only_rules_at_chance():
    data = CounterfactualDataset.generate(VECTORS_EQ, 1000, hypothesis="first_argument", seed=0, contrastive=True)
    assert len(data) == 1000 and data.output_counts() == {True: 500, False: 500}
    model = data.model
    for ex in data:
        assert ex.counterfactual_output == model.interchange(ex.base, ex.source_for())[model.output]
    # Each base's sources give each output at most half the time, so any rule reading the base alone
    # is right on at most half; with a two-valued output, exactly half (and half the examples change).
    for outputs in outputs_by_base(data).values():
        assert len(outputs) % 2 == 0 and max(outputs.count(v) for v in set(outputs)) == len(outputs) // 2
    assert set_v1_false_rule_accuracy(data) == 0.5
    assert data.changed_share() == 0.5
    # the swapped-in a equals the base's b in exactly one example of each pair
    assert sum(ex.sources[0]["a"] == ex.base["b"] for ex in data) == 500


@pytest.mark.parametrize(
    "task_name, hypothesis, intervened, n",
    [
        ("hierarchical_equality_tokens", "both_equalities", [["V1"], ["V2"], ["V1", "V2"]], 300),
        ("price_tagging", "boundaries", [["left"], ["right"]], 200),
        ("arithmetic_carry", "carry", [["C"]], 200),
    ],
)
def test_contrastive_generation_on_other_tasks(task_name, hypothesis, intervened, n):
    task = get_task(task_name)
    data = CounterfactualDataset.generate(task, n, intervened=intervened, hypothesis=hypothesis, seed=3,
                                          contrastive=True)
    assert len(data) == n and sorted(data.variable_sets) == sorted(intervened)
    for outputs in outputs_by_base(data).values():
        assert max(outputs.count(v) for v in set(outputs)) <= len(outputs) // 2
    if len(data.model.variables[data.model.output]) == 2:
        for per_value in counts_by_set(data).values():
            assert max(per_value.values()) - min(per_value.values()) <= 1


def test_contrastive_pairs_balance_over_the_outputs_a_variable_can_change():
    """Interchanging a city's country changes only answers that ask for the country: the other
    attributes' answers cannot start a contrastive pair, so the pairs balance over countries."""
    from causal.tasks.ravel import COUNTRIES

    data = CounterfactualDataset.generate(get_task("ravel"), 240, intervened=[["Country"]], seed=1, contrastive=True)
    assert len(data) == 240
    assert {ex.base["attribute"] for ex in data} == {"country"}
    for outputs in outputs_by_base(data).values():  # no base's sources all give one answer
        assert max(outputs.count(v) for v in set(outputs)) <= len(outputs) // 2
    answers = Counter(ex.counterfactual_output for ex in data)
    assert set(answers) == set(COUNTRIES) and min(answers.values()) >= 5  # spread over every country


def test_contrastive_is_kept_by_disjoint_splits_and_seeded(tmp_path):
    kw = dict(intervened=[["V1"]], seed=4, contrastive=True)
    data = CounterfactualDataset.generate(EQ, 200, **kw)
    train, test = data.split(test_fraction=0.2, disjoint_on=["a", "b", "c", "d"], seed=0)
    held_out_check(train, test, test.held_out)
    for part in (train, test):
        for outputs in outputs_by_base(part).values():
            assert max(outputs.count(v) for v in set(outputs)) == len(outputs) // 2
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    data.to_jsonl(a)
    CounterfactualDataset.generate(EQ, 200, **kw).to_jsonl(b)
    assert a.read_bytes() == b.read_bytes()


def test_contrastive_fails_clearly_when_no_source_matters():
    # left_only's output ignores U: no base has two sources that give different outputs.
    with pytest.raises(CausalModelError, match="contrastive=False"):
        CounterfactualDataset.generate(get_task("price_tagging"), 20, intervened=[["U"]], hypothesis="left_only",
                                       contrastive=True)
