"""The one importer of a user's Python file (a task builder, a method plugin): loaded once
per path under a stable module name, any failure one clear error of the caller's type."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from causal.errors import WorkbenchError


_LOADED: dict[tuple, ModuleType] = {}  # (prefix, path, size, mtime) -> module: an unchanged file runs once


def import_user_file(path: str | Path, prefix: str, error: type[WorkbenchError], what: str) -> ModuleType:
    """Execute the file at `path` as a module named `<prefix><hash of the path>` and return it;
    an unchanged file is executed once per process. `what` names it in messages ("task builder
    'my_tasks.py:build'"); errors raise `error`."""
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise error(f"{what}: {str(path)!r} does not exist; give the path of a Python file")
    if not path.is_file() or path.suffix != ".py":
        raise error(f"{what}: {str(path)!r} is not a .py file; give the path of a Python file")
    stat = path.stat()
    key = (prefix, str(path), stat.st_size, stat.st_mtime_ns)
    if key in _LOADED:
        return _LOADED[key]
    name = prefix + hashlib.sha1(str(path).encode()).hexdigest()[:10]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except WorkbenchError:
        sys.modules.pop(name, None)
        raise
    except BaseException as e:  # noqa: BLE001  (the user's file: one clear error naming it)
        sys.modules.pop(name, None)
        if isinstance(e, KeyboardInterrupt):
            raise
        raise error(f"{what}: {str(path)!r} failed to import: {type(e).__name__}: {e}") from None
    _LOADED[key] = module
    return module
