"""One counterfactual example: a base input, one source per intervened variable, and the
causal model's outputs, factual and counterfactual."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class CounterfactualExample:
    base: dict
    sources: list[dict]  # one per intervened variable, same order as `variables`
    variables: list[str]
    base_output: Any
    counterfactual_output: Any

    @property
    def changed(self) -> bool:
        return self.counterfactual_output != self.base_output

    def source_for(self) -> dict[str, dict]:
        """{variable: source input}, the form CausalModel.interchange takes."""
        return dict(zip(self.variables, self.sources))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "CounterfactualExample":
        return cls(
            base={k: _from_json(v) for k, v in data["base"].items()},
            sources=[{k: _from_json(v) for k, v in s.items()} for s in data["sources"]],
            variables=list(data["variables"]),
            base_output=_from_json(data["base_output"]),
            counterfactual_output=_from_json(data["counterfactual_output"]),
        )


def _from_json(value: Any) -> Any:
    # JSON has no tuples: values that were tuples come back as lists; make them tuples again.
    if isinstance(value, list):
        return tuple(_from_json(v) for v in value)
    return value
