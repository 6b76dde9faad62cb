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


class OneLineNetworkErrors(logging.Filter):
    """kafka-python logs a traceback for every connection a broker drops. A broker going away
    is a fault the daemon reports itself (readiness, metrics, its own log lines): the network
    error becomes the end of the client's one-line message, not a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if record.name.startswith("kafka") and isinstance(error, OSError):
            record.msg, record.args = f"{record.getMessage()}: {error!r}", None
            record.exc_info, record.exc_text = None, None
        return True


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(OneLineNetworkErrors())
    # two lines per feed poll at INFO, a dozen per command that opens the store (migration
    # plug-ins); poll_job and the store log what matters (failures) themselves
    for chatty in ("apscheduler.executors", "alembic"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        return int(args.handler(args) or 0)
    except EowatchError as exc:
        print(f"eowatch: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
