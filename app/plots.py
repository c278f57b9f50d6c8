"""Plotly figures for the workbench. Figures only: every number drawn here was computed by
causal/, interventions/ or experiments/; these functions just lay it out."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import plotly.graph_objects as go

FITS_IN_NODE = 4  # characters of a variable name that fit inside its circle
_ROLE_COLOURS = {"input": "#4C78A8", "intermediate": "#F58518", "output": "#54A24B"}


def _depths(nodes: Sequence[str], edges: Sequence[Sequence[str]]) -> dict[str, int]:
    """Layer of each node = length of the longest path from an input (a layout, not a model)."""
    parents: dict[str, list[str]] = {n: [] for n in nodes}
    for p, c in edges:
        parents.setdefault(c, []).append(p)
        parents.setdefault(p, [])
    depth: dict[str, int] = {}

    def visit(node: str, seen: frozenset = frozenset()) -> int:
        if node in depth:
            return depth[node]
        if node in seen:  # a cycle cannot come from a validated CausalModel; stay finite anyway
            return 0
        d = 1 + max((visit(p, seen | {node}) for p in parents[node]), default=-1)
        depth[node] = d
        return d

    for n in parents:
        visit(n)
    return depth


def causal_graph(graph: Mapping, title: str = "") -> go.Figure:
    """Nodes layered left to right by topological depth, edges as arrows parent -> child.

    `graph` is `CausalModel.graph()`: {"nodes": [...], "edges": [[parent, child], ...]}."""
    nodes = list(graph["nodes"])
    edges = [tuple(e) for e in graph["edges"]]
    depth = _depths(nodes, edges)
    has_parent = {c for _, c in edges}
    has_child = {p for p, _ in edges}
    layers: dict[int, list[str]] = {}
    for n in nodes:
        layers.setdefault(depth[n], []).append(n)
    pos: dict[str, tuple[float, float]] = {}
    for d, members in layers.items():
        for i, n in enumerate(members):
            pos[n] = (float(d), (len(members) - 1) / 2 - i)

    fig = go.Figure()
    for p, c in edges:
        (x0, y0), (x1, y1) = pos[p], pos[c]
        fig.add_annotation(
            x=x1, y=y1, ax=x0, ay=y0, xref="x", yref="y", axref="x", ayref="y",
            showarrow=True, arrowhead=3, arrowsize=1.3, arrowwidth=1.5, arrowcolor="#888",
            standoff=18, startstandoff=18,
        )
    roles = [
        "input" if n not in has_parent else "output" if n not in has_child else "intermediate"
        for n in nodes
    ]
    for role in ("input", "intermediate", "output"):
        members = [n for n, r in zip(nodes, roles) if r == role]
        if not members:
            continue
        fig.add_trace(go.Scatter(
            x=[pos[n][0] for n in members], y=[pos[n][1] for n in members],
            # A name that does not fit in its circle is written under it, in dark text.
            mode="markers+text", text=members,
            textposition=["middle center" if len(n) <= FITS_IN_NODE else "bottom center" for n in members],
            marker=dict(size=44, color=_ROLE_COLOURS[role], line=dict(width=1, color="#333")),
            textfont=dict(color=["white" if len(n) <= FITS_IN_NODE else "#222" for n in members], size=12),
            name=role, hoverinfo="text",
        ))
    fig.update_layout(
        title=title, showlegend=True, height=360, margin=dict(l=20, r=20, t=40, b=20),
        xaxis=dict(visible=False, range=[-0.5, max(depth.values(), default=0) + 0.5]),
        yaxis=dict(visible=False, scaleanchor="x", scaleratio=0.6),
        plot_bgcolor="white",
    )
    return fig


def iia_heatmap(
    z: Sequence[Sequence[float | None]], layers: Sequence, positions: Sequence, title: str = "",
    low: Sequence[Sequence[float | None]] | None = None, high: Sequence[Sequence[float | None]] | None = None,
    floor: Sequence[Sequence[float | None]] | None = None, n: Sequence[Sequence[int | None]] | None = None,
    extra: Sequence[Sequence[str | None]] | None = None, clickable: bool = False,
    screened: Sequence[Sequence[float | None]] | None = None,
) -> go.Figure:
    """IIA over layers (rows) x positions (columns), 0..1 on a fixed colour scale so that
    maps from different variables, methods and runs compare by eye. With intervals and
    floors, a cell whose 95% interval reaches down to its floor (a trivial rule does as
    well) is painted grey, not on the scale, and the hover gives n, the interval and the floor.
    `clickable`: an invisible marker over each cell carries the hover and takes clicks (plotly
    heatmaps send no click selection), so a page can select the cell's site."""
    R, C = len(layers), len(positions)
    at = lambda grid, i, j: None if grid is None else grid[i][j]  # noqa: E731
    below = [[at(high, i, j) is not None and at(floor, i, j) is not None and at(high, i, j) < at(floor, i, j)
              for j in range(C)] for i in range(R)]
    overlaps = [[at(low, i, j) is not None and at(floor, i, j) is not None and at(low, i, j) <= at(floor, i, j)
                 and not below[i][j] for j in range(C)] for i in range(R)]
    grey = [[1.0 if overlaps[i][j] else None for j in range(C)] for i in range(R)]
    text = [["" if v is None else f"{v:.2f}" for v in row] for row in z]
    hover = [[_cell_hover(z[i][j], at(low, i, j), at(high, i, j), at(floor, i, j), at(n, i, j), overlaps[i][j],
                          below[i][j]) + (f"<br>{at(extra, i, j)}" if at(extra, i, j) else "")
              for j in range(C)] for i in range(R)]
    for i in range(R):
        for j in range(C):
            if z[i][j] is None and at(screened, i, j) is not None:
                text[i][j] = "screened out"
                hover[i][j] = f"screened out: screening score {screened[i][j]:.2f} (not trained fully)"
    x, y = [str(p) for p in positions], [f"L{layer}" for layer in layers]
    fig = go.Figure(go.Heatmap(
        z=z, x=x, y=y, zmin=0.0, zmax=1.0, colorscale="Viridis", text=text, texttemplate="%{text}",
        customdata=hover, hovertemplate="layer %{y}, position %{x}<br>%{customdata}<extra></extra>",
        colorbar=dict(title="IIA"),
    ))
    flat = lambda mask: [[1.0 if mask[i][j] else None for j in range(C)] for i in range(R)]  # noqa: E731
    scr = [[z[i][j] is None and at(screened, i, j) is not None for j in range(C)] for i in range(R)]
    for mask, colour in ((overlaps, "#d0d0d0"), (below, "#f4c7c3"), (scr, "#f3f3f3")):
        if any(any(row) for row in mask):  # drawn over the coloured cells it stands for
            fig.add_trace(go.Heatmap(
                z=flat(mask), x=x, y=y, zmin=0.0, zmax=1.0, colorscale=[[0, colour], [1, colour]], showscale=False,
                text=text, texttemplate="%{text}", customdata=hover,
                hovertemplate="layer %{y}, position %{x}<br>%{customdata}<extra></extra>"))
    if clickable:
        cells = [(i, j) for i in range(R) for j in range(C) if z[i][j] is not None]
        for trace in fig.data:
            trace.hoverinfo = "skip"
        fig.add_trace(go.Scatter(
            x=[x[j] for _, j in cells], y=[y[i] for i, _ in cells], mode="markers", showlegend=False,
            marker=dict(size=36, symbol="square", opacity=0), customdata=[hover[i][j] for i, j in cells],
            hovertemplate="layer %{y}, position %{x}<br>%{customdata}<br>click: this site in detail<extra></extra>"))
    fig.update_layout(
        title=title, height=120 + 40 * max(1, R), margin=dict(l=20, r=20, t=40, b=20),
        xaxis_title="position", yaxis_title="layer", clickmode="event+select",
        # Fixed ranges: the click markers must not pad the axes.
        xaxis=dict(categoryorder="array", categoryarray=x, range=[-0.5, C - 0.5]),
        yaxis=dict(categoryorder="array", categoryarray=y, range=[-0.5, R - 0.5]),
    )
    return fig


