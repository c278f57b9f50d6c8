"""Built-in tasks: mechanisms against direct formulas on every input where enumerable,
balanced samplers, renderings, vocabularies."""

import itertools
import random

import pytest

from causal import TASK_NAMES, CausalModelError, CounterfactualDataset, Task, get_task

EXPECTED_NAMES = ["hierarchical_equality", "hierarchical_equality_tokens", "price_tagging", "arithmetic_carry", "mcqa",
                  "ioi", "mcqa4", "ravel"]


def test_registry_lists_every_task():
    assert TASK_NAMES == EXPECTED_NAMES
    for name in TASK_NAMES:
        task = get_task(name)
        assert isinstance(task, Task) and task.name == name
        assert task.default_hypothesis in task.hypotheses
        # All hypotheses of a task read the same inputs.
        assert len({tuple(m.inputs) for m in task.hypotheses.values()}) == 1
    with pytest.raises(CausalModelError, match="nonexistent"):
        get_task("nonexistent")
    with pytest.raises(CausalModelError, match="unknown_option"):
        get_task("mcqa", unknown_option=1)


def test_prompt_positions_follow_the_prompt_then_its_final_token():
    """How heatmaps and the search form lay positions out: as the prompt reads them."""
    assert get_task("price_tagging").prompt_positions == ["price", "lower", "upper", "last"]
    assert get_task("hierarchical_equality_tokens").prompt_positions == ["a", "b", "c", "d", "last"]
    assert get_task("ioi").prompt_positions == ["n1", "n2", "s", "last"]
    assert get_task("hierarchical_equality").prompt_positions == ["last"]  # vectors: one position
    for name in TASK_NAMES:
        task = get_task(name)
        assert sorted(task.prompt_positions) == sorted(task.positions)


@pytest.mark.parametrize("name", ["hierarchical_equality", "hierarchical_equality_tokens"])
def test_equality_hypotheses_agree_with_formula_on_all_inputs(name):
    task = get_task(name, n_objects=5)
    models = task.hypotheses
    assert set(models) == {"both_equalities", "left_equality", "first_argument"}
    objects = models["both_equalities"].variables["a"]
    for a, b, c, d in itertools.product(objects, repeat=4):
        x = {"a": a, "b": b, "c": c, "d": d}
        truth = (a == b) == (c == d)
        both, left, first = (models[h].run(x) for h in ("both_equalities", "left_equality", "first_argument"))
        assert both["O"] is truth and left["O"] is truth and first["O"] is truth
        assert both["V1"] is (a == b) and both["V2"] is (c == d) and left["V1"] is (a == b)
        assert first["A"] == a


def test_price_hypotheses_agree_with_formula_on_all_inputs():
    models = get_task("price_tagging").hypotheses
    for X, L, U in itertools.product(range(20), repeat=3):
        x = {"X": X, "L": L, "U": U}
        bounds = models["boundaries"].run(x)
        assert bounds["left"] is (X >= L) and bounds["right"] is (X <= U)
        assert bounds["O"] is (L <= X <= U)
        assert models["left_only"].run(x)["O"] is (X >= L)
        assert models["midpoint"].run(x)["O"] is (L <= X <= U)


def test_carry_hypotheses_agree_with_formula_on_all_inputs_and_carry_swaps():
    task = get_task("arithmetic_carry")
    carry, ones = task.hypotheses["carry"], task.hypotheses["ones_sum"]
    no_carry_src = {"a1": 0, "a0": 1, "b1": 0, "b0": 1}
    carry_src = {"a1": 0, "a0": 9, "b1": 0, "b0": 9}
    for a1, a0, b1, b0 in itertools.product(range(10), repeat=4):
        x = {"a1": a1, "a0": a0, "b1": b1, "b0": b0}
        total = (10 * a1 + a0) + (10 * b1 + b0)
        out = carry.run(x)
        assert out["S"] == total == ones.run(x)["S"]
        assert out["C"] is (a0 + b0 >= 10) and out["D0"] == (a0 + b0) % 10
        # Forcing the carry: tens come from a1 + b1 + forced carry, ones digit stays.
        assert carry.interchange(x, {"C": carry_src})["S"] == 10 * (a1 + b1 + 1) + (a0 + b0) % 10
        assert carry.interchange(x, {"C": no_carry_src})["S"] == 10 * (a1 + b1) + (a0 + b0) % 10
        assert task.answer(out["S"]) == f" {total}"


