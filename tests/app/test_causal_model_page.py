"""Page 1 (causal model): graph, mechanisms, sampled pairs, and hypothesis comparison."""

import json

from .app_helpers import no_exceptions, page

from causal import CounterfactualDataset, can_distinguish, get_task


def test_default_task_graph_pairs_and_distinguishability(runs_dir):
    at = page("causal_model").run()
    no_exceptions(at)
    assert at.selectbox(key="cm_task").value == "hierarchical_equality_tokens"  # state.DEFAULT_TASK

    # The graph: one trace per role, nodes placed by topological depth (inputs 0, V1/V2 1, O 2).
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    x_of = {}
    for trace in fig["data"]:
        x_of.update(dict(zip(trace["text"], trace["x"])))
    assert x_of == {"a": 0, "b": 0, "c": 0, "d": 0, "V1": 1, "V2": 1, "O": 2}
    assert len(fig["layout"]["annotations"]) == 6  # one arrow per edge

    # Sampled pairs: as many rows as asked for; the changed share is the dataset's own.
    pairs = at.dataframe[1].value
    assert len(pairs) == 8
    task = get_task("hierarchical_equality_tokens")
    expected = CounterfactualDataset.generate(task, 8, intervened=[["V1"], ["V2"]], seed=0,
                                              hypothesis="both_equalities")
    assert list(pairs["counterfactual output"]) == [str(ex.counterfactual_output) for ex in expected]
    assert at.metric[0].value == f"{expected.changed_share():.0%}"

    # Distinguishability equals can_distinguish on the same data and alignment.
    compare = CounterfactualDataset.generate(task, 500, intervened=[["V1"], ["V2"]], seed=0,
                                             hypothesis="both_equalities")
    share = can_distinguish(task.hypothesis("both_equalities"), task.hypothesis("left_equality"), compare,
                            alignment={"V1": "V1", "V2": "V1"})
    assert at.metric[1].value == f"{share:.1%}"
    assert 0 < share < 1


def test_other_task_and_hypothesis(runs_dir):
    at = page("causal_model").run()
    at.selectbox(key="cm_task").set_value("price_tagging").run()
    no_exceptions(at)
    at.selectbox(key="cm_hyp_price_tagging").set_value("left_only").run()
    no_exceptions(at)
    assert "base prompt" in at.dataframe[1].value.columns  # token tasks show the rendered prompt


def test_no_intervened_variable_is_an_error_not_a_traceback(runs_dir):
    at = page("causal_model").run()
    at.multiselect(key="cm_vars_hierarchical_equality_tokens_both_equalities").set_value([]).run()
    no_exceptions(at)
    assert any("Pick at least one intervened variable" in e.value for e in at.error)


def test_a_written_spec_is_checked_as_you_type_drawn_and_saved(runs_dir):
    at = page("causal_model").run()
    at.radio(key="cm_source").set_value("Write a task spec").run()
    no_exceptions(at)
    assert not at.error  # the example spec is valid
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert {t for trace in fig["data"] for t in trace["text"]} == {"x", "y", "A", "B", "O"}
    # How the zoo's word tokenizer reads the prompt: each field resolves to its own word.
    tokens = next(d.value for d in at.dataframe if "named position" in d.value.columns)
    for field in ("x", "y"):
        (row,) = [r for _, r in tokens.iterrows() if field in r["named position"].split(", ")]
        assert row["token"] in ("red", "orange", "pink", "blue", "green", "grey")
    assert any("scored on" in c.value for c in at.caption)

    spec = at.text_area(key="cm_spec").value
    at.text_area(key="cm_spec").set_value(spec.replace('O = "A and B"', 'O = "A.real and B"')).run()
    no_exceptions(at)
    assert "attribute access (.real)" in at.error[0].value and "[mechanisms] O" in at.error[0].value
    at.text_area(key="cm_spec").set_value(spec).run()
    assert not at.error
    at.button(key="cm_save").click().run()
    assert (runs_dir / "tasks" / "both_warm.toml").read_text() == spec
    assert "both_warm" in at.success[0].value
