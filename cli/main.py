"""Entry point of the ``pnrelight`` command.

Each subcommand module exposes ``register(subparsers)``; its handlers raise
``pnrelight.InputError`` for bad input, which becomes one line on stderr and exit 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from pnrelight import __version__
from pnrelight.errors import InputError

SUBCOMMAND_MODULES = ["pnrelight_cli.rti", "pnrelight_cli.avatar", "pnrelight_cli.olat", "pnrelight_cli.relight"]


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, like every other bad input
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pnrelight", description="Relighting toolkit: RTI fitting and neural relighting, portrait avatars, light stages.")
    parser.add_argument("--version", action="version", version=f"pnrelight {__version__}")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # subcommand not part of this build
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.no_progress:
        from pnrelight import progress

        progress.set_enabled(False)
    try:
        result = args.handler(args)
    except InputError as exc:
        sys.stderr.write(f"pnrelight: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("pnrelight: interrupted\n")
        return 130
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
