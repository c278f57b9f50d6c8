"""The registry of alignment methods. Every method and every control is one file in this
folder, one subclass of `AlignmentMethod` decorated with `@register`:

    from experiments.methods import AlignmentMethod, register

    @register
    class MyMethod(AlignmentMethod):
        name = "my_method"
        summary = "one line for the CLI, the configs and the app"
        def run(self, cell): ...   # or fit() + artifact(), see base.py

A method can also live in a file outside the package: name it in a search config
(`plugins = ["my_method.py"]`, relative to the config) or in $DII_PLUGINS (paths joined by
the OS path separator). The CLI, the configs, the results table and the app all read the
registry, so nothing else changes.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from pathlib import Path

from experiments.errors import ConfigError
from experiments.methods.base import AlignmentMethod, CellOutput, CellRun

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
        if not path.is_file() or path.suffix != ".py":
            raise ConfigError(f"method plugin {raw!r} is not a .py file; give the path of a file that defines "
                              "an @register'ed AlignmentMethod")
        module_name = "dii_plugin_" + hashlib.sha1(str(path).encode()).hexdigest()[:10]
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except ConfigError:
            raise
        except Exception as e:  # noqa: BLE001  (the user's file: one clear error naming it)
            del sys.modules[module_name]
            raise ConfigError(f"method plugin {str(path)!r} failed to import: {type(e).__name__}: {e}") from None
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
    return [{"name": n, "role": c.role, "trains": c.trains, "split": c.split, "summary": c.summary}
            for n, c in REGISTRY.items()]


# The built-in methods register themselves on import, featurizers first.
from experiments.methods import das, boundless, dbm, dbm_pca, pca  # noqa: E402,F401
from experiments.methods import random_rotation, vanilla, untrained_model, disjoint_split, probe  # noqa: E402,F401

__all__ = ["AlignmentMethod", "CellOutput", "CellRun", "REGISTRY", "register", "load_plugins", "method_names",
           "get_method", "describe_methods"]
