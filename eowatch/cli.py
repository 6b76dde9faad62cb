"""The `eowatch` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from . import __version__
from .errors import EowatchError


def build_parser() -> argparse.ArgumentParser:
    from eowatch.adapters.cli import add_commands as add_adapter_commands
    from eowatch.daemon.cli import add_commands as add_daemon_commands
    from eowatch.models.cli import add_commands as add_model_commands

    parser = argparse.ArgumentParser(
        prog="eowatch",
        description="Near-real-time Earth-observation monitoring: early crop decisions and "
                    "flood alerts from satellite feeds.")
    parser.add_argument("--version", action="version", version=f"eowatch {__version__}")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_daemon_commands(commands)
    add_model_commands(commands)
    add_adapter_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # two lines per feed poll at INFO; poll_job logs what matters (failures) itself
    logging.getLogger("apscheduler.executors").setLevel(
        max(logging.WARNING, logging.getLogger().level))
    try:
        return int(args.handler(args) or 0)
    except EowatchError as exc:
        print(f"eowatch: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
