"""The figures lay out what they are given, exactly; main.py opens on the default task."""

from .app_helpers import app, no_exceptions

from app import plots


def test_graph_layers_follow_the_longest_path_from_an_input():
    # d depends on an input and on c, which is two steps from a: d sits at depth 3.
    graph = {"nodes": ["a", "b", "c", "d"], "edges": [["a", "b"], ["b", "c"], ["a", "d"], ["c", "d"]]}
    fig = plots.causal_graph(graph)
    x = {}
    for trace in fig.data:
        x.update(dict(zip(trace.text, trace.x)))
    assert x == {"a": 0, "b": 1, "c": 2, "d": 3}
    arrows = {((a.ax, a.ay), (a.x, a.y)) for a in fig.layout.annotations}
    assert len(arrows) == 4
    assert [t.name for t in fig.data] == ["input", "intermediate", "output"]


def test_heatmap_keeps_values_and_fixed_scale():
    z = [[0.5, None], [1.0, 0.25]]
    fig = plots.iia_heatmap(z, [0, 3], ["last", "a"])
    hm = fig.data[0]
    assert [list(r) for r in hm.z] == z and list(hm.y) == ["L0", "L3"] and list(hm.x) == ["last", "a"]
    assert (hm.zmin, hm.zmax) == (0.0, 1.0)
    assert [list(r) for r in hm.text] == [["0.50", ""], ["1.00", "0.25"]]


def test_confusion_and_parameters_on_a_log_axis():
    fig = plots.confusion([False, True], [[3, 1], [0, 4]])
    assert list(fig.data[0].x) == ["False", "True"] and [list(r) for r in fig.data[0].z] == [[3, 1], [0, 4]]
    fig = plots.params_vs_score(["loreft", "lora"], [130, 4096], [0.9, 0.95])
    assert fig.layout.xaxis.type == "log" and [t.x[0] for t in fig.data] == [130, 4096]
    # One point per method, named in the legend (no text on the points to overlap), distinct markers;
    # one labelled tick per power of ten.
    assert [t.name for t in fig.data] == ["loreft", "lora"] and all(t.mode == "markers" for t in fig.data)
    assert fig.data[0].marker.color != fig.data[1].marker.color
    assert list(fig.layout.xaxis.tickvals) == [100, 200, 500, 1000, 2000, 5000]
    assert list(fig.layout.xaxis.ticktext) == ["100", "200", "500", "1k", "2k", "5k"]
    wide = plots.params_vs_score(["prompt_tuning", "full"], [256, 7_000_000], [0.4, 0.9])
    assert list(wide.layout.xaxis.tickvals) == [1000, 10_000, 100_000, 1_000_000, 10_000_000]  # decades only


def test_main_opens_on_the_causal_model_page_with_the_zoo_model_ready(runs_dir, default_zoo_model):
    at = app().run()
    no_exceptions(at)
    assert at.title[0].value == "Causal model"
    assert at.selectbox(key="cm_task").value == "hierarchical_equality_tokens"
    assert any(str(runs_dir.resolve()) in c.value for c in at.sidebar.caption)


def test_eval_curves_are_drawn_at_their_steps_one_colour_per_arm():
    from app import plots

    fig = plots.curves({"DAS init": [0.5, 0.9, 1.0], "random init": [0.5, 0.6, 0.8]}, y_title="accuracy",
                       steps={"DAS init": [0, 50, 100], "random init": [0, 50, 100]})
    assert [list(t.x) for t in fig.data] == [[0, 50, 100], [0, 50, 100]]
    assert fig.data[0].line.color != fig.data[1].line.color
    assert fig.layout.xaxis.title.text == "step"


def test_boundless_progress_counts_each_variable_by_its_own_steps():
    """Boundless DAS trains V1 then V2, 200 steps each, reported as one count to 400: the page
    says 'V2, step 33/200', not '233/400'."""
    from app.forms import variable_step

    assert variable_step(233, 400, 200, ["V1", "V2"]) == ("V2", 33, 200)
    assert variable_step(200, 400, 200, ["V1", "V2"]) == ("V1", 200, 200)
    assert variable_step(201, 400, 200, ["V1", "V2"]) == ("V2", 1, 200)
    assert variable_step(33, 200, None, ["V1", "V2"]) == (None, 33, 200)  # DAS: one module, one count
    assert variable_step(33, 200, 200, ["V1"]) == (None, 33, 200)
