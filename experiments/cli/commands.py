"""The command registry of `dii` and what its commands share: the flags of a command that
writes a run, where it writes, and plain-text tables."""

from __future__ import annotations

import argparse
from typing import Callable

# name -> (help, [(args, kwargs) for add_argument], function(args) -> exit code, epilog() or None)
COMMANDS: dict[str, tuple[str, list[tuple[tuple, dict]], Callable[[argparse.Namespace], int], Callable | None]] = {}


def arg(*args, **kwargs) -> tuple[tuple, dict]:
    return args, kwargs


def command(name: str, help: str, *arguments: tuple[tuple, dict], epilog: Callable[[], str] | None = None):
    def register(fn):
        COMMANDS[name] = (help, list(arguments), fn, epilog)
        return fn

    return register


# The same three flags on every subcommand that writes a run.
RUNS_DIR = arg("--runs-dir", default=None, help="where runs live (default: $DII_RUNS or ./runs)")
NAME = arg("--name", default=None, help="run name under --runs-dir (default: the config's name, else its hash)")
OUT = arg("--out", default=None, help="the run directory itself (overrides --runs-dir and --name)")


def target_of(args, default_name: str):
    """The run directory a command writes: --out, else --runs-dir / (--name or the config's name)."""
    from experiments.runs import run_dir

    return run_dir(default_name, out=args.out, runs_dir=args.runs_dir, name=args.name)


def format_table(header: list[str], rows: list[list]) -> str:
    rows = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


