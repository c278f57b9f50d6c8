"""CausalModel: the do-operator and interchange laws (property tests), exports, and errors."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from causal import CausalModel, CausalModelError, get_task

EQUALITY = get_task("hierarchical_equality_tokens", n_objects=5).causal_model
PRICE = get_task("price_tagging", max_price=9).causal_model


def diamond() -> CausalModel:
    """x, y -> s = x + y, p = x * y -> o = s > p (an intermediate with two parents of its own)."""
    return CausalModel(
        {"x": [0, 1, 2, 3], "y": [0, 1, 2, 3], "s": list(range(7)), "p": list(range(10)), "o": [False, True]},
        {"s": ["x", "y"], "p": ["x", "y"], "o": ["s", "p"]},
        {"s": lambda x, y: x + y, "p": lambda x, y: x * y, "o": lambda s, p: s > p},
        name="diamond",
    )


MODELS = [EQUALITY, PRICE, diamond()]


def inputs_of(model):
    return st.fixed_dictionaries({v: st.sampled_from(model.variables[v]) for v in model.inputs})


@st.composite
def model_and_inputs(draw, n=2):
    model = draw(st.sampled_from(MODELS))
    return model, [draw(inputs_of(model)) for _ in range(n)]


@settings(max_examples=150, deadline=None)
@given(model_and_inputs(n=1), st.data())
def test_interchange_with_source_equal_to_base_is_run(mi, data):
    model, (base,) = mi
    variables = data.draw(st.lists(st.sampled_from(list(model.variables)), unique=True))
    assert model.interchange(base, {v: base for v in variables}) == model.run(base)


@settings(max_examples=150, deadline=None)
@given(model_and_inputs(n=1), st.data())
def test_intervening_on_an_input_is_running_on_the_changed_input(mi, data):
    model, (base,) = mi
    var = data.draw(st.sampled_from(model.inputs))
    value = data.draw(st.sampled_from(model.variables[var]))
    assert model.run(base, interventions={var: value}) == model.run({**base, var: value})


@settings(max_examples=150, deadline=None)
@given(model_and_inputs(n=3), st.data())
def test_interchange_is_run_under_the_equivalent_do_intervention(mi, data):
    model, (base, src1, src2) = mi
    v1, v2 = data.draw(st.lists(st.sampled_from(model.intermediates + model.inputs), min_size=2, max_size=2, unique=True))
    expected = model.run(base, interventions={v1: model.run(src1)[v1], v2: model.run(src2)[v2]})
    assert model.interchange(base, {v1: src1, v2: src2}) == expected


@settings(max_examples=150, deadline=None)
@given(inputs_of(EQUALITY), inputs_of(EQUALITY), inputs_of(EQUALITY))
def test_equality_interchange_matches_hand_formula(base, s1, s2):
    # O = (V1 from s1) == (V2 from s2), written out without the model.
    out = EQUALITY.interchange(base, {"V1": s1, "V2": s2})
    assert out["O"] == ((s1["a"] == s1["b"]) == (s2["c"] == s2["d"]))
    assert out["V1"] == (s1["a"] == s1["b"]) and out["a"] == base["a"]
    only_v1 = EQUALITY.interchange(base, {"V1": s1})
    assert only_v1["O"] == ((s1["a"] == s1["b"]) == (base["c"] == base["d"]))


def test_intervention_recomputes_downstream_only():
    m = diamond()
    out = m.run({"x": 3, "y": 3}, interventions={"s": 0})
    assert out == {"x": 3, "y": 3, "s": 0, "p": 9, "o": False}
    assert m.run({"x": 1, "y": 0}, interventions={"p": 0})["o"] is True


def test_structure_order_graph_and_description():
    m = diamond()
    assert m.inputs == ["x", "y"] and m.intermediates == ["s", "p"] and m.outputs == ["o"] and m.output == "o"
    pos = {v: i for i, v in enumerate(m.order)}
    assert all(pos[p] < pos[c] for c in m.variables for p in m.parents[c])
    g = m.graph()
    assert sorted(g["nodes"]) == sorted(m.variables)
    assert sorted(map(tuple, g["edges"])) == sorted([("x", "s"), ("y", "s"), ("x", "p"), ("y", "p"), ("s", "o"), ("p", "o")])
    assert g["kinds"]["s"] == "intermediate" and g["kinds"]["x"] == "input"
    text = m.describe()
    assert "diamond" in text and "s [intermediate]" in text and "<- x, y" in text


def test_enumeration_and_sampling_cover_the_input_space():
    m = diamond()
    all_inputs = list(m.enumerate_inputs())
    assert len(all_inputs) == m.input_space_size == 16
    assert len({tuple(x.values()) for x in all_inputs}) == 16
    rng = random.Random(0)
    seen = {tuple(m.sample_input(rng).values()) for _ in range(500)}
    assert len(seen) == 16
    assert [m.sample_input(random.Random(3)) for _ in range(3)] == [m.sample_input(random.Random(3)) for _ in range(3)]


def test_unused_input_is_not_an_output():
    left_only = get_task("price_tagging").hypothesis("left_only")
    assert left_only.inputs == ["X", "L", "U"] and left_only.outputs == ["O"]


# ---- errors: one CausalModelError that names the variable ------------------------------
def build(variables, parents, mechanisms):
    return CausalModel(variables, parents, mechanisms)


B = [False, True]


@pytest.mark.parametrize(
    "variables, parents, mechanisms, named",
    [
        # cycle x -> y -> z -> y
        ({"x": B, "y": B, "z": B}, {"y": ["x", "z"], "z": ["y"]}, {"y": lambda x, z: x, "z": lambda y: y}, "'y'"),
        ({"x": B, "y": B}, {"y": ["ghost"]}, {"y": lambda ghost: ghost}, "'ghost'"),
        ({"x": B, "y": B}, {"y": ["x"]}, {}, "'y'"),
        ({"x": B, "y": B}, {"y": ["x"]}, {"y": lambda x: x, "x": lambda: True}, "'x'"),
        ({"x": B, "y": []}, {"y": ["x"]}, {"y": lambda x: x}, "'y'"),
        ({"x": B}, {"w": ["x"]}, {}, "'w'"),
    ],
    ids=["cycle", "unknown-parent", "missing-mechanism", "mechanism-on-input", "empty-values", "parents-of-unknown"],
)
def test_construction_errors_name_the_variable(variables, parents, mechanisms, named):
    with pytest.raises(CausalModelError, match=named):
        build(variables, parents, mechanisms)


def test_mechanism_result_outside_values_names_variable_and_inputs():
    m = build({"x": [0, 1, 2], "y": [0, 1, 2]}, {"y": ["x"]}, {"y": lambda x: x + 1})
    assert m.run({"x": 1})["y"] == 2
    with pytest.raises(CausalModelError, match=r"'y' returned 3.*\{'x': 2\}"):
        m.run({"x": 2})


def test_failing_mechanism_names_variable():
    m = build({"x": [0, 1], "y": [0, 1]}, {"y": ["x"]}, {"y": lambda x: 1 // x})
    with pytest.raises(CausalModelError, match="'y'.*ZeroDivisionError"):
        m.run({"x": 0})


@pytest.mark.parametrize(
    "inputs, named",
    [({"x": 0}, "'y'"), ({"x": 0, "y": 0, "q": 1}, "'q'"), ({"x": 0, "y": 5}, "'y'"), ({"x": True, "y": 0}, "'x'"), ({"x": 0, "s": 1, "y": 0}, "'s'")],
    ids=["missing", "unknown", "outside-domain", "bool-is-not-int", "non-input"],
)
def test_bad_inputs_name_the_variable(inputs, named):
    with pytest.raises(CausalModelError, match=named):
        diamond().run(inputs)


def test_bad_interventions_and_interchanges_name_the_variable():
    m = diamond()
    with pytest.raises(CausalModelError, match="'z'"):
        m.run({"x": 0, "y": 0}, interventions={"z": 1})
    with pytest.raises(CausalModelError, match="'s'"):
        m.run({"x": 0, "y": 0}, interventions={"s": 99})
    with pytest.raises(CausalModelError, match="'z'"):
        m.interchange({"x": 0, "y": 0}, {"z": {"x": 1, "y": 1}})
    with pytest.raises(CausalModelError, match="'y'"):
        m.interchange({"x": 0, "y": 0}, {"s": {"x": 1}})


def test_several_outputs_need_a_name():
    m = build({"x": B, "y": B, "z": B}, {"y": ["x"], "z": ["x"]}, {"y": lambda x: x, "z": lambda x: not x})
    assert m.outputs == ["y", "z"]
    with pytest.raises(CausalModelError, match="outputs"):
        _ = m.output
