"""What every config shares (search, finetune, compare): one pydantic base, `WorkbenchConfig`.

Each field is declared once, on its config class, with its documentation; the CLI's help and
the app's forms read it. The rules written here once for every kind:
- strict types, unknown fields refused, every error one ConfigError naming the field;
- the run-name rule (`valid_run_name`): a run stays one folder down in its runs directory;
- the hash rule: the config without its name, minus the fields added later while they hold the
  value they had before they existed (`HASH_HISTORY`), with renamed fields under the name
  they had (`HASH_NAMES`), so older configs keep their hash and their run name;
- the task: `load_task()` resolves `task` with `task_options` through the one cached resolver.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from causal.io import json_hash
from experiments.errors import ConfigError

MAX_EXAMPLES = 500_000
TASK_OPTIONS_HELP = ("keyword arguments of the task's builder, as a [task_options] table: a built-in's (e.g. "
                     "counterfactuals = \"s2_io_flip\" for ioi) or your 'my_tasks.py:build(**options)'")


def valid_run_name(name) -> bool:
    """The one run-name rule: letters, digits, '-', '_' and '.', not starting with a dot (a run
    stays one folder down in the runs directory, and is never hidden)."""
    return (isinstance(name, str) and bool(name) and not name.startswith(".")
            and all(ch.isalnum() or ch in "-_." for ch in name))


RUN_NAME_RULE = "use letters, digits, '-', '_' or '.' (no path separators, no leading dot)"


def device_problem(device) -> str | None:
    """Why `device` cannot be used here (None when it can): a name torch knows, and hardware
    this machine has."""
    import torch

    if not isinstance(device, str) or not device:
        return f"got {device!r}; use 'auto', 'cpu' or 'cuda[:N]'"
    if device == "auto":
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        return f"got {device!r}, which torch does not know; use 'auto', 'cpu' or 'cuda[:N]'"
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            return f"got {device!r}, but this machine has no CUDA device; use 'auto' or 'cpu'"
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            return f"got {device!r}, but this machine has {torch.cuda.device_count()} CUDA device(s); use 'cuda:0'"
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        return f"got {device!r}, but MPS is not available here; use 'auto' or 'cpu'"
    elif dev.type not in ("cpu", "cuda", "mps"):
        return f"got {device!r}; use 'auto', 'cpu' or 'cuda[:N]'"
    return None


class WorkbenchConfig(BaseModel):
    """The base of every config. A subclass declares its fields, `validate_fields()` (checks
    beyond the types, each failure `self.need(...)` naming the field) and `default_run_name()`."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True)
    KIND: ClassVar[str] = "config"  # the word in messages: "config field 'k'", "finetune config field 'rank'"
    TOML_TABLE: ClassVar[str] = "search"  # the table of a config file the CLI reads
    # Fields added after the first release -> the value they stood for before: at that value
    # they are left out of the hash, so an older config keeps its hash and its run name.
    HASH_HISTORY: ClassVar[dict[str, Any]] = {}
    # Renamed fields -> the name they had: the hash uses the old name.
    HASH_NAMES: ClassVar[dict[str, str]] = {}
    # Old field names a config file may still use -> their current name (read by from_dict).
    OLD_NAMES: ClassVar[dict[str, str]] = {}

    def __init__(self, **data):
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise _config_error(e, type(self)) from None

    def __setattr__(self, name, value):
        try:
            super().__setattr__(name, value)
        except ValidationError as e:
            raise _config_error(e, type(self)) from None

    @model_validator(mode="before")
    @classmethod
    def _before(cls, data):
        """Old field names in today's form (`upgrade`), and a Task object in `task` as the spec
        its resolver caches it under."""
        from causal.tasks import Task, task_spec_of

        if not isinstance(data, dict):
            return data
        data = cls.upgrade(dict(data))
        if isinstance(data.get("task"), Task):
            data["task"] = task_spec_of(data["task"])
        return data

    @model_validator(mode="after")
    def _check(self):
        if "name" in type(self).model_fields:
            self.need(self.name is None or valid_run_name(self.name), "name", f"got {self.name!r}; {RUN_NAME_RULE}")
        self.validate_fields()
        return self

    def validate_fields(self) -> None:
        """Checks beyond the types; raise ConfigError naming the field."""

    def need(self, cond: bool, fieldname: str, msg: str) -> None:
        if not cond:
            raise ConfigError(f"{self.KIND} field {fieldname!r}: {msg}")

    # ---------------------------------------------------------------- the task
    def load_task(self):
        """The config's Task: `task` resolved with its `task_options` (cached per process)."""
        from causal.tasks import resolve_task

        return resolve_task(self.task, options=self.task_options)

    def checked_task(self):
        """load_task(), its error a ConfigError naming the field at fault (task or task_options)."""
        from causal.errors import CausalModelError

        try:
            return self.load_task()
        except CausalModelError as e:
            self.need(False, "task_options" if self.task_options and "task options" in str(e) else "task", str(e))

    def check_device_and_seeds(self, size_fields: tuple[str, ...]) -> None:
        """A device this machine has, seeds >= 0, and example counts a run can generate in
        reasonable time (generation holds them all in memory)."""
        problem = device_problem(self.device)
        self.need(problem is None, "device", problem or "")
        for name in ("seed", "model_seed"):
            self.need(getattr(self, name) >= 0, name, f"got {getattr(self, name)!r}; seeds are integers >= 0")
        for name in size_fields:
            v = getattr(self, name)
            self.need(v <= MAX_EXAMPLES, name, f"got {v:,}; at most {MAX_EXAMPLES:,} examples are generated per run "
                      "(the counterfactuals are built in memory, one causal-model run each); use fewer")

    # ---------------------------------------------------------------- identity
    def hash(self) -> str:
        """Stable over key order; the name does not change the hash of what is computed."""
        return json_hash(self.hash_dict())

    def hash_dict(self) -> dict[str, Any]:
        """What the hash covers: the fields without the name, as the config was written when
        each field was added (HASH_HISTORY, HASH_NAMES)."""
        d = self.to_dict()
        d.pop("name", None)
        for f, before in self.HASH_HISTORY.items():
            if d.get(f) == before:
                d.pop(f)
        for new, old in self.HASH_NAMES.items():
            if new in d:
                d[old] = d.pop(new)
        return d

    def default_run_name(self) -> str:
        return f"{self.TOML_TABLE}-{self.hash()}"

    @property
    def run_name(self) -> str:
        return self.name or self.default_run_name()

    # ---------------------------------------------------------------- forms, files, help
    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()

    def to_toml(self) -> str:
        """The config as the CLI reads it: a [search] or [finetune] table of the fields that
        differ from their defaults, the required ones always."""
        import tomli_w

        fields = type(self).model_fields
        table = {k: v for k, v in self.to_dict().items()
                 if v is not None and (fields[k].is_required() or v != fields[k].get_default(call_default_factory=True))}
        return tomli_w.dumps({self.TOML_TABLE: table})

    @classmethod
    def check_values(cls, values: dict[str, Any]) -> tuple[Any, dict[str, str]]:
        """(the config, {}) when `values` make a valid one, else (None, {field: message}) for
        every bad field at once: after an error the field takes its default and the check goes
        on (a form shows each message under its field)."""
        trial, errors = dict(values), {}
        for _ in range(len(cls.model_fields) + 1):
            try:
                config = cls(**trial)
            except ConfigError as e:
                name = e.field
                if name not in cls.model_fields or name in errors or cls.model_fields[name].is_required():
                    errors[name if name in cls.model_fields else "config"] = str(e)
                    return None, errors
                errors[name] = str(e)
                trial[name] = cls.model_fields[name].get_default(call_default_factory=True)
            else:
                return (None, errors) if errors else (config, {})
        return None, errors

    def replace(self, **changes):
        return type(self)(**{**self.to_dict(), **changes})

    @classmethod
    def required_fields(cls) -> list[str]:
        return [n for n, f in cls.model_fields.items() if f.is_required()]

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        if not isinstance(d, dict):
            raise ConfigError(f"a {cls.KIND} is a table of fields, not a {type(d).__name__}")
        d = cls.upgrade(dict(d))
        known = set(cls.model_fields)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown {cls.KIND} field(s) {unknown}; allowed fields: {sorted(known)}")
        for required in cls.required_fields():
            if required not in d:
                raise ConfigError(f"{cls.KIND} field {required!r} is missing; it has no default "
                                  f"({cls.model_fields[required].description})")
        return cls(**d)

    @classmethod
    def upgrade(cls, d: dict[str, Any]) -> dict[str, Any]:
        """A config written before a field was renamed or moved, in today's form."""
        for old, new in cls.OLD_NAMES.items():
            if old in d and new not in d:
                d[new] = d.pop(old)
        return d

    @classmethod
    def field_help(cls, name: str) -> str:
        return cls.model_fields[name].description or ""

    @classmethod
    def fields_help(cls) -> str:
        """Every field with its default and documentation (for --help)."""
        lines = []
        for name, f in cls.model_fields.items():
            default = "required" if f.is_required() else repr(f.get_default(call_default_factory=True))
            lines.append(f"  {name} = {default}\n      {f.description}")
        return "\n".join(lines)


