"""Page 3: where the hypothesis holds. IIA heatmaps (layers x positions) per variable with the
controls beside DAS; a click on a cell opens that site in detail (training curve, confusion,
counterfactual examples with the network's answers); two runs side by side; the results table
per variable, as CSV. The run, variable and site are in the URL (?run=...&variable=...&site=...)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from causal.errors import WorkbenchError  # noqa: E402

from app import caches, plots, results_detail, widgets  # noqa: E402
from experiments.runs import load_run  # noqa: E402

# The results table's columns, in this order, with the headers a reader sees.
TABLE_COLUMNS = {
    "method": "method", "layer": "layer", "position": "position", "component": "component", "iia": "IIA",
    "iia_low": "95% CI low", "iia_high": "95% CI high", "floor": "floor", "floor_rule": "floor rule",
    "above_floor": "above floor", "n_test": "test pairs", "n_train": "train pairs", "k": "k",
    "probe_accuracy": "probe accuracy", "final_loss": "final loss", "seconds": "time (s)", "seed": "seed",
    "site": "site",
}


def position_label(position) -> str:
    return "vector" if position is None else str(position)


def score(row: dict):
    """IIA, or for the probe control (no intervention) its probe accuracy."""
    return row["iia"] if row.get("iia") is not None else row.get("probe_accuracy")


def prompt_order(run, rows: list[dict]) -> list[str]:
    """The run's positions as the prompt has them (the task's fields as read, then "last";
    "a:first" sits with "a"; token indices after), whatever order the config listed them in."""
    seen = list(dict.fromkeys(position_label(r["position"]) for r in rows))
    try:
        order = caches.get_task(run.config["task"], run.config.get("task_options")).prompt_positions
    except (WorkbenchError, KeyError):
        return seen
    rank = {name: i for i, name in enumerate(order)}
    return sorted(seen, key=lambda p: rank.get(p.partition(":")[0], len(order)))


def heatmap_for(run, variable: str, method: str, title: str, clickable: bool = False, layers: list | None = None):
    """One heatmap cell per layer x position: the site's IIA (the mean over seeds when the run
    has several, with sd and each seed's value in the hover), its interval, n and floor; a site
    that pre-screening left out shows its screening score as such. `layers`: the rows to draw
    (two runs side by side share them, so their layers line up)."""
    from experiments.search.report import fmt_seeds, pooled

    rows = [r for r in run.rows_for(variable, method) if score(r) is not None]
    screened = [r for r in run.rows_for(variable, "screen") if r.get("screen_score") is not None
                and r["site"] not in {x["site"] for x in rows}] if method == run.main_method else []
    if not rows and not screened:
        return None
    layers = layers or sorted({r["layer"] for r in rows + screened})
    positions = prompt_order(run, rows + screened)
    by_site: dict = {}
    for r in rows:
        by_site.setdefault(r["site"], []).append(r)
    grids = {k: [[None] * len(positions) for _ in layers] for k in ("z", "low", "high", "floor", "n", "extra")}
    best: dict = {}
    for site_rows in by_site.values():  # several components: show the best per layer x position
        r0 = site_rows[0]
        p = pooled(site_rows) if r0.get("iia") is not None else {"iia": score(r0)}
        if r0["layer"] not in layers:
            continue
        i, j = layers.index(r0["layer"]), positions.index(position_label(r0["position"]))
        if (i, j) not in best or p["iia"] > best[(i, j)]["iia"]:
            best[(i, j)] = p
    for (i, j), p in best.items():
        grids["z"][i][j] = p["iia"]
        grids["low"][i][j], grids["high"][i][j] = p.get("iia_low"), p.get("iia_high")
        grids["floor"][i][j], grids["n"][i][j] = p.get("floor"), p.get("n_test")
        if p.get("sd") is not None:
            grids["extra"][i][j] = f"mean of {len(p['per_seed'])} seeds, sd {p['sd']:.3f} ({fmt_seeds(p)})"
    out = [[None] * len(positions) for _ in layers]
    for r in screened:
        if r["layer"] in layers:
            out[layers.index(r["layer"])][positions.index(position_label(r["position"]))] = r["screen_score"]
    has_floor = any(r.get("floor") is not None for r in rows)
    return plots.iia_heatmap(grids["z"], layers, positions, title=title, extra=grids["extra"], clickable=clickable,
                             screened=out if screened else None,
                             **({k: grids[k] for k in ("low", "high", "floor", "n")} if has_floor else {}))


def clicked_site(event, rows: list[dict]) -> str | None:
    """The site of the heatmap cell a click selected (the best component at that layer and position)."""
    points = (event or {}).get("selection", {}).get("points", []) if isinstance(event, dict) else \
        getattr(getattr(event, "selection", None), "points", []) or []
    if not points:
        return None
    x, y = str(points[0].get("x")), str(points[0].get("y"))
    at = [r for r in rows if position_label(r["position"]) == x and f"L{r['layer']}" == y]
    return max(at, key=lambda r: score(r) or 0)["site"] if at else None


def variable_curve(run, row: dict, variable: str) -> tuple[list[float], str]:
    """The cell's training curve, and whose it is. A per-variable method (Boundless DAS) trains
    its variables one after another into one curve (hence a jump where the next one starts):
    show the selected variable's own part."""
    from experiments.search.methods import REGISTRY

    curve = run.curves.get(row["cell"], [])
    method = REGISTRY.get(run.main_method)
    in_cell = list(dict.fromkeys(r["variable"] for r in run.rows
                                 if r["cell"] == row["cell"] and r["method"] == run.main_method))
    if method is None or not method.per_variable or len(in_cell) < 2 or variable not in in_cell \
            or len(curve) % len(in_cell):
        return curve, ""
    n = len(curve) // len(in_cell)
    i = in_cell.index(variable)
    return curve[i * n:(i + 1) * n], f" of {variable}"