GREY_LEGEND = ("Colour: IIA on a fixed 0-1 scale. Grey: the cell's 95% interval reaches the floor of its test "
               "set (the best of keep-the-base, copy-the-source and majority), so a trivial rule does as well. "
               "Pink: the whole interval lies below the floor (worse than a trivial rule). Pale, marked 'screened "
               "out': pre-screening left the site out. Hover a cell for n, the interval and the floor.")


def _cell_hover(v, low, high, floor, n, overlaps, below=False) -> str:
    if v is None:
        return "no result"
    parts = [f"IIA {v:.3f}"]
    if low is not None:
        parts.append(f"95% CI [{low:.2f}, {high:.2f}]")
    if n is not None:
        parts.append(f"n = {n}")
    if floor is not None:
        parts.append(f"floor {floor:.2f}" + (" (overlaps)" if overlaps else " (below it)" if below else ""))
    return ", ".join(parts)


ARM_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]  # distinct per arm


DASHES = ["solid", "dash", "dot", "dashdot", "longdash", "longdashdot"]


def curves(series: Mapping[str, Sequence[float]], title: str = "", y_title: str = "loss",
           x_title: str = "step", steps: Mapping[str, Sequence[int]] | None = None, dashes: bool = False) -> go.Figure:
    """One line per named series (training loss, accuracy, ...), each in its own colour; x is
    1, 2, ... or, with `steps`, the step each value was taken at (evaluations). `dashes`: each
    line its own dash too, so lines that lie on each other stay visible."""
    fig = go.Figure()
    for i, (name, ys) in enumerate(series.items()):
        ys = list(ys)
        xs = list(steps[name]) if steps is not None else list(range(1, len(ys) + 1))
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers" if steps is not None else "lines", name=str(name),
                                 line=dict(color=ARM_COLOURS[i % len(ARM_COLOURS)],
                                           dash=DASHES[i % len(DASHES)] if dashes else "solid",
                                           width=2.5 if dashes else 2)))
    fig.update_layout(title=title, height=320, margin=dict(l=20, r=20, t=40, b=20),
                      xaxis_title=x_title, yaxis_title=y_title)
    return fig


