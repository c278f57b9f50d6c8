"""What a run says, in the form the CLI and the app show: per variable, the main method's
best site with its interval, n and floor, and each control at that site with the paired
test's verdict (does the main method beat it on the same examples?). With several seeds,
a site's IIA is the mean over seeds (sd and each seed's value beside it), its interval the
pooled Wilson interval over every seed's examples, and the paired test pools each seed's
discordant pairs."""

from __future__ import annotations

import statistics
from collections import defaultdict

from experiments.search.stats import NOT_PAIRED, floor_verdict, mcnemar_verdict, paired_verdict, wilson_interval


def _group(rows: list[dict]) -> dict[tuple, list[dict]]:
    """(variable, method, site) -> that cell's rows, one per seed."""
    out: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        out[(r["variable"], r["method"], r["site"])].append(r)
    return out


def pooled(rows: list[dict]) -> dict:
    """One figure from a cell's per-seed rows: mean, sd, each seed's IIA, the pooled interval,
    the highest floor, and whether the pooled interval clears it."""
    scored = [r for r in rows if r.get("iia") is not None]
    if not scored:
        return {"iia": None}
    values = [r["iia"] for r in scored]
    n = sum(r.get("n_test") or 0 for r in scored)
    k = sum(round(r["iia"] * (r.get("n_test") or 0)) for r in scored)
    low, high = wilson_interval(k, n) if n else (None, None)
    floors = [r["floor"] for r in scored if r.get("floor") is not None]
    floor = max(floors) if floors else None
    rule = max(scored, key=lambda r: r.get("floor") or 0).get("floor_rule") if floors else None
    return {"iia": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else None,
            "per_seed": {r.get("seed"): r["iia"] for r in scored}, "iia_low": low, "iia_high": high, "n_test": n,
            "floor": floor, "floor_rule": rule, "above_floor": None if floor is None or low is None else low > floor,
            "warning": next((r["warning"] for r in scored if r.get("warning")), None)}


def pooled_verdict(mains: list[dict], controls: list[dict]) -> dict:
    """The paired test over every seed: discordant pairs counted within each seed, then added."""
    by_seed = {r.get("seed"): r for r in controls}
    b = c = n = 0
    for m in mains:
        ctrl = by_seed.get(m.get("seed"))
        if ctrl is None:
            continue
        v = paired_verdict(m, ctrl)
        if v["verdict"] == "not paired":
            return v
        b, c, n = b + v["b"], c + v["c"], n + v["n"]
    return mcnemar_verdict(b, c, n) if n else dict(NOT_PAIRED)


def best_site_summary(rows: list[dict], main_method: str) -> list[dict]:
    groups = _group(rows)
    variables = list(dict.fromkeys(r["variable"] for r in rows))
    methods = [m for m in dict.fromkeys(r["method"] for r in rows) if m != main_method]
    out = []
    for v in variables:
        mine = {site: pooled(rs) for (var, m, site), rs in groups.items() if var == v and m == main_method}
        mine = {site: p for site, p in mine.items() if p["iia"] is not None}
        if not mine:
            continue
        site = max(mine, key=lambda s: mine[s]["iia"])
        controls = {}
        for m in methods:
            rs = groups.get((v, m, site))
            if not rs:
                continue
            if all(r.get("iia") is None for r in rs):  # the probe: an accuracy, not an intervention
                accs = [r["probe_accuracy"] for r in rs if r.get("probe_accuracy") is not None]
                controls[m] = {"value": statistics.fmean(accs) if accs else None, "verdict": "no IIA", "p": None}
                continue
            p = pooled(rs)
            controls[m] = {"value": p["iia"], "floor": p["floor"], **pooled_verdict(groups[(v, main_method, site)], rs)}
        verdict, note = floor_verdict(mine[site].get("iia_low"), mine[site].get("floor"), mine[site].get("floor_rule"), v)
        out.append({"variable": v, "site": site, **mine[site], "controls": controls, "floor_verdict": verdict,
                    "floor_note": note})
    return out


def fmt_interval(row: dict) -> str:
    if row.get("iia") is None:
        return "-"
    text = f"{row['iia']:.3f}"
    if row.get("sd") is not None:
        text += f" ± {row['sd']:.3f}"
    if row.get("iia_low") is not None:
        text += f" [{row['iia_low']:.2f}, {row['iia_high']:.2f}]"
    return text


def fmt_seeds(row: dict) -> str:
    per = row.get("per_seed") or {}
    return ", ".join(f"{s}: {v:.3f}" for s, v in per.items()) if len(per) > 1 else ""


def fmt_verdict(c: dict, main_method: str) -> str:
    value = "-" if c.get("value") is None else f"{c['value']:.3f}"
    if c["verdict"] == "not paired":  # other examples: its own floor is what it compares with
        floor = "" if c.get("floor") is None else f"; its floor {c['floor']:.3f}"
        return f"{value} (not paired{floor})"
    if c["verdict"] == "no IIA":
        return f"{value} (probe accuracy)"
    p = c["p"]
    ptext = "p<0.001" if p < 0.001 else f"p={p:.3f}"
    return f"{value} ({main_method} {c['verdict']}, {ptext})"