def _config_error(e: ValidationError, cls) -> ConfigError:
    err = e.errors()[0]
    original = (err.get("ctx") or {}).get("error")
    if isinstance(original, ConfigError):  # our own check, raised inside the validator
        return original
    loc = err.get("loc") or ()
    field = str(loc[0]) if loc else "?"
    if err.get("type") == "extra_forbidden":
        return ConfigError(f"unknown {cls.KIND} field(s) {[field]}; allowed fields: {sorted(cls.model_fields)}")
    if err.get("type") == "missing":
        return ConfigError(f"{cls.KIND} field {field!r} is missing; it has no default")
    where = field + "".join(f"[{x}]" for x in loc[1:2]) if len(loc) > 1 and isinstance(loc[1], int) else field
    return ConfigError(f"{cls.KIND} field {where!r}: got {err.get('input')!r}; {err.get('msg')} "
                       f"({cls.model_fields[field].description if field in cls.model_fields else ''})")


def read_toml(path: str | Path, table: str, relative: tuple[str, ...] = ("data", "init_from")) -> dict:
    """A flat TOML file, or one whose only table is [table]. Relative paths in the `relative`
    fields (a string or a list of strings) are resolved against the config file's folder
    when they exist there."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist; pass the path of a .toml config "
                          f"(examples in experiments/configs/)")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {str(path)!r} cannot be read ({e}); pass a UTF-8 TOML file") from None
    if set(data) == {table} and isinstance(data[table], dict):
        data = data[table]
    resolve_beside(data, path.parent, relative)
    if "task" in data:
        from causal.tasks import spec_beside

        data["task"] = spec_beside(data["task"], path.parent)
    return data


def resolve_beside(data: dict, folder: Path, keys: tuple[str, ...]) -> None:
    """Relative paths in `keys` (strings or lists of strings) made relative to `folder` when
    they exist there and not here."""

    def beside(v):
        if isinstance(v, str) and not Path(v).is_absolute() and not Path(v).exists() and (folder / v).exists():
            return str(folder / v)
        return v

    for key in keys:
        if key in data:
            v = data[key]
            data[key] = [beside(x) for x in v] if isinstance(v, list) else beside(v)