st.title("Results")
widgets.deleted_notice()
runs = caches.search_runs()
if not runs:
    st.info(f"No runs yet in {caches.runs_root()}. Start one on the Alignment search page.")
    widgets.page_link("alignment_search", "Go to Alignment search")
    st.stop()

labels = {r["name"]: widgets.run_label(r) for r in runs}
run_name = widgets.run_picker("Run", runs, shared="run", key="r_run")
run = None
with widgets.user_errors():
    run = load_run(caches.runs_root() / run_name)
if run is None:
    st.stop()

m = run.manifest
cfg = run.config
if st.session_state.get("r_site_run") not in (None, run_name):  # another run: open on its own best site
    st.session_state.pop("site", None)
    widgets.forget_url("site")
st.session_state["r_site_run"] = run_name
if isinstance(cfg.get("task"), str):  # the other pages (and a reload of this link) open on the run's task
    st.session_state["task"] = st.query_params["task"] = cfg["task"]
data = m.get("data", {}).get("main", {})
fingerprint = (m.get("model") or {}).get("fingerprint") if isinstance(m.get("model"), dict) else None
st.caption(
    f"Model `{cfg.get('model')}`" + (f" (fingerprint `{fingerprint[:12]}`)" if fingerprint else "")
    + f" · task {cfg.get('task')}"
    + "".join(f" ({k} = {v!r})" for k, v in (cfg.get("task_options") or {}).items())
    + f" · hypothesis {m.get('hypothesis')} · "
    f"method {run.main_method} · training loss over the {cfg.get('loss_over', 'vocabulary')} · "
    f"device {m.get('device', '?')}"
    + (f" · kept {data['n_train_kept']}/{data['n_train_total']} train and {data['n_test_kept']}/"
       f"{data['n_test_total']} test pairs the model answers correctly" if data else "")
)
n_sites = len({r["cell"] for r in run.rows})
status = m.get("status")
if status == "failed":
    st.error(f"This run failed after {n_sites} of {m.get('n_cells') or '?'} sites: {m.get('error') or 'no reason recorded'}.")
elif status == "interrupted":
    st.warning(f"This run was interrupted (cancelled or stopped) after {n_sites} of {m.get('n_cells') or '?'} sites; "
               "the finished sites are shown. `dii search CONFIG --resume` finishes it.")
elif status == "running":
    st.info(f"This run is still running: {n_sites} of {m.get('n_cells') or '?'} sites so far.")
if not run.rows:
    if status in ("finished", "running"):
        st.info("No site has finished yet.")
    st.stop()

variables = run.variables()
variable = widgets.choose("Variable", variables, shared="variable", key="r_var")
methods = run.methods()
main_rows_all = run.rows_for(variable, run.main_method)
st.subheader(f"IIA for {variable}: {run.main_method} and controls")
st.caption("Click a cell of the first map to see that site in detail below.")
cols = st.columns(len(methods))
for col, method in zip(cols, methods):
    clickable = method == run.main_method
    scored_by_probe = all(r.get("iia") is None and r.get("probe_accuracy") is not None
                          for r in run.rows_for(variable, method))  # a probe's rows: an accuracy, no IIA
    fig = heatmap_for(run, variable, method, title=method + (" (probe accuracy)" if scored_by_probe else ""),
                      clickable=clickable)
    if fig is None:
        col.caption(f"{method}: nothing for {variable}")
    elif clickable:
        event = col.plotly_chart(fig, key=f"r_hm_{run_name}_{variable}", width="stretch", on_select="rerun",
                                 selection_mode="points")
        picked = clicked_site(event, main_rows_all)
        last_key = f"r_clicked_{run_name}_{variable}"
        # The chart keeps its selection over reruns: act when it changes, not on its echo (a click
        # on the selected cell clears it, so the next click on it selects it again).
        if picked != st.session_state.get(last_key):
            st.session_state[last_key] = picked
            if picked is not None:
                st.session_state["site"] = picked
                st.query_params["site"] = picked
    else:
        col.plotly_chart(fig, key=f"r_hm_{method}", width="stretch")
st.caption(plots.GREY_LEGEND)

# ---------------------------------------------------------------- best sites, with their evidence
from experiments.search.report import best_site_summary, fmt_interval, fmt_verdict  # noqa: E402

