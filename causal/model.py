"""A high-level causal model: finite variables, parents, and plain-Python mechanisms.

Inputs are the variables with no parents; outputs are the non-input variables with no
children. `run` computes every variable in topological order, `interchange` sets chosen
variables to the values they take on other (source) inputs: the counterfactual the
network's interchange interventions are compared against.
"""

from __future__ import annotations

import inspect
import itertools
import math
import random
from collections.abc import Iterable, Mapping
from typing import Any, Callable, Iterator

from causal.errors import CausalModelError


def _value_key(value: Any) -> tuple:
    # True == 1 in Python; a domain of ints must not silently accept a bool (or back).
    return (type(value) is bool, value)


class CausalModel:
    def __init__(
        self,
        variables: dict[str, list],
        parents: dict[str, list[str]],
        mechanisms: dict[str, Callable],
        name: str = "",
        descriptions: dict[str, str] | None = None,
    ):
        self.name = name
        for what, given in (("variables", variables), ("parents", parents), ("mechanisms", mechanisms)):
            if not isinstance(given, Mapping):
                raise CausalModelError(f"{what} must be a dict keyed by variable name, not a {type(given).__name__}; "
                                       f"e.g. variables={{'a': [0, 1], 'b': [0, 1]}}, parents={{'b': ['a']}}, "
                                       "mechanisms={'b': lambda a: a}")
        if not variables:
            raise CausalModelError("the causal model has no variables; declare its inputs, intermediates and output")
        self.variables: dict[str, list] = {}
        for var, values in variables.items():
            if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
                raise CausalModelError(f"variable {var!r}: values {values!r} must be a list of values, e.g. [0, 1]")
            values = list(values)
            if not values:
                raise CausalModelError(f"variable {var!r} has no values; give it a non-empty list of values")
            self.variables[var] = values
        self.parents: dict[str, list[str]] = {var: list(parents.get(var, [])) for var in self.variables}
        self.mechanisms: dict[str, Callable] = dict(mechanisms)
        self.descriptions: dict[str, str] = dict(descriptions or {})
        self._check_names(parents, mechanisms)
        self.inputs: list[str] = [v for v in self.variables if not self.parents[v]]
        self.order: list[str] = self._topological_order()
        children = {v: [] for v in self.variables}
        for child, ps in self.parents.items():
            for p in ps:
                children[p].append(child)
        self.children: dict[str, list[str]] = children
        self.outputs: list[str] = [v for v in self.order if self.parents[v] and not children[v]]
        self.intermediates: list[str] = [v for v in self.order if self.parents[v] and children[v]]
        self._domain_keys = {v: self._keys(vals) for v, vals in self.variables.items()}

    # ---- construction checks -------------------------------------------------------
    @staticmethod
    def _keys(values: list) -> set | None:
        try:
            return {_value_key(v) for v in values}
        except TypeError:  # unhashable values: fall back to a linear scan
            return None

    def _check_names(self, parents: dict, mechanisms: dict) -> None:
        for var, ps in parents.items():
            if var not in self.variables:
                raise CausalModelError(f"parents given for unknown variable {var!r}; declare it in `variables`")
            if isinstance(ps, (str, bytes)) or not isinstance(ps, Iterable):
                raise CausalModelError(f"parents of {var!r} are {ps!r}; give a list of variable names, e.g. "
                                       f"{list(ps) if isinstance(ps, str) else ['a', 'b']}")
            for p in ps:
                if p not in self.variables:
                    raise CausalModelError(
                        f"variable {var!r} has unknown parent {p!r}; declare {p!r} in `variables` or fix the name"
                    )
            if len(set(ps)) != len(ps):
                raise CausalModelError(f"variable {var!r} lists a parent twice; list each parent once")
        for var in mechanisms:
            if var not in self.variables:
                raise CausalModelError(f"mechanism given for unknown variable {var!r}; declare it in `variables`")
            if not self.parents[var]:
                raise CausalModelError(
                    f"input variable {var!r} (no parents) has a mechanism; inputs are set by the caller, remove it"
                )
        for var in self.variables:
            if self.parents[var] and var not in self.mechanisms:
                raise CausalModelError(f"variable {var!r} has parents but no mechanism; add mechanisms[{var!r}]")
            if self.parents[var] and not callable(self.mechanisms[var]):
                raise CausalModelError(f"mechanism of variable {var!r} is not callable; give a function of its parents")
            if self.parents[var]:
                self._check_signature(var)

    def _check_signature(self, var: str) -> None:
        """Mechanisms are called with their parents by name: check that now, not on first run."""
        ps = self.parents[var]
        try:
            signature = inspect.signature(self.mechanisms[var])
        except (TypeError, ValueError):  # a builtin without a signature: checked when it runs
            return
        try:
            signature.bind(**{p: None for p in ps})
        except TypeError as e:
            raise CausalModelError(f"mechanism of variable {var!r} cannot take its parents {ps} by name ({e}); "
                                   f"write it as lambda {', '.join(ps)}: ...") from None

    def _topological_order(self) -> list[str]:
        # Depth-first with colours: stable (declaration order) and finds the cycle's variable.
        state: dict[str, int] = {}  # 1 = on the stack, 2 = done
        order: list[str] = []

        def visit(var: str, path: list[str]) -> None:
            if state.get(var) == 2:
                return
            if state.get(var) == 1:
                cycle = path[path.index(var):] + [var]
                raise CausalModelError(
                    f"variable {var!r} is on a cycle ({' -> '.join(cycle)}); a causal model must be acyclic"
                )
            state[var] = 1
            for p in self.parents[var]:
                visit(p, path + [var])
            state[var] = 2
            order.append(var)

        for var in self.variables:
            visit(var, [])
        return order

    # ---- domains ---------------------------------------------------------------------
    def in_domain(self, var: str, value: Any) -> bool:
        keys = self._domain_keys[var]
        if keys is not None:
            try:
                return _value_key(value) in keys
            except TypeError:
                return False
        return any(_value_key(value) == _value_key(v) for v in self.variables[var])

    def check_input(self, inputs: dict) -> None:
        """Raise CausalModelError naming the variable when `inputs` is not a full, valid input."""
        if not isinstance(inputs, dict):
            raise CausalModelError(f"an input must be a dict of {self.inputs}, got {type(inputs).__name__}")
        for var in inputs:
            if var not in self.variables:
                raise CausalModelError(f"input names unknown variable {var!r}; the inputs are {self.inputs}")
            if var not in self.inputs:
                raise CausalModelError(
                    f"input sets {var!r}, which is not an input variable; use interventions={{{var!r}: ...}} instead"
                )
        for var in self.inputs:
            if var not in inputs:
                raise CausalModelError(f"input is missing variable {var!r}; the inputs are {self.inputs}")
            if not self.in_domain(var, inputs[var]):
                raise CausalModelError(
                    f"input variable {var!r} got {inputs[var]!r}, outside its values {self._show_values(var)}"
                )

    def _show_values(self, var: str) -> str:
        values = self.variables[var]
        return repr(values) if len(values) <= 12 else f"[{values[0]!r}, {values[1]!r}, ..., {values[-1]!r}] ({len(values)} values)"

    # ---- evaluation ------------------------------------------------------------------
    @property
    def output(self) -> str:
        if len(self.outputs) != 1:
            raise CausalModelError(
                f"causal model {self.name!r} has outputs {self.outputs}; name one explicitly instead of `.output`"
            )
        return self.outputs[0]

    def run(self, inputs: dict, interventions: dict | None = None) -> dict:
        """The full setting: every variable's value. `interventions` fix variables (do-operator)."""
        self.check_input(inputs)
        interventions = interventions or {}
        for var, value in interventions.items():
            if var not in self.variables:
                raise CausalModelError(f"intervention on unknown variable {var!r}; the variables are {list(self.variables)}")
            if not self.in_domain(var, value):
                raise CausalModelError(
                    f"intervention sets {var!r} to {value!r}, outside its values {self._show_values(var)}"
                )
        setting: dict = {}
        for var in self.order:
            if var in interventions:
                setting[var] = interventions[var]
            elif not self.parents[var]:
                setting[var] = inputs[var]
            else:
                setting[var] = self._compute(var, setting, inputs)
        return setting

    def _compute(self, var: str, setting: dict, inputs: dict) -> Any:
        args = {p: setting[p] for p in self.parents[var]}
        try:
            value = self.mechanisms[var](**args)
        except Exception as exc:  # a user's mechanism failed: say which one and on what
            raise CausalModelError(
                f"mechanism of variable {var!r} failed on parents {args} (inputs {inputs}): "
                f"{type(exc).__name__}: {exc}; fix the mechanism or its parents' names"
            ) from exc
        if not self.in_domain(var, value):
            raise CausalModelError(
                f"mechanism of variable {var!r} returned {value!r}, outside its values {self._show_values(var)}, "
                f"on parents {args} (inputs {inputs}); widen the values or fix the mechanism"
            )
        return value

    def interchange(self, base: dict, sources: dict[str, dict]) -> dict:
        """Counterfactual setting: each named variable takes its value on its own source input."""
        if not isinstance(sources, dict):
            raise CausalModelError("interchange takes {variable: source_input}; got " + type(sources).__name__)
        fixed = {}
        for var, source in sources.items():
            if var not in self.variables:
                raise CausalModelError(f"interchange on unknown variable {var!r}; the variables are {list(self.variables)}")
            fixed[var] = self.run(source)[var]
        return self.run(base, interventions=fixed)

    # ---- input space -----------------------------------------------------------------
    def sample_input(self, rng: random.Random) -> dict:
        """Each input variable uniform over its values (tasks bring balanced samplers of their own)."""
        return {var: rng.choice(self.variables[var]) for var in self.inputs}

    @property
    def input_space_size(self) -> int:
        return math.prod(len(self.variables[v]) for v in self.inputs)

    def enumerate_inputs(self) -> Iterator[dict]:
        """Every input, in a fixed order (the product of the input domains)."""
        for combo in itertools.product(*(self.variables[v] for v in self.inputs)):
            yield dict(zip(self.inputs, combo))

    # ---- export ----------------------------------------------------------------------
    def kind(self, var: str) -> str:
        if var in self.inputs:
            return "input"
        return "output" if var in self.outputs else "intermediate"

    def graph(self) -> dict:
        """Nodes in topological order and edges [parent, child], plus each node's kind for plotting."""
        return {
            "nodes": list(self.order),
            "edges": [[p, child] for child in self.order for p in self.parents[child]],
            "kinds": {v: self.kind(v) for v in self.order},
        }

    def describe(self) -> str:
        lines = [f"Causal model {self.name!r}" if self.name else "Causal model"]
        for var in self.order:
            text = f"  {var} [{self.kind(var)}] values {self._show_values(var)}"
            if self.parents[var]:
                text += f" <- {', '.join(self.parents[var])}"
            if var in self.descriptions:
                text += f": {self.descriptions[var]}"
            lines.append(text)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"CausalModel(name={self.name!r}, inputs={self.inputs}, intermediates={self.intermediates}, outputs={self.outputs})"
