"""The `dii` command line. Each subcommand is one function registered with @command
(commands.py) in this package's files (search.py: search, plan, runs, show, export, methods;
finetune.py: finetune, compare); to add one, write one decorated function:

    @command("name", "what it does", arg("config", help="a .toml config"))
    def name(args) -> int: ...

The wings below never import this package. Errors a user can cause (WorkbenchError) print
one line to stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys

from causal.errors import WorkbenchError
from experiments.cli import finetune, search  # noqa: F401  (each registers its commands)
from experiments.cli.commands import COMMANDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dii", description="causal-abstraction workbench: DAS search, runs, LoReFT")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (help_, arguments, fn, epilog) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_, epilog=epilog() if epilog else None,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        for a, kw in arguments:
            p.add_argument(*a, **kw)
        p.set_defaults(func=fn)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from experiments.threads import use_cpu_threads

    use_cpu_threads()  # one count for every command, and the same in the app's jobs
    try:
        return int(args.func(args) or 0)
    except WorkbenchError as e:
        print(f"dii {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dii {args.command}: interrupted; finished parts are saved (rerun with --resume)", file=sys.stderr)
        return 130
    finally:
        from experiments.parallel import destroy_process_group

        destroy_process_group()

if __name__ == "__main__":
    sys.exit(main())
