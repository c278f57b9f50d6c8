"""A declarative task file (TOML): a hypothesis with no Python.

    name = "same_color"
    template = "{x} and {y} : same ?"
    [variables]                      # every variable and its values
    x = ["red", "green", "blue"]
    y = ["red", "green", "blue"]
    V = [false, true]
    O = [false, true]
    [parents]
    V = ["x", "y"]
    O = ["V"]
    [mechanisms]                     # safe expressions over the parents
    V = "x == y"
    O = "V"
    [answers]                        # output value -> answer text
    true = " yes"
    false = " no"
    [hypotheses.first_only]          # optional alternatives: the same inputs, their own
    variables = { A = [...], O = [false, true] }   # non-input variables, parents, mechanisms
    parents = { A = ["x"], O = ["A", "y"] }
    mechanisms = { A = "x", O = "A == y" }

Mechanisms are evaluated with simpleeval: names, arithmetic, comparisons, boolean logic,
`a if c else b`, and the functions in FUNCTIONS; attribute access, imports and any other
call are refused when the file is read, with the file and the field in the message.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path
from typing import Any

from simpleeval import EvalWithCompoundTypes

from causal.errors import CausalModelError
from causal.model import CausalModel
from causal.tasks.task import Task
from causal.tasks.template import template_task

FUNCTIONS = {"abs": abs, "min": min, "max": max, "len": len, "int": int, "float": float, "str": str,
             "bool": bool, "round": round}
CONSTANTS = {"True": True, "False": False, "None": None, "true": True, "false": False}
ALLOWED_NODES = (ast.Expression, ast.BoolOp, ast.BinOp, ast.UnaryOp, ast.Compare, ast.IfExp, ast.Call, ast.Name,
                 ast.Load, ast.Constant, ast.And, ast.Or, ast.Not, ast.USub, ast.UAdd, ast.Add, ast.Sub, ast.Mult,
                 ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE,
                 ast.In, ast.NotIn, ast.Is, ast.IsNot, ast.Tuple, ast.List, ast.Set)
TOP_KEYS = {"name", "description", "template", "variables", "parents", "mechanisms", "answers", "hypotheses",
            "descriptions", "main_hypothesis"}


class _NoAttributes(EvalWithCompoundTypes):
    def _eval_attribute(self, node):
        raise CausalModelError("attribute access is not allowed in a mechanism")


def check_expression(expr: Any, parents: list[str], where: str) -> str:
    """The expression, if it is safe and names only parents and allowed functions."""
    if isinstance(expr, bool | int | float):
        return repr(expr)
    if not isinstance(expr, str) or not expr.strip():
        raise CausalModelError(f"{where}: a mechanism is an expression string such as \"x == y\", not {expr!r}")
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as e:
        raise CausalModelError(f"{where}: {expr!r} is not an expression ({e.msg}); imports and statements are "
                               "not allowed") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            raise CausalModelError(f"{where}: {expr!r} uses attribute access (.{node.attr}), which is not allowed")
        if isinstance(node, ast.Call):
            fname = node.func.id if isinstance(node.func, ast.Name) else None
            if fname not in FUNCTIONS:
                raise CausalModelError(f"{where}: {expr!r} calls {ast.unparse(node.func)!r}; allowed functions: "
                                       f"{sorted(FUNCTIONS)}")
        elif not isinstance(node, ALLOWED_NODES):
            raise CausalModelError(f"{where}: {expr!r} uses {type(node).__name__}, which is not allowed in a mechanism")
        if isinstance(node, ast.Name) and node.id not in FUNCTIONS and node.id not in CONSTANTS \
                and node.id not in parents:
            raise CausalModelError(f"{where}: {expr!r} names {node.id!r}, which is not among its parents {parents}")
    return expr.strip()


def expression_mechanism(expr: str, where: str):
    evaluator = _NoAttributes(functions=FUNCTIONS)

    def mechanism(**values):
        evaluator.names = {**CONSTANTS, **values}
        try:
            return evaluator.eval(expr)
        except CausalModelError:
            raise
        except Exception as e:  # noqa: BLE001  (the user's expression: one clear error naming it)
            raise CausalModelError(f"{where}: {expr!r} failed on {values}: {type(e).__name__}: {e}") from None

    return mechanism


def _table(data: dict, key: str, where: str, required: bool = True) -> dict:
    value = data.get(key, None)
    if value is None and not required:
        return {}
    if not isinstance(value, dict) or (required and not value):
        raise CausalModelError(f"{where}: [{key}] must be a table of name = value entries")
    return value


def causal_model_from_tables(variables: dict, parents: dict, mechanisms: dict, name: str, where: str,
                             descriptions: dict | None = None) -> CausalModel:
    for var, values in variables.items():
        if not isinstance(values, list) or not values:
            raise CausalModelError(f"{where} [variables] {var}: give a non-empty list of values")
    for var, ps in parents.items():
        if isinstance(ps, str) or not isinstance(ps, list) or not all(isinstance(p, str) for p in ps):
            raise CausalModelError(f"{where} [parents] {var}: give a list of variable names, e.g. [\"a\", \"b\"]")
        for p in ps:
            if p not in variables:
                raise CausalModelError(f"{where} [parents] {var}: {p!r} is not a variable; variables: {list(variables)}")
    mechs = {}
    for var in variables:
        if parents.get(var):
            if var not in mechanisms:
                raise CausalModelError(f"{where} [mechanisms]: {var!r} has parents but no mechanism")
            field = f"{where} [mechanisms] {var}"
            expr = check_expression(mechanisms[var], list(parents[var]), field)
            mechs[var] = expression_mechanism(expr, field)
    for var in mechanisms:
        if var not in variables:
            raise CausalModelError(f"{where} [mechanisms] {var}: not a variable; variables: {list(variables)}")
        if not parents.get(var):
            raise CausalModelError(f"{where} [mechanisms] {var}: an input (no parents) takes no mechanism")
    try:
        return CausalModel(variables, parents, mechs, name=name,
                           descriptions={**{v: str(mechanisms[v]) for v in mechs}, **(descriptions or {})})
    except CausalModelError as e:
        raise CausalModelError(f"{where}: {e}") from None


def _answers(raw: dict, out_values: list, where: str) -> dict:
    answers = {}
    for value in out_values:
        hits = [k for k in raw if k == str(value) or k.lower() == str(value).lower()]
        if not hits:
            raise CausalModelError(f"{where} [answers]: output value {value!r} has no answer text; add "
                                   f"{str(value).lower()} = \"...\"")
        answers[value] = raw[hits[0]]
    extra = [k for k in raw if not any(k.lower() == str(v).lower() for v in out_values)]
    if extra:
        raise CausalModelError(f"{where} [answers]: {extra} are not output values; outputs: {out_values}")
    return answers


def task_from_dict(data: dict, where: str) -> Task:
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise CausalModelError(f"{where}: unknown field(s) {unknown}; allowed: {sorted(TOP_KEYS)}")
    name = data.get("name")
    if not isinstance(name, str) or not name.isidentifier():
        raise CausalModelError(f"{where}: 'name' must be an identifier such as \"same_color\"")
    variables = _table(data, "variables", where)
    parents = _table(data, "parents", where)
    mechanisms = _table(data, "mechanisms", where, required=False)
    main_name = data.get("main_hypothesis", "main")
    main = causal_model_from_tables(variables, parents, mechanisms, main_name, where, data.get("descriptions"))
    hypotheses = {}
    for hname, h in _table(data, "hypotheses", where, required=False).items():
        hwhere = f"{where} [hypotheses.{hname}]"
        if not isinstance(h, dict):
            raise CausalModelError(f"{hwhere}: give variables, parents and mechanisms tables")
        hv = {**{v: variables[v] for v in main.inputs}, **_table(h, "variables", hwhere)}
        hypotheses[hname] = causal_model_from_tables(hv, _table(h, "parents", hwhere),
                                                     _table(h, "mechanisms", hwhere, required=False), hname, hwhere)
    raw_answers = _table(data, "answers", where)
    answers = _answers(raw_answers, main.variables[main.output], where)
    try:
        return template_task(name, main, data.get("template"), answers, hypotheses=hypotheses,
                             description=str(data.get("description", "")))
    except CausalModelError as e:
        raise CausalModelError(f"{where}: {e}") from None


def load_task_file(path: str | Path) -> Task:
    path = Path(path)
    where = f"task file {str(path)!r}"
    if not path.is_file():
        raise CausalModelError(f"{where} does not exist; give the path of a .toml task file")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise CausalModelError(f"{where} is not valid TOML: {e}") from None
    return task_from_dict(data, where)


def task_from_text(text: str, where: str = "task spec") -> Task:
    """A task from TOML text (the app's editor)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise CausalModelError(f"{where} is not valid TOML: {e}") from None
    return task_from_dict(data, where)