def test_mcqa_hypotheses_agree_with_formula_on_all_valid_inputs():
    task = get_task("mcqa")
    pointer, first = task.hypotheses["pointer"], task.hypotheses["always_first"]
    objects, colors = pointer.variables["object1"], pointer.variables["color1"]
    count = 0
    for o1, o2 in itertools.permutations(objects, 2):
        for c1, c2 in itertools.product(colors, repeat=2):
            for q in (o1, o2):
                x = {"object1": o1, "color1": c1, "object2": o2, "color2": c2, "question": q}
                asked_color = {o1: c1, o2: c2}[q]
                out = pointer.run(x)
                assert out["A"] == asked_color and out["P"] == (0 if q == o1 else 1)
                assert first.run(x)["A"] == c1
                count += 1
    assert count == len(objects) * (len(objects) - 1) * len(colors) ** 2 * 2
    assert task.needs_pretrained


def test_mcqa4_hypotheses_agree_with_formula_and_interchanges():
    task = get_task("mcqa4")
    pointer, token = task.hypotheses["answer_pointer"], task.hypotheses["answer_token"]
    base = {"obj": "ball", "color": "red", "c1": "blue", "c2": "red", "c3": "green", "c4": "pink",
            "s1": "A", "s2": "C", "s3": "F", "s4": "H"}
    source = {"obj": "cup", "color": "pink", "c1": "white", "c2": "black", "c3": "brown", "c4": "pink",
              "s1": "B", "s2": "D", "s3": "E", "s4": "G"}
    assert pointer.run(base)["P"] == 1 and pointer.run(base)["O"] == "C" == token.run(base)["O"]
    assert task.render(base) == "ball is red . which colour ? A blue C red F green H pink answer :"
    # Pointer from the source (slot 4): the base's own symbol in that slot. Token: the source's symbol.
    assert pointer.interchange(base, {"P": source})["O"] == "H"
    assert token.interchange(base, {"T": source})["O"] == "G"
    rng = random.Random(3)
    for _ in range(2000):
        x = task.sample_input(rng)
        options = [x[f"c{i}"] for i in range(1, 5)]
        symbols = [x[f"s{i}"] for i in range(1, 5)]
        assert options.count(x["color"]) == 1 and len(set(options)) == 4 and symbols == sorted(set(symbols))
        assert pointer.run(x)["O"] == symbols[options.index(x["color"])] == token.run(x)["O"]
    slots = [pointer.run(task.sample_input(rng))["P"] for _ in range(4000)]
    assert all(900 < slots.count(i) < 1100 for i in range(4))  # the answer's slot is uniform


def test_ravel_attributes_are_separate_variables_and_the_entity_moves_them_all():
    from causal.tasks.ravel import ATTRIBUTES, CITIES

    task = get_task("ravel")
    attributes, entity = task.hypotheses["attributes"], task.hypotheses["entity"]
    for city, row in CITIES.items():
        for attribute, value in zip(ATTRIBUTES, row):
            x = {"city": city, "attribute": attribute}
            assert attributes.run(x)["O"] == value == entity.run(x)["O"]
    lima_lang, paris = {"city": "Lima", "attribute": "language"}, {"city": "Paris", "attribute": "country"}
    assert task.render(lima_lang) == "Lima is a city . its language is"
    # Country from Paris changes Lima's country answer, not its language; the entity changes both.
    assert attributes.interchange(lima_lang, {"Country": paris})["O"] == "Spanish"
    assert attributes.interchange({**lima_lang, "attribute": "country"}, {"Country": paris})["O"] == "France"
    assert entity.interchange(lima_lang, {"E": paris})["O"] == "French"
    # Continent and language determine neither each other nor the country (a country fixes both).
    for i, j in [(1, 2), (2, 1), (1, 0), (2, 0)]:
        mapping = {}
        assert any(mapping.setdefault(row[i], row[j]) != row[j] for row in CITIES.values()), (i, j)