def confusion(labels: Sequence, matrix: Sequence[Sequence[int]], title: str = "") -> go.Figure:
    """Rows: the causal model's counterfactual output; columns: the intervened network's answer."""
    names = [str(v) for v in labels]
    fig = go.Figure(go.Heatmap(
        z=matrix, x=names, y=names, colorscale="Blues", texttemplate="%{z}",
        hovertemplate="expected %{y}, predicted %{x}: %{z}<extra></extra>", showscale=False,
    ))
    fig.update_layout(title=title, height=320, margin=dict(l=20, r=20, t=40, b=20),
                      xaxis_title="network's answer", yaxis_title="counterfactual output",
                      yaxis=dict(autorange="reversed"))
    return fig


def params_vs_score(methods: Sequence[str], params: Sequence[float], scores: Sequence[float],
                    score_name: str = "accuracy", title: str = "") -> go.Figure:
    """Trainable parameters on a log axis against the task score, one point per method, named
    in the legend (labels on the points print over each other when the points overlap)."""
    fig = go.Figure()
    for i, (method, x, y) in enumerate(zip(methods, params, scores)):
        fig.add_trace(go.Scatter(
            x=[x], y=[y], mode="markers", name=str(method),
            marker=dict(size=13, color=ARM_COLOURS[i % len(ARM_COLOURS)], symbol=_SYMBOLS[i % len(_SYMBOLS)],
                        line=dict(width=1, color="#333")),
            hovertemplate=f"{method}: " + "%{x:,} params, " + score_name + " %{y:.3f}<extra></extra>"))
    ticks = log_ticks(min(params, default=1), max(params, default=10))
    fig.update_layout(title=title, height=360, margin=dict(l=20, r=20, t=40, b=20), legend_title_text="method",
                      # Labelled 1-2-5 ticks (plotly's own log labels read "3 4 5 ... 9 1000 2 3").
                      xaxis=dict(type="log", title="trainable parameters (log scale)", tickvals=ticks,
                                 ticktext=[_si(v) for v in ticks]),
                      # an accuracy is a share: its axis is 0 to 1 (plotly's autorange ran to 2 for one point)
                      yaxis=dict(title=score_name, range=[-0.03, 1.03] if score_name == "accuracy" else None))
    return fig


def log_ticks(low: float, high: float) -> list[float]:
    """Ticks for a log axis from low to high: 1, 2, 5 times each power of ten when the range
    spans under three decades, else the powers of ten alone (a little past each end)."""
    low, high = max(float(low), 1.0) / 1.5, max(float(high), 1.0) * 1.5
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    steps = (1, 2, 5) if last - first <= 3 else (1,)
    return [m * 10 ** e for e in range(first, last + 1) for m in steps if low <= m * 10 ** e <= high]


_SYMBOLS = ["circle", "square", "diamond", "triangle-up", "cross", "x"]


def _si(v: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if v >= size:
            return f"{v / size:g}{unit}"
    return f"{v:g}"
