"""Tasks: the built-in ones by name (`get_task`, `TASK_NAMES`), and the user's own through one
resolver, `resolve_task(spec)`, that every entry point (search, finetune, compare, CLI, app)
uses: a Task object, a built-in name, a task file ("my_task.toml"), a builder in a file
("my_tasks.py:build") or in an importable module ("package.module:build").

A spec is resolved once per process: the resolver caches each Task on its spec, its options
and, for a file, the file's size and modification time (an edited file is read again, an
unchanged one never: a user's builder runs once per `dii search`). A Task object passes
through as itself, and `task_spec_of(task)` names it in that same cache."""

from __future__ import annotations

import importlib
import inspect
import json
from pathlib import Path
from typing import Callable

from causal.errors import CausalModelError
from causal.tasks.arithmetic_carry import arithmetic_carry
from causal.tasks.hierarchical_equality import hierarchical_equality
from causal.tasks.hierarchical_equality_tokens import hierarchical_equality_tokens
from causal.tasks.ioi import ioi
from causal.tasks.mcqa import mcqa
from causal.tasks.mcqa4 import mcqa4
from causal.tasks.price_tagging import price_tagging
from causal.tasks.ravel import ravel
from causal.tasks.task import Segment, Task

_BUILDERS: dict[str, Callable[..., Task]] = {
    "hierarchical_equality": hierarchical_equality,
    "hierarchical_equality_tokens": hierarchical_equality_tokens,
    "price_tagging": price_tagging,
    "arithmetic_carry": arithmetic_carry,
    "mcqa": mcqa,
    "ioi": ioi,
    "mcqa4": mcqa4,
    "ravel": ravel,
}
TASK_NAMES: list[str] = list(_BUILDERS)


def get_task(name: str, **options) -> Task:
    """A fresh Task by name; options (e.g. n_objects=) go to the task's builder."""
    if name not in _BUILDERS:
        raise CausalModelError(f"unknown task {name!r}; choose one of {TASK_NAMES}")
    return _call_builder(_BUILDERS[name], options, f"task {name!r}")


# (spec, options as JSON, file stamp) -> the Task it resolved to in this process; a Task
# object handed over in Python sits here under its "object:<name>@<hash>" spec.
_RESOLVED: dict[tuple, Task] = {}


def task_spec_of(task: Task) -> str:
    """A spec string for a Task object, so a config can name it ("object:<name>@<hash>");
    resolving that spec in this process gives the object itself."""
    key = f"object:{task.name}@{task.content_hash()}"
    _RESOLVED[(key, "{}", None)] = task
    if not task.source:
        task.source = "python object"
    return key


def clear_task_cache() -> None:
    """Forget every resolved task (tests; a long-lived process that wants a clean slate)."""
    _RESOLVED.clear()


def resolve_task(spec, base_dir: str | Path | None = None, options: dict | None = None) -> Task:
    """The Task a spec names; paths are relative to base_dir (a config's folder) when given.
    `options` (a config's [task_options] table) are keyword arguments of a builder: a
    built-in's (get_task) or the user's 'file.py:build'; a task file or object takes none."""
    options = dict(options or {})
    if options and (isinstance(spec, Task) or (isinstance(spec, str) and (spec.strip().endswith(".toml")
                                                                          or spec.startswith("object:")))):
        raise CausalModelError(f"task options {sorted(options)} go to a builder function ('my_tasks.py:build' or a "
                               f"built-in name); task {spec if isinstance(spec, str) else spec.name!r} is not built by "
                               "one: write the values into the task itself, or remove [task_options]")
    if isinstance(spec, Task):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise CausalModelError(f"a task is a built-in name, a .toml task file or a 'file.py:build' builder, "
                               f"not {spec!r}; built-ins: {TASK_NAMES}")
    written = spec.strip()
    spec = spec_beside(written, Path(base_dir)) if base_dir is not None else written
    key = (spec, json.dumps(options, sort_keys=True, default=repr), _file_stamp(spec))
    if key not in _RESOLVED:
        if spec.startswith("object:"):
            raise CausalModelError(f"task {spec!r} was a Python object of another process; pass the Task object again")
        _RESOLVED[key] = _resolve(spec, written, options)
    return _RESOLVED[key]


