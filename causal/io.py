"""The one atomic-write helper of the workbench. Every file we write goes to a temporary
path in the same directory, is fsynced and renamed into place, so a reader (or a resumed
run) never sees a half-written file. Directories are built in a temporary sibling and
swapped in. It lives in causal/, the bottom layer, so every package can use it."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(o):
    if hasattr(o, "item"):  # numpy and torch scalars
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def json_hash(obj: Any, default: Callable[[Any], Any] | None = None) -> str:
    """12 hex digits of the SHA-256 of `obj` as JSON with sorted keys: what names a config, a
    task's content and a run (the same object written another way hashes the same)."""
    import hashlib

    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=default).encode()).hexdigest()[:12]


def atomic_write_json(path: str | os.PathLike, obj: Any, sort_keys: bool = False) -> Path:
    text = json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=True, sort_keys=sort_keys,
                      default=_json_default) + "\n"
    return atomic_write_text(path, text)


def write_dir_atomic(final: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Run write(tmp) on a fresh temporary sibling of `final`, then swap it in."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        write(tmp)
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
