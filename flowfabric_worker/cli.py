"""The ``flowfabric-worker`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .backend.library import FFW, FLOWFABRIC, library_text


def _library_print(args: argparse.Namespace) -> int:
    spec = FFW if args.name == "ffw" else FLOWFABRIC
    sys.stdout.write(library_text(spec))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowfabric-worker",
        description="Durable tasks on Redis/Valkey, FlowFabric 0.15 compatible.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    library = commands.add_parser("library", help="the Lua function libraries")
    library_commands = library.add_subparsers(dest="library_command", required=True)
    printer = library_commands.add_parser(
        "print", help="print the library text exactly as the backend loads it"
    )
    printer.add_argument(
        "name", nargs="?", default="flowfabric", choices=["flowfabric", "ffw"],
        help="which library (default: flowfabric)",
    )
    printer.set_defaults(handler=_library_print)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    raise SystemExit(main())