def _file_stamp(spec: str) -> tuple[int, int] | None:
    """(size, mtime) of the file a spec names, so that an edited task file resolves anew."""
    file = spec.rpartition(":")[0] if ".py:" in spec else spec
    if not (file.endswith(".toml") or file.endswith(".py")):
        return None
    try:
        st = Path(file).expanduser().stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _resolve(spec: str, written: str, options: dict) -> Task:
    if spec in _BUILDERS:
        task = _call_builder(_BUILDERS[spec], options, f"task {spec!r}")
        # With options the content may differ from the built-in's: the source says so, and the
        # zoo then caches its model under the content hash.
        task.source = task.source or _with_options(spec, options)
        return task
    if spec.endswith(".toml"):
        from causal.tasks.spec import load_task_file

        task = load_task_file(Path(spec).expanduser())
        task.source = written
        return task
    if ":" in spec:
        return _from_builder(spec, written, options)
    raise CausalModelError(f"unknown task {spec!r}; give a built-in name ({TASK_NAMES}), a task file "
                           "('my_task.toml'), or a builder ('my_tasks.py:build' or 'package.module:build')")


def spec_beside(spec, folder: Path):
    """A task file or builder file named relative to `folder` (a config's), made absolute when
    it exists there; built-in names, module builders and other specs unchanged."""
    if not isinstance(spec, str):
        return spec
    file, colon, func = spec.rpartition(":") if ".py:" in spec else (spec, "", "")
    if (file.endswith(".toml") or file.endswith(".py")) and not Path(file).is_absolute() and (folder / file).exists():
        return str((folder / file).resolve()) + colon + func
    return spec


def task_options_of(spec) -> dict[str, dict]:
    """The options a task's builder takes ({name: {"default": ..., "choices": [...] or None}}),
    from its signature (and its `option_choices`, where it declares them): what a form offers and
    what a config's [task_options] may set. A task file or a Task object takes none."""
    import inspect

    if not isinstance(spec, str) or spec.strip().endswith(".toml") or spec.startswith("object:"):
        return {}
    spec = spec.strip()
    if spec in _BUILDERS:
        builder = _BUILDERS[spec]
    elif ":" in spec:
        target, _, func = spec.rpartition(":")
        if target.endswith(".py"):
            from causal.user_files import import_user_file

            module = import_user_file(target, "dii_task_", CausalModelError, f"task builder {spec!r}")
        else:
            module = importlib.import_module(target)
        builder = getattr(module, func, None)
        if not callable(builder):
            return {}
    else:
        return {}
    choices = getattr(builder, "option_choices", {})
    out = {}
    for name, p in inspect.signature(builder).parameters.items():
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.default is not p.empty:
            out[name] = {"default": p.default, "choices": list(choices[name]) if name in choices else None}
    return out


def _with_options(spec: str, options: dict) -> str:
    """A task's source: the spec as written, and its options when it has any."""
    return spec + (" " + json.dumps(options, sort_keys=True) if options else "")


def _call_builder(builder: Callable[..., Task], options: dict, where: str) -> Task:
    """builder(**options), after checking the options against its signature, so a misspelt
    option is named as such rather than surfacing as a TypeError from inside the builder."""
    if options:
        where = f"{where} with task options {json.dumps(options, sort_keys=True)}"
    try:
        signature = inspect.signature(builder)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        try:
            signature.bind(**options)
        except TypeError as e:
            accepted = [n for n, p in signature.parameters.items()
                        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
            raise CausalModelError(f"{where}: it does not take these ({e}); "
                                   f"it takes {accepted or 'no options'}") from None
    try:
        return builder(**options)
    except CausalModelError as e:
        raise CausalModelError(f"{where}: {e}") from None
    except Exception as e:  # noqa: BLE001  (the user's code: one clear error naming it)
        raise CausalModelError(f"{where} raised {type(e).__name__}: {e}") from None


def _from_builder(spec: str, written: str, options: dict) -> Task:
    target, _, func = spec.rpartition(":")
    where = f"task builder {written!r}"
    if not func.isidentifier():
        raise CausalModelError(f"{where}: after ':' give the builder function's name, e.g. 'my_tasks.py:build'")
    if target.endswith(".py"):
        from causal.user_files import import_user_file

        module = import_user_file(target, "dii_task_", CausalModelError, where)
    else:
        try:
            module = importlib.import_module(target)
        except Exception as e:  # noqa: BLE001  (the user's module: one clear error naming it)
            raise CausalModelError(f"{where}: importing {target!r} failed: {type(e).__name__}: {e}") from None
    builder = getattr(module, func, None)
    if not callable(builder):
        raise CausalModelError(f"{where}: {target!r} has no function {func!r}")
    task = _call_builder(builder, options, where)
    if not isinstance(task, Task):
        raise CausalModelError(f"{where} returned a {type(task).__name__}, not a Task; build one with "
                               "causal.tasks.template_task(...) or causal.Task(...)")
    task.source = _with_options(written, options)
    return task


from causal.tasks.template import template_task  # noqa: E402

__all__ = ["Task", "Segment", "TASK_NAMES", "clear_task_cache", "get_task", "resolve_task", "spec_beside",
           "task_options_of", "task_spec_of", "template_task"]
