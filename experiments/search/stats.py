"""The statistics every reported number carries: a 95% Wilson score interval for an IIA,
the trivial-rule floors of a test set, and the exact McNemar test that says whether a
method beats a control on the same examples."""

from __future__ import annotations

import math
from collections import Counter

Z95 = 1.959963984540054
FEW_TEST_EXAMPLES = 100  # fewer in a variable set: a warning in the results and the app
MIN_TEST_EXAMPLES = 20  # fewer: refused


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval for a proportion successes / n (n > 0)."""
    if n <= 0:
        raise ValueError("an interval needs at least one example")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def floors(target: list, base_output: list, source_outputs: list[list]) -> dict[str, float]:
    """IIA of the trivial rules on these examples: keep the base's output, copy a source's
    own output (the best single source when several are swapped), answer the majority
    counterfactual output. `source_outputs[j][i]` is source j's own output on example i."""
    n = len(target)
    if n == 0:
        return {"keep_base": float("nan"), "copy_source": float("nan"), "majority": float("nan")}
    keep = sum(t == b for t, b in zip(target, base_output)) / n
    copy = max((sum(t == s for t, s in zip(target, src)) / n for src in source_outputs), default=0.0)
    majority = Counter(target).most_common(1)[0][1] / n
    return {"keep_base": keep, "copy_source": copy, "majority": majority}


def floor_of(rules: dict[str, float]) -> tuple[float, str]:
    """The highest trivial rule: (its IIA, its name)."""
    name = max(rules, key=lambda k: rules[k])
    return rules[name], name


RULE_ANSWER = {"keep_base": "the base's own answer", "copy_source": "the source's own answer",
               "majority": "one and the same answer"}


def floor_verdict(iia_low: float | None, floor: float | None, floor_rule: str | None, variable: str = "the variable"):
    """The one rule for what an IIA says against its floor: (verdict, sentence).

    "uninformative": the floor is 1.00, so on these test pairs a trivial rule (e.g. copying the
    source's own answer) is always right and an intervention carrying the whole answer scores
    1.00: the pairs cannot tell the variable from the answer, whatever the IIA.
    "above floor": the interval's low end clears the floor.
    "at floor": the interval reaches the floor: no better than a trivial rule."""
    if floor is None or iia_low is None:
        return None, ""
    if floor >= 1.0 - 1e-9:
        return "uninformative", (f"on these test pairs the counterfactual answer is always {RULE_ANSWER.get(floor_rule, floor_rule)} "
                                 f"(floor 1.00, {floor_rule}): the pairs cannot tell {variable} from the whole answer, "
                                 "whatever the IIA; use counterfactuals where the two differ (for ioi: counterfactuals = "
                                 "\"s1_io_flip\")")
    if iia_low > floor:
        return "above floor", ""
    return "at floor", (f"the interval reaches the floor ({floor_rule}, {floor:.3f}): this IIA is no better than a "
                        "trivial rule")


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: b examples only the first method gets right, c only
    the second; under the null each discordant example goes either way with probability 1/2."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def paired_verdict(main: dict, control: dict, alpha: float = 0.05) -> dict:
    """Does `main` beat `control` on the same examples? Both rows carry `test_index` (example
    ids) and `test_correct` ("0"/"1" per example) and the `data` split they were drawn from."""
    if main.get("data") != control.get("data") or not main.get("test_index") or not control.get("test_index"):
        return dict(NOT_PAIRED)
    right_c = dict(zip(control["test_index"], control["test_correct"]))
    pairs = [(m, right_c[i]) for i, m in zip(main["test_index"], main["test_correct"]) if i in right_c]
    b = sum(m == "1" and c == "0" for m, c in pairs)
    c = sum(m == "0" and c == "1" for m, c in pairs)
    return mcnemar_verdict(b, c, len(pairs), alpha)


NOT_PAIRED = {"verdict": "not paired", "p": None, "b": None, "c": None, "n": 0}


def mcnemar_verdict(b: int, c: int, n: int, alpha: float = 0.05) -> dict:
    """The exact McNemar test on b / c discordant pairs out of n, as a verdict for the first
    method: "beats", "loses to" or "ties" (p >= alpha)."""
    p = mcnemar_exact(b, c)
    verdict = ("beats" if b > c else "loses to") if p < alpha else "ties"
    return {"verdict": verdict, "p": p, "b": b, "c": c, "n": n}