@pytest.mark.parametrize("name", EXPECTED_NAMES)
def test_sampler_gives_valid_inputs_and_balanced_outputs(name):
    task = get_task(name)
    model = task.causal_model
    rng = random.Random(0)
    samples = [task.sample_input(rng) for _ in range(4000)]
    for x in samples:
        model.check_input(x)
    runs = [model.run(x) for x in samples]
    if name in ("hierarchical_equality", "hierarchical_equality_tokens"):
        for var in ("V1", "V2", "O"):
            assert 0.45 < sum(r[var] for r in runs) / len(runs) < 0.55, var
    elif name == "price_tagging":
        assert 0.45 < sum(r["O"] for r in runs) / len(runs) < 0.55
        assert all(x["L"] <= x["U"] for x in samples)
    elif name == "arithmetic_carry":
        assert 0.45 < sum(r["C"] for r in runs) / len(runs) < 0.55
    elif name == "mcqa":
        assert 0.45 < sum(r["P"] for r in runs) / len(runs) < 0.55
        assert all(x["object1"] != x["object2"] and x["color1"] != x["color2"] for x in samples)
    elif name == "ioi":
        assert 0.45 < sum(r["P"] for r in runs) / len(runs) < 0.55
        assert all(x["n1"] != x["n2"] and x["s"] in (x["n1"], x["n2"]) for x in samples)
    # The same seed draws the same inputs.
    assert [task.sample_input(random.Random(7)) for _ in range(5)] == [task.sample_input(random.Random(7)) for _ in range(5)]


@pytest.mark.parametrize("name", [n for n in EXPECTED_NAMES if n != "hierarchical_equality"])
def test_prompts_positions_and_vocabulary(name):
    task = get_task(name)
    assert task.input_kind == "tokens"
    vocab = set(task.vocabulary)
    for answer in task.answers.values():
        assert answer.startswith(" ") and len(answer.split()) == 1 and answer.strip() in vocab
    rng = random.Random(1)
    for _ in range(300):
        x = task.sample_input(rng)
        segments = task.segments(x)
        prompt = task.render(x)
        assert prompt == "".join(text for text, _ in segments)
        assert [n for _, n in segments if n] == task.position_names
        assert task.positions == ["last", *task.position_names]
        assert "  " not in prompt and not prompt.startswith(" ")
        words = (prompt + task.answer(task.causal_model.run(x)[task.causal_model.output])).split()
        assert set(words) <= vocab, set(words) - vocab
    # Every counterfactual output also has an answer.
    for model in task.hypotheses.values():
        assert set(map(repr, model.variables[model.output])) <= set(map(repr, task.answers))


def test_named_segments_carry_the_input_they_name():
    x = {"X": 7, "L": 3, "U": 12}
    segments = dict((n, t) for t, n in get_task("price_tagging").segments(x) if n)
    assert segments == {"price": " 7", "lower": " 3", "upper": " 12"}
    assert get_task("price_tagging").render(x) == "price 7 lower 3 upper 12 ?"
    mcqa = get_task("mcqa")
    prompt = mcqa.render({"object1": "ball", "color1": "red", "object2": "cup", "color2": "blue", "question": "ball"})
    assert prompt == "The ball is red. The cup is blue. What color is the ball? Answer:"


def test_vector_rendering_is_fixed_and_distinguishes_objects():
    task = get_task("hierarchical_equality")
    assert task.input_kind == "vectors" and task.answers == {False: 0, True: 1}
    x = {"a": 0, "b": 0, "c": 1, "d": 2}
    v = task.render(x)
    assert len(v) == 16 and all(-1 <= f <= 1 for f in v)
    assert v == get_task("hierarchical_equality").render(x)  # seeded: the same vectors every time
    assert v[0:4] == v[4:8] and v[8:12] != v[12:16]
    vectors = {tuple(task.render({"a": i, "b": 0, "c": 0, "d": 0})[:4]) for i in range(100)}
    assert len(vectors) == 100


