"""How DAS cost grows: our and pyvene's examples/s against sequence length (16, 64, 256 on
GPT-2 small) and against model width (GPT-2 small and medium at 64 tokens), one site in the
middle layer at the last position, batch 8. Each point runs both sides in their own
processes (bench/ours_das.py, bench/peers/pyvene_das.py), alternating. Writes
bench/results/scaling.json and the plot bench/results/scaling.html (plotly).

    bench/.venv-peers/bin/python bench/scaling.py            # about 6 minutes on 2 cores
    bench/.venv-peers/bin/python bench/scaling.py --quick    # tiny shapes, a smoke run
"""

import argparse
import math
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from driver import BENCH, run_side, write_json  # noqa: E402

POINTS = [("gpt2", 16), ("gpt2", 64), ("gpt2", 256), ("gpt2-medium", 64)]
QUICK = [("tiny", 16)]
LAYER = {"gpt2": 6, "gpt2-medium": 12, "tiny": 1}


def measure(shape: str, seq: int, python: str) -> dict:
    args = ["--model", shape, "--layer", str(LAYER[shape]), "--batch", "8", "--seq", str(seq), "--k", "16",
            "--warmup", "1", "--steps", "3", "--data-batches", "1"]
    point = {"model": shape, "seq": seq}
    for side, script in (("pyvene", "peers/pyvene_das.py"), ("ours", "ours_das.py")):
        r = run_side(python, script, args, timeout_s=900)
        point[side] = {k: r.get(k) for k in ("examples_per_s", "examples_per_s_incl_prepare", "ms_per_step",
                                            "prepare_s", "peak_mem_bytes", "error") if k in r}
    p, o = point["pyvene"].get("examples_per_s"), point["ours"].get("examples_per_s")
    point["ratio"] = o / p if p and o else None
    return point


def plot(points: list[dict], path: Path) -> None:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("GPT-2 small: sequence length", "64 tokens: model width"))
    by_seq = [p for p in points if p["model"] in ("gpt2", "tiny")]
    by_width = [p for p in points if p["seq"] == 64]
    for side, color in (("ours", "#1f77b4"), ("pyvene", "#d62728")):
        fig.add_trace(go.Scatter(x=[p["seq"] for p in by_seq], y=[p[side].get("examples_per_s") for p in by_seq],
                                 name=side, mode="lines+markers", line=dict(color=color)), row=1, col=1)
        fig.add_trace(go.Scatter(x=[p["model"] for p in by_width], y=[p[side].get("examples_per_s") for p in by_width],
                                 name=side, mode="lines+markers", line=dict(color=color), showlegend=False), row=1, col=2)
    for p in by_seq:
        if p["ratio"]:  # annotations on log axes take log10 coordinates
            fig.add_annotation(x=math.log10(p["seq"]), y=math.log10(p["ours"]["examples_per_s"]),
                               text=f"{p['ratio']:.0f}x pyvene", row=1, col=1, showarrow=False, yshift=14)
    ticks = [0.1, 0.3, 1, 3, 10, 30, 100, 300, 1000, 3000, 10000]
    fig.update_xaxes(type="log", title_text="tokens per example", tickvals=[16, 64, 256], row=1, col=1)
    fig.update_xaxes(title_text="model", row=1, col=2)
    fig.update_yaxes(type="log", tickvals=ticks, ticktext=[f"{t:g}" for t in ticks],
                     title_text="DAS training examples/s (batch 8, one site)", row=1, col=1)
    fig.update_yaxes(type="log", tickvals=ticks, ticktext=[f"{t:g}" for t in ticks], row=1, col=2)
    fig.update_layout(title="DAS examples/s, ours vs pyvene 0.1.8 (CPU)", height=450, width=1000)
    fig.write_html(str(path), include_plotlyjs="cdn")


def run(quick: bool, python: str, results_dir: Path | None = None) -> dict:
    points = [measure(shape, seq, python) for shape, seq in (QUICK if quick else POINTS)]
    out = (results_dir or BENCH / "results") / ("scaling_quick" if quick else "scaling")
    write_json(out.with_suffix(".json"), {"points": points, "load_average_at_start": os.getloadavg()[0]})
    plot(points, out.with_suffix(".html"))
    return {"points": points, "plot": str(out.with_suffix(".html"))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    result = run(args.quick, sys.executable)
    for p in result["points"]:
        print(f"{p['model']:12s} T={p['seq']:4d}  ours {p['ours'].get('examples_per_s') or 0:8.1f}  "
              f"pyvene {p['pyvene'].get('examples_per_s') or 0:7.2f} ex/s  ratio {p['ratio'] or 0:.1f}x")
    print(f"plot: {result['plot']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
