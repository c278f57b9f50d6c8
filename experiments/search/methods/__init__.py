"""The registry of alignment methods. Every method and every control is one file in this
folder, one subclass of `AlignmentMethod` decorated with `@register`:

    from experiments.search.methods import AlignmentMethod, MethodOptions, register

    @register
    class MyMethod(AlignmentMethod, uses_k=True):  # traits: role, trains, split, per_variable, uses_k, ...
        name = "my_method"
        summary = "one line for the CLI, the configs and the app"

        class Options(MethodOptions):      # its own settings: [method_options.my_method] in a config
            scale: float = 1.0

        def run(self, cell): ...   # or fit() + artifact(), see base.py; cell.options.scale

A method can also live in a file outside the package: name it in a search config
(`plugins = ["my_method.py"]`, relative to the config) or in $DII_PLUGINS (paths joined by
the OS path separator). The CLI (`dii methods`, `dii search --help`), the configs, the results
table and the app (its fields, from `Options`) all read the registry, so nothing else changes.
"""

from __future__ import annotations

import os
from pathlib import Path

from causal.user_files import import_user_file
from experiments.errors import ConfigError
from experiments.search.methods.base import AlignmentMethod, CellOutput, CellRun, MethodOptions

REGISTRY: dict[str, type[AlignmentMethod]] = {}
_LOADED_PLUGINS: set[str] = set()


def register(cls: type[AlignmentMethod]) -> type[AlignmentMethod]:
    if not (isinstance(cls, type) and issubclass(cls, AlignmentMethod)):
        raise ConfigError(f"@register takes an AlignmentMethod subclass, not {cls!r}")
    name = getattr(cls, "name", "")
    if not name or not all(ch.isalnum() or ch == "_" for ch in name):
        raise ConfigError(f"method class {cls.__name__} needs a `name` of letters, digits and '_'")
    if cls.role not in ("featurizer", "control"):
        raise ConfigError(f"method {name!r}: role must be 'featurizer' or 'control', not {cls.role!r}")
    if name in REGISTRY and REGISTRY[name].__qualname__ != cls.__qualname__:
        raise ConfigError(f"two methods are named {name!r} ({REGISTRY[name].__module__} and {cls.__module__}); "
                          "rename one")
    REGISTRY[name] = cls
    return cls


def load_plugins(paths=None) -> list[str]:
    """Import method files (and those in $DII_PLUGINS) once each; returns the names they added."""
    env = [p for p in os.environ.get("DII_PLUGINS", "").split(os.pathsep) if p]
    before = set(REGISTRY)
    for raw in [*env, *(paths or [])]:
        path = Path(raw).expanduser().resolve()
        if str(path) in _LOADED_PLUGINS:
            continue
        import_user_file(path, "dii_plugin_", ConfigError, "method plugin (a file that defines an @register'ed "
                         "AlignmentMethod)")
        _LOADED_PLUGINS.add(str(path))
    return sorted(set(REGISTRY) - before)


def method_names(role: str | None = None) -> list[str]:
    load_plugins()
    return [n for n, cls in REGISTRY.items() if role is None or cls.role == role]


def get_method(name: str) -> AlignmentMethod:
    load_plugins()
    if name not in REGISTRY:
        raise ConfigError(f"unknown method {name!r}; allowed values: {list(REGISTRY)}")
    return REGISTRY[name]()


def describe_methods() -> list[dict]:
    """One row per registered method, for the CLI's and the app's method lists."""
    load_plugins()
    return [{"name": n, "role": c.role, "trains": c.trains, "split": c.split, "summary": c.summary,
             "uses_k": c.uses_k, "options": c.describe_options()} for n, c in REGISTRY.items()]


def default_controls() -> list[str]:
    """The controls a new search runs unless told otherwise (the app's form starts with them)."""
    load_plugins()
    return [n for n, c in REGISTRY.items() if c.role == "control" and c.default_control]


# The built-in methods register themselves on import, featurizers first.
from experiments.search.methods import das, boundless, dbm, dbm_pca, pca  # noqa: E402,F401
from experiments.search.methods import random_rotation, vanilla, untrained_model, disjoint_split, probe  # noqa: E402,F401

__all__ = ["AlignmentMethod", "CellOutput", "CellRun", "MethodOptions", "REGISTRY", "register", "load_plugins", "method_names",
           "get_method", "describe_methods", "default_controls"]