@pytest.mark.parametrize("name", EXPECTED_NAMES)
def test_factual_data_pairs_inputs_with_main_hypothesis_outputs(name):
    task = get_task(name)
    data = task.factual_data(50, seed=3)
    assert len(data) == 50 and data == task.factual_data(50, seed=3)
    model = task.causal_model
    assert all(model.run(x)[model.output] == y for x, y in data)
    assert all(y in task.answers for _, y in data)


@pytest.mark.parametrize("name", EXPECTED_NAMES)
def test_every_hypothesis_reaches_every_output_value_under_interchange(name):
    # A declared output value no interchange can produce would make balanced datasets fail.
    from causal import CounterfactualDataset

    task = get_task(name)
    for hyp, model in task.hypotheses.items():
        values = model.variables[model.output]
        sets = [[v] for v in model.intermediates] or [[model.output]]
        data = CounterfactualDataset.generate(task, len(values) * len(sets), intervened=sets, hypothesis=hyp, seed=0)
        assert len(data.output_counts()) == len(values), hyp


def test_ioi_agrees_with_the_formula_on_all_inputs():
    """The answer is the introduced name that is not repeated; both hypotheses agree on every
    prompt and differ under interchange (P sends the base to its other name, T to the source's)."""
    from causal.tasks.ioi import NAMES

    task = get_task("ioi")
    pos, tok = task.hypothesis("output_position"), task.hypothesis("output_token")
    for n1 in NAMES:
        for n2 in NAMES:
            if n1 == n2:
                continue
            for s in (n1, n2):
                x = {"n1": n1, "n2": n2, "s": s}
                prompt = task.render(x)
                assert prompt == f"When {n1} and {n2} went to the store , {s} gave a drink to"
                assert pos.run(x)["O"] == tok.run(x)["O"] == (n2 if s == n1 else n1)
    base, source = {"n1": "Mary", "n2": "John", "s": "John"}, {"n1": "Anna", "n2": "Paul", "s": "Anna"}
    assert pos.interchange(base, {"P": source})["O"] == "John"  # the base's other name
    assert tok.interchange(base, {"T": source})["O"] == "Paul"  # the source's IO


def test_ioi_counterfactual_options_draw_the_mib_flips():
    """counterfactuals = "s2_io_flip": each source is its base with the subject replaced by
    the other name (both hypotheses send the answer to the other name); "s1_io_flip": the
    names swapped, the subject kept (P sends it to the other name, T keeps it). The zoo
    trains on prompts only, so the options share the built-in's zoo model."""
    from causal.errors import CausalModelError
    from experiments.zoo import cache_name

    for option in ("s2_io_flip", "s1_io_flip"):
        task = get_task("ioi", counterfactuals=option)
        assert cache_name(task) == "ioi"
        for hyp, var in (("output_position", "P"), ("output_token", "T")):
            data = CounterfactualDataset.generate(task, 200, intervened=[[var]], hypothesis=hyp, seed=1)
            for ex in data:
                base, (source,) = ex.base, ex.sources
                io = base["n2"] if base["s"] == base["n1"] else base["n1"]
                assert ex.base_output == io
                if option == "s2_io_flip":
                    assert source == {**base, "s": io}
                    assert ex.counterfactual_output == base["s"]  # both hypotheses: the answer flips
                else:
                    assert source == {**base, "n1": base["n2"], "n2": base["n1"]}
                    assert ex.counterfactual_output == (base["s"] if var == "P" else io)
    with pytest.raises(CausalModelError, match="counterfactuals='s3'.*one of"):
        get_task("ioi", counterfactuals="s3")


def test_a_source_sampler_that_leaves_the_allowed_values_is_refused():
    from causal.errors import CausalModelError

    task = get_task("ioi", counterfactuals="s2_io_flip")
    task.source_sampler = lambda rng, base: {**base, "s": "Tom"}
    with pytest.raises(CausalModelError, match="source sampler drew s = 'Tom', outside the values allowed"):
        CounterfactualDataset.generate(task, 20, intervened=[["P"]], seed=0,
                                       allowed_values={"s": ["Mary", "John", "Anna"], "n1": ["Mary", "John", "Anna"],
                                                       "n2": ["Mary", "John", "Anna"]})
