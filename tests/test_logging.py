"""The daemon's log: a broker dropping connections gives one line per error, not tracebacks;
other exceptions keep theirs."""

from __future__ import annotations

import io
import logging

from eowatch.cli import OneLineNetworkErrors


def test_network_errors_of_the_kafka_client_are_one_line_and_others_keep_their_traceback():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(OneLineNetworkErrors())
    loggers = [logging.getLogger("kafka.net.transport"), logging.getLogger("eowatch.test")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        for logger in loggers:
            try:
                raise ConnectionResetError(104, "Connection reset by peer")
            except OSError:
                logger.exception("%s: Error receiving network data", "<transport>")
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    kafka, ours = stream.getvalue().split("\n", 1)
    assert kafka == ("<transport>: Error receiving network data: "
                     "ConnectionResetError(104, 'Connection reset by peer')")
    assert ours.startswith("<transport>: Error receiving network data\nTraceback")
