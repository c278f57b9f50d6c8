"""Price tagging (Wu et al., "Interpretability at scale", Boundless DAS), integer version:
is price X between lower bound L and upper bound U? "price 7 lower 3 upper 12 ?" -> " yes".
"""

from __future__ import annotations

import random

from causal.model import CausalModel
from causal.tasks.task import Task

MAX_PRICE = 19


def price_hypotheses(prices: list[int]) -> dict[str, CausalModel]:
    inputs = {"X": list(prices), "L": list(prices), "U": list(prices)}
    boolean = [False, True]
    boundaries = CausalModel(
        {**inputs, "left": boolean, "right": boolean, "O": boolean},
        {"left": ["X", "L"], "right": ["X", "U"], "O": ["left", "right"]},
        {"left": lambda X, L: X >= L, "right": lambda X, U: X <= U, "O": lambda left, right: left and right},
        name="boundaries",
        descriptions={"left": "X >= L", "right": "X <= U", "O": "left and right"},
    )
    left_only = CausalModel(
        {**inputs, "left": boolean, "O": boolean},
        {"left": ["X", "L"], "O": ["left"]},
        {"left": lambda X, L: X >= L, "O": lambda left: left},
        name="left_only",
        descriptions={"left": "X >= L", "O": "left (ignores U)"},
    )
    midpoint = CausalModel(
        {**inputs, "near_mid": boolean, "O": boolean},
        {"near_mid": ["X", "L", "U"], "O": ["near_mid"]},
        # |X - (L+U)/2| <= (U-L)/2, doubled to stay in integers.
        {"near_mid": lambda X, L, U: abs(2 * X - L - U) <= U - L, "O": lambda near_mid: near_mid},
        name="midpoint",
        descriptions={"near_mid": "|X - (L+U)/2| <= (U-L)/2", "O": "near_mid"},
    )
    return {"boundaries": boundaries, "left_only": left_only, "midpoint": midpoint}


def price_sampler(prices: list[int]):
    """L <= U; the answer is yes with probability 1/2 (X inside, else X outside the bounds)."""

    def sample(rng: random.Random) -> dict:
        inside = rng.random() < 0.5
        while True:
            low, high = sorted((rng.choice(prices), rng.choice(prices)))
            if inside:
                return {"X": rng.randint(low, high), "L": low, "U": high}
            outside = [p for p in prices if p < low or p > high]
            if outside:
                return {"X": rng.choice(outside), "L": low, "U": high}

    return sample


def price_tagging(max_price: int = MAX_PRICE) -> Task:
    prices = list(range(max_price + 1))

    def segment(inputs: dict):
        return [
            ("price", None), (f" {inputs['X']}", "price"),
            (" lower", None), (f" {inputs['L']}", "lower"),
            (" upper", None), (f" {inputs['U']}", "upper"),
            (" ?", None),
        ]

    return Task(
        name="price_tagging",
        description=f"is price X in [L, U]? integer prices 0..{max_price}; answers yes / no",
        hypotheses=price_hypotheses(prices),
        default_hypothesis="boundaries",
        input_kind="tokens",
        answers={True: " yes", False: " no"},
        sampler=price_sampler(prices),
        segmenter=segment,
        position_names=["price", "lower", "upper"],
        vocabulary=["price", "lower", "upper", "?", "yes", "no", *(str(p) for p in prices)],
    )