summary = [x for x in best_site_summary(run.rows, run.main_method) if x["variable"] == variable]
if summary:
    best = summary[0]
    st.markdown(f"**Best site for {variable}: `{best['site']}`**, {run.main_method} IIA {fmt_interval(best)} "
                f"(95% Wilson interval, n = {best['n_test']}); floor {best['floor']:.3f} "
                f"({best['floor_rule'].replace('_', ' ')}: the best trivial rule on the same test examples).")
    if best["floor_note"]:
        st.warning(best["floor_note"][0].upper() + best["floor_note"][1:] + ".")
    if best.get("warning"):
        st.warning(best["warning"])
    if best["controls"]:
        st.dataframe(pd.DataFrame([{"control": c, "at the best site": fmt_verdict(v, run.main_method)}
                                   for c, v in best["controls"].items()]), hide_index=True, width="stretch")
        st.caption("Paired test: exact McNemar on the examples both were tested on; 'not paired' controls "
                   "were tested on other examples (the disjoint split) and show their own floor.")
if len(variables) > 1 and data:
    counts = {v: max((r.get("n_test") or 0 for r in run.rows_for(v, run.main_method)), default=0) for v in variables}
    st.caption("Test pairs per variable: " + ", ".join(f"{v} {n}" for v, n in counts.items())
               + f" of the {data['n_test_kept']} kept. Each test pair intervenes on one variable, drawn at random per "
                 "pair, so the kept pairs are shared among the variables; each IIA is over its own variable's pairs.")
if m.get("contrastive", cfg.get("contrastive")) is False:
    st.info("Counterfactuals are not contrastive in this run: rules that read only the base score above "
            "chance, so compare each IIA with its floor.")

# ---------------------------------------------------------------- one cell in detail
st.subheader("One site in detail")
main_rows = [r for r in main_rows_all if r.get("iia") is not None]
if not main_rows:
    st.info(f"No {run.main_method} result for {variable}.")
else:
    seeds = sorted({r["seed"] for r in main_rows}) if cfg.get("seeds") else [None]
    seed = None
    if len(seeds) > 1:  # the detail is one seed's cell: its curve, its subspace, its predictions
        seed = st.selectbox("Seed", seeds, key=widgets.kept(f"r_seed_{run_name}"), help="the run has one cell per seed")
        main_rows = [r for r in main_rows if r["seed"] == seed]
    sites = list(dict.fromkeys(r["site"] for r in main_rows))
    best_site = max(main_rows, key=lambda r: r["iia"] or 0)["site"]
    site_key = widgets.choose("Site (or click a heatmap cell)", sites, shared="site", key=f"r_site_{run_name}_{variable}",
                            default=best_site)
    row = next(r for r in main_rows if r["site"] == site_key)
    curve, whose = variable_curve(run, row, variable)
    results_detail.show(run, row, site_key, variable, seed, curve, whose)

# ---------------------------------------------------------------- two runs side by side
st.subheader("Compare with another run")
others = [n for n in labels if n != run_name]
if not others:
    st.caption("Only one run so far.")
else:
    other_name = st.selectbox("Other run", ["(none)"] + others, key=widgets.kept("r_other"),
                              format_func=lambda n: labels.get(n, n))
    if other_name != "(none)":
        other = None
        with widgets.user_errors():
            other = load_run(caches.runs_root() / other_name)
        if other is not None:
            left, right = st.columns(2)
            shared_layers = sorted({x["layer"] for x in run.rows + other.rows})  # the two maps' rows line up
            for col, r, name in ((left, run, run_name), (right, other, other_name)):
                v = variable if variable in r.variables() else (r.variables() or [None])[0]
                fig = heatmap_for(r, v, r.main_method, title=f"{name}: {v} ({r.main_method})",
                                  layers=shared_layers) if v else None
                if fig is None:
                    col.caption(f"{name}: no results")
                else:
                    col.plotly_chart(fig, key=f"r_cmp_{name}", width="stretch")

# ---------------------------------------------------------------- the table, one tab per variable
st.subheader("Results table")
tabs = st.tabs(variables)
for tab, v in zip(tabs, variables):
    rows = [{TABLE_COLUMNS[k]: r.get(k) for k in TABLE_COLUMNS if k in r} for r in run.rows_for(v)]
    tab.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                  column_config={"IIA": st.column_config.NumberColumn(format="%.3f"),
                                 "95% CI low": st.column_config.NumberColumn(format="%.3f"),
                                 "95% CI high": st.column_config.NumberColumn(format="%.3f"),
                                 "floor": st.column_config.NumberColumn(format="%.3f")})
st.caption("One row per site and method for the variable of the tab. Floor: the best trivial rule (keep the base, "
           "copy the source, majority) on the same test pairs; test pairs: the variable's kept pairs.")
csv_path = run.path / "results.csv"
table = pd.DataFrame([{k: v for k, v in r.items() if k not in ("curve", "test_index", "test_correct", "test_predicted")}
                      for r in run.rows])
st.download_button("Download results.csv",
                   data=csv_path.read_bytes() if csv_path.is_file() else table.to_csv(index=False).encode(),
                   file_name=f"{run_name}-results.csv", mime="text/csv", key="r_download")
