"""Runs benchmark sides in separate processes and compares them (used by run_cpu.py and
run_gpu.py). Each side is a script that prints one BENCH_RESULT JSON line; a side that
fails or times out becomes an error entry, and the other comparisons still run."""

from __future__ import annotations

import json
import statistics
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import common  # noqa: E402


@dataclass
class Comparison:
    """One row of the table: the peer's script and ours on the same flags."""

    name: str
    peer_script: str
    ours_script: str
    args: list[str]
    # (label, peer's key, our key, "higher" / "lower" is better, or "same"): ratio = ours/peer
    metrics: list[tuple[str, str, str, str]] = field(default_factory=lambda: [
        ("examples_per_s", "examples_per_s", "examples_per_s", "higher"),
        ("peak_mem_bytes", "peak_mem_bytes", "peak_mem_bytes", "lower")])
    timeout_s: int = 300
    repeats: int = 1  # runs per side, alternating peer / ours; metrics are medians with their range


def run_side(python: str, script: str, args: list[str], timeout_s: int, env: dict | None = None) -> dict:
    """One side in its own process; its BENCH_RESULT, or {"error": ...} with the output's tail."""
    cmd = [python, str(BENCH / script), *args]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=ROOT,
                              env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired as e:
        out = e.stdout or ""
        out = out.decode(errors="replace") if isinstance(out, bytes) else out  # bytes even with text=True
        return {"error": f"timed out after {timeout_s} s", "cmd": " ".join(cmd), "tail": out[-2000:]}
    result = common.parse_result(proc.stdout)
    if proc.returncode != 0 or result is None:
        return {"error": f"exit code {proc.returncode}", "cmd": " ".join(cmd),
                "tail": (proc.stdout + proc.stderr)[-3000:]}
    result["process_s"] = time.perf_counter() - t0
    result["cmd"] = " ".join(cmd)
    return result


def ratio(peer, ours) -> float | None:
    """ours / peer where both are numbers and the peer's is positive, else None."""
    ok = isinstance(peer, (int, float)) and isinstance(ours, (int, float)) and peer > 0
    return ours / peer if ok else None


def _median_and_range(runs: list[dict], key: str):
    values = sorted(r[key] for r in runs if isinstance(r.get(key), (int, float)))
    if not values:
        return None, None
    return statistics.median(values), [values[0], values[-1]]


def compare(c: Comparison, peer_python: str, ours_python: str, env: dict | None = None) -> dict:
    """Both sides `c.repeats` times, alternating (peer, ours, peer, ours, ...), so a change
    in the machine's load hits both; each metric is the median over the runs, with its range."""
    runs = {"peer": [], "ours": []}
    for _ in range(c.repeats):
        runs["peer"].append(run_side(peer_python, c.peer_script, c.args, c.timeout_s, env))
        runs["ours"].append(run_side(ours_python, c.ours_script, c.args, c.timeout_s, env))
    # The first failed run of a side (if any) stands for it, so its error is shown.
    peer, ours = ({**next((r for r in rs if "error" in r), rs[0])} for rs in (runs["peer"], runs["ours"]))
    metrics = []
    for label, peer_key, ours_key, direction in c.metrics:
        p, p_range = _median_and_range(runs["peer"], peer_key)
        o, o_range = _median_and_range(runs["ours"], ours_key)
        metric = {"metric": label, "peer": p, "ours": o, "ratio": ratio(p, o), "better": direction}
        if c.repeats > 1:
            metric.update(runs=c.repeats, peer_range=p_range, ours_range=o_range)
        metrics.append(metric)
    return {"name": c.name, "args": c.args, "repeats": c.repeats, "metrics": metrics, "peer": peer, "ours": ours}


def memory_above_peer(rows: list[dict]) -> list[str]:
    """The rows whose peak memory is above the peer's (the goal: ratio <= 1.0 on every row)."""
    return [f"{r['name']} ({m['ratio']:.2f}x)" for r in rows for m in r["metrics"]
            if m["metric"] == "peak_mem_bytes" and m.get("ratio") is not None and m["ratio"] > 1]


def fmt(metric: str, v) -> str:
    """A figure for a table: MiB, seconds, GFLOP, IIA to 3 places, else 3 significant digits."""
    if not isinstance(v, (int, float)):
        return "-"
    if metric.endswith("_bytes"):
        return f"{v / 2**20:,.0f} MiB"
    if metric.endswith("_s") and not metric.endswith("per_s"):
        return f"{v:,.1f} s"
    if metric.startswith("flops"):
        return f"{v / 1e9:,.1f} GFLOP"
    if "iia" in metric.lower():
        return f"{v:.3f}"
    return f"{v:,.3g}" if v < 1000 else f"{v:,.0f}"


def table(rows: list[dict]) -> str:
    lines = [f"{'comparison':<22} {'metric':<28} {'peer':>12} {'ours':>12} {'ours/peer':>10}"]
    for r in rows:
        for side in ("peer", "ours"):
            if "error" in r[side]:
                lines.append(f"{r['name']:<22} {side} FAILED: {r[side]['error']} (see the JSON for its output)")
        for m in r["metrics"]:
            ratio, metric = m["ratio"], m["metric"]
            if ratio is None or m["better"] not in ("higher", "lower"):
                better = ""  # e.g. final loss: shown for agreement, no verdict
            else:
                better = "  better" if (ratio > 1) == (m["better"] == "higher") else "  worse"
            spread = ""
            if m.get("runs", 1) > 1 and m.get("peer_range") and m.get("ours_range"):
                spread = (f"  (median of {m['runs']}; peer {fmt(metric, m['peer_range'][0])}-"
                          f"{fmt(metric, m['peer_range'][1])}, ours {fmt(metric, m['ours_range'][0])}-"
                          f"{fmt(metric, m['ours_range'][1])})")
            lines.append(f"{r['name']:<22} {metric:<28} {fmt(metric, m['peer']):>12} "
                         f"{fmt(metric, m['ours']):>12} "
                         f"{(f'{ratio:.2f}x' if ratio is not None else '-'):>10}{better}{spread}")
    return "\n".join(lines)


def write_json(path: Path, data) -> None:
    """Temp file then rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def environment(python: str) -> dict:
    code = ("import json, platform, torch, transformers; print(json.dumps({'python': platform.python_version(), "
            "'torch': torch.__version__, 'transformers': transformers.__version__, "
            "'cuda': torch.cuda.get_device_name() if torch.cuda.is_available() else None, "
            "'threads': torch.get_num_threads()}))")
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120).stdout
        return json.loads(out.strip().splitlines()[-1])
    except Exception as e:  # noqa: BLE001
        return {"error": str(e)}
