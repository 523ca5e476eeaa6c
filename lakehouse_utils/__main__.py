"""Command line: `python -m lakehouse_utils <command> --help`."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# command -> (module, one-line help). Each module has configure_parser(parser) and run_cli(args) -> int.
COMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("lakehouse_utils.generator.landing", "write a deterministic synthetic landing dataset"),
    "pipeline": ("lakehouse_utils.pipeline", "run pipeline stages (bronze_batch .. serving)"),
    "live": ("lakehouse_utils.live.stage", "stream landing files to Bronze and Cassandra's Q1 and Q5 tables within seconds"),
    "query": ("lakehouse_utils.serving.queries", "run a demo query (q1..q5) against Cassandra"),
    "cassandra": ("lakehouse_utils.cassandra_server.manage", "start|stop|status the local Cassandra"),
    "evidence": ("lakehouse_utils.evidence.inventory", "print counts and partition sizes per zone and Cassandra table"),
    "benchmark": ("lakehouse_utils.benchmark.stages", "time every stage at several data scales"),
    "package": ("lakehouse_utils.shipping", "build the zip of the package that executors import (--py-files)"),
    "jvm-archive": ("lakehouse_utils.jvm_archive", "build the class archive that makes a Spark JVM start faster"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only the module of `command` is imported (the others may be heavy or broken)."""
    parser = argparse.ArgumentParser(prog="python -m lakehouse_utils", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    for name, (module_name, summary) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=summary, description=summary)
        if name == command:
            module = importlib.import_module(module_name)
            module.configure_parser(command_parser)
            command_parser.set_defaults(_module=module)
    return parser


# Set to see the Python traceback behind one of the package's own errors.
TRACEBACK_VARIABLE = "LAKEHOUSE_TRACEBACK"


def is_own_error(error: BaseException) -> bool:
    """An error class of this package: its message names what is wrong and the fix (a bad input, a missing
    zone, a busy port); the traceback adds nothing for the user. Anything else is a bug and keeps it."""
    return type(error).__module__.split(".", 1)[0] == __package__


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command if command in COMMANDS else None).parse_args(argv)
    try:
        return int(args._module.run_cli(args) or 0)
    except KeyboardInterrupt:
        if os.environ.get(TRACEBACK_VARIABLE):
            raise
        # Ctrl-C while Spark starts or a stage runs: what was committed stays; a stage re-runs what it had not.
        print(f"interrupted (Ctrl-C); run the command again to go on (set {TRACEBACK_VARIABLE}=1 to see where)",
              file=sys.stderr)
        return 130
    except Exception as error:
        if not is_own_error(error) or os.environ.get(TRACEBACK_VARIABLE):
            raise
        print(f"error: {error}\n(set {TRACEBACK_VARIABLE}=1 to see where it was raised)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
